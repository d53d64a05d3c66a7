// Replicate's prediction resource under /v1 (https://replicate.com/docs/reference/http#predictions.create
// and the replicate npm client's lib/predictions.js): create by version or by model (`Prefer:
// wait[=N]` holds the request), get, list with absolute cursor URLs, cancel. Predictions wait in
// the service's queue instead of being refused at capacity.

import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { type FieldProblem, ServiceError } from '../errors.js';
import { type ServedModel, findModel, modelForVersion, modelRef } from '../models.js';
import type { PredictionState } from '../service/types.js';
import { REPLICATE_PREDICTION_SCHEMA, pageSchema, replicatePredictionView } from '../views.js';
import { WEBHOOK_EVENTS } from '../webhooks.js';
import { type ReplicateApiOptions, baseUrlOf, nullableString, preferWait } from './http.js';

type Body = Record<string, unknown>;

/** The body of POST /v1/models/{owner}/{name}/predictions (schemas_prediction_request). */
const MODEL_PREDICTION_FIELDS = {
  input: { type: 'object' },
  webhook: nullableString,
  webhook_events_filter: { type: ['array', 'null'], items: { type: 'string', enum: WEBHOOK_EVENTS } },
  stream: {},
} as const;
const MODEL_PREDICTION_REQUEST = { type: 'object', required: ['input'], additionalProperties: false, properties: MODEL_PREDICTION_FIELDS } as const;
const VERSION_PREDICTION_REQUEST = {
  type: 'object',
  required: ['version', 'input'],
  additionalProperties: false,
  properties: { version: { type: 'string', minLength: 1 }, ...MODEL_PREDICTION_FIELDS },
} as const;
const PREDICTION_REPLY = { '2xx': REPLICATE_PREDICTION_SCHEMA } as const;
const ID_PARAMS = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] } as const;
const LIST_QUERY = {
  type: 'object',
  properties: { created_after: { type: 'string' }, created_before: { type: 'string' }, cursor: { type: 'string' }, source: { type: 'string' } },
} as const;
const LINK_PARAMS = ['created_after', 'created_before', 'source'] as const;

const OWN_FILE_PATH = /^\/v1\/files\/([a-z0-9]+)(?:\/download)?$/;

export const predictionRoutes: FastifyPluginAsync<ReplicateApiOptions> = async (v1, opts) => {
  const { service } = opts;
  const pageSize = opts.pageSize ?? 100;
  const view = (p: PredictionState, req: FastifyRequest) => replicatePredictionView(p, { baseUrl: baseUrlOf(req, opts.publicBaseUrl) });

  /** A prediction made through /v1 (404 otherwise). */
  const apiPrediction = async (id: string): Promise<PredictionState> => {
    const p = await service.get(id);
    if (p?.api !== 'replicate') throw new ServiceError('not-found', 'Prediction not found');
    return p;
  };

  /** Input strings that are this server's own /v1/files URLs, replaced by data URIs for the predictor. */
  const resolveOwnFiles = async (req: FastifyRequest, input: Body): Promise<Body> => {
    const hosts = new Set([req.host.toLowerCase()]);
    if (opts.publicBaseUrl) hosts.add(new URL(opts.publicBaseUrl).host.toLowerCase());
    const resolveOne = async (v: unknown, loc: (string | number)[]): Promise<unknown> => {
      if (typeof v !== 'string' || !/^https?:\/\//i.test(v)) return v;
      let url: URL;
      try {
        url = new URL(v);
      } catch {
        return v;
      }
      const m = OWN_FILE_PATH.exec(url.pathname);
      if (!m || !hosts.has(url.host.toLowerCase())) return v;
      const f = await service.files.uploaded(m[1]!);
      if (f) return `data:${f.contentType};base64,${f.data.toString('base64')}`;
      const msg = `${loc.join('.')}: file ${m[1]} not found (uploads expire after 24 hours)`;
      const field: FieldProblem = { loc: ['body', ...loc], msg, type: 'file_not_found' };
      throw new ServiceError('file-not-found', msg, [field]);
    };
    const out: Body = {};
    for (const [k, v] of Object.entries(input)) {
      out[k] = Array.isArray(v) ? await Promise.all(v.map((x, i) => resolveOne(x, ['input', k, i]))) : await resolveOne(v, ['input', k]);
    }
    return out;
  };

  const createPrediction = async (req: FastifyRequest, reply: FastifyReply, model: ServedModel, body: Body) => {
    const base = baseUrlOf(req, opts.publicBaseUrl);
    const input = body['input'] as Body;
    const { prediction } = await service.admit({
      api: 'replicate',
      model: modelRef(model),
      input,
      resolvedInput: await resolveOwnFiles(req, input),
      webhook: body['webhook'],
      webhookEventsFilter: body['webhook_events_filter'],
      baseUrl: base,
      outputs: opts.outputs,
    });
    const wait = preferWait(req.headers['prefer']);
    if (wait === undefined) return reply.code(201).send(replicatePredictionView(prediction, { baseUrl: base }));
    // Held until it finishes, the client leaves, or the wait is over.
    const stop = new AbortController();
    const gone = () => {
      if (!reply.raw.writableFinished) stop.abort();
    };
    reply.raw.once('close', gone);
    const timer = setTimeout(() => stop.abort(), wait * 1000);
    const final = (await service.settled(prediction.id, stop.signal)) ?? prediction;
    clearTimeout(timer);
    reply.raw.off('close', gone);
    // Not finished in time: `starting`, so the client polls (the replicate client's run() treats
    // any other status under Prefer: wait as finished).
    return reply.code(201).send(replicatePredictionView(final, { baseUrl: base, asStarting: true }));
  };

  v1.post<{ Body: Body }>('/predictions', { schema: { body: VERSION_PREDICTION_REQUEST, response: PREDICTION_REPLY } }, async (req, reply) => {
    const model = modelForVersion(service.models(), req.body['version'] as string);
    if (!model) throw new ServiceError('unknown-version');
    return createPrediction(req, reply, model, req.body);
  });

  v1.post<{ Params: { owner: string; name: string }; Body: Body }>(
    '/models/:owner/:name/predictions',
    { schema: { body: MODEL_PREDICTION_REQUEST, response: PREDICTION_REPLY } },
    async (req, reply) => {
      const model = findModel(service.models(), req.params.owner, req.params.name);
      if (!model) throw new ServiceError('not-found', `Model ${req.params.owner}/${req.params.name} not found`);
      return createPrediction(req, reply, model, req.body);
    },
  );

  v1.get<{ Params: { id: string } }>('/predictions/:id', { schema: { params: ID_PARAMS, response: PREDICTION_REPLY } }, async (req) =>
    view(await apiPrediction(req.params.id), req),
  );

  v1.post<{ Params: { id: string } }>('/predictions/:id/cancel', { schema: { params: ID_PARAMS, response: PREDICTION_REPLY } }, async (req) => {
    const p = await apiPrediction(req.params.id);
    await service.cancel(p.id);
    return view((await service.get(p.id)) ?? p, req);
  });

  v1.get<{ Querystring: Partial<Record<'created_after' | 'created_before' | 'cursor' | 'source', string>> }>(
    '/predictions',
    { schema: { querystring: LIST_QUERY, response: { 200: pageSchema(REPLICATE_PREDICTION_SCHEMA) } } },
    async (req) => {
      const base = baseUrlOf(req, opts.publicBaseUrl);
      const q = req.query;
      const after = q.created_after !== undefined ? new Date(q.created_after) : undefined;
      const before = q.created_before !== undefined ? new Date(q.created_before) : undefined;
      if (Number.isNaN(after?.getTime()) || Number.isNaN(before?.getTime()))
        throw new ServiceError('bad-request', 'created_after and created_before must be date-times');
      const page = await service.list({ createdAfter: after, createdBefore: before, cursor: q.cursor, pageSize });
      const link = (cursor: string | null) => {
        if (cursor === null) return null;
        const u = new URL(`${base}/v1/predictions`);
        for (const k of LINK_PARAMS) if (q[k] !== undefined) u.searchParams.set(k, q[k]);
        u.searchParams.set('cursor', cursor);
        return u.toString();
      };
      return {
        next: link(page.next),
        previous: link(page.previous),
        results: page.results.map((p) => replicatePredictionView(p, { baseUrl: base, brief: true })),
      };
    },
  );
};
