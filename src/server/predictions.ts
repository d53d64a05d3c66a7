// A prediction as the server tracks it, and its two JSON views: Cog's prediction object
// (api-compat.md A.7, the Python server's superset with input and timestamps) and Replicate's
// (B.4, with model, version, urls and metrics.total_time).

import type { PredictCallbacks, PredictionResult } from '../predictor/predictor.js';
import type { InputValidationError } from '../predictor/errors.js';
import type { Profile } from '../predictor/profiles.js';
import { EventLog } from './events.js';
import { newId } from './files.js';
import type { WebhookEvent, WebhookSender } from './webhooks.js';

/** What the server needs of a predictor (src/predictor/predictor.ts `Predictor` is one). */
export interface ServedPredictor {
  readonly profile: Profile<unknown>;
  /** Cog's setup(); may be synchronous. Called once per server, before any predict(). */
  setup(log: (line: string) => void): void | Promise<void>;
  predict(raw: Record<string, unknown>, cb?: PredictCallbacks): Promise<PredictionResult>;
  /**
   * Checks an input before it is queued (throws InputValidationError with Cog's 422 body). When
   * absent, the server validates against `profile` alone.
   */
  validate?(raw: unknown): { readonly input: unknown };
}

export type Status = 'starting' | 'processing' | 'succeeded' | 'failed' | 'canceled';
const TERMINAL: ReadonlySet<Status> = new Set(['succeeded', 'failed', 'canceled']);

export type OutputMode = { readonly kind: 'data-uri' } | { readonly kind: 'url'; readonly baseUrl: string };

/** A model the /v1 API serves: `owner/name`, its predictor, and input defaults. */
export interface ModelEntry {
  readonly owner: string;
  readonly name: string;
  readonly predictor: ServedPredictor;
  readonly defaults: Readonly<Record<string, unknown>>;
  readonly description: string;
  /** 64 hex digits, derived from the name and the schema. */
  readonly versionId: string;
  readonly createdAt: Date;
}

export const modelRef = (m: ModelEntry): string => `${m.owner}/${m.name}`;

let nextSeq = 0;

export class Prediction {
  /** Creation order, for listing and cursors. */
  readonly seq = ++nextSeq;
  status: Status = 'starting';
  output: string[] | null = null;
  readonly logLines: string[] = [];
  error: string | null = null;
  /** Set when predict() itself rejected the input (Cog's sync route answers 422 with it). */
  validationError: InputValidationError | undefined;
  startedAt: Date | undefined;
  completedAt: Date | undefined;
  predictTime: number | undefined;
  webhook: WebhookSender | undefined;
  /** The JSON object this prediction is shown as (Cog's or Replicate's), for webhooks. */
  view: () => Record<string, unknown> = () => cogView(this);
  /** Ids of output files in the server's FileStore (URL outputs). */
  readonly outputFileIds: string[] = [];
  /** Progress, logs and outputs as server-sent events (history for late subscribers). */
  readonly events = new EventLog();
  /** The capability in `urls.stream` (the official client fetches it without the API token). */
  readonly streamKey = newId();
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    readonly id: string,
    readonly source: 'cog' | 'api',
    /** Echoed as `input` (Cog: the validated input; Replicate: as submitted). */
    readonly input: Record<string, unknown>,
    /** What predictor.predict() receives (defaults merged, own file URLs resolved to data URIs). */
    readonly predictInput: Record<string, unknown>,
    readonly predictor: ServedPredictor,
    readonly outputMode: OutputMode,
    readonly createdAt: Date,
    readonly model: ModelEntry | undefined,
    readonly webhookUrl: string | undefined,
    readonly webhookEvents: readonly WebhookEvent[] | undefined,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get terminal(): boolean {
    return TERMINAL.has(this.status);
  }

  /** The log lines joined, one per line, as Cog accumulates stdout. */
  get logs(): string {
    return this.logLines.length === 0 ? '' : `${this.logLines.join('\n')}\n`;
  }

  /** Moves to a terminal status once; later calls are ignored (a cancel wins over a late result). */
  finish(status: 'succeeded' | 'failed' | 'canceled', error: string | null = null, now = new Date()): boolean {
    if (this.terminal) return false;
    this.status = status;
    this.error = status === 'failed' ? error ?? 'Prediction failed' : null;
    this.completedAt = now;
    if (this.predictTime === undefined && this.startedAt) this.predictTime = (now.getTime() - this.startedAt.getTime()) / 1000;
    this.resolveDone();
    return true;
  }
}

const iso = (d: Date | undefined): string | null => (d ? d.toISOString() : null);

function metrics(p: Prediction, withTotal: boolean): Record<string, number> {
  const m: Record<string, number> = {};
  if (p.terminal && p.predictTime !== undefined) m['predict_time'] = p.predictTime;
  if (withTotal && p.completedAt) m['total_time'] = (p.completedAt.getTime() - p.createdAt.getTime()) / 1000;
  return m;
}

/** Cog's prediction object (Python server layout: every field, nulls included). */
export function cogView(p: Prediction): Record<string, unknown> {
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
    ...(p.webhookUrl !== undefined ? { webhook: p.webhookUrl } : {}),
    ...(p.webhookEvents !== undefined ? { webhook_events_filter: p.webhookEvents } : {}),
  };
}

export interface ApiViewOptions {
  /** Absolute base URL of the server (no trailing slash), for `urls`. */
  readonly baseUrl: string;
  /** Report a non-terminal prediction as `starting` (Prefer: wait expired; api-compat C.4). */
  readonly asStarting?: boolean;
  /** List items: without input, output and logs (B.5). */
  readonly brief?: boolean;
}

/** Replicate's prediction object (schemas_prediction_response). */
export function apiView(p: Prediction, o: ApiViewOptions): Record<string, unknown> {
  const get = `${o.baseUrl}/v1/predictions/${p.id}`;
  const status = o.asStarting && !p.terminal ? 'starting' : p.status;
  const body: Record<string, unknown> = {
    id: p.id,
    model: p.model ? modelRef(p.model) : null,
    version: p.model ? p.model.versionId : null,
  };
  if (!o.brief) body['input'] = p.input;
  if (!o.brief) body['output'] = p.output;
  if (!o.brief) body['logs'] = p.logs;
  Object.assign(body, {
    error: p.error,
    status,
    source: 'api',
    data_removed: false,
    created_at: iso(p.createdAt),
    started_at: iso(p.startedAt),
    completed_at: iso(p.completedAt),
    metrics: metrics(p, true),
    urls: { get, cancel: `${get}/cancel`, web: get, stream: `${o.baseUrl}/v1/streams/${p.streamKey}` },
  });
  if (p.webhookUrl !== undefined) body['webhook'] = p.webhookUrl;
  if (p.webhookEvents !== undefined) body['webhook_events_filter'] = p.webhookEvents;
  return body;
}
