// The in-process PredictionService: runs the predictors' setup, admits predictions into the
// in-memory queue, runs them (status, logs, outputs, webhooks), cancels them, remembers /v1
// predictions for GET and listing, and shuts down without leaving anything `processing`.
// Everything lives in this process: the queue, the predictions, their events and the files.

import { InputValidationError } from '../../predictor/errors.js';
import { ServiceError } from '../errors.js';
import { FileStore, type StoredFile, dataUri, localFileService, newId } from '../files.js';
import type { InputFetchOptions } from '../inputs.js';
import { type ModelEntry, type ServedModel, type ServedPredictor, modelRef } from '../models.js';
import { FileUploadError, type UploadOptions, uploadFile } from '../uploads.js';
import { cogPredictionView, replicatePredictionView } from '../views.js';
import { WEBHOOK_EVENTS, type WebhookOptions, WebhookSender, parseWebhook } from '../webhooks.js';
import { type AdmissionTarget, checkInput, fetchInputs } from './admission.js';
import { pageOf } from './listing.js';
import { type OutputMode, Prediction } from './prediction.js';
import { type DropReason, PredictionQueue, type QueueJob, QueueRefusal, within } from './queue.js';
import type {
  AdmitRequest,
  Admitted,
  EventSubscriber,
  EventSubscription,
  FileService,
  ListQuery,
  PredictionPage,
  PredictionService,
  PredictionState,
  ServiceHealth,
} from './types.js';

export interface LocalServiceOptions {
  /** The /v1 models. */
  readonly models: readonly ModelEntry[];
  /** What the Cog routes run: a predictor, the profile they validate against, its defaults. */
  readonly cog: { readonly predictor: ServedPredictor; readonly profile: AdmissionTarget['profile']; readonly defaults?: Readonly<Record<string, unknown>> };
  readonly concurrency?: number;
  readonly maxQueue?: number;
  readonly webhooks?: WebhookOptions;
  /** Finished /v1 predictions remembered for GET and listing (oldest forgotten first); 1000. */
  readonly maxHistory?: number;
  /** How long shutdown lets running predictions finish before aborting them; 0 (abort at once). */
  readonly shutdownGraceMs?: number;
  readonly files?: FileStore;
  /** Cog's `--upload-url`: output files of every prediction are PUT under it (uploads.ts). */
  readonly uploadUrl?: string | undefined;
  readonly upload?: UploadOptions;
  /** Limits on downloading http(s) file inputs. */
  readonly inputFetch?: InputFetchOptions;
  /** Server-side messages (never contains tokens). */
  readonly log?: (msg: string) => void;
}

const DROP_MESSAGES: Record<DropReason, string> = {
  canceled: '',
  shutdown: 'The server shut down before the prediction started',
  'setup-failed': 'Model setup failed; the prediction cannot run',
};
const SHUT_DOWN_WHILE_RUNNING = 'The server shut down while the prediction was running';
const REFUSALS = { closed: 'shutting-down', 'at-capacity': 'at-capacity', 'backlog-full': 'backlog-full' } as const;

export class LocalPredictionService implements PredictionService {
  readonly queue: PredictionQueue;
  readonly store: FileStore;
  readonly files: FileService;
  readonly setup: { status: 'starting' | 'succeeded' | 'failed'; startedAt: Date | undefined; completedAt: Date | undefined; logs: string[] } = {
    status: 'starting',
    startedAt: undefined,
    completedAt: undefined,
    logs: [],
  };
  private readonly inFlight = new Map<string, Prediction>();
  /** /v1 predictions, oldest first. */
  private readonly history = new Map<string, Prediction>();
  private readonly maxHistory: number;
  private shuttingDown = false;
  private setupPromise: Promise<void> | undefined;
  private readonly pendingWebhooks = new Set<Promise<void>>();
  /** Open event subscriptions (ended at shutdown if still open). */
  private readonly subscriptions = new Map<EventSubscription, EventSubscriber>();
  /** Aborts input downloads still running at shutdown. */
  private readonly stopping = new AbortController();
  private readonly userAgent: string;

  constructor(private readonly opts: LocalServiceOptions) {
    this.queue = new PredictionQueue({ concurrency: opts.concurrency ?? 1, maxQueue: opts.maxQueue ?? 64 });
    this.store = opts.files ?? new FileStore();
    this.files = localFileService(this.store);
    this.maxHistory = opts.maxHistory ?? 1000;
    this.userAgent = opts.webhooks?.userAgent ?? 'fluxserve';
  }

  /** Runs setup() of every distinct predictor once; the queue opens when all succeeded. */
  start(): Promise<void> {
    this.setupPromise ??= (async () => {
      this.setup.startedAt = new Date();
      const predictors = [...new Set([this.opts.cog.predictor, ...this.opts.models.map((m) => m.predictor)])];
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

  async health(): Promise<ServiceHealth> {
    const s = this.setup;
    const status = s.status === 'starting' ? 'STARTING' : s.status === 'failed' ? 'SETUP_FAILED' : this.queue.full ? 'BUSY' : 'READY';
    return { status, setup: { ...s, logs: [...s.logs] }, concurrency: { max: this.queue.concurrency, current: this.queue.runningCount } };
  }

  models(): readonly ServedModel[] {
    return this.opts.models;
  }

  async admit(req: AdmitRequest): Promise<Admitted> {
    const target = this.targetOf(req);
    const id = req.api === 'cog' ? (req.id ?? newId()) : newId();
    const existing = req.api === 'cog' ? this.inFlight.get(id) : undefined;
    if (existing) return { prediction: existing.snapshot(), existing: true };
    if (req.api === 'cog' && this.setup.status === 'starting') throw new ServiceError('setup-starting');
    if (this.setup.status === 'failed') throw new ServiceError('setup-failed');
    const hook = parseWebhook(req.webhook, req.webhookEventsFilter);
    const { echo, given } = checkInput(target, req);
    const predictInput = await fetchInputs(target.profile, given, {
      options: { userAgent: this.userAgent, ...this.opts.inputFetch },
      signal: this.stopping.signal,
      // Cog answers 409 before doing any work; downloading first would only waste it.
      beforeFetch: () => {
        if (req.api === 'cog' && this.queue.full) throw new ServiceError('at-capacity');
      },
    });
    const outputMode: OutputMode = req.api === 'replicate' && req.outputs === 'url' ? { kind: 'url', baseUrl: req.baseUrl } : { kind: 'data-uri' };
    const p = new Prediction({
      id,
      api: req.api,
      predictor: target.predictor,
      model: target.model,
      input: echo,
      predictInput,
      outputMode,
      createdAt: req.api === 'cog' ? req.createdAt : undefined,
      webhook: hook.url,
      webhookEvents: hook.events,
    });
    p.view = req.api === 'cog' ? () => cogPredictionView(p.snapshot()) : () => replicatePredictionView(p.snapshot(), { baseUrl: req.baseUrl });
    if (hook.url !== undefined) {
      p.webhook = new WebhookSender(hook.url, new Set(hook.events ?? WEBHOOK_EVENTS), {
        ...this.opts.webhooks,
        onError: (m) => this.opts.log?.(`prediction ${p.id}: ${m}`),
      });
    }
    const job: QueueJob = {
      id: p.id,
      run: (signal) => this.execute(p, signal),
      drop: (reason) => this.complete(p, reason === 'canceled' ? 'canceled' : 'failed', DROP_MESSAGES[reason]),
    };
    try {
      if (req.api === 'cog') this.queue.runNow(job);
      else this.queue.enqueue(job);
    } catch (e) {
      if (e instanceof QueueRefusal) throw new ServiceError(REFUSALS[e.reason], e.message);
      throw e;
    }
    this.inFlight.set(p.id, p);
    if (p.api === 'replicate') this.remember(p);
    return { prediction: p.snapshot(), existing: false };
  }

  async get(id: string): Promise<PredictionState | undefined> {
    return this.find(id)?.snapshot();
  }

  async findByStreamKey(key: string): Promise<PredictionState | undefined> {
    for (const p of this.history.values()) if (p.streamKey === key) return p.snapshot();
    return undefined;
  }

  async list(q: ListQuery): Promise<PredictionPage> {
    return pageOf(this.apiPredictions(), q);
  }

  /** Cancels an unfinished prediction: it is `canceled` at once; the slot frees when predict() stops. */
  async cancel(id: string): Promise<boolean> {
    const p = this.inFlight.get(id);
    if (!p || p.terminal) return false;
    const where = this.queue.cancel(id, new Error('canceled'));
    if (where === 'running') this.complete(p, 'canceled', null);
    return where !== false;
  }

  async settled(id: string, signal?: AbortSignal): Promise<PredictionState | undefined> {
    const p = this.find(id);
    if (!p) return undefined;
    if (!p.terminal && !signal?.aborted) {
      let stop: (() => void) | undefined;
      await Promise.race([p.done, new Promise<void>((resolve) => signal?.addEventListener('abort', (stop = () => resolve()), { once: true }))]);
      if (stop) signal?.removeEventListener('abort', stop);
    }
    return p.snapshot();
  }

  async subscribe(id: string, subscriber: EventSubscriber): Promise<EventSubscription | undefined> {
    const p = this.find(id);
    if (!p) return undefined;
    let unsubscribe = () => {};
    const subscription: EventSubscription = {
      close: () => {
        unsubscribe();
        this.subscriptions.delete(subscription);
      },
    };
    unsubscribe = p.events.subscribe((e) => subscriber.onEvent(e), subscriber.afterId);
    if (!p.events.closed) this.subscriptions.set(subscription, subscriber);
    return subscription;
  }

  /** Stops admitting, fails what waits, finishes or fails what runs, and delivers the last webhooks. */
  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.stopping.abort(new Error('The server is shutting down'));
    await this.queue.shutdown(this.opts.shutdownGraceMs ?? 0, 10_000);
    for (const p of [...this.inFlight.values()]) this.complete(p, 'failed', SHUT_DOWN_WHILE_RUNNING);
    for (const s of [...this.subscriptions.values()]) s.onEnd();
    await within(Promise.all([...this.pendingWebhooks]), 10_000);
  }

  // Inspection (tests, diagnostics): the live objects, not part of PredictionService.

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

  /** Event subscriptions currently open. */
  get openStreams(): number {
    return this.subscriptions.size;
  }

  private find(id: string): Prediction | undefined {
    return this.inFlight.get(id) ?? this.history.get(id);
  }

  private targetOf(req: AdmitRequest): AdmissionTarget {
    if (req.api === 'cog') return { predictor: this.opts.cog.predictor, profile: this.opts.cog.profile, defaults: this.opts.cog.defaults ?? {} };
    const model = this.opts.models.find((m) => modelRef(m) === req.model);
    if (!model) throw new ServiceError('not-found', `Model ${req.model} not found`);
    return { predictor: model.predictor, profile: model.predictor.profile, defaults: model.defaults, model };
  }

  private async execute(p: Prediction, signal: AbortSignal): Promise<void> {
    if (p.terminal) return;
    p.status = 'processing';
    p.startedAt = new Date();
    p.webhook?.notify('start', p.view());
    try {
      const result = await p.spec.predictor.predict(p.spec.predictInput, {
        signal,
        log: (line) => {
          p.logLines.push(line);
          p.events.emit('log', line);
          p.webhook?.notify('logs', p.view());
        },
        progress: ({ step, total }) => p.events.emit('progress', JSON.stringify({ step, total })),
      });
      if (p.terminal) return;
      p.predictTime = result.predictTime;
      const output: string[] = [];
      for (const f of result.files) output.push(await this.encodeOutput(p, f, signal));
      if (p.terminal) return;
      p.output = output;
      for (const o of output) p.events.emit('output', o);
      p.webhook?.notify('output', p.view());
      this.complete(p, 'succeeded', null);
    } catch (e) {
      if (p.terminal) return;
      if (e instanceof FileUploadError && !signal.aborted) {
        p.logLines.push(`Error uploading output files: ${e.detail}`);
        p.events.emit('log', p.logLines.at(-1)!);
        return this.complete(p, 'failed', e.message);
      }
      if (signal.aborted) return this.complete(p, this.shuttingDown ? 'failed' : 'canceled', this.shuttingDown ? SHUT_DOWN_WHILE_RUNNING : null);
      if (e instanceof InputValidationError) p.validationError = e;
      const message = e instanceof Error ? e.message : String(e);
      p.logLines.push(`Error: ${message}`);
      this.complete(p, 'failed', message);
    }
  }

  private async encodeOutput(p: Prediction, f: { name: string; contentType: string; data: Buffer }, signal: AbortSignal): Promise<string> {
    if (this.opts.uploadUrl !== undefined) return uploadFile(this.opts.uploadUrl, f, p.id, signal, { userAgent: this.userAgent, ...this.opts.upload });
    const mode = p.spec.outputMode;
    if (mode.kind === 'data-uri') return dataUri(f.contentType, f.data);
    const stored = this.store.add({ kind: 'output', name: f.name, contentType: f.contentType, data: f.data });
    p.outputFileIds.push(stored.id);
    return outputUrl(mode.baseUrl, stored);
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
      for (const f of old.outputFileIds) this.store.delete(f);
    }
  }
}

/** Where an output file is served (GET /outputs/{id}/{name}, no auth, like a delivery URL). */
export function outputUrl(baseUrl: string, f: StoredFile): string {
  return `${baseUrl}/outputs/${f.id}/${encodeURIComponent(f.name)}`;
}
