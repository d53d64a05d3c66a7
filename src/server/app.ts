// The HTTP server: one fastify instance speaking the Cog prediction API at / (cog.ts) and
// Replicate's API under /v1 (replicate.ts), over one PredictionService (setup, queue, webhooks).
// Setup starts when the server is ready (listen); closing the server shuts the service down first
// (nothing is left `processing`).

import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Profile } from '../predictor/profiles.js';
import { registerCogRoutes } from './cog.js';
import { FileStore } from './files.js';
import type { ModelEntry, ServedPredictor } from './predictions.js';
import { registerReplicateRoutes, versionIdFor } from './replicate.js';
import { PredictionService } from './service.js';
import type { InputFetchOptions } from './inputs.js';
import type { UploadOptions } from './uploads.js';
import type { WebhookOptions } from './webhooks.js';
import { openApiDocument } from '../predictor/openapi.js';

export const SERVER_VERSION = '0.1.0';

/** A model the /v1 API serves. */
export interface ModelConfig {
  /** `owner/name`. */
  readonly name: string;
  /** Default: the server's predictor. */
  readonly predictor?: ServedPredictor;
  /** Input values used where the request gives none (a fine-tune's trigger word, steps...). */
  readonly defaults?: Readonly<Record<string, unknown>>;
  readonly description?: string;
}

export interface ServerOptions {
  readonly predictor: ServedPredictor;
  /** The Cog routes' profile (validation and /openapi.json); default: the predictor's. */
  readonly profile?: Profile<unknown>;
  /** Predictions at once; default 1. */
  readonly concurrency?: number;
  /** /v1 predictions waiting for a slot; default 64. */
  readonly maxQueue?: number;
  /** Bearer token for /v1 (none: open). The Cog routes have no auth, like Cog. */
  readonly auth?: string | undefined;
  /** Absolute URL clients reach the server at; /v1 outputs become URLs under it. */
  readonly publicBaseUrl?: string | undefined;
  /** /v1 outputs: data URIs, or URLs (default: URLs when publicBaseUrl is set). */
  readonly outputs?: 'data-uri' | 'url';
  /**
   * /v1 models; default: the predictor as `fluxserve/tiny`. Several models usually share one
   * ModelHost (src/server/registry.ts builds them from a config). The Cog routes serve
   * `predictor`, with the defaults of the model entry that has it.
   */
  readonly models?: readonly ModelConfig[];
  readonly webhooks?: WebhookOptions;
  /**
   * Cog's `--upload-url`: every output file (Cog and /v1 predictions) is PUT to
   * `{uploadUrl}/{basename}` and the output is the uploaded URL (api-compat.md A.15).
   */
  readonly uploadUrl?: string | undefined;
  readonly upload?: UploadOptions;
  /** Limits on downloading http(s) file inputs (size, deadline, redirects). */
  readonly inputFetch?: InputFetchOptions;
  /** SSE keep-alive comment interval (15 s). */
  readonly sseKeepAliveMs?: number;
  /** WEBHOOK_AUTH_TOKEN. */
  readonly webhookAuthToken?: string | undefined;
  readonly maxHistory?: number;
  readonly pageSize?: number;
  readonly shutdownGraceMs?: number;
  readonly logger?: FastifyServerOptions['logger'];
  /** POST /shutdown; default: close the server. */
  readonly onShutdown?: (app: FastifyInstance) => void;
}

declare module 'fastify' {
  interface FastifyInstance {
    predictions: PredictionService;
  }
}

function modelEntries(opts: ServerOptions): ModelEntry[] {
  const configs = opts.models ?? [{ name: 'fluxserve/tiny' }];
  const seen = new Set<string>();
  return configs.map((c) => {
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)\/([A-Za-z0-9][A-Za-z0-9._-]*)$/.exec(c.name);
    if (!m) throw new Error(`model name must be owner/name (got '${c.name}')`);
    if (seen.has(c.name)) throw new Error(`model ${c.name} is configured twice`);
    seen.add(c.name);
    const predictor = c.predictor ?? opts.predictor;
    return {
      owner: m[1]!,
      name: m[2]!,
      predictor,
      defaults: { ...(c.defaults ?? {}) },
      description: c.description ?? `FLUX.1 served by fluxserve (${predictor.profile.name} inputs)`,
      versionId: versionIdFor(c.name, openApiDocument(predictor.profile)),
      createdAt: new Date(),
    };
  });
}

export function buildServer(opts: ServerOptions): FastifyInstance {
  if (opts.uploadUrl !== undefined) {
    let u: URL | undefined;
    try {
      u = new URL(opts.uploadUrl);
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new Error(`upload URL must be an http or https URL (got '${opts.uploadUrl}')`);
  }
  const app = Fastify({ logger: opts.logger ?? false, bodyLimit: 110 * 1024 * 1024, forceCloseConnections: 'idle' });
  const service = new PredictionService({
    predictor: opts.predictor,
    models: modelEntries(opts),
    ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
    ...(opts.maxQueue !== undefined ? { maxQueue: opts.maxQueue } : {}),
    webhooks: { userAgent: `fluxserve/${SERVER_VERSION}`, ...opts.webhooks, authToken: opts.webhookAuthToken ?? opts.webhooks?.authToken },
    ...(opts.maxHistory !== undefined ? { maxHistory: opts.maxHistory } : {}),
    ...(opts.shutdownGraceMs !== undefined ? { shutdownGraceMs: opts.shutdownGraceMs } : {}),
    files: new FileStore(),
    uploadUrl: opts.uploadUrl,
    ...(opts.upload !== undefined ? { upload: opts.upload } : {}),
    ...(opts.inputFetch !== undefined ? { inputFetch: opts.inputFetch } : {}),
    ...(opts.sseKeepAliveMs !== undefined ? { sseKeepAliveMs: opts.sseKeepAliveMs } : {}),
    log: (msg) => app.log.warn(msg),
  });
  app.decorate('predictions', service);

  // JSON bodies: an empty body is no body (the replicate client sends Content-Type: application/json
  // on bodiless requests such as cancel); anything else that is not JSON or multipart is kept raw and
  // ignored by the routes (coglet treats a non-JSON request as `input: {}`).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      const err = new Error('The request body is not valid JSON') as Error & { statusCode: number };
      err.statusCode = 400;
      done(err, undefined);
    }
  });
  app.addContentTypeParser('multipart/form-data', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  const onShutdown = opts.onShutdown ?? ((a: FastifyInstance) => void a.close());
  const cogDefaults = service.models.find((m) => m.predictor === opts.predictor)?.defaults;
  registerCogRoutes(app, service, {
    profile: opts.profile ?? opts.predictor.profile,
    defaults: cogDefaults && Object.keys(cogDefaults).length > 0 ? cogDefaults : undefined,
    version: SERVER_VERSION,
    onShutdown: () => onShutdown(app),
  });
  registerReplicateRoutes(app, service, {
    auth: opts.auth,
    publicBaseUrl: opts.publicBaseUrl,
    outputs: opts.outputs ?? (opts.publicBaseUrl ? 'url' : 'data-uri'),
    ...(opts.pageSize !== undefined ? { pageSize: opts.pageSize } : {}),
    version: SERVER_VERSION,
  });

  app.addHook('onReady', async () => {
    void service.runSetup();
  });
  app.addHook('preClose', async () => {
    await service.shutdown();
  });
  return app;
}
