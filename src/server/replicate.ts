// Replicate's REST API under /v1 (api-compat.md Parts B and D), enough for the official `replicate`
// npm client pointed at this server with `baseUrl`: predictions (create by version or model,
// `Prefer: wait[=N]`, get, list with absolute cursor URLs, cancel), files (multipart upload; the
// returned URL works as an input), models. Bearer-token auth when configured; every error is
// application/problem+json {title, detail, status}. Predictions wait in the queue instead of 409.

import { createHash } from 'node:crypto';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InputValidationError } from '../predictor/errors.js';
import { openApiDocument } from '../predictor/openapi.js';
import { validateInput } from '../predictor/validate.js';
import { parseWebhook } from './cog.js';
import { type StoredFile, dataUri, newId } from './files.js';
import { InputFetchError } from './inputs.js';
import { type ModelEntry, type Prediction, apiView, modelRef } from './predictions.js';
import { QueueRefusal } from './queue.js';
import type { PredictionService } from './service.js';

export interface ReplicateRouteOptions {
  /** Bearer token required on every /v1 request; none: open. */
  readonly auth?: string | undefined;
  /** Absolute URL the server is reached at (no trailing slash); default: from the request. */
  readonly publicBaseUrl?: string | undefined;
  /** How /v1 outputs are returned: data URIs, or URLs under publicBaseUrl (or the request's base). */
  readonly outputs: 'data-uri' | 'url';
  /** Predictions per list page (100). */
  readonly pageSize?: number;
  readonly version: string;
}

type Body = Record<string, unknown>;
const isObject = (v: unknown): v is Body => v !== null && typeof v === 'object' && !Array.isArray(v);

export const MAX_FILE_BYTES = 100 * 1024 * 1024;
const PREDICTION_KEYS = new Set(['input', 'webhook', 'webhook_events_filter', 'stream']);
const VERSION_PREDICTION_KEYS = new Set([...PREDICTION_KEYS, 'version']);

interface InvalidField {
  type: string;
  field: string;
  description: string;
}

export function problem(reply: FastifyReply, status: number, title: string, detail: string, extra: Body = {}): FastifyReply {
  return reply.code(status).type('application/problem+json').send({ title, detail, status, ...extra });
}

/** The server's absolute base URL (no trailing slash). */
export function baseUrlOf(req: FastifyRequest, publicBaseUrl: string | undefined): string {
  if (publicBaseUrl) return publicBaseUrl.replace(/\/+$/, '');
  return `${req.protocol}://${req.host}`;
}

/** A deterministic 64-hex version id for a model entry: its name and its schema. */
export function versionIdFor(name: string, schema: unknown): string {
  return createHash('sha256').update(name).update('\0').update(JSON.stringify(schema)).digest('hex');
}

function tokenMatches(given: string, expected: string): boolean {
  // Compare digests so the time taken says nothing about the token.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return a.equals(b);
}

/** `Prefer: wait` -> 60, `wait=N` -> N (clamped to 1..60), else undefined. */
export function preferWait(header: string | string[] | undefined): number | undefined {
  const v = Array.isArray(header) ? header.join(',') : (header ?? '');
  for (const part of v.split(',')) {
    const m = /^\s*wait(?:\s*=\s*(\d+))?\s*$/i.exec(part);
    if (!m) continue;
    if (m[1] === undefined) return 60;
    return Math.min(60, Math.max(1, Number(m[1])));
  }
  return undefined;
}

interface Cursor {
  /** Items with seq below this (next page) or above it (previous page). */
  readonly seq: number;
  readonly dir: 'next' | 'prev';
}

function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

function decodeCursor(s: string): Cursor | undefined {
  try {
    const c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as unknown;
    if (isObject(c) && typeof c['seq'] === 'number' && (c['dir'] === 'next' || c['dir'] === 'prev')) return { seq: c['seq'], dir: c['dir'] };
  } catch {
    // fall through
  }
  return undefined;
}

function fileView(f: StoredFile, base: string): Body {
  return {
    id: f.id,
    name: f.name,
    content_type: f.contentType,
    size: f.data.length,
    etag: f.sha256,
    checksums: { sha256: f.sha256 },
    metadata: f.metadata,
    created_at: f.createdAt.toISOString(),
    expires_at: f.expiresAt.toISOString(),
    urls: { get: `${base}/v1/files/${f.id}` },
  };
}

function modelView(m: ModelEntry, base: string, version: string): Body {
  return {
    url: `${base}/v1/models/${modelRef(m)}`,
    owner: m.owner,
    name: m.name,
    description: m.description,
    visibility: 'public',
    github_url: null,
    paper_url: null,
    license_url: null,
    run_count: 0,
    cover_image_url: null,
    default_example: null,
    latest_version: versionView(m, version),
  };
}

function versionView(m: ModelEntry, version: string): Body {
  return { id: m.versionId, created_at: m.createdAt.toISOString(), cog_version: version, openapi_schema: openApiDocument(m.predictor.profile) };
}

export function registerReplicateRoutes(app: FastifyInstance, service: PredictionService, opts: ReplicateRouteOptions): void {
  const pageSize = opts.pageSize ?? 100;
  const findModel = (owner: string, name: string) => service.models.find((m) => m.owner === owner && m.name === name);

  /** `version` of POST /v1/predictions: a version id, `owner/name:id` or `owner/name`. */
  const modelForVersion = (v: string): ModelEntry | undefined => {
    const m = /^([^/]+)\/([^/:]+)(?::(.+))?$/.exec(v);
    if (m) {
      const entry = findModel(m[1]!, m[2]!);
      return entry && (m[3] === undefined || m[3] === entry.versionId) ? entry : undefined;
    }
    return service.models.find((e) => e.versionId === v);
  };

  /** Input strings that are this server's own /v1/files URLs, replaced by data URIs for the predictor. */
  const resolveOwnFiles = (req: FastifyRequest, input: Body): { input: Body } | { missing: InvalidField } => {
    const hosts = new Set([req.host.toLowerCase()]);
    if (opts.publicBaseUrl) hosts.add(new URL(opts.publicBaseUrl).host.toLowerCase());
    const out: Body = {};
    const resolveOne = (v: unknown, field: string): unknown => {
      if (typeof v !== 'string' || !/^https?:\/\//i.test(v)) return v;
      let url: URL;
      try {
        url = new URL(v);
      } catch {
        return v;
      }
      const m = /^\/v1\/files\/([a-z0-9]+)(?:\/download)?$/.exec(url.pathname);
      if (!m || !hosts.has(url.host.toLowerCase())) return v;
      const f = service.files.get(m[1]!);
      if (!f || f.kind !== 'upload') throw { type: 'file_not_found', field, description: `${field}: file ${m[1]} not found (uploads expire after 24 hours)` } satisfies InvalidField;
      return dataUri(f.contentType, f.data);
    };
    try {
      for (const [k, v] of Object.entries(input)) out[k] = Array.isArray(v) ? v.map((x, i) => resolveOne(x, `input.${k}.${i}`)) : resolveOne(v, `input.${k}`);
    } catch (e) {
      return { missing: e as InvalidField };
    }
    return { input: out };
  };

  const createPrediction = async (req: FastifyRequest, reply: FastifyReply, model: ModelEntry, body: Body) => {
    const base = baseUrlOf(req, opts.publicBaseUrl);
    if (!isObject(body['input'])) {
      const f: InvalidField = body['input'] === undefined ? { type: 'required', field: '', description: 'input is required' } : { type: 'invalid_type', field: 'input', description: 'input must be an object' };
      return problem(reply, 422, 'Input validation failed', f.description, { invalid_fields: [f] });
    }
    const hook = parseWebhook(body);
    if (!hook.ok) {
      return problem(reply, 422, 'Input validation failed', hook.msg, { invalid_fields: [{ type: 'invalid', field: hook.field.join('.'), description: hook.msg }] });
    }
    if (service.setup.status === 'failed') return problem(reply, 503, 'Model setup failed', 'The model failed to load; predictions cannot run.');

    const merged: Body = { ...model.defaults, ...body['input'] };
    const resolved = resolveOwnFiles(req, merged);
    if ('missing' in resolved) return problem(reply, 422, 'Input validation failed', resolved.missing.description, { invalid_fields: [resolved.missing] });
    try {
      if (model.predictor.validate) model.predictor.validate(resolved.input);
      else validateInput(model.predictor.profile, resolved.input);
    } catch (e) {
      if (!(e instanceof InputValidationError)) throw e;
      const invalid = e.detail.map((d) => ({ type: d.type, field: d.loc.slice(1).join('.'), description: d.msg }));
      return problem(reply, 422, 'Input validation failed', e.detail.map((d) => `- ${d.msg}`).join('\n'), { invalid_fields: invalid });
    }
    let predictInput: Body;
    try {
      predictInput = await service.fetchUrlInputs(model.predictor.profile, resolved.input);
    } catch (e) {
      if (e instanceof InputFetchError) {
        const invalid = e.failures.map((f) => ({ type: 'file_fetch_failed', field: `input.${f.field}`, description: f.message }));
        return problem(reply, 422, 'Input validation failed', e.failures.map((f) => `- ${f.message}`).join('\n'), { invalid_fields: invalid });
      }
      if (service.isShuttingDown) return problem(reply, 503, 'Service Unavailable', 'The server is shutting down');
      throw e;
    }

    let p: Prediction;
    try {
      p = service.create(
        {
          id: newId(),
          source: 'api',
          predictor: model.predictor,
          model,
          input: body['input'],
          predictInput,
          outputMode: opts.outputs === 'url' ? { kind: 'url', baseUrl: base } : { kind: 'data-uri' },
          webhook: hook.webhook,
          webhookEvents: hook.events,
          baseUrl: base,
        },
        'queue',
      );
    } catch (e) {
      if (e instanceof QueueRefusal) {
        reply.header('retry-after', '1');
        return problem(reply, 503, 'Service Unavailable', e.message);
      }
      throw e;
    }

    const wait = preferWait(req.headers['prefer']);
    if (wait !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      let gone: (() => void) | undefined;
      const clientGone = new Promise<void>((resolve) => {
        gone = () => {
          if (!reply.raw.writableFinished) resolve();
        };
        reply.raw.once('close', gone);
      });
      await Promise.race([p.done, clientGone, new Promise<void>((resolve) => (timer = setTimeout(resolve, wait * 1000)))]);
      clearTimeout(timer);
      if (gone) reply.raw.off('close', gone);
      // Not finished in time: `starting`, so the client polls (api-compat C.4).
      return reply.code(201).send(apiView(p, { baseUrl: base, asStarting: true }));
    }
    return reply.code(201).send(apiView(p, { baseUrl: base }));
  };

  const unknownKeys = (body: Body, allowed: ReadonlySet<string>): InvalidField[] =>
    Object.keys(body)
      .filter((k) => !allowed.has(k))
      .map((k) => ({ type: 'additional_property_not_allowed', field: '', description: `Additional property ${k} is not allowed` }));

  app.register(
    async (v1) => {
      v1.setErrorHandler((err: FastifyError, _req, reply) => {
        const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
        return problem(reply, status, status >= 500 ? 'Internal Server Error' : 'Bad Request', status >= 500 ? 'The server failed to handle this request' : err.message);
      });
      v1.setNotFoundHandler((req, reply) => problem(reply, 404, 'Not found', `No route ${req.method} ${req.url.split('?')[0]}`));

      if (opts.auth !== undefined) {
        const token = opts.auth;
        v1.addHook('onRequest', async (req, reply) => {
          const h = req.headers['authorization'];
          const m = typeof h === 'string' ? /^(?:Bearer|Token)\s+(.+)$/i.exec(h.trim()) : null;
          if (!m) return problem(reply, 401, 'Unauthenticated', 'You did not pass an authentication token');
          if (!tokenMatches(m[1]!, token)) return problem(reply, 401, 'Unauthenticated', 'You did not pass a valid authentication token');
        });
      }

      v1.post('/predictions', async (req, reply) => {
        const body: Body = isObject(req.body) ? req.body : {};
        const extra = unknownKeys(body, VERSION_PREDICTION_KEYS);
        if (typeof body['version'] !== 'string' || body['version'] === '') extra.unshift({ type: 'required', field: '', description: 'version is required' });
        if (extra.length > 0) return problem(reply, 422, 'Input validation failed', extra.map((f) => f.description).join('; '), { invalid_fields: extra });
        const model = modelForVersion(body['version'] as string);
        if (!model) {
          return problem(reply, 422, 'Invalid version or not permitted', "The specified version does not exist (or perhaps you don't have permission to use it?)");
        }
        return createPrediction(req, reply, model, body);
      });

      v1.post<{ Params: { owner: string; name: string } }>('/models/:owner/:name/predictions', async (req, reply) => {
        const model = findModel(req.params.owner, req.params.name);
        if (!model) return problem(reply, 404, 'Not found', `Model ${req.params.owner}/${req.params.name} not found`);
        const body: Body = isObject(req.body) ? req.body : {};
        const extra = unknownKeys(body, PREDICTION_KEYS);
        if (extra.length > 0) return problem(reply, 422, 'Input validation failed', extra.map((f) => f.description).join('; '), { invalid_fields: extra });
        return createPrediction(req, reply, model, body);
      });

      v1.get<{ Params: { id: string } }>('/predictions/:id', async (req, reply) => {
        const p = service.apiPrediction(req.params.id);
        if (!p) return problem(reply, 404, 'Not found', 'Prediction not found');
        return apiView(p, { baseUrl: baseUrlOf(req, opts.publicBaseUrl) });
      });

      // The prediction's events (log, progress, output, error, done) as server-sent events, with the
      // API token; `urls.stream` is the same stream without it (see below).
      v1.get<{ Params: { id: string } }>('/predictions/:id/stream', async (req, reply) => {
        const p = service.apiPrediction(req.params.id);
        if (!p) return problem(reply, 404, 'Not found', 'Prediction not found');
        service.streamEvents(p, reply, req.headers['last-event-id']);
        return reply;
      });

      v1.post<{ Params: { id: string } }>('/predictions/:id/cancel', async (req, reply) => {
        const p = service.apiPrediction(req.params.id);
        if (!p) return problem(reply, 404, 'Not found', 'Prediction not found');
        service.cancel(p.id);
        return apiView(p, { baseUrl: baseUrlOf(req, opts.publicBaseUrl) });
      });

      v1.get<{ Querystring: Record<string, string | undefined> }>('/predictions', async (req, reply) => {
        const base = baseUrlOf(req, opts.publicBaseUrl);
        const q = req.query;
        const after = q['created_after'] !== undefined ? Date.parse(q['created_after']) : undefined;
        const before = q['created_before'] !== undefined ? Date.parse(q['created_before']) : undefined;
        if (Number.isNaN(after) || Number.isNaN(before)) return problem(reply, 400, 'Bad Request', 'created_after and created_before must be date-times');
        let cursor: Cursor | undefined;
        if (q['cursor'] !== undefined) {
          cursor = decodeCursor(q['cursor']);
          if (!cursor) return problem(reply, 400, 'Bad Request', 'Invalid cursor');
        }
        const all = service.apiPredictions().filter((p) => (after === undefined || p.createdAt.getTime() > after) && (before === undefined || p.createdAt.getTime() < before));
        let page: Prediction[];
        if (cursor?.dir === 'prev') {
          const newer = all.filter((p) => p.seq > cursor.seq);
          page = newer.slice(Math.max(0, newer.length - pageSize));
        } else {
          page = all.filter((p) => cursor === undefined || p.seq < cursor.seq).slice(0, pageSize);
        }
        const link = (c: Cursor) => {
          const u = new URL(`${base}/v1/predictions`);
          for (const k of ['created_after', 'created_before', 'source']) if (q[k] !== undefined) u.searchParams.set(k, q[k]!);
          u.searchParams.set('cursor', encodeCursor(c));
          return u.toString();
        };
        const first = page[0];
        const last = page[page.length - 1];
        return {
          next: last && all.some((p) => p.seq < last.seq) ? link({ seq: last.seq, dir: 'next' }) : null,
          previous: first && all.some((p) => p.seq > first.seq) ? link({ seq: first.seq, dir: 'prev' }) : null,
          results: page.map((p) => apiView(p, { baseUrl: base, brief: true })),
        };
      });

      v1.post('/files', async (req, reply) => {
        const ct = req.headers['content-type'] ?? '';
        if (!Buffer.isBuffer(req.body) || !/^multipart\/form-data/i.test(ct)) {
          return problem(reply, 415, 'Unsupported Media Type', 'Upload files as multipart/form-data with a `content` part');
        }
        if (req.body.length > MAX_FILE_BYTES + 1024 * 1024) return problem(reply, 413, 'Payload Too Large', 'Files must be less than 100MB in size');
        let form: FormData;
        try {
          form = await new Request('http://localhost/', { method: 'POST', headers: { 'content-type': ct }, body: req.body }).formData();
        } catch {
          return problem(reply, 400, 'Bad Request', 'The multipart body could not be parsed');
        }
        const content = form.get('content');
        if (content === null || typeof content === 'string') return problem(reply, 422, 'Input validation failed', 'content is required (a file part)');
        const data = Buffer.from(await content.arrayBuffer());
        if (data.length > MAX_FILE_BYTES) return problem(reply, 413, 'Payload Too Large', 'Files must be less than 100MB in size');
        const nameField = form.get('filename');
        const typeField = form.get('type');
        const name = (typeof nameField === 'string' && nameField !== '' ? nameField : content.name || `file_${Date.now()}`).slice(0, 255);
        const contentType = typeof typeField === 'string' && typeField !== '' ? typeField : content.type || 'application/octet-stream';
        let metadata: unknown = {};
        const meta = form.get('metadata');
        if (meta !== null) {
          try {
            metadata = JSON.parse(typeof meta === 'string' ? meta : await meta.text());
          } catch {
            return problem(reply, 422, 'Input validation failed', 'metadata must be JSON');
          }
        }
        const f = service.files.add({ kind: 'upload', name, contentType, data, metadata });
        return reply.code(201).send(fileView(f, baseUrlOf(req, opts.publicBaseUrl)));
      });

      v1.get('/files', async (req) => {
        const base = baseUrlOf(req, opts.publicBaseUrl);
        return { next: null, previous: null, results: service.files.list('upload').map((f) => fileView(f, base)) };
      });

      const uploaded = (id: string) => {
        const f = service.files.get(id);
        return f && f.kind === 'upload' ? f : undefined;
      };

      v1.get<{ Params: { id: string } }>('/files/:id', async (req, reply) => {
        const f = uploaded(req.params.id);
        if (!f) return problem(reply, 404, 'Not found', 'File not found');
        return fileView(f, baseUrlOf(req, opts.publicBaseUrl));
      });

      v1.get<{ Params: { id: string } }>('/files/:id/download', async (req, reply) => {
        const f = uploaded(req.params.id);
        if (!f) return problem(reply, 404, 'Not found', 'File not found');
        return reply.type(f.contentType).send(f.data);
      });

      v1.delete<{ Params: { id: string } }>('/files/:id', async (req, reply) => {
        if (!uploaded(req.params.id)) return problem(reply, 404, 'Not found', 'File not found');
        service.files.delete(req.params.id);
        return reply.code(204).send();
      });

      v1.get('/models', async (req) => {
        const base = baseUrlOf(req, opts.publicBaseUrl);
        return { next: null, previous: null, results: service.models.map((m) => modelView(m, base, opts.version)) };
      });

      v1.get<{ Params: { owner: string; name: string } }>('/models/:owner/:name', async (req, reply) => {
        const m = findModel(req.params.owner, req.params.name);
        if (!m) return problem(reply, 404, 'Not found', `Model ${req.params.owner}/${req.params.name} not found`);
        return modelView(m, baseUrlOf(req, opts.publicBaseUrl), opts.version);
      });

      v1.get<{ Params: { owner: string; name: string } }>('/models/:owner/:name/versions', async (req, reply) => {
        const m = findModel(req.params.owner, req.params.name);
        if (!m) return problem(reply, 404, 'Not found', `Model ${req.params.owner}/${req.params.name} not found`);
        return { next: null, previous: null, results: [versionView(m, opts.version)] };
      });

      v1.get<{ Params: { owner: string; name: string; version: string } }>('/models/:owner/:name/versions/:version', async (req, reply) => {
        const m = findModel(req.params.owner, req.params.name);
        if (!m || m.versionId !== req.params.version) return problem(reply, 404, 'Not found', 'Version not found');
        return versionView(m, opts.version);
      });
    },
    { prefix: '/v1' },
  );

  // `urls.stream`: the official client's stream() fetches it without the API token (api-compat.md
  // C.8), so the URL itself is the credential (a random key per prediction), like the output URLs.
  app.get<{ Params: { key: string } }>('/v1/streams/:key', async (req, reply) => {
    const p = service.predictionByStreamKey(req.params.key);
    if (!p) return problem(reply, 404, 'Not found', 'Stream not found');
    service.streamEvents(p, reply, req.headers['last-event-id']);
    return reply;
  });

  // Output files by URL: no auth, like Replicate's delivery URLs (the JS client's FileOutput fetches
  // them without the token); the ids are 130 random bits.
  app.get<{ Params: { id: string; name: string } }>('/outputs/:id/:name', async (req, reply) => {
    const f = service.files.get(req.params.id);
    if (!f || f.kind !== 'output' || f.name !== req.params.name) return reply.code(404).send({ detail: 'Not found' });
    return reply.type(f.contentType).header('cache-control', 'private, max-age=86400').send(f.data);
  });
}
