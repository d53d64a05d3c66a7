// The prediction service behind both APIs: runs the predictors' setup, admits predictions into the
// queue, runs them (status, logs, outputs, webhooks), cancels them, remembers /v1 predictions for
// GET and listing, and shuts down without leaving anything `processing`.

import type { FastifyReply } from 'fastify';
import { InputValidationError } from '../predictor/errors.js';
import type { Profile } from '../predictor/profiles.js';
import { serveEventStream } from './events.js';
import { type StoredFile, FileStore, dataUri } from './files.js';
import { type InputFetchOptions, fetchFileInputs, fileFields } from './inputs.js';
import { type ModelEntry, type OutputMode, type ServedPredictor, Prediction, apiView, cogView } from './predictions.js';
import { type DropReason, type QueueJob, PredictionQueue, within } from './queue.js';
import { FileUploadError, type UploadOptions, uploadFile } from './uploads.js';
import { type WebhookEvent, type WebhookOptions, WEBHOOK_EVENTS, WebhookSender } from './webhooks.js';

export type HealthStatus = 'STARTING' | 'READY' | 'BUSY' | 'SETUP_FAILED';

export interface SetupState {
  status: 'starting' | 'succeeded' | 'failed';
  startedAt: Date | undefined;
  completedAt: Date | undefined;
  logs: string[];
}

export interface ServiceOptions {
  readonly predictor: ServedPredictor;
  readonly models: readonly ModelEntry[];
  readonly concurrency?: number;
  readonly maxQueue?: number;
  readonly webhooks?: WebhookOptions;
  /** Finished /v1 predictions remembered for GET and listing (oldest forgotten first); 1000. */
  readonly maxHistory?: number;
  /** How long shutdown lets running predictions finish before aborting them; 0 (abort at once). */
  readonly shutdownGraceMs?: number;
  readonly files?: FileStore;
  /** Cog's `--upload-url`: output files of every prediction are PUT under it (api-compat.md A.15). */
  readonly uploadUrl?: string | undefined;
  readonly upload?: UploadOptions;
  /** Limits on downloading http(s) file inputs. */
  readonly inputFetch?: InputFetchOptions;
  /** SSE keep-alive comment interval (15 s). */
  readonly sseKeepAliveMs?: number;
  /** Server-side messages (never contains tokens). */
  readonly log?: (msg: string) => void;
}

export interface CreateSpec {
  readonly id: string;
  readonly source: 'cog' | 'api';
  readonly predictor: ServedPredictor;
  readonly model?: ModelEntry | undefined;
  readonly input: Record<string, unknown>;
  readonly predictInput: Record<string, unknown>;
  readonly outputMode: OutputMode;
  readonly createdAt?: Date | undefined;
  readonly webhook?: string | undefined;
  readonly webhookEvents?: readonly WebhookEvent[] | undefined;
  /** For webhook payloads of /v1 predictions. */
  readonly baseUrl?: string | undefined;
}

const DROP_MESSAGES: Record<DropReason, string> = {
  canceled: '',
  shutdown: 'The server shut down before the prediction started',
  'setup-failed': 'Model setup failed; the prediction cannot run',
};

export class PredictionService {
  readonly queue: PredictionQueue;
  readonly files: FileStore;
  readonly setup: SetupState = { status: 'starting', startedAt: undefined, completedAt: undefined, logs: [] };
  private readonly inFlight = new Map<string, Prediction>();
  /** /v1 predictions, oldest first. */
  private readonly history = new Map<string, Prediction>();
  private readonly maxHistory: number;
  private shuttingDown = false;
  private setupPromise: Promise<void> | undefined;
  private readonly pendingWebhooks = new Set<Promise<void>>();
  /** Open SSE responses (ended at shutdown if still open). */
  private readonly streams = new Set<() => void>();
  /** Aborts input downloads still running at shutdown. */
  private readonly stopping = new AbortController();

  constructor(private readonly opts: ServiceOptions) {
    this.queue = new PredictionQueue({ concurrency: opts.concurrency ?? 1, maxQueue: opts.maxQueue ?? 64 });
    this.files = opts.files ?? new FileStore();
    this.maxHistory = opts.maxHistory ?? 1000;
  }

  get models(): readonly ModelEntry[] {
    return this.opts.models;
  }

  get predictor(): ServedPredictor {
    return this.opts.predictor;
  }

  /** Runs setup() of every distinct predictor once; the queue opens when all succeeded. */
  runSetup(): Promise<void> {
    this.setupPromise ??= (async () => {
      this.setup.startedAt = new Date();
      const predictors = [...new Set([this.opts.predictor, ...this.opts.models.map((m) => m.predictor)])];
      try {
        for (const p of predictors) await p.setup((line) => this.setup.logs.push(line));
        this.setup.status = 'succeeded';
        this.queue.start();
      } catch (e) {
        this.setup.status = 'failed';
        this.setup.logs.push(e instanceof Error ? (e.stack ?? e.message) : String(e));
        this.queue.failWaiting('setup-failed');
        this.opts.log?.(`setup failed: ${e instanceof Error ? e.message : String(e)}`);
      } finally {
        this.setup.completedAt = new Date();
      }
    })();
    return this.setupPromise;
  }

  health(): HealthStatus {
    if (this.setup.status === 'starting') return 'STARTING';
    if (this.setup.status === 'failed') return 'SETUP_FAILED';
    return this.queue.full ? 'BUSY' : 'READY';
  }

  /** A prediction not yet finished (Cog's idempotency covers only these). */
  inFlightPrediction(id: string): Prediction | undefined {
    return this.inFlight.get(id);
  }

  /** A /v1 prediction, running or remembered. */
  apiPrediction(id: string): Prediction | undefined {
    return this.history.get(id);
  }

  /** /v1 predictions, newest first. */
  apiPredictions(): Prediction[] {
    return [...this.history.values()].reverse();
  }

  /**
   * Admits a prediction: `now` takes a free slot or throws QueueRefusal('at-capacity') (Cog),
   * `queue` waits in the backlog or throws QueueRefusal('backlog-full') (/v1).
   */
  create(spec: CreateSpec, admission: 'now' | 'queue'): Prediction {
    const p = new Prediction(
      spec.id,
      spec.source,
      spec.input,
      spec.predictInput,
      spec.predictor,
      spec.outputMode,
      spec.createdAt ?? new Date(),
      spec.model,
      spec.webhook,
      spec.webhookEvents,
    );
    if (spec.webhook !== undefined) {
      const events = new Set(spec.webhookEvents ?? WEBHOOK_EVENTS);
      p.webhook = new WebhookSender(spec.webhook, events, { ...this.opts.webhooks, onError: (m) => this.opts.log?.(`prediction ${p.id}: ${m}`) });
    }
    const baseUrl = spec.baseUrl ?? '';
    p.view = () => (p.source === 'cog' ? cogView(p) : apiView(p, { baseUrl }));
    const job: QueueJob = {
      id: p.id,
      run: (signal) => this.execute(p, signal),
      drop: (reason) => this.complete(p, reason === 'canceled' ? 'canceled' : 'failed', DROP_MESSAGES[reason]),
    };
    if (admission === 'now') this.queue.runNow(job);
    else this.queue.enqueue(job);
    this.inFlight.set(p.id, p);
    if (p.source === 'api') this.remember(p);
    return p;
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** A /v1 prediction by the key in its `urls.stream`. */
  predictionByStreamKey(key: string): Prediction | undefined {
    for (const p of this.history.values()) if (p.streamKey === key) return p;
    return undefined;
  }

  /** SSE responses currently open. */
  get openStreams(): number {
    return this.streams.size;
  }

  /** Serves `p`'s events on `reply` until `done`, the client leaving, or shutdown. */
  streamEvents(p: Prediction, reply: FastifyReply, lastEventId: string | string[] | undefined): void {
    let end: (() => void) | undefined;
    let ended = false;
    const onEnd = () => {
      ended = true;
      if (end) this.streams.delete(end);
    };
    end = serveEventStream(reply, p.events, lastEventId, { ...(this.opts.sseKeepAliveMs !== undefined ? { keepAliveMs: this.opts.sseKeepAliveMs } : {}), onEnd });
    if (!ended) this.streams.add(end);
  }

  /** http(s) URLs in the profile's file fields, downloaded into data: URIs (throws InputFetchError). */
  fetchUrlInputs(profile: Profile<unknown>, input: Record<string, unknown>): Promise<Record<string, unknown>> {
    return fetchFileInputs(fileFields(profile), input, { userAgent: this.opts.webhooks?.userAgent ?? 'fluxserve', ...this.opts.inputFetch }, this.stopping.signal);
  }

  /** Cancels an unfinished prediction: it is `canceled` at once; the slot frees when predict() stops. */
  cancel(id: string): boolean {
    const p = this.inFlight.get(id);
    if (!p || p.terminal) return false;
    const where = this.queue.cancel(id, new Error('canceled'));
    if (where === 'running') this.complete(p, 'canceled', null);
    return where !== false;
  }

  /** Stops admitting, fails what waits, finishes or fails what runs, and delivers the last webhooks. */
  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.stopping.abort(new Error('The server is shutting down'));
    await this.queue.shutdown(this.opts.shutdownGraceMs ?? 0, 10_000);
    for (const p of [...this.inFlight.values()]) {
      this.complete(p, 'failed', 'The server shut down while the prediction was running');
    }
    for (const end of [...this.streams]) end();
    await within(Promise.all([...this.pendingWebhooks]), 10_000);
  }

  private async execute(p: Prediction, signal: AbortSignal): Promise<void> {
    const view = p.view;
    if (p.terminal) return;
    p.status = 'processing';
    p.startedAt = new Date();
    p.webhook?.notify('start', view());
    try {
      const result = await p.predictor.predict(p.predictInput, {
        signal,
        log: (line) => {
          p.logLines.push(line);
          p.events.emit('log', line);
          p.webhook?.notify('logs', view());
        },
        progress: ({ step, total }) => {
          p.events.emit('progress', JSON.stringify({ step, total }));
        },
      });
      if (p.terminal) return;
      p.predictTime = result.predictTime;
      const output: string[] = [];
      for (const f of result.files) output.push(await this.encodeOutput(p, f, signal));
      if (p.terminal) return;
      p.output = output;
      for (const o of output) p.events.emit('output', o);
      p.webhook?.notify('output', view());
      this.complete(p, 'succeeded', null);
    } catch (e) {
      if (p.terminal) return;
      if (e instanceof FileUploadError && !signal.aborted) {
        p.logLines.push(`Error uploading output files: ${e.detail}`);
        p.events.emit('log', p.logLines.at(-1)!);
        this.complete(p, 'failed', e.message);
        return;
      }
      if (signal.aborted) {
        if (this.shuttingDown) this.complete(p, 'failed', 'The server shut down while the prediction was running');
        else this.complete(p, 'canceled', null);
        return;
      }
      if (e instanceof InputValidationError) p.validationError = e;
      const message = e instanceof Error ? e.message : String(e);
      p.logLines.push(`Error: ${message}`);
      this.complete(p, 'failed', message);
    }
  }

  private async encodeOutput(p: Prediction, f: { name: string; contentType: string; data: Buffer }, signal: AbortSignal): Promise<string> {
    if (this.opts.uploadUrl !== undefined) {
      return uploadFile(this.opts.uploadUrl, f, p.id, signal, { userAgent: this.opts.webhooks?.userAgent ?? 'fluxserve', ...this.opts.upload });
    }
    if (p.outputMode.kind === 'data-uri') return dataUri(f.contentType, f.data);
    const stored = this.files.add({ kind: 'output', name: f.name, contentType: f.contentType, data: f.data });
    p.outputFileIds.push(stored.id);
    return outputUrl(p.outputMode.baseUrl, stored);
  }

  private complete(p: Prediction, status: 'succeeded' | 'failed' | 'canceled', error: string | null): void {
    if (!p.finish(status, error)) return;
    this.inFlight.delete(p.id);
    if (status === 'failed') p.events.emit('error', JSON.stringify({ detail: p.error }));
    p.events.emit('done', JSON.stringify(status === 'succeeded' ? {} : { reason: status === 'failed' ? 'error' : 'canceled' }));
    if (p.webhook) {
      const sent = p.webhook.complete(p.view());
      this.pendingWebhooks.add(sent);
      void sent.finally(() => this.pendingWebhooks.delete(sent));
    }
  }

  private remember(p: Prediction): void {
    this.history.set(p.id, p);
    if (this.history.size <= this.maxHistory) return;
    for (const [id, old] of this.history) {
      if (this.history.size <= this.maxHistory) break;
      if (!old.terminal) continue;
      this.history.delete(id);
      for (const f of old.outputFileIds) this.files.delete(f);
    }
  }
}

/** Where an output file is served (GET /outputs/{id}/{name}, no auth, like a delivery URL). */
export function outputUrl(baseUrl: string, f: StoredFile): string {
  return `${baseUrl}/outputs/${f.id}/${encodeURIComponent(f.name)}`;
}
