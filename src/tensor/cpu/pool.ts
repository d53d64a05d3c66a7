// A worker_threads pool that splits big kernels by rows while the calling thread stays
// synchronous: tasks (typed arrays + numbers) are posted to workers, the caller runs its own
// share, then blocks in Atomics.wait until every worker has counted itself done.
//
// Arrays that are not already shared (op outputs live on ordinary ArrayBuffers, see storage.ts)
// are staged through a reusable arena of SharedArrayBuffers: inputs copied in, the output
// computed there and copied back. Copies are O(size) against the O(size · K) work split here.
//
// Workers start lazily on the first op big enough to split, are unref'd (they never keep the
// process alive) and load worker.js next to this module (so the pool works from compiled JS).
// Errors inside a worker come back on its MessagePort and are rethrown by the caller. (A worker
// thread killed mid-task, which Node does not do on its own, would leave the caller waiting.)

import { availableParallelism } from 'node:os';
import { MessageChannel, type MessagePort, Worker, receiveMessageOnPort } from 'node:worker_threads';
import { TASK_OUTPUT, type Task, runTask } from './tasks.js';

export interface PoolConfig {
  /** Threads sharing a big op, the calling thread included (1 = never use workers). */
  threads: number;
  /** Least FLOPs per thread for a split to pay off (posting a task costs tens of microseconds). */
  minFlopsPerThread: number;
}

export interface PoolInfo extends PoolConfig {
  /** Workers started and ready. */
  workers: number;
  /** Ops that ran split across threads since start. */
  splitOps: number;
  /** Why the pool was switched off, if it was (a worker failed to start). */
  disabled: string | null;
}

interface Slot {
  worker: Worker;
  port: MessagePort;
  index: number;
  dead: string | null;
}

const MAX_WORKERS = 255;
/** Arena buffers larger than this are dropped after each op rather than kept for reuse. */
const ARENA_KEEP_BYTES = 64 * 2 ** 20;
const READY_TIMEOUT_MS = 3_000;

function envThreads(): number {
  const v = process.env['FLUXSERVE_CPU_THREADS'];
  if (v === undefined || v === '') return Math.max(1, availableParallelism());
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS + 1) {
    throw new Error(`FLUXSERVE_CPU_THREADS must be an integer from 1 to ${MAX_WORKERS + 1} (got '${v}')`);
  }
  return n;
}

const config: PoolConfig = { threads: envThreads(), minFlopsPerThread: 2e6 };
// state[0]: tasks finished in the current dispatch; state[1 + i]: worker i is ready.
const state = new Int32Array(new SharedArrayBuffer(4 * (1 + MAX_WORKERS)));
const slots: Slot[] = [];
let splitOps = 0;
let disabled: string | null = null;
const arena = new Map<string, SharedArrayBuffer>();

/** A shared float32 array of `n` elements for task field `name` (reused between ops). */
function arenaF32(name: string, n: number): Float32Array {
  let buf = arena.get(name);
  if (!buf || buf.byteLength < n * 4) {
    buf = new SharedArrayBuffer(Math.max(n * 4, Math.min(ARENA_KEEP_BYTES, Math.floor((buf?.byteLength ?? 0) * 1.5))));
    arena.set(name, buf);
  }
  return new Float32Array(buf, 0, n);
}

/** The task with every non-shared array replaced by an arena copy, and the copy-back step. */
function stage(task: Task): { shared: Task; copyBack: () => void } {
  const shared: Record<string, unknown> = { ...task };
  const output = TASK_OUTPUT[task.kind];
  let copyBack = (): void => {};
  for (const [k, v] of Object.entries(task)) {
    if (!(v instanceof Float32Array) || v.buffer instanceof SharedArrayBuffer) continue;
    const s = arenaF32(k, v.length);
    if (k === output) copyBack = () => v.set(s);
    else s.set(v);
    shared[k] = s;
  }
  return { shared: shared as unknown as Task, copyBack };
}

function trimArena(): void {
  for (const [k, b] of arena) if (b.byteLength > ARENA_KEEP_BYTES) arena.delete(k);
}

export function configurePool(c: Partial<PoolConfig>): void {
  if (c.threads !== undefined) {
    if (!Number.isInteger(c.threads) || c.threads < 1 || c.threads > MAX_WORKERS + 1) {
      throw new Error(`cpu pool: threads must be an integer from 1 to ${MAX_WORKERS + 1} (got ${c.threads})`);
    }
    config.threads = c.threads;
  }
  if (c.minFlopsPerThread !== undefined) {
    if (!(c.minFlopsPerThread >= 0)) throw new Error(`cpu pool: minFlopsPerThread must be >= 0 (got ${c.minFlopsPerThread})`);
    config.minFlopsPerThread = c.minFlopsPerThread;
  }
}

export function poolInfo(): PoolInfo {
  return { ...config, workers: slots.filter((s) => s.dead === null).length, splitOps, disabled };
}

/** Stop all workers (tests, clean shutdown). The pool restarts on the next big op. */
export async function shutdownPool(): Promise<void> {
  const all = slots.splice(0);
  for (const s of all) {
    s.dead = 'shut down';
    Atomics.store(state, 1 + s.index, 0);
  }
  await Promise.all(all.map((s) => s.worker.terminate()));
  disabled = null;
}

function spawn(index: number): Slot {
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(new URL('./worker.js', import.meta.url), {
    workerData: { state, index, port: port2 },
    transferList: [port2],
    // A worker inherits the parent's flags; `--input-type` (node -e scripts) makes it fail to boot.
    execArgv: process.execArgv.filter((a) => !a.startsWith('--input-type')),
  });
  const slot: Slot = { worker, port: port1, index, dead: null };
  worker.on('error', (e) => {
    slot.dead = `worker error: ${e instanceof Error ? e.message : String(e)}`;
  });
  worker.on('exit', (code) => {
    slot.dead ??= `worker exited with code ${code}`;
    Atomics.store(state, 1 + index, 0);
  });
  worker.unref();
  port1.unref();
  return slot;
}

/** Up to `n` ready workers, starting them if needed (waits for their startup once). */
function readyWorkers(n: number): Slot[] {
  if (disabled !== null) return [];
  for (let i = slots.length - 1; i >= 0; i--) if (slots[i]!.dead !== null) slots.splice(i, 1); // replace dead workers
  while (slots.length < n) {
    const free = nextIndex();
    if (free < 0) break;
    slots.push(spawn(free));
  }
  const out: Slot[] = [];
  for (const s of slots) {
    if (out.length === n) break;
    if (s.dead !== null) continue;
    if (Atomics.load(state, 1 + s.index) === 0) {
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while (Atomics.load(state, 1 + s.index) === 0 && Date.now() < deadline) {
        Atomics.wait(state, 1 + s.index, 0, 50);
      }
      if (Atomics.load(state, 1 + s.index) === 0) {
        disabled = `a cpu worker did not start within ${READY_TIMEOUT_MS} ms (${s.dead ?? 'no error reported yet'}); running single-threaded`;
        s.dead = disabled;
        process.emitWarning(disabled, { code: 'FLUXSERVE_CPU_POOL' });
        void s.worker.terminate();
        return [];
      }
    }
    out.push(s);
  }
  return out;
}

function nextIndex(): number {
  const used = new Set(slots.map((s) => s.index));
  for (let i = 0; i < MAX_WORKERS; i++) if (!used.has(i)) return i;
  return -1;
}

/**
 * Run `task` over units [0, units): split across threads when `flops` (the op's total work)
 * gives each thread at least minFlopsPerThread; chunk bounds are multiples of `align`.
 */
export function parallelFor(task: Task, units: number, flops: number, align = 1): void {
  const chunks = Math.ceil(units / align);
  const want = Math.min(config.threads, chunks, Math.floor(flops / Math.max(1, config.minFlopsPerThread)));
  if (want <= 1) {
    runTask(task, 0, units);
    return;
  }
  const workers = readyWorkers(want - 1);
  if (workers.length === 0) {
    runTask(task, 0, units);
    return;
  }
  const { shared, copyBack } = stage(task);
  const n = workers.length + 1;
  const bounds: number[] = [];
  for (let i = 0; i <= n; i++) bounds.push(Math.min(units, Math.round((chunks * i) / n) * align) | 0);
  Atomics.store(state, 0, 0);
  for (let i = 0; i < workers.length; i++) {
    workers[i]!.port.postMessage({ task: shared, u0: bounds[i + 1]!, u1: bounds[i + 2]! });
  }
  splitOps++;
  try {
    runTask(shared, bounds[0]!, bounds[1]!);
  } finally {
    // Workers write into the output: never return (or throw) before they are done.
    for (;;) {
      const done = Atomics.load(state, 0);
      if (done >= workers.length) break;
      Atomics.wait(state, 0, done, 1000);
    }
  }
  for (const w of workers) {
    const m = receiveMessageOnPort(w.port);
    if (m) throw new Error(`cpu worker ${w.index} failed: ${(m.message as { error: string }).error}`);
  }
  copyBack();
  trimArena();
}
