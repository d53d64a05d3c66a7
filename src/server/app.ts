// The HTTP server, assembled: one fastify instance, one PredictionService, and the two API plugins
// over it that never import each other — Cog's prediction API at / (cog/plugin.ts) and Replicate's
// API under /v1 (replicate/plugin.ts). buildServer uses the in-process service; mountApis takes
// any PredictionService. The service starts (setup) when the server is ready (listen); closing the
// server shuts the service down first (nothing is left `processing`).

import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Profile } from '../predictor/profiles.js';
import { cogApi } from './cog/plugin.js';
import { FileStore } from './files.js';
import type { InputFetchOptions } from './inputs.js';
import { type ModelConfig, type ServedPredictor, modelEntries } from './models.js';
import { replicateApi } from './replicate/plugin.js';
import { LocalPredictionService } from './service/local.js';
import type { PredictionService } from './service/types.js';
import type { UploadOptions } from './uploads.js';
import type { WebhookOptions } from './webhooks.js';

export const SERVER_VERSION = '0.1.0';

export type { ModelConfig } from './models.js';

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
   * `{uploadUrl}/{basename}` and the output is the uploaded URL (src/server/uploads.ts).
   */
  readonly uploadUrl?: string | undefined;
  readonly upload?: UploadOptions;
  /** Limits on downloading http(s) file inputs (size, deadline, redirects). */
  readonly inputFetch?: InputFetchOptions;
  /** Largest file POST /v1/files takes (100 MiB). */
  readonly maxUploadBytes?: number;
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

/** What the two API plugins are given besides the service. */
export type ApiOptions = Pick<
  ServerOptions,
  'profile' | 'auth' | 'publicBaseUrl' | 'outputs' | 'pageSize' | 'maxUploadBytes' | 'sseKeepAliveMs' | 'onShutdown'
> & {
  /** The Cog routes' schema (/openapi.json). */
  readonly profile: Profile<unknown>;
};

declare module 'fastify' {
  interface FastifyInstance {
    predictions: PredictionService;
  }
}

/** A fastify instance with the body parsing and schema validation both APIs expect. */
export function createFastify(logger: FastifyServerOptions['logger']): FastifyInstance {
  const app = Fastify({
    logger: logger ?? false,
    bodyLimit: 110 * 1024 * 1024,
    forceCloseConnections: 'idle',
    // Request schemas check, they do not repair: no type coercion, unknown properties are errors
    // where a schema forbids them (not silently dropped), and every problem is reported at once.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: true } },
  });
  // JSON bodies: an empty body is no body (the replicate client sends Content-Type: application/json
  // on bodiless requests such as cancel). Anything else that is not JSON is kept raw and ignored by
  // the Cog routes (coglet treats a non-JSON request as `input: {}`); /v1 takes JSON and multipart.
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
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  return app;
}

/** Registers both APIs over `service` on `app`; the service starts on ready and stops on close. */
export function mountApis(app: FastifyInstance, service: PredictionService, opts: ApiOptions): FastifyInstance {
  app.decorate('predictions', service);
  const onShutdown = opts.onShutdown ?? ((a: FastifyInstance) => void a.close());
  void app.register(cogApi, {
    service,
    profile: opts.profile,
    version: SERVER_VERSION,
    onShutdown: () => onShutdown(app),
    sseKeepAliveMs: opts.sseKeepAliveMs,
  });
  void app.register(replicateApi, {
    service,
    auth: opts.auth,
    publicBaseUrl: opts.publicBaseUrl,
    outputs: opts.outputs ?? (opts.publicBaseUrl ? 'url' : 'data-uri'),
    pageSize: opts.pageSize,
    version: SERVER_VERSION,
    maxUploadBytes: opts.maxUploadBytes,
    sseKeepAliveMs: opts.sseKeepAliveMs,
  });
  app.addHook('onReady', async () => {
    void service.start();
  });
  app.addHook('preClose', async () => {
    await service.shutdown();
  });
  return app;
}

function checkUploadUrl(uploadUrl: string): void {
  let u: URL | undefined;
  try {
    u = new URL(uploadUrl);
  } catch {
    u = undefined;
  }
  if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new Error(`upload URL must be an http or https URL (got '${uploadUrl}')`);
}

/** The server with the in-process service. */
export function buildServer(opts: ServerOptions): FastifyInstance {
  if (opts.uploadUrl !== undefined) checkUploadUrl(opts.uploadUrl);
  const app = createFastify(opts.logger);
  const models = modelEntries(opts.models, opts.predictor);
  const profile = opts.profile ?? opts.predictor.profile;
  const service = new LocalPredictionService({
    models,
    cog: { predictor: opts.predictor, profile, defaults: models.find((m) => m.predictor === opts.predictor)?.defaults },
    ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
    ...(opts.maxQueue !== undefined ? { maxQueue: opts.maxQueue } : {}),
    webhooks: { userAgent: `fluxserve/${SERVER_VERSION}`, ...opts.webhooks, authToken: opts.webhookAuthToken ?? opts.webhooks?.authToken },
    ...(opts.maxHistory !== undefined ? { maxHistory: opts.maxHistory } : {}),
    ...(opts.shutdownGraceMs !== undefined ? { shutdownGraceMs: opts.shutdownGraceMs } : {}),
    files: new FileStore(),
    uploadUrl: opts.uploadUrl,
    ...(opts.upload !== undefined ? { upload: opts.upload } : {}),
    ...(opts.inputFetch !== undefined ? { inputFetch: opts.inputFetch } : {}),
    log: (msg) => app.log.warn(msg),
  });
  return mountApis(app, service, { ...opts, profile });
}
