// Prediction progress as server-sent events. Each prediction owns an EventLog: what happened so far
// (history) and who is listening now (subscribers). A subscriber first gets the history (from just
// after `Last-Event-ID` when the client sends one), then live events; the log closes after `done`,
// which ends every stream. Event names and data follow Replicate's `urls.stream` (api-compat.md
// B.9): `output` carries plain text (one output file URL per event), `error` and `done` carry JSON;
// `log` (one log line, plain text) and `progress` (JSON {step,total}) are ours — the official
// client's `stream()` passes them through as events whose toString() is ''.

import type { FastifyReply } from 'fastify';

export type StreamEventName = 'start' | 'log' | 'progress' | 'output' | 'error' | 'done';

export interface StreamEvent {
  /** 1-based, per prediction; sent as the SSE `id:` so a client can resume. */
  readonly id: number;
  readonly event: StreamEventName;
  readonly data: string;
}

export type Subscriber = (e: StreamEvent) => void;

export class EventLog {
  private readonly history: StreamEvent[] = [];
  private readonly subscribers = new Set<Subscriber>();
  private closedFlag = false;

  /** History kept for late subscribers (the oldest `log`/`progress` events go first beyond it). */
  constructor(private readonly maxHistory = 4096) {}

  get closed(): boolean {
    return this.closedFlag;
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  get events(): readonly StreamEvent[] {
    return this.history;
  }

  emit(event: StreamEventName, data: string): void {
    if (this.closedFlag) return;
    const e: StreamEvent = { id: this.nextId++, event, data };
    this.history.push(e);
    if (this.history.length > this.maxHistory) {
      const i = this.history.findIndex((x) => x.event === 'log' || x.event === 'progress');
      if (i >= 0) this.history.splice(i, 1);
    }
    for (const s of [...this.subscribers]) s(e);
    if (event === 'done') {
      this.closedFlag = true;
      this.subscribers.clear();
    }
  }

  private nextId = 1;

  /**
   * Replays the history after `afterId` to `fn`, then (unless closed) delivers live events until
   * the returned function is called or `done` has been delivered.
   */
  subscribe(fn: Subscriber, afterId = 0): () => void {
    for (const e of this.history) if (e.id > afterId) fn(e);
    if (this.closedFlag) return () => {};
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
    };
  }
}

/** One SSE frame: `id`, `event`, then one `data:` line per line of the data. */
export function formatEvent(e: StreamEvent): string {
  const lines = e.data.split(/\r\n|\r|\n/);
  return `id: ${e.id}\nevent: ${e.event}\n${lines.map((l) => `data: ${l}\n`).join('')}\n`;
}

export interface SseOptions {
  /** Comment sent while nothing else is (proxies drop idle connections); 15 s like coglet. */
  readonly keepAliveMs?: number;
  /** Called once when this stream ends, whoever ended it. */
  readonly onEnd?: () => void;
}

/**
 * Serves `log` as an event stream on `reply` (hijacked: fastify no longer owns the response). The
 * stream ends after `done`; a client that disconnects is unsubscribed at once. Returns a function
 * that ends the stream from the server side.
 */
export function serveEventStream(reply: FastifyReply, log: EventLog, lastEventId: string | string[] | undefined, opts: SseOptions = {}): () => void {
  const afterRaw = Array.isArray(lastEventId) ? lastEventId[0] : lastEventId;
  const after = afterRaw !== undefined && /^\d+$/.test(afterRaw.trim()) ? Number(afterRaw.trim()) : 0;
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.write(': fluxserve prediction events\n\n');
  let ended = false;
  let unsubscribe: () => void = () => {};
  let keepAlive: NodeJS.Timeout | undefined;
  const end = () => {
    if (ended) return;
    ended = true;
    unsubscribe();
    clearInterval(keepAlive);
    res.off('close', end);
    if (!res.writableEnded) res.end();
    opts.onEnd?.();
  };
  res.once('close', end);
  unsubscribe = log.subscribe((e) => {
    if (ended) return;
    res.write(formatEvent(e));
    if (e.event === 'done') setImmediate(end);
  }, after);
  if (log.closed) {
    end();
    return end;
  }
  if (!ended) {
    keepAlive = setInterval(() => res.write(': keep-alive\n\n'), opts.keepAliveMs ?? 15_000);
    keepAlive.unref();
  }
  return end;
}
