// The Cog prediction HTTP API (api-compat.md Part A): GET /, /health-check, /openapi.json,
// POST /predictions (sync, or `Prefer: respond-async` -> 202), PUT /predictions/{id} (idempotent
// while in flight), POST /predictions/{id}/cancel, POST /shutdown. Cog answers 409 when every slot
// is busy (A.12) rather than queueing, and 503 while setup runs (coglet). There is no GET for a
// prediction: async results arrive by webhook.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InputValidationError } from '../predictor/errors.js';
import { openApiDocument } from '../predictor/openapi.js';
import type { Profile } from '../predictor/profiles.js';
import { validateInput } from '../predictor/validate.js';
import { newId } from './files.js';
import { InputFetchError, fileFields, hasUrlInputs } from './inputs.js';
import { cogView } from './predictions.js';
import { QueueRefusal } from './queue.js';
import type { PredictionService } from './service.js';
import { type WebhookEvent, isWebhookEvent } from './webhooks.js';

export interface CogRouteOptions {
  readonly profile: Profile<unknown>;
  /** Input values used where the request gives none (the served model's defaults). */
  readonly defaults?: Readonly<Record<string, unknown>> | undefined;
  /** Reported as `cog_version` and in health-check `version`. */
  readonly version: string;
  /** POST /shutdown, after the reply has gone out. */
  readonly onShutdown: () => void;
}

type Body = Record<string, unknown>;
const isObject = (v: unknown): v is Body => v !== null && typeof v === 'object' && !Array.isArray(v);

/** 422 in FastAPI's layout, for request fields other than input. */
function fieldError(loc: (string | number)[], msg: string): { detail: { loc: (string | number)[]; msg: string; type: string }[] } {
  return { detail: [{ loc, msg, type: 'value_error' }] };
}

/** `webhook` and `webhook_events_filter`, checked like Cog's request model. */
export function parseWebhook(
  body: Body,
): { ok: true; webhook: string | undefined; events: WebhookEvent[] | undefined } | { ok: false; field: (string | number)[]; msg: string } {
  const w = body['webhook'];
  let webhook: string | undefined;
  if (w !== undefined && w !== null) {
    let url: URL | undefined;
    try {
      url = typeof w === 'string' ? new URL(w) : undefined;
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || (w as string).length > 65536) {
      return { ok: false, field: ['webhook'], msg: 'webhook: must be an http or https URL' };
    }
    webhook = w as string;
  }
  const f = body['webhook_events_filter'];
  let events: WebhookEvent[] | undefined;
  if (f !== undefined && f !== null) {
    if (!Array.isArray(f)) return { ok: false, field: ['webhook_events_filter'], msg: 'webhook_events_filter: must be a list of start, output, logs, completed' };
    for (let i = 0; i < f.length; i++) {
      if (!isWebhookEvent(f[i])) {
        return { ok: false, field: ['webhook_events_filter', i], msg: `webhook_events_filter: ${JSON.stringify(f[i])} is not one of start, output, logs, completed` };
      }
    }
    events = [...new Set(f as WebhookEvent[])];
  }
  return { ok: true, webhook, events };
}

/** `Prefer: respond-async` (Cog compares the whole header; a list containing it is accepted too). */
function respondAsync(req: FastifyRequest): boolean {
  const h = req.headers['prefer'];
  const v = Array.isArray(h) ? h.join(',') : (h ?? '');
  return v.split(',').some((p) => p.trim().toLowerCase() === 'respond-async');
}

export function registerCogRoutes(app: FastifyInstance, service: PredictionService, opts: CogRouteOptions): void {
  const document = openApiDocument(opts.profile);

  app.get('/', async () => ({
    cog_version: opts.version,
    openapi_url: '/openapi.json',
    shutdown_url: '/shutdown',
    healthcheck_url: '/health-check',
    predictions_url: '/predictions',
    predictions_idempotent_url: '/predictions/{prediction_id}',
    predictions_cancel_url: '/predictions/{prediction_id}/cancel',
  }));

  app.get('/health-check', async () => {
    const s = service.setup;
    const setup: Body = {};
    if (s.startedAt) setup['started_at'] = s.startedAt.toISOString();
    if (s.completedAt) setup['completed_at'] = s.completedAt.toISOString();
    if (s.startedAt) setup['status'] = s.status;
    if (s.logs.length > 0) setup['logs'] = `${s.logs.join('\n')}\n`;
    return {
      status: service.health(),
      setup,
      version: { fluxserve: opts.version },
      concurrency: { max: service.queue.concurrency, current: service.queue.runningCount },
    };
  });

  app.get('/openapi.json', async () => document);

  const create = async (req: FastifyRequest, reply: FastifyReply, pathId: string | undefined) => {
    const body: Body = isObject(req.body) ? req.body : {};
    if (pathId !== undefined && body['id'] !== undefined && body['id'] !== null && body['id'] !== pathId) {
      return reply.code(422).send(fieldError(['body', 'id'], 'prediction ID must match the ID supplied in the URL'));
    }
    const bodyId = typeof body['id'] === 'string' && body['id'] !== '' ? body['id'] : undefined;
    const id = pathId ?? bodyId ?? newId();
    const existing = service.inFlightPrediction(id);
    if (existing) return reply.code(202).send(cogView(existing));

    if (service.setup.status === 'starting') {
      return reply.code(503).send({ error: 'Setup has not finished yet. Wait until it has finished, or GET /health-check for status.', status: 'failed' });
    }
    if (service.setup.status === 'failed') return reply.code(503).send({ error: 'Setup failed; see GET /health-check for the logs.', status: 'failed' });

    const hook = parseWebhook(body);
    if (!hook.ok) return reply.code(422).send(fieldError(['body', ...hook.field], hook.msg));
    const given = isObject(body['input']) && opts.defaults ? { ...opts.defaults, ...body['input'] } : body['input'];
    let validated;
    try {
      validated = service.predictor.validate ? service.predictor.validate(given) : validateInput(opts.profile, given);
    } catch (e) {
      if (e instanceof InputValidationError) return reply.code(422).send(e.body);
      throw e;
    }
    const rawInput = isObject(given) ? given : {};
    let predictInput = rawInput;
    if (hasUrlInputs(fileFields(opts.profile), rawInput)) {
      // Cog answers 409 before doing any work; downloading first would only waste it.
      if (service.queue.full) return reply.code(409).send({ error: 'At capacity - all prediction slots busy', status: 'failed' });
      try {
        predictInput = await service.fetchUrlInputs(opts.profile, rawInput);
      } catch (e) {
        if (e instanceof InputFetchError) {
          return reply.code(422).send({ detail: e.failures.map((f) => ({ loc: ['body', 'input', f.field], msg: f.message, type: 'value_error' })) });
        }
        if (service.isShuttingDown) return reply.code(503).send({ error: 'The server is shutting down', status: 'failed' });
        throw e;
      }
    }
    const createdAt = typeof body['created_at'] === 'string' && !Number.isNaN(Date.parse(body['created_at'])) ? new Date(body['created_at']) : undefined;

    let p;
    try {
      p = service.create(
        {
          id,
          source: 'cog',
          predictor: service.predictor,
          input: validated.input as Record<string, unknown>,
          predictInput,
          outputMode: { kind: 'data-uri' },
          createdAt,
          webhook: hook.webhook,
          webhookEvents: hook.events,
        },
        'now',
      );
    } catch (e) {
      if (e instanceof QueueRefusal) {
        if (e.reason === 'closed') return reply.code(503).send({ error: e.message, status: 'failed' });
        return reply.code(409).send({ error: 'At capacity - all prediction slots busy', status: 'failed' });
      }
      throw e;
    }
    if (respondAsync(req)) return reply.code(202).send(cogView(p));

    // Sync: a client that goes away cancels its prediction (coglet's guard).
    const onClose = () => {
      if (!reply.raw.writableFinished) service.cancel(p.id);
    };
    reply.raw.once('close', onClose);
    await p.done;
    if (p.validationError) return reply.code(422).send(p.validationError.body);
    return reply.code(200).send(cogView(p));
  };

  app.post('/predictions', (req, reply) => create(req, reply, undefined));
  app.put<{ Params: { prediction_id: string } }>('/predictions/:prediction_id', (req, reply) => create(req, reply, req.params.prediction_id));

  app.post<{ Params: { prediction_id: string } }>('/predictions/:prediction_id/cancel', async (req, reply) => {
    return service.cancel(req.params.prediction_id) ? reply.code(200).send({}) : reply.code(404).send({});
  });

  // Not in Cog: the prediction's progress as server-sent events, while it is in flight (Cog forgets
  // a prediction once it has finished). Events: log, progress, output, error, done (see events.ts).
  app.get<{ Params: { prediction_id: string } }>('/predictions/:prediction_id/stream', async (req, reply) => {
    const p = service.inFlightPrediction(req.params.prediction_id);
    if (!p) return reply.code(404).send({});
    service.streamEvents(p, reply, req.headers['last-event-id']);
    return reply;
  });

  app.post('/shutdown', async (_req, reply) => {
    reply.raw.once('finish', () => setImmediate(opts.onShutdown));
    return reply.code(200).send({});
  });
}
