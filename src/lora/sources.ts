// LoRA sources: a user's LoRA reference -> a local, validated .safetensors file (through LoraCache).
//
// STABLE API (used by the predictor, the server and the CLI):
//
//   resolveLora(ref, ctx): Promise<ResolvedLora>
//     ref   the `lora_weights` / `replicate_weights` / `extra_lora` string, as the user gave it
//     ctx   { cache: LoraCache,                               // src/lora/cache.ts
//             env?: { HF_TOKEN?, REPLICATE_API_TOKEN?, CIVITAI_API_TOKEN? },   // server-wide tokens
//             requestTokens?: { hf?, replicate?, civitai? },  // per-request tokens (hf_api_token, ...); win over env
//             registry?: (ownerName) => string | undefined,   // fine-tunes registered in the server config
//             allowLocal?: boolean,                            // local paths (CLI: true; HTTP server: false)
//             endpoints?: Partial<LoraEndpoints>,             // base URLs (tests point them at 127.0.0.1)
//             signal?: AbortSignal, log?: (line) => void }
//     ->    { path, source, downloaded }
//           path: a validated .safetensors file (in the cache, or the local file itself)
//           source: a redacted description safe for logs and responses
//           downloaded: false for cache hits, local files and registry entries already cached
//   Throws LoraSourceError { code, message, status? } (source-errors.ts); messages are redacted.
//   parseLoraRef(ref, allowLocal) exposes the parsing alone (for input validation before a run).
//
// Accepted forms (reference/cog-flux-behaviour.md §4.1, with cog-flux's bugs fixed):
//   data:[mime];base64,<...>                          a safetensors file, or a tar / tar.gz holding one
//   huggingface.co/<owner>/<repo>                     the repo's single .safetensors (HF API `siblings`);
//                                                     several: pytorch_lora_weights / lora.safetensors, else an error listing them
//   huggingface.co/<owner>/<repo>/<path>.safetensors  (also https://, hf.co, /resolve/<rev>/..., /blob/<rev>/...)
//   civitai.com/models/<id>[/<slug>][?modelVersionId=<v>]
//                                                     CivitAI API: the model's newest version (or <v>), its
//                                                     primary SafeTensor file (cog-flux used the model id as a version id)
//   civitai.com/api/download/models/<versionId>[?...] downloaded as is (a `token=` parameter is taken as the token)
//   [https://replicate.com/]<owner>/<name>[/<version>|/versions/<version>|:<version>]
//                                                     the registry first; else Replicate: with a token, the API resolves the
//                                                     latest (or given) version, then that version's `_weights`
//                                                     (a tar holding output/flux_train_replicate/lora.safetensors);
//                                                     without a token, replicate.com/<owner>/<name>[/versions/<v>]/_weights
//   http(s)://... (any URL: .safetensors, .tar, replicate.delivery ...; the signed query is used, never logged)
//   a local path or file:// URL                       only with allowLocal
//
// Tokens: the request's token, else the environment's, sent as `Authorization: Bearer` to the hub's
// own origin only (never in a URL we build, never across a redirect to another origin). Cache keys
// include a salted hash of the token that was sent (cache.ts), so a token-less request never reuses a
// gated download. No token or signed query appears in a message, log line, response or file name.

import * as fs from 'node:fs';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { SafetensorsFile } from '../io/safetensors.js';
import { type CacheKey, type LoraCache, credentialId, httpFailure } from './cache.js';
import { LoraSourceError, asSourceError, redact, redactUrl } from './source-errors.js';

export { LoraCache } from './cache.js';
export { LoraSourceError } from './source-errors.js';

export interface LoraEndpoints {
  /** Replicate HTTP API base (GET /v1/models/...). */
  readonly replicate: string;
  /** Replicate website base (/<owner>/<name>/versions/<id>/_weights). */
  readonly replicateWeb: string;
  /** Hugging Face Hub base (/api/models/..., /<owner>/<repo>/resolve/<rev>/<file>). */
  readonly hf: string;
  /** CivitAI base (/api/v1/models/..., /api/download/models/...). */
  readonly civitai: string;
}

export const DEFAULT_LORA_ENDPOINTS: LoraEndpoints = {
  replicate: 'https://api.replicate.com',
  replicateWeb: 'https://replicate.com',
  hf: 'https://huggingface.co',
  civitai: 'https://civitai.com',
};

export interface LoraTokens {
  readonly hf?: string | undefined;
  readonly replicate?: string | undefined;
  readonly civitai?: string | undefined;
}

export interface LoraEnv {
  readonly HF_TOKEN?: string | undefined;
  readonly REPLICATE_API_TOKEN?: string | undefined;
  readonly CIVITAI_API_TOKEN?: string | undefined;
}

export interface ResolveContext {
  readonly cache: LoraCache;
  readonly env?: LoraEnv | undefined;
  readonly requestTokens?: LoraTokens | undefined;
  /** `owner/name` (or `owner/name:version`) -> another reference, for fine-tunes registered in the server config. */
  readonly registry?: ((ownerName: string) => string | undefined) | undefined;
  readonly allowLocal?: boolean | undefined;
  readonly endpoints?: Partial<LoraEndpoints> | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly log?: ((line: string) => void) | undefined;
}

export interface ResolvedLora {
  /** A validated .safetensors file. */
  readonly path: string;
  /** Redacted description of where it came from. */
  readonly source: string;
  /** True when this call downloaded it (false: cache hit, local file). */
  readonly downloaded: boolean;
}

/** A parsed reference (no network involved). */
export type LoraRef =
  | { readonly kind: 'data'; readonly uri: string }
  | { readonly kind: 'local'; readonly path: string }
  | { readonly kind: 'hf'; readonly owner: string; readonly repo: string; readonly rev: string; readonly file?: string }
  | { readonly kind: 'civitai-model'; readonly modelId: string; readonly versionId?: string }
  | { readonly kind: 'civitai-download'; readonly versionId: string; readonly query: string; readonly token?: string }
  | { readonly kind: 'replicate'; readonly owner: string; readonly name: string; readonly version?: string }
  | { readonly kind: 'url'; readonly url: string };

const FORMS_HELP =
  'Expected one of:\n' +
  '* a Replicate model: <owner>/<name>, <owner>/<name>/<version> or <owner>/<name>:<version>\n' +
  '* a Hugging Face repo or file: huggingface.co/<owner>/<repo>[/<file>.safetensors]\n' +
  '* a CivitAI model: civitai.com/models/<id>[/<name>][?modelVersionId=<version>] or civitai.com/api/download/models/<version>\n' +
  '* an https URL of a .safetensors (or .tar) file, or a data: URI';

const NAME = '[A-Za-z0-9][A-Za-z0-9_.-]*';
const REPLICATE_REF = new RegExp(`^(${NAME})/(${NAME})(?:(?::|/(?:versions/)?)([A-Za-z0-9]+))?/?$`);

/** Parses a LoRA reference; throws LoraSourceError('bad-ref' | 'local-not-allowed'). */
export function parseLoraRef(input: string, allowLocal = false): LoraRef {
  const ref = input.trim();
  if (ref === '') throw new LoraSourceError('bad-ref', 'empty LoRA reference');
  if (/^data:/i.test(ref)) return { kind: 'data', uri: ref };
  if (/^file:/i.test(ref)) {
    if (!allowLocal) throw new LoraSourceError('local-not-allowed', 'local LoRA files are not allowed here');
    return { kind: 'local', path: fileURLToPath(ref) };
  }

  const hf = /^(?:https?:\/\/)?(?:www\.)?(?:huggingface\.co|hf\.co)\/([^?#]*)(?:[?#].*)?$/i.exec(ref);
  if (hf) {
    const seg = hf[1]!
      .split('/')
      .filter((s) => s !== '')
      .map(decodeURIComponent);
    const bad = () =>
      new LoraSourceError(
        'bad-ref',
        `cannot parse the Hugging Face reference ${redact(ref)}: expected huggingface.co/<owner>/<repo>[/<file>.safetensors] or .../resolve/<revision>/<file>.safetensors`,
      );
    if (seg.length < 2 || seg[0] === 'datasets' || seg[0] === 'spaces') throw bad();
    const [owner, repo] = [seg[0]!, seg[1]!];
    if (seg.length === 2) return { kind: 'hf', owner, repo, rev: 'main' };
    if ((seg[2] === 'resolve' || seg[2] === 'blob') && seg.length >= 5) {
      return { kind: 'hf', owner, repo, rev: seg[3]!, file: seg.slice(4).join('/') };
    }
    if (seg[2] === 'tree' && seg.length === 4) return { kind: 'hf', owner, repo, rev: seg[3]! };
    const file = seg.slice(2).join('/');
    if (!file.toLowerCase().endsWith('.safetensors')) throw bad();
    return { kind: 'hf', owner, repo, rev: 'main', file };
  }

  const civ = /^(?:https?:\/\/)?(?:www\.)?civitai\.(?:com|green)\/([^?#]*)(\?[^#]*)?(?:#.*)?$/i.exec(ref);
  if (civ) {
    const path = civ[1]!.replace(/\/+$/, '');
    const params = new URLSearchParams(civ[2] ?? '');
    let m = /^models\/(\d+)(?:\/[^/]*)?$/.exec(path);
    if (m) {
      const v = params.get('modelVersionId');
      if (v !== null && !/^\d+$/.test(v)) throw new LoraSourceError('bad-ref', `CivitAI modelVersionId must be a number, got ${JSON.stringify(v)}`);
      return v ? { kind: 'civitai-model', modelId: m[1]!, versionId: v } : { kind: 'civitai-model', modelId: m[1]! };
    }
    m = /^api\/download\/models\/(\d+)$/.exec(path);
    if (m) {
      const token = params.get('token') ?? undefined;
      params.delete('token');
      const q = params.toString();
      return { kind: 'civitai-download', versionId: m[1]!, query: q ? `?${q}` : '', ...(token ? { token } : {}) };
    }
    throw new LoraSourceError(
      'bad-ref',
      `cannot parse the CivitAI reference ${redact(ref)}: expected civitai.com/models/<id>[/<name>][?modelVersionId=<version>] or civitai.com/api/download/models/<version>`,
    );
  }

  const rep = /^(?:https?:\/\/)?(?:www\.)?replicate\.com\/([^?#]*)(?:[?#].*)?$/i.exec(ref);
  if (rep) {
    const m = REPLICATE_REF.exec(rep[1]!.replace(/\/_weights\/?$/, ''));
    if (!m)
      throw new LoraSourceError('bad-ref', `cannot parse the Replicate reference ${redact(ref)}: expected replicate.com/<owner>/<name>[/versions/<version>]`);
    return replicateRef(m);
  }

  if (/^https?:\/\//i.test(ref)) {
    try {
      new URL(ref);
    } catch {
      throw new LoraSourceError('bad-ref', `not a valid URL: ${redact(ref)}`);
    }
    return { kind: 'url', url: ref };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(ref)) throw new LoraSourceError('bad-ref', `unsupported URL scheme in ${redact(ref)}. ${FORMS_HELP}`);

  const looksLocal = isAbsolute(ref) || /^(\.{1,2}[/\\]|~)/.test(ref) || /\.(safetensors|sft|tar)$/i.test(ref) || ref.includes('\\');
  if (looksLocal || (allowLocal && fs.existsSync(ref))) {
    if (!allowLocal) throw new LoraSourceError('local-not-allowed', `local LoRA files are not allowed here (${JSON.stringify(ref)}). ${FORMS_HELP}`);
    return { kind: 'local', path: ref };
  }
  const m = REPLICATE_REF.exec(ref);
  if (m) return replicateRef(m);
  throw new LoraSourceError('bad-ref', `cannot parse LoRA reference ${JSON.stringify(redact(ref))}. ${FORMS_HELP}`);
}

function replicateRef(m: RegExpExecArray): LoraRef {
  return m[3] ? { kind: 'replicate', owner: m[1]!, name: m[2]!, version: m[3] } : { kind: 'replicate', owner: m[1]!, name: m[2]! };
}

/** Resolves a LoRA reference to a local validated .safetensors file (see the header for the contract). */
export async function resolveLora(ref: string, ctx: ResolveContext): Promise<ResolvedLora> {
  const secrets = collectSecrets(ref, ctx);
  try {
    return await resolveParsed(parseLoraRef(ref, ctx.allowLocal ?? false), ctx, secrets, 0);
  } catch (e) {
    throw asSourceError(e, 'network', secrets);
  }
}

// ---------------------------------------------------------------------------------------------

interface Tokens {
  hf?: string | undefined;
  replicate?: string | undefined;
  civitai?: string | undefined;
}

function tokensOf(ctx: ResolveContext): Tokens {
  const nz = (s: string | undefined) => (s && s.trim() !== '' ? s.trim() : undefined);
  return {
    hf: nz(ctx.requestTokens?.hf) ?? nz(ctx.env?.HF_TOKEN),
    replicate: nz(ctx.requestTokens?.replicate) ?? nz(ctx.env?.REPLICATE_API_TOKEN),
    civitai: nz(ctx.requestTokens?.civitai) ?? nz(ctx.env?.CIVITAI_API_TOKEN),
  };
}

function collectSecrets(ref: string, ctx: ResolveContext): string[] {
  const t = tokensOf(ctx);
  const out = [t.hf, t.replicate, t.civitai, ctx.requestTokens?.hf, ctx.requestTokens?.replicate, ctx.requestTokens?.civitai].filter((s): s is string => !!s);
  const q = ref.indexOf('?');
  if (q >= 0 && !/^data:/i.test(ref)) {
    const query = ref.slice(q + 1).split('#')[0]!;
    if (query) out.push(query);
    for (const [, v] of new URLSearchParams(query)) if (v.length >= 8) out.push(v);
  }
  return out;
}

function endpointsOf(ctx: ResolveContext): LoraEndpoints {
  const e = { ...DEFAULT_LORA_ENDPOINTS, ...(ctx.endpoints ?? {}) };
  const strip = (s: string) => s.replace(/\/+$/, '');
  return { replicate: strip(e.replicate), replicateWeb: strip(e.replicateWeb), hf: strip(e.hf), civitai: strip(e.civitai) };
}

function bearer(token: string | undefined): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

async function viaCache(
  ctx: ResolveContext,
  key: CacheKey,
  description: string,
  req: { url: string; headers?: Record<string, string> },
  secrets: string[],
  maxAgeMs?: number,
): Promise<ResolvedLora> {
  const { cache } = ctx;
  const r = await cache.ensure(key, {
    description,
    secrets,
    signal: ctx.signal,
    ...(maxAgeMs !== undefined ? { maxAgeMs } : {}),
    fetch: (tmp) => cache.download(req, tmp, { description, secrets, signal: ctx.signal }),
  });
  ctx.log?.(redact(`LoRA ${description}: ${r.hit ? 'cache hit' : 'downloaded'}`, secrets));
  return { path: r.path, source: description, downloaded: !r.hit };
}

async function resolveParsed(ref: LoraRef, ctx: ResolveContext, secrets: string[], depth: number): Promise<ResolvedLora> {
  const ep = endpointsOf(ctx);
  const tok = tokensOf(ctx);
  switch (ref.kind) {
    case 'local': {
      if (!ctx.allowLocal) throw new LoraSourceError('local-not-allowed', 'local LoRA files are not allowed here');
      const p = resolvePath(ref.path.startsWith('~/') ? ref.path.replace(/^~/, process.env['HOME'] ?? '~') : ref.path);
      let st: SafetensorsFile;
      try {
        st = SafetensorsFile.open(p);
      } catch (e) {
        const code = fs.existsSync(p) ? 'invalid' : 'not-found';
        throw new LoraSourceError(code, `LoRA file ${p}: ${(e as Error).message.replace(`${p}: `, '')}`);
      }
      st.close();
      return { path: p, source: p, downloaded: false };
    }

    case 'data': {
      const m = /^data:([^,]*),(.*)$/is.exec(ref.uri);
      if (!m) throw new LoraSourceError('bad-ref', 'malformed data: URI (no comma)');
      const isB64 = /;base64$/i.test(m[1]!);
      const payload = m[2]!;
      const approx = isB64 ? Math.floor((payload.length * 3) / 4) : payload.length;
      if (approx > ctx.cache.maxFileBytes)
        throw new LoraSourceError('too-large', `data: URI of about ${approx} bytes is over the LoRA size limit of ${ctx.cache.maxFileBytes} bytes`);
      const bytes = isB64 ? Buffer.from(payload.replace(/\s+/g, ''), 'base64') : Buffer.from(decodeURIComponent(payload), 'latin1');
      const hash = createHash('sha256').update(bytes).digest('hex');
      const description = `data: URI (${bytes.length} bytes, sha256 ${hash.slice(0, 12)})`;
      const r = await ctx.cache.ensure(
        { source: `data:sha256:${hash}` },
        {
          description,
          signal: ctx.signal,
          fetch: async (tmp) => fs.promises.writeFile(tmp, bytes),
        },
      );
      return { path: r.path, source: description, downloaded: !r.hit };
    }

    case 'url': {
      const u = new URL(ref.url);
      const credential = u.search.length > 1 ? u.search : undefined; // a signed query is a credential
      const key = { source: `url:${u.protocol}//${u.host}${u.pathname}`, credential };
      return viaCache(ctx, key, redactUrl(ref.url), { url: ref.url }, secrets);
    }

    case 'hf': {
      const repoId = `${ref.owner}/${ref.repo}`;
      const file = ref.file ?? (await hfPickFile(ctx, ep, repoId, ref.rev, tok.hf, secrets));
      const enc = (s: string) => s.split('/').map(encodeURIComponent).join('/');
      const url = `${ep.hf}/${enc(repoId)}/resolve/${encodeURIComponent(ref.rev)}/${enc(file)}`;
      const description = `huggingface.co/${repoId}/${file}${ref.rev !== 'main' ? ` @ ${ref.rev}` : ''}`;
      return viaCache(ctx, { source: `hf:${repoId}@${ref.rev}/${file}`, credential: tok.hf }, description, { url, headers: bearer(tok.hf) }, secrets);
    }

    case 'civitai-model': {
      const token = tok.civitai;
      const pick = await ctx.cache.memoize(`civitai:${ref.modelId}:${ref.versionId ?? 'latest'}:${credentialId(token)}`, () =>
        civitaiPick(ctx, ep, ref.modelId, ref.versionId, token, secrets),
      );
      const sameOrigin = safeOrigin(pick.downloadUrl) === safeOrigin(ep.civitai);
      const send = sameOrigin ? token : undefined;
      const description = `civitai.com/models/${ref.modelId} (version ${pick.versionId}, ${pick.fileName})`;
      return viaCache(
        ctx,
        { source: `civitai:${pick.versionId}/${pick.fileId}`, credential: send },
        description,
        { url: pick.downloadUrl, headers: bearer(send) },
        secrets,
      );
    }

    case 'civitai-download': {
      const token = ref.token ?? tok.civitai;
      if (ref.token) secrets.push(ref.token);
      const url = `${ep.civitai}/api/download/models/${ref.versionId}${ref.query}`;
      const description = `civitai.com/api/download/models/${ref.versionId}`;
      return viaCache(
        ctx,
        { source: `civitai-download:${ref.versionId}${ref.query}`, credential: token },
        description,
        { url, headers: bearer(token) },
        secrets,
      );
    }

    case 'replicate': {
      const ownerName = `${ref.owner}/${ref.name}`;
      const registered = ctx.registry?.(ref.version ? `${ownerName}:${ref.version}` : ownerName);
      if (registered !== undefined) {
        if (depth > 0) throw new LoraSourceError('bad-ref', `registered LoRA ${ownerName} refers to another registered name`);
        const inner = await resolveParsed(parseLoraRef(registered, true), { ...ctx, allowLocal: true, registry: undefined }, secrets, depth + 1);
        return { ...inner, source: `${ownerName} (registered: ${inner.source})` };
      }
      const token = tok.replicate;
      if (!token) {
        // cog-flux's form: the website's _weights redirect, anonymously. "latest" may change: re-check after metaTtlMs.
        const path = ref.version ? `/versions/${encodeURIComponent(ref.version)}` : '';
        const url = `${ep.replicateWeb}/${ownerName}${path}/_weights`;
        const description = `replicate.com/${ownerName}${ref.version ? `:${ref.version}` : ''}`;
        return viaCache(
          ctx,
          { source: `replicate:${ownerName}@${ref.version ?? 'latest'}` },
          description,
          { url },
          secrets,
          ref.version ? undefined : ctx.cache.metaTtlMs,
        );
      }
      const v = await ctx.cache.memoize(`replicate:${ownerName}:${ref.version ?? 'latest'}:${credentialId(token)}`, () =>
        replicateVersion(ctx, ep, ref.owner, ref.name, ref.version, token, secrets),
      );
      if (v.schemaDefault) {
        if (depth > 0) throw new LoraSourceError('bad-ref', `${ownerName}: its weights default refers to another model`);
        const inner = await resolveParsed(parseLoraRef(v.schemaDefault, false), { ...ctx, registry: undefined }, secrets, depth + 1);
        return { ...inner, source: `${ownerName}:${v.id} (${inner.source})` };
      }
      const url = `${ep.replicateWeb}/${ownerName}/versions/${encodeURIComponent(v.id)}/_weights`;
      const description = `replicate.com/${ownerName}:${v.id}`;
      return viaCache(ctx, { source: `replicate:${ownerName}@${v.id}`, credential: token }, description, { url, headers: bearer(token) }, secrets);
    }
  }
}

function safeOrigin(u: string): string {
  try {
    return new URL(u).origin;
  } catch {
    return '';
  }
}

/** GET a JSON document with the cache's connect timeout; non-2xx -> LoraSourceError. */
async function getJson(ctx: ResolveContext, url: string, headers: Record<string, string>, what: string, secrets: string[]): Promise<unknown> {
  const cache = ctx.cache;
  const ctl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctl.abort();
  }, cache.connectTimeoutMs + cache.idleTimeoutMs);
  const onAbort = () => ctl.abort();
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    let res: Response;
    try {
      res = await fetch(url, { headers: { accept: 'application/json', 'user-agent': 'fluxserve', ...headers }, signal: ctl.signal, redirect: 'follow' });
    } catch (e) {
      if (timedOut) throw new LoraSourceError('timeout', `${what}: no answer within ${cache.connectTimeoutMs + cache.idleTimeoutMs} ms`);
      if (ctx.signal?.aborted) throw new LoraSourceError('aborted', `${what}: cancelled`);
      const c = (e as { cause?: { code?: string } }).cause?.code;
      throw new LoraSourceError('network', `${what}: cannot connect to ${redactUrl(url)}${c ? `: ${c}` : ''}`);
    }
    const text = await res.text().catch(() => '');
    if (!res.ok) {
      let detail = res.headers.get('x-error-code') ?? '';
      const xm = res.headers.get('x-error-message');
      if (xm) detail += `${detail ? ': ' : ''}${xm}`;
      if (!detail) {
        try {
          const j = JSON.parse(text) as Record<string, unknown>;
          const m = j['detail'] ?? j['message'] ?? j['error'];
          if (typeof m === 'string') detail = m.slice(0, 300);
        } catch {
          /* not JSON */
        }
      }
      const [code, msg, status] = httpFailure(res.status, what, detail);
      throw new LoraSourceError(code, redact(msg, secrets), status);
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new LoraSourceError('http', `${what}: the API answered something that is not JSON`);
    }
  } finally {
    clearTimeout(timer);
    ctx.signal?.removeEventListener('abort', onAbort);
  }
}

// ---- Hugging Face ---------------------------------------------------------------------------

/** Names preferred, in order, when a repo holds several .safetensors files (diffusers, ai-toolkit/Replicate). */
const HF_PREFERRED = ['pytorch_lora_weights.safetensors', 'lora.safetensors'];

async function hfPickFile(ctx: ResolveContext, ep: LoraEndpoints, repoId: string, rev: string, token: string | undefined, secrets: string[]): Promise<string> {
  const names = await ctx.cache.memoize(`hf-files:${repoId}@${rev}:${credentialId(token)}`, async () => {
    // GET /api/models/{repo_id}[/revision/{rev}] -> ModelInfo {id, sha, private, gated, siblings: [{rfilename}], ...}
    // (huggingface_hub HfApi.model_info; `siblings` lists every file of the repo, subfolders included).
    const url = rev === 'main' ? `${ep.hf}/api/models/${repoId}` : `${ep.hf}/api/models/${repoId}/revision/${encodeURIComponent(rev)}`;
    const info = (await getJson(ctx, url, bearer(token), `huggingface.co/${repoId}`, secrets)) as { siblings?: { rfilename?: unknown }[] };
    if (!Array.isArray(info.siblings)) throw new LoraSourceError('http', `huggingface.co/${repoId}: the model API answer has no file list (siblings)`);
    return info.siblings.map((s) => s.rfilename).filter((n): n is string => typeof n === 'string');
  });
  const st = names.filter((n) => n.toLowerCase().endsWith('.safetensors'));
  if (st.length === 1) return st[0]!;
  if (st.length === 0) throw new LoraSourceError('not-found', `huggingface.co/${repoId} has no .safetensors file`);
  for (const pref of HF_PREFERRED) if (st.includes(pref)) return pref;
  throw new LoraSourceError(
    'ambiguous',
    `huggingface.co/${repoId} has several .safetensors files; name one (huggingface.co/${repoId}/<file>): ${st.join(', ')}`,
  );
}

// ---- CivitAI --------------------------------------------------------------------------------

interface CivitaiFile {
  id?: number;
  name?: string;
  type?: string;
  primary?: boolean;
  downloadUrl?: string;
  metadata?: { format?: string; fp?: string; size?: string };
}
interface CivitaiVersion {
  id?: number;
  modelId?: number;
  name?: string;
  files?: CivitaiFile[];
  downloadUrl?: string;
}

async function civitaiPick(
  ctx: ResolveContext,
  ep: LoraEndpoints,
  modelId: string,
  versionId: string | undefined,
  token: string | undefined,
  secrets: string[],
): Promise<{ versionId: number; fileId: number | string; fileName: string; downloadUrl: string }> {
  const what = `civitai.com/models/${modelId}`;
  let version: CivitaiVersion | undefined;
  if (versionId) {
    // GET /api/v1/model-versions/{id} -> {id, modelId, name, baseModel, files: [...], downloadUrl, ...}
    version = (await getJson(
      ctx,
      `${ep.civitai}/api/v1/model-versions/${versionId}`,
      bearer(token),
      `${what} version ${versionId}`,
      secrets,
    )) as CivitaiVersion;
    if (typeof version.modelId === 'number' && String(version.modelId) !== modelId) {
      throw new LoraSourceError('not-found', `${what}: version ${versionId} belongs to model ${version.modelId}, not ${modelId}`);
    }
  } else {
    // GET /api/v1/models/{id} -> {id, name, type, modelVersions: [newest first: {id, files, downloadUrl, ...}]}
    const model = (await getJson(ctx, `${ep.civitai}/api/v1/models/${modelId}`, bearer(token), what, secrets)) as { modelVersions?: CivitaiVersion[] };
    version = model.modelVersions?.[0];
    if (!version) throw new LoraSourceError('not-found', `${what} has no versions`);
  }
  if (typeof version.id !== 'number') throw new LoraSourceError('http', `${what}: the API answer has no version id`);
  const files = (version.files ?? []).filter(
    (f) => (f.type ?? 'Model') === 'Model' && (f.metadata?.format === 'SafeTensor' || (f.name ?? '').toLowerCase().endsWith('.safetensors')),
  );
  const file = files.find((f) => f.primary) ?? files[0];
  if (!file) {
    const listed = (version.files ?? []).map((f) => `${f.name ?? '?'} (${f.type ?? '?'}, ${f.metadata?.format ?? '?'})`).join(', ');
    throw new LoraSourceError('not-found', `${what} version ${version.id} has no SafeTensor model file${listed ? `: ${listed}` : ''}`);
  }
  const downloadUrl = file.downloadUrl ?? version.downloadUrl ?? `${ep.civitai}/api/download/models/${version.id}`;
  return { versionId: version.id, fileId: file.id ?? file.name ?? 'primary', fileName: file.name ?? 'model.safetensors', downloadUrl };
}

// ---- Replicate ------------------------------------------------------------------------------

/**
 * The version to use and, when its input schema names a default LoRA (`replicate_weights`,
 * `lora_weights`), that default. Shapes (Replicate HTTP API): GET /v1/models/{owner}/{name} ->
 * {url, owner, name, description, visibility, ..., latest_version: {id, created_at, cog_version,
 * openapi_schema} | null}; GET /v1/models/{owner}/{name}/versions/{id} -> the version object.
 * A version object has no weights field; trained versions' weights are served by the website's
 * /<owner>/<name>/versions/<id>/_weights (what cog-flux downloads).
 */
async function replicateVersion(
  ctx: ResolveContext,
  ep: LoraEndpoints,
  owner: string,
  name: string,
  version: string | undefined,
  token: string,
  secrets: string[],
): Promise<{ id: string; schemaDefault?: string }> {
  const what = `replicate.com/${owner}/${name}`;
  let v: { id?: unknown; openapi_schema?: unknown } | null | undefined;
  if (version) {
    v = (await getJson(
      ctx,
      `${ep.replicate}/v1/models/${owner}/${name}/versions/${encodeURIComponent(version)}`,
      bearer(token),
      `${what}:${version}`,
      secrets,
    )) as typeof v;
  } else {
    const model = (await getJson(ctx, `${ep.replicate}/v1/models/${owner}/${name}`, bearer(token), what, secrets)) as { latest_version?: typeof v };
    v = model.latest_version;
    if (!v) throw new LoraSourceError('not-found', `${what} has no versions`);
  }
  if (!v || typeof v.id !== 'string') throw new LoraSourceError('http', `${what}: the API answer has no version id`);
  const props = (v.openapi_schema as { components?: { schemas?: { Input?: { properties?: Record<string, { default?: unknown }> } } } } | undefined)?.components
    ?.schemas?.Input?.properties;
  for (const field of ['replicate_weights', 'lora_weights']) {
    const d = props?.[field]?.default;
    if (typeof d === 'string' && d.trim() !== '') return { id: v.id, schemaDefault: d.trim() };
  }
  return { id: v.id };
}
