// The in-process prediction queue: `concurrency` slots and a bounded backlog. The Cog routes ask
// for a slot now (409 when none is free, as coglet answers); the /v1 routes wait in the backlog
// (503 when it is full). Jobs are cancelled through an AbortController whose signal reaches
// predictor.predict; shutdown drops the backlog, gives running jobs a grace period, then aborts
// them and waits for them to settle, so nothing is left running.

/** One unit of work. The queue never inspects what it runs. */
export interface QueueJob {
  readonly id: string;
  /** Runs in a slot; must not reject (the service turns every outcome into a prediction status). */
  run(signal: AbortSignal): Promise<void>;
  /** Removed from the backlog before it started (cancel, shutdown, setup failure). */
  drop(reason: DropReason): void;
}

export type DropReason = 'canceled' | 'shutdown' | 'setup-failed';

/** Why a job was refused; each maps to one HTTP answer. */
export class QueueRefusal extends Error {
  constructor(
    readonly reason: 'at-capacity' | 'backlog-full' | 'closed',
    message: string,
  ) {
    super(message);
    this.name = 'QueueRefusal';
  }
}

export interface QueueOptions {
  /** Predictions run at once (Cog's concurrency.max); default 1. */
  concurrency?: number;
  /** Jobs that may wait for a slot; default 64. */
  maxQueue?: number;
}

interface Running {
  readonly job: QueueJob;
  readonly controller: AbortController;
  readonly settled: Promise<void>;
}

export class PredictionQueue {
  readonly concurrency: number;
  readonly maxQueue: number;
  private readonly backlog: QueueJob[] = [];
  private readonly running = new Map<string, Running>();
  /** Jobs start only once the queue is open (after the predictor's setup). */
  private open = false;
  private closed = false;

  constructor(opts: QueueOptions = {}) {
    this.concurrency = opts.concurrency ?? 1;
    this.maxQueue = opts.maxQueue ?? 64;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) throw new Error(`concurrency must be an integer >= 1 (got ${this.concurrency})`);
    if (!Number.isInteger(this.maxQueue) || this.maxQueue < 0) throw new Error(`maxQueue must be an integer >= 0 (got ${this.maxQueue})`);
  }

  get runningCount(): number {
    return this.running.size;
  }

  get waitingCount(): number {
    return this.backlog.length;
  }

  /** All slots busy (health-check BUSY). */
  get full(): boolean {
    return this.running.size >= this.concurrency;
  }

  has(id: string): boolean {
    return this.running.has(id) || this.backlog.some((j) => j.id === id);
  }

  /** Lets jobs start (setup finished). */
  start(): void {
    if (this.closed) return;
    this.open = true;
    this.pump();
  }

  /** Runs the job now in a free slot, or refuses (Cog: 409 at capacity). Never queues. */
  runNow(job: QueueJob): void {
    if (this.closed) throw new QueueRefusal('closed', 'The server is shutting down');
    if (!this.open || this.running.size >= this.concurrency || this.backlog.length > 0) {
      throw new QueueRefusal('at-capacity', 'At capacity - all prediction slots busy');
    }
    this.launch(job);
  }

  /** Queues the job (it starts at once when a slot is free); refuses when the backlog is full. */
  enqueue(job: QueueJob): void {
    if (this.closed) throw new QueueRefusal('closed', 'The server is shutting down');
    const canStart = this.open && this.running.size < this.concurrency && this.backlog.length === 0;
    if (!canStart && this.backlog.length >= this.maxQueue) {
      throw new QueueRefusal('backlog-full', `The queue is full (${this.maxQueue} predictions waiting); try again later`);
    }
    this.backlog.push(job);
    this.pump();
  }

  /** Cancels a waiting job (dropped at once) or aborts a running one. False when unknown. */
  cancel(id: string, reason: unknown = new Error('canceled')): 'waiting' | 'running' | false {
    const i = this.backlog.findIndex((j) => j.id === id);
    if (i >= 0) {
      const [job] = this.backlog.splice(i, 1);
      job!.drop('canceled');
      return 'waiting';
    }
    const r = this.running.get(id);
    if (r) {
      r.controller.abort(reason);
      return 'running';
    }
    return false;
  }

  /** Drops every waiting job (setup failed): they can never run. */
  failWaiting(reason: DropReason): void {
    for (const job of this.backlog.splice(0)) job.drop(reason);
  }

  /**
   * Stops taking jobs, drops the backlog, lets running jobs finish for `graceMs`, then aborts them
   * and waits until they have settled (or until `abortWaitMs` more have passed).
   */
  async shutdown(graceMs = 0, abortWaitMs = 60_000): Promise<void> {
    this.closed = true;
    this.open = false;
    this.failWaiting('shutdown');
    const all = () => Promise.all([...this.running.values()].map((r) => r.settled));
    if (this.running.size === 0) return;
    if (graceMs > 0) await within(all(), graceMs);
    for (const r of this.running.values()) r.controller.abort(new Error('server shutting down'));
    if (this.running.size > 0) await within(all(), abortWaitMs);
  }

  private pump(): void {
    while (this.open && this.running.size < this.concurrency && this.backlog.length > 0) {
      this.launch(this.backlog.shift()!);
    }
  }

  private launch(job: QueueJob): void {
    const controller = new AbortController();
    const settled = (async () => {
      await null; // registered in `running` before the job starts
      try {
        await job.run(controller.signal);
      } catch {
        // run() must not reject; a bug there must not wedge a slot.
      } finally {
        this.running.delete(job.id);
        this.pump();
      }
    })();
    this.running.set(job.id, { job, controller, settled });
  }
}

/** Waits for `p`, or `ms` at most (the timer is cleared, so it never holds the process open). */
export async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
