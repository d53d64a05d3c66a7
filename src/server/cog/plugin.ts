// The Cog prediction HTTP API as a fastify plugin (https://github.com/replicate/cog/blob/main/docs/http.md;
// cog python/cog/server/http.py and crates/coglet transport/http/routes.rs): GET /, /health-check,
// /openapi.json, POST /predictions (sync, or `Prefer: respond-async` -> 202), PUT /predictions/{id}
// (idempotent while in flight), POST /predictions/{id}/cancel, POST /shutdown. The service refuses
// with 409 when every slot is busy rather than queueing, and 503 while setup runs (coglet's
// answers). There is no GET for a prediction: async results arrive by webhook.

import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { openApiDocument } from '../../predictor/openapi.js';
import type { Profile } from '../../predictor/profiles.js';
import { ServiceError, errorHandler, invalidInputError } from '../errors.js';
import { serveEventStream } from '../events.js';
import { type PredictionService, isTerminal } from '../service/types.js';
import { COG_PREDICTION_SCHEMA, cogPredictionView } from '../views.js';
import { WEBHOOK_EVENTS } from '../webhooks.js';

export interface CogApiOptions {
  readonly service: PredictionService;
  /** The schema of /openapi.json (the one the service validates Cog inputs against). */
  readonly profile: Profile<unknown>;
  /** Reported as `cog_version` and in health-check `version`. */
  readonly version: string;
  /** POST /shutdown, after the reply has gone out. */
  readonly onShutdown: () => void;
  /** SSE keep-alive comment interval (15 s). */
  readonly sseKeepAliveMs?: number | undefined;
}

type Body = Record<string, unknown>;
const isObject = (v: unknown): v is Body => v !== null && typeof v === 'object' && !Array.isArray(v);

const nullableString = { type: ['string', 'null'] } as const;
/** The request body (Cog's PredictionRequest); `input` is checked against the model's schema by the service. */
const PREDICTION_REQUEST = {
  type: ['object', 'null'],
  properties: {
    id: nullableString,
    input: {},
    webhook: nullableString,
    webhook_events_filter: { type: ['array', 'null'], items: { type: 'string', enum: WEBHOOK_EVENTS } },
    created_at: nullableString,
  },
} as const;
const PREDICTION_REPLY = { response: { '2xx': COG_PREDICTION_SCHEMA } } as const;
const EMPTY = { response: { 200: { type: 'object' } } } as const;
const ID_PARAMS = { type: 'object', properties: { prediction_id: { type: 'string' } }, required: ['prediction_id'] } as const;

const DISCOVERY = {
  cog_version: '',
  openapi_url: '/openapi.json',
  shutdown_url: '/shutdown',
  healthcheck_url: '/health-check',
  predictions_url: '/predictions',
  predictions_idempotent_url: '/predictions/{prediction_id}',
  predictions_cancel_url: '/predictions/{prediction_id}/cancel',
};
const stringProps = (keys: readonly string[]) => Object.fromEntries(keys.map((k) => [k, { type: 'string' }]));

const HEALTH_REPLY = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    setup: { type: 'object', properties: stringProps(['started_at', 'completed_at', 'status', 'logs']) },
    version: { type: 'object', properties: { fluxserve: { type: 'string' } } },
    concurrency: { type: 'object', properties: { max: { type: 'integer' }, current: { type: 'integer' } } },
  },
} as const;

/** `Prefer: respond-async` (Cog compares the whole header; a list containing it is accepted too). */
function respondAsync(req: FastifyRequest): boolean {
  const h = req.headers['prefer'];
  const v = Array.isArray(h) ? h.join(',') : (h ?? '');
  return v.split(',').some((p) => p.trim().toLowerCase() === 'respond-async');
}

export const cogApi: FastifyPluginAsync<CogApiOptions> = async (app, opts) => {
  const { service } = opts;
  const document = openApiDocument(opts.profile);
  app.setErrorHandler(errorHandler('cog'));

  app.get('/', { schema: { response: { 200: { type: 'object', properties: stringProps(Object.keys(DISCOVERY)) } } } }, async () => ({
    ...DISCOVERY,
    cog_version: opts.version,
  }));

  app.get('/health-check', { schema: { response: { 200: HEALTH_REPLY } } }, async () => {
    const h = await service.health();
    const s = h.setup;
    const setup: Body = {};
    if (s.startedAt) setup['started_at'] = s.startedAt.toISOString();
    if (s.completedAt) setup['completed_at'] = s.completedAt.toISOString();
    if (s.startedAt) setup['status'] = s.status;
    if (s.logs.length > 0) setup['logs'] = `${s.logs.join('\n')}\n`;
    return { status: h.status, setup, version: { fluxserve: opts.version }, concurrency: h.concurrency };
  });

  app.get('/openapi.json', { schema: { response: { 200: { type: 'object', additionalProperties: true } } } }, async () => document);

  const create = async (req: FastifyRequest, reply: FastifyReply, pathId: string | undefined) => {
    const body: Body = isObject(req.body) ? req.body : {};
    if (pathId !== undefined && body['id'] !== undefined && body['id'] !== null && body['id'] !== pathId) {
      const msg = 'prediction ID must match the ID supplied in the URL';
      throw new ServiceError('invalid-request', msg, [{ loc: ['body', 'id'], msg, type: 'value_error' }]);
    }
    const bodyId = typeof body['id'] === 'string' && body['id'] !== '' ? body['id'] : undefined;
    const created = body['created_at'];
    const { prediction, existing } = await service.admit({
      api: 'cog',
      id: pathId ?? bodyId,
      input: body['input'],
      webhook: body['webhook'],
      webhookEventsFilter: body['webhook_events_filter'],
      createdAt: typeof created === 'string' && !Number.isNaN(Date.parse(created)) ? new Date(created) : undefined,
    });
    if (existing || respondAsync(req)) return reply.code(202).send(cogPredictionView(prediction));

    // Sync: a client that goes away cancels its prediction (coglet's guard).
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) void service.cancel(prediction.id);
    });
    const final = (await service.settled(prediction.id)) ?? prediction;
    if (final.inputErrors) throw invalidInputError(final.inputErrors);
    return reply.code(200).send(cogPredictionView(final));
  };

  app.post('/predictions', { schema: { body: PREDICTION_REQUEST, ...PREDICTION_REPLY } }, (req, reply) => create(req, reply, undefined));
  app.put<{ Params: { prediction_id: string } }>(
    '/predictions/:prediction_id',
    { schema: { params: ID_PARAMS, body: PREDICTION_REQUEST, ...PREDICTION_REPLY } },
    (req, reply) => create(req, reply, req.params.prediction_id),
  );

  app.post<{ Params: { prediction_id: string } }>('/predictions/:prediction_id/cancel', { schema: { params: ID_PARAMS, ...EMPTY } }, async (req) => {
    if (!(await service.cancel(req.params.prediction_id))) throw new ServiceError('not-found');
    return {};
  });

  // Not in Cog: the prediction's progress as server-sent events, while it is in flight (Cog forgets
  // a prediction once it has finished). Events: log, progress, output, error, done (see events.ts).
  app.get<{ Params: { prediction_id: string } }>('/predictions/:prediction_id/stream', { schema: { params: ID_PARAMS } }, async (req, reply) => {
    const p = await service.get(req.params.prediction_id);
    if (!p || isTerminal(p.status)) throw new ServiceError('not-found');
    await serveEventStream(reply, (s) => service.subscribe(p.id, s), req.headers['last-event-id'], { keepAliveMs: opts.sseKeepAliveMs });
    return reply;
  });

  app.post('/shutdown', { schema: EMPTY }, async (_req, reply) => {
    reply.raw.once('finish', () => setImmediate(opts.onShutdown));
    return reply.code(200).send({});
  });
};
