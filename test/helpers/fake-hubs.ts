// Fake Hugging Face, CivitAI and Replicate servers (plus a file host for their redirects) on
// 127.0.0.1, for LoRA source tests. Each server counts its hits and records request headers.
//
// JSON shapes, from the public APIs:
//  * Hugging Face `GET /api/models/{owner}/{repo}` (huggingface_hub HfApi.model_info -> ModelInfo):
//    {_id, id, modelId, author, sha, lastModified, private, gated: false | "auto" | "manual",
//     disabled, downloads, likes, library_name, tags, pipeline_tag, createdAt,
//     siblings: [{rfilename}]}. `GET /{owner}/{repo}/resolve/{rev}/{file}` answers 302 to a signed
//    CDN URL (X-Amz-Signature...) with X-Repo-Commit / X-Linked-Size / ETag headers; a gated repo
//    without access answers 401 (no token) / 403 with `X-Error-Code: GatedRepo` and an
//    `X-Error-Message`; a missing repo 401 `RepoNotFound` without a token (the Hub does not reveal
//    private repos), 404 with one; a missing file 404 `X-Error-Code: EntryNotFound`.
//  * CivitAI (developer.civitai.com/site/reference/model-versions, github.com/civitai/civitai wiki
//    "REST API Reference"): `GET /api/v1/models/{id}` -> {id, name, description, type: "LORA", nsfw,
//    tags, creator: {username, image}, stats, modelVersions: [newest first: {id, modelId, name,
//    createdAt, baseModel: "Flux.1 D", baseModelType, trainedWords, downloadUrl,
//    files: [{id, sizeKB, name, type: "Model", metadata: {format: "SafeTensor", fp, size}, hashes,
//    primary, downloadUrl}], images}]}; `GET /api/v1/model-versions/{id}` -> one version with
//    `modelId` and `model: {name, type, nsfw, poi}`. `GET /api/download/models/{versionId}` answers
//    307/302 to a signed storage URL; a login-required file answers 401 JSON {error, message}.
//  * Replicate HTTP API (reference/api-compat.md; replicate.com/docs/reference/http):
//    `GET /v1/models/{owner}/{name}` -> {url, owner, name, description, visibility, github_url,
//    paper_url, license_url, run_count, cover_image_url, default_example, latest_version: {id,
//    created_at, cog_version, openapi_schema} | null}; `GET .../versions/{id}` -> that version
//    object; 401 {"title":"Unauthenticated","detail":"You did not pass a valid authentication
//    token","status":401}; 404 {"title":"Not found","detail":"Not found.","status":404}.
//    The website's `/{owner}/{name}[/versions/{id}]/_weights` (what cog-flux weights.py downloads)
//    redirects to the training output on replicate.delivery: `trained_model.tar`, a plain tar of
//    output/flux_train_replicate/{lora.safetensors, config.yaml, captions/*.txt}
//    (replicate/flux-fine-tuner train.py: `tar -cvf /tmp/trained_model.tar output/flux_train_replicate`).

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors } from '../../src/io/safetensors.js';

/** Behaviour switches for one request path (matched without the query string). */
export interface Switch {
  /** Answer this status with a small JSON body instead of routing. */
  status?: number;
  /** Wait this long before sending headers. */
  delayMs?: number;
  /** Send headers and this many body bytes, then stall forever. */
  stallAfter?: number;
  /** Send headers (full Content-Length) and this many body bytes, then close the connection. */
  truncateAt?: number;
  /** Send this Content-Length instead of the real one (body is the real one). */
  claimLength?: number;
  /** Send the body chunked (no Content-Length). */
  chunked?: boolean;
  /** Redirect to the same path forever. */
  redirectLoop?: boolean;
}

export interface HfRepo {
  files: Record<string, Buffer>;
  /** Token needed (gated / private). */
  token?: string;
}
export interface CivitaiFileSpec {
  id: number;
  name: string;
  data: Buffer;
  type?: string;
  format?: string;
  primary?: boolean;
}
export interface CivitaiModel {
  versions: { id: number; files: CivitaiFileSpec[] }[];
  /** Token needed to download (the API itself stays public). */
  token?: string;
}
export interface ReplicateModel {
  /** Versions, oldest first; the last is latest_version. */
  versions: { id: string; tar: Buffer; schemaDefault?: string }[];
  /** The API token accepted. */
  token: string;
}

export interface Hit {
  server: 'hf' | 'civitai' | 'replicate' | 'files';
  path: string;
  url: string;
  authorization?: string;
}

export interface FakeHubs {
  readonly hf: string;
  readonly civitai: string;
  readonly replicate: string;
  readonly files: string;
  readonly endpoints: { hf: string; civitai: string; replicate: string; replicateWeb: string };
  readonly hfRepos: Map<string, HfRepo>;
  readonly civitaiModels: Map<number, CivitaiModel>;
  readonly replicateModels: Map<string, ReplicateModel>;
  /** Plain files on the file host, by path. */
  readonly fileHost: Map<string, Buffer>;
  /** Behaviour switches by path (any server). */
  readonly switches: Map<string, Switch>;
  readonly hits: Hit[];
  /** Signed-query secret the fake CDNs put in their redirect URLs. */
  readonly signature: string;
  close(): Promise<void>;
}

const SIGNATURE = 'SIGNEDsecret0123456789abcdef';

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const b = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(b.length), ...headers });
  res.end(b);
}

function bearerOf(req: IncomingMessage): string | undefined {
  const a = req.headers.authorization;
  return a?.startsWith('Bearer ') ? a.slice(7) : undefined;
}

function sendBody(res: ServerResponse, data: Buffer, sw: Switch | undefined, extra: Record<string, string> = {}): void {
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream', ...extra };
  if (!sw?.chunked) headers['content-length'] = String(sw?.claimLength ?? data.length);
  res.writeHead(200, headers);
  if (sw?.stallAfter !== undefined) {
    res.write(data.subarray(0, sw.stallAfter));
    return; // never ends; the socket is destroyed at close()
  }
  if (sw?.truncateAt !== undefined) {
    res.write(data.subarray(0, sw.truncateAt), () => res.socket?.destroy());
    return;
  }
  if (sw?.chunked) {
    // several writes so the client sees a stream
    const step = Math.max(1, Math.ceil(data.length / 4));
    for (let i = 0; i < data.length; i += step) res.write(data.subarray(i, i + step));
    res.end();
    return;
  }
  res.end(data);
}

async function listen(
  name: Hit['server'],
  hits: Hit[],
  switches: Map<string, Switch>,
  sockets: Set<Socket>,
  route: (req: IncomingMessage, res: ServerResponse, path: string, sw: Switch | undefined) => void,
): Promise<{ server: Server; base: string }> {
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    const path = decodeURIComponent(url.split('?')[0]!);
    hits.push({ server: name, path, url, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    const sw = switches.get(path);
    const go = () => {
      if (sw?.status !== undefined) return json(res, sw.status, { error: `switch ${sw.status}`, message: `forced status ${sw.status}` });
      if (sw?.redirectLoop) {
        res.writeHead(302, { location: url });
        return res.end();
      }
      try {
        route(req, res, path, sw);
      } catch (e) {
        json(res, 500, { error: String(e) });
      }
    };
    if (sw?.delayMs) setTimeout(go, sw.delayMs);
    else go();
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

export async function startFakeHubs(): Promise<FakeHubs> {
  const hits: Hit[] = [];
  const switches = new Map<string, Switch>();
  const sockets = new Set<Socket>();
  const hfRepos = new Map<string, HfRepo>();
  const civitaiModels = new Map<number, CivitaiModel>();
  const replicateModels = new Map<string, ReplicateModel>();
  const fileHost = new Map<string, Buffer>();
  let filesBase = '';

  const files = await listen('files', hits, switches, sockets, (_req, res, path, sw) => {
    const data = fileHost.get(path);
    if (!data) return json(res, 404, { error: 'NoSuchKey' });
    sendBody(res, data, sw);
  });
  filesBase = files.base;
  const signed = (p: string) => `${filesBase}${p}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature=${SIGNATURE}`;

  // ---- Hugging Face
  const hf = await listen('hf', hits, switches, sockets, (req, res, path) => {
    let m = /^\/api\/models\/([^/]+)\/([^/]+)(?:\/revision\/([^/]+))?$/.exec(path);
    const token = bearerOf(req);
    if (m) {
      const id = `${m[1]}/${m[2]}`;
      const repo = hfRepos.get(id);
      if (!repo || (repo.token && token !== repo.token && !token)) {
        return json(res, 401, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound', 'x-error-message': 'Repository not found' });
      }
      return json(res, 200, {
        _id: `66b0c0ffee0000000000000${id.length}`,
        id,
        modelId: id,
        author: m[1],
        sha: '3f2a9c1d4e5b6a7089abcdef0123456789abcdef',
        lastModified: '2024-08-20T12:00:00.000Z',
        private: false,
        gated: repo.token ? 'auto' : false,
        disabled: false,
        downloads: 1234,
        likes: 56,
        library_name: 'diffusers',
        tags: ['diffusers', 'text-to-image', 'lora', 'flux', 'base_model:black-forest-labs/FLUX.1-dev'],
        pipeline_tag: 'text-to-image',
        createdAt: '2024-08-19T10:00:00.000Z',
        siblings: [{ rfilename: '.gitattributes' }, { rfilename: 'README.md' }, ...Object.keys(repo.files).map((rfilename) => ({ rfilename }))],
      });
    }
    m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (m) {
      const id = `${m[1]}/${m[2]}`;
      const repo = hfRepos.get(id);
      if (!repo) {
        return token
          ? json(res, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound', 'x-error-message': 'Repository not found' })
          : json(res, 401, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound', 'x-error-message': 'Invalid username or password.' });
      }
      if (repo.token && token !== repo.token) {
        const msg = `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.`;
        return json(res, token ? 403 : 401, { error: msg }, { 'x-error-code': 'GatedRepo', 'x-error-message': msg });
      }
      const data = repo.files[m[4]!];
      if (!data) return json(res, 404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound', 'x-error-message': 'Entry not found' });
      const cdnPath = `/hf-cdn/${id}/${m[4]}`;
      fileHost.set(cdnPath, data);
      res.writeHead(302, {
        location: signed(cdnPath),
        'x-repo-commit': '3f2a9c1d4e5b6a7089abcdef0123456789abcdef',
        'x-linked-size': String(data.length),
        etag: '"abc"',
      });
      return res.end();
    }
    json(res, 404, { error: 'not found' });
  });

  // ---- CivitAI
  const civitaiBase = { v: '' };
  const civFile = (vid: number, f: CivitaiFileSpec) => ({
    id: f.id,
    sizeKB: f.data.length / 1024,
    name: f.name,
    type: f.type ?? 'Model',
    pickleScanResult: 'Success',
    virusScanResult: 'Success',
    scannedAt: '2024-09-01T00:00:00.000Z',
    metadata: { format: f.format ?? 'SafeTensor', fp: 'fp16', size: 'full' },
    hashes: { AutoV2: 'ABCDEF0123', SHA256: 'ABCDEF' },
    primary: f.primary ?? false,
    downloadUrl: `${civitaiBase.v}/api/download/models/${vid}${f.primary === false ? `?type=${f.type ?? 'Model'}&format=${f.format ?? 'SafeTensor'}` : ''}`,
  });
  const civVersion = (modelId: number, v: CivitaiModel['versions'][number]) => ({
    id: v.id,
    modelId,
    name: `v${v.id}`,
    createdAt: '2024-09-01T00:00:00.000Z',
    updatedAt: '2024-09-01T00:00:00.000Z',
    baseModel: 'Flux.1 D',
    baseModelType: 'Standard',
    trainedWords: ['TOK'],
    downloadUrl: `${civitaiBase.v}/api/download/models/${v.id}`,
    files: v.files.map((f) => civFile(v.id, f)),
    images: [],
  });
  const civitai = await listen('civitai', hits, switches, sockets, (req, res, path) => {
    let m = /^\/api\/v1\/models\/(\d+)$/.exec(path);
    if (m) {
      const model = civitaiModels.get(Number(m[1]));
      if (!model) return json(res, 404, { error: `No model with id ${m[1]}` });
      return json(res, 200, {
        id: Number(m[1]),
        name: `Model ${m[1]}`,
        description: '<p>a LoRA</p>',
        type: 'LORA',
        poi: false,
        nsfw: false,
        allowNoCredit: true,
        allowCommercialUse: ['Image'],
        allowDerivatives: true,
        allowDifferentLicense: true,
        stats: { downloadCount: 10, favoriteCount: 0, commentCount: 0, ratingCount: 0, rating: 0 },
        creator: { username: 'someone', image: null },
        tags: ['style'],
        modelVersions: [...model.versions].reverse().map((v) => civVersion(Number(m![1]), v)),
      });
    }
    m = /^\/api\/v1\/model-versions\/(\d+)$/.exec(path);
    if (m) {
      for (const [id, model] of civitaiModels) {
        const v = model.versions.find((x) => x.id === Number(m![1]));
        if (v) return json(res, 200, { ...civVersion(id, v), model: { name: `Model ${id}`, type: 'LORA', nsfw: false, poi: false } });
      }
      return json(res, 404, { error: `Version not found` });
    }
    m = /^\/api\/download\/models\/(\d+)$/.exec(path);
    if (m) {
      const q = new URL(req.url!, 'http://x').searchParams;
      for (const model of civitaiModels.values()) {
        const v = model.versions.find((x) => x.id === Number(m![1]));
        if (!v) continue;
        const token = bearerOf(req) ?? q.get('token') ?? undefined;
        if (model.token && token !== model.token) {
          return json(res, 401, { error: 'Unauthorized', message: 'The creator of this asset requires you to be logged in to download it' });
        }
        const f = v.files.find((x) => (q.get('type') ? x.type === q.get('type') : x.primary)) ?? v.files[0]!;
        const p = `/civitai-delivery/${v.id}/${f.name}`;
        fileHost.set(p, f.data);
        res.writeHead(307, { location: signed(p) });
        return res.end();
      }
      return json(res, 404, { error: 'Model not found' });
    }
    json(res, 404, { error: 'not found' });
  });
  civitaiBase.v = civitai.base;

  // ---- Replicate (API and website on one server)
  const replicate = await listen('replicate', hits, switches, sockets, (req, res, path) => {
    const unauth = () => json(res, 401, { title: 'Unauthenticated', detail: 'You did not pass a valid authentication token', status: 401 });
    const notFound = () => json(res, 404, { title: 'Not found', detail: 'Not found.', status: 404 });
    const version = (v: ReplicateModel['versions'][number]) => ({
      id: v.id,
      created_at: '2024-09-01T12:00:00.000000Z',
      cog_version: '0.9.13',
      openapi_schema: {
        openapi: '3.0.2',
        info: { title: 'Cog', version: '0.1.0' },
        paths: {},
        components: {
          schemas: {
            Input: {
              type: 'object',
              title: 'Input',
              required: ['prompt'],
              properties: {
                prompt: { type: 'string', title: 'Prompt', 'x-order': 0 },
                replicate_weights: { type: 'string', title: 'Replicate Weights', 'x-order': 17, ...(v.schemaDefault ? { default: v.schemaDefault } : {}) },
                lora_scale: { type: 'number', title: 'Lora Scale', default: 1, maximum: 3, minimum: -1, 'x-order': 18 },
              },
            },
          },
        },
      },
    });
    let m = /^\/v1\/models\/([^/]+)\/([^/]+)(?:\/versions\/([^/]+))?$/.exec(path);
    if (m) {
      const model = replicateModels.get(`${m[1]}/${m[2]}`);
      if (bearerOf(req) === undefined) return unauth();
      if (!model || bearerOf(req) !== model.token) return model ? unauth() : notFound();
      if (m[3]) {
        const v = model.versions.find((x) => x.id === m![3]);
        return v ? json(res, 200, version(v)) : notFound();
      }
      const latest = model.versions[model.versions.length - 1];
      return json(res, 200, {
        url: `https://replicate.com/${m[1]}/${m[2]}`,
        owner: m[1],
        name: m[2],
        description: 'a fine-tune',
        visibility: 'private',
        github_url: null,
        paper_url: null,
        license_url: null,
        run_count: 3,
        cover_image_url: null,
        default_example: null,
        latest_version: latest ? version(latest) : null,
      });
    }
    m = /^\/([^/]+)\/([^/]+)(?:\/versions\/([^/]+))?\/_weights$/.exec(path);
    if (m) {
      const model = replicateModels.get(`${m[1]}/${m[2]}`);
      if (!model) return notFound();
      const v = m[3] ? model.versions.find((x) => x.id === m![3]) : model.versions[model.versions.length - 1];
      if (!v) return notFound();
      const p = `/replicate-delivery/${v.id}/trained_model.tar`;
      fileHost.set(p, v.tar);
      res.writeHead(302, { location: `${filesBase}${p}` });
      return res.end();
    }
    notFound();
  });

  return {
    hf: hf.base,
    civitai: civitai.base,
    replicate: replicate.base,
    files: files.base,
    endpoints: { hf: hf.base, civitai: civitai.base, replicate: replicate.base, replicateWeb: replicate.base },
    hfRepos,
    civitaiModels,
    replicateModels,
    fileHost,
    switches,
    hits,
    signature: SIGNATURE,
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([hf, civitai, replicate, files].map(({ server }) => new Promise<void>((r) => server.close(() => r()))));
    },
  };
}

// ---- payloads ---------------------------------------------------------------------------------

/** A small valid safetensors file (a fake LoRA pair); `floats` controls the size, `seed` the content. */
export function makeSafetensors(seed: number, floats = 64): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'fluxserve-st-'));
  try {
    const p = join(dir, 'x.safetensors');
    const a = new Float32Array(floats).map((_, i) => Math.sin(seed * 31 + i));
    const b = new Float32Array(floats).map((_, i) => Math.cos(seed * 17 + i));
    writeSafetensors(p, [
      ['lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight', { dtype: 'f32', shape: [floats / 8, 8], data: a }],
      ['lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight', { dtype: 'f32', shape: [8, floats / 8], data: b }],
    ]);
    return readFileSync(p);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A ustar archive of the given members (regular files), as `tar -cf` writes it. */
export function makeTar(members: { name: string; data: Buffer }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const m of members) {
    const h = Buffer.alloc(512);
    let name = m.name;
    let prefix = '';
    if (Buffer.byteLength(name) > 100) {
      const cut = name.lastIndexOf('/', 155);
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
    }
    h.write(name, 0, 100, 'utf8');
    h.write('0000644\0', 100, 8, 'latin1');
    h.write('0000000\0', 108, 8, 'latin1');
    h.write('0000000\0', 116, 8, 'latin1');
    h.write(`${m.data.length.toString(8).padStart(11, '0')}\0`, 124, 12, 'latin1');
    h.write('14650000000\0', 136, 12, 'latin1');
    h.write('        ', 148, 8, 'latin1');
    h.write('0', 156, 1, 'latin1');
    h.write('ustar\0', 257, 6, 'latin1');
    h.write('00', 263, 2, 'latin1');
    h.write(prefix, 345, 155, 'utf8');
    let sum = 0;
    for (const x of h) sum += x;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
    blocks.push(h, m.data, Buffer.alloc((512 - (m.data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** What flux-fine-tuner's training writes: output/flux_train_replicate/{lora.safetensors, config.yaml, captions/}. */
export function trainedModelTar(lora: Buffer): Buffer {
  return makeTar([
    { name: 'output/flux_train_replicate/config.yaml', data: Buffer.from('job: custom_job\nconfig:\n  name: flux_train_replicate\n') },
    { name: 'output/flux_train_replicate/lora.safetensors', data: lora },
    { name: 'output/flux_train_replicate/captions/a.txt', data: Buffer.from('a photo of TOK') },
  ]);
}
