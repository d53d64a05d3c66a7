// A prediction's two JSON views, with their response schemas: Cog's prediction object (the Python
// server's superset with input and timestamps: cog python/cog/server/http.py, schema.py
// PredictionResponse) and Replicate's (model, version, urls, metrics.total_time:
// https://replicate.com/docs/reference/http#predictions.get). Both APIs and the service (webhook
// payloads) render predictions through these two functions.

import type { PredictionState } from './service/types.js';
import { isTerminal } from './service/types.js';

const iso = (d: Date | undefined): string | null => (d ? d.toISOString() : null);

function metrics(p: PredictionState, withTotal: boolean): Record<string, number> {
  const m: Record<string, number> = {};
  if (isTerminal(p.status) && p.predictTime !== undefined) m['predict_time'] = p.predictTime;
  if (withTotal && p.completedAt) m['total_time'] = (p.completedAt.getTime() - p.createdAt.getTime()) / 1000;
  return m;
}

const webhookFields = (p: PredictionState): Record<string, unknown> => ({
  ...(p.webhook !== undefined ? { webhook: p.webhook } : {}),
  ...(p.webhookEventsFilter !== undefined ? { webhook_events_filter: p.webhookEventsFilter } : {}),
});

/** Cog's prediction object (Python server layout: every field, nulls included). */
export function cogPredictionView(p: PredictionState): Record<string, unknown> {
  return {
    id: p.id,
    input: p.input,
    output: p.output,
    logs: p.logs,
    error: p.error,
    status: p.status,
    created_at: iso(p.createdAt),
    started_at: iso(p.startedAt),
    completed_at: iso(p.completedAt),
    metrics: metrics(p, false),
    ...webhookFields(p),
  };
}

export interface ReplicateViewOptions {
  /** Absolute base URL of the server (no trailing slash), for `urls`. */
  readonly baseUrl: string;
  /** Report a non-terminal prediction as `starting` (a `Prefer: wait` that expired: the client polls). */
  readonly asStarting?: boolean;
  /** List items: without input, output and logs. */
  readonly brief?: boolean;
}

/** Replicate's prediction object (schemas_prediction_response). */
export function replicatePredictionView(p: PredictionState, o: ReplicateViewOptions): Record<string, unknown> {
  const get = `${o.baseUrl}/v1/predictions/${p.id}`;
  const body: Record<string, unknown> = {
    id: p.id,
    model: p.model ? `${p.model.owner}/${p.model.name}` : null,
    version: p.model ? p.model.versionId : null,
  };
  if (!o.brief) Object.assign(body, { input: p.input, output: p.output, logs: p.logs });
  return Object.assign(body, {
    error: p.error,
    status: o.asStarting && !isTerminal(p.status) ? 'starting' : p.status,
    source: 'api',
    data_removed: false,
    created_at: iso(p.createdAt),
    started_at: iso(p.startedAt),
    completed_at: iso(p.completedAt),
    metrics: metrics(p, true),
    urls: { get, cancel: `${get}/cancel`, web: get, stream: `${o.baseUrl}/v1/streams/${p.streamKey}` },
    ...webhookFields(p),
  });
}

// Response schemas (fastify serializes with them). Free-form values (input, metrics) are `{}` or
// keep additional properties: the serializer drops whatever a schema does not name.
const nullableString = { type: ['string', 'null'] } as const;
const timestamps = { created_at: nullableString, started_at: nullableString, completed_at: nullableString } as const;
const predictionCommon = {
  id: { type: 'string' },
  input: { type: 'object', additionalProperties: true },
  output: { type: ['array', 'null'], items: { type: 'string' } },
  logs: { type: 'string' },
  error: nullableString,
  status: { type: 'string' },
  ...timestamps,
  metrics: { type: 'object', additionalProperties: { type: 'number' } },
  webhook: { type: 'string' },
  webhook_events_filter: { type: 'array', items: { type: 'string' } },
} as const;

export const COG_PREDICTION_SCHEMA = { type: 'object', properties: predictionCommon } as const;

export const REPLICATE_PREDICTION_SCHEMA = {
  type: 'object',
  properties: {
    ...predictionCommon,
    model: nullableString,
    version: nullableString,
    source: { type: 'string' },
    data_removed: { type: 'boolean' },
    urls: {
      type: 'object',
      properties: { get: { type: 'string' }, cancel: { type: 'string' }, web: { type: 'string' }, stream: { type: 'string' } },
    },
  },
} as const;

/** `{next, previous, results}` of Replicate's list routes. */
export function pageSchema(item: object): object {
  return { type: 'object', properties: { next: nullableString, previous: nullableString, results: { type: 'array', items: item } } };
}
