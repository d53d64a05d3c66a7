// The prediction service both APIs talk to, as an interface. A route admits a prediction with
// admit() (validate -> enqueue -> events) and otherwise only asks: get, list, cancel, wait for it,
// subscribe to its events, health. What comes back is a copy (PredictionState) that the route
// renders; no route holds or changes the service's own objects. LocalPredictionService (local.ts)
// is the in-process implementation (queue, state and files in memory); a second one can keep
// state, logs and progress elsewhere (Redis) with the workers in other processes.

import type { StreamEvent } from '../events.js';
import type { ServedModel } from '../models.js';
import type { StoredFile } from '../files.js';
import type { WebhookEvent } from '../webhooks.js';
import type { ValidationErrorItem } from '../../predictor/errors.js';

/** The API a prediction was created through: its rules of admission and its JSON layout. */
export type ApiName = 'cog' | 'replicate';

export type PredictionStatus = 'starting' | 'processing' | 'succeeded' | 'failed' | 'canceled';
const TERMINAL: ReadonlySet<PredictionStatus> = new Set(['succeeded', 'failed', 'canceled']);
export const isTerminal = (s: PredictionStatus): boolean => TERMINAL.has(s);

/** A prediction as it is at one moment (a copy: changing it changes nothing). */
export interface PredictionState {
  readonly id: string;
  readonly api: ApiName;
  /** The /v1 model it runs on (undefined for Cog predictions). */
  readonly model: { readonly owner: string; readonly name: string; readonly versionId: string } | undefined;
  /** Echoed as `input` (Cog: the validated input; Replicate: as submitted). */
  readonly input: Readonly<Record<string, unknown>>;
  readonly output: readonly string[] | null;
  /** The log lines, one per line, as Cog accumulates stdout. */
  readonly logs: string;
  readonly error: string | null;
  readonly status: PredictionStatus;
  readonly createdAt: Date;
  readonly startedAt: Date | undefined;
  readonly completedAt: Date | undefined;
  /** Seconds in predict() (set when it finished). */
  readonly predictTime: number | undefined;
  readonly webhook: string | undefined;
  readonly webhookEventsFilter: readonly WebhookEvent[] | undefined;
  /** The capability in `urls.stream` (the official client fetches it without the API token). */
  readonly streamKey: string;
  /** Set when predict() itself rejected the input (Cog's sync route answers 422 with it). */
  readonly inputErrors: readonly ValidationErrorItem[] | undefined;
}

interface AdmitCommon {
  /** The input as the client sent it. */
  readonly input: unknown;
  /** `webhook` and `webhook_events_filter` as sent (checked by admit). */
  readonly webhook?: unknown;
  readonly webhookEventsFilter?: unknown;
}

/** Cog: a free slot now or 409, refused while setup runs; the Cog routes' model. */
export interface CogAdmitRequest extends AdmitCommon {
  readonly api: 'cog';
  /** The client's id (PUT /predictions/{id}); while it is in flight, admit returns that prediction. */
  readonly id?: string | undefined;
  readonly createdAt?: Date | undefined;
}

/** Replicate: waits in the backlog (refused when it is full), on the named model. */
export interface ReplicateAdmitRequest extends AdmitCommon {
  readonly api: 'replicate';
  /** `owner/name`. */
  readonly model: string;
  /** `input` with this server's own file URLs replaced by data: URIs (default: `input`). */
  readonly resolvedInput?: Readonly<Record<string, unknown>> | undefined;
  /** Absolute base URL (no trailing slash) for output URLs and the webhook payload's `urls`. */
  readonly baseUrl: string;
  readonly outputs: 'data-uri' | 'url';
}

export type AdmitRequest = CogAdmitRequest | ReplicateAdmitRequest;

export interface Admitted {
  readonly prediction: PredictionState;
  /** True when a Cog id was already in flight: nothing new was started. */
  readonly existing: boolean;
}

export interface ListQuery {
  readonly createdAfter?: Date | undefined;
  readonly createdBefore?: Date | undefined;
  /** An opaque cursor from a previous page's next/previous. */
  readonly cursor?: string | undefined;
  readonly pageSize: number;
}

/** Replicate predictions, newest first; `next`/`previous` are opaque cursors or null. */
export interface PredictionPage {
  readonly results: readonly PredictionState[];
  readonly next: string | null;
  readonly previous: string | null;
}

export type HealthStatus = 'STARTING' | 'READY' | 'BUSY' | 'SETUP_FAILED';

export interface SetupState {
  readonly status: 'starting' | 'succeeded' | 'failed';
  readonly startedAt: Date | undefined;
  readonly completedAt: Date | undefined;
  readonly logs: readonly string[];
}

export interface ServiceHealth {
  readonly status: HealthStatus;
  readonly setup: SetupState;
  readonly concurrency: { readonly max: number; readonly current: number };
}

/** Who receives a prediction's events: the history after `afterId`, then live ones until `done`. */
export interface EventSubscriber {
  readonly afterId: number;
  onEvent(e: StreamEvent): void;
  /** The service ended the subscription (shutdown). */
  onEnd(): void;
}

export interface EventSubscription {
  /** Stops delivery; idempotent. */
  close(): void;
}

/** Files uploaded through /v1/files (24 h) and output files served by URL. */
export interface FileService {
  upload(f: { name: string; contentType: string; data: Buffer; metadata: unknown }): Promise<StoredFile>;
  uploaded(id: string): Promise<StoredFile | undefined>;
  /** Newest first. */
  uploads(): Promise<StoredFile[]>;
  deleteUpload(id: string): Promise<boolean>;
  /** An output file by its id and name (the URL's two parts). */
  output(id: string, name: string): Promise<StoredFile | undefined>;
}

export interface PredictionService {
  /** Runs the models' setup (or connects); resolves when it has succeeded or failed. */
  start(): Promise<void>;
  health(): Promise<ServiceHealth>;
  /** The /v1 models (configuration: the same for the service's lifetime). */
  models(): readonly ServedModel[];
  /**
   * The one way in: validates the request (webhook, input, file inputs fetched), enqueues the
   * prediction and starts recording its events. Throws ServiceError (errors.ts) when refused.
   */
  admit(request: AdmitRequest): Promise<Admitted>;
  /** Any prediction still in flight or remembered. */
  get(id: string): Promise<PredictionState | undefined>;
  findByStreamKey(key: string): Promise<PredictionState | undefined>;
  /** Replicate predictions, newest first (throws ServiceError 'bad-request' on a bad cursor). */
  list(query: ListQuery): Promise<PredictionPage>;
  /** Cancels an unfinished prediction; false when it is unknown or finished. */
  cancel(id: string): Promise<boolean>;
  /** The prediction once it has finished, or as it is when `signal` aborts. */
  settled(id: string, signal?: AbortSignal): Promise<PredictionState | undefined>;
  /** Its events; undefined when the prediction is unknown. */
  subscribe(id: string, subscriber: EventSubscriber): Promise<EventSubscription | undefined>;
  readonly files: FileService;
  /** Stops admitting, ends what runs (nothing is left `processing`), delivers the last webhooks. */
  shutdown(): Promise<void>;
}
