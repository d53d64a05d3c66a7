// Prediction progress as server-sent events: the events a prediction records and the SSE writer
// both APIs serve them with. Event names and data follow Replicate's `urls.stream`
// (https://replicate.com/docs/topics/predictions/streaming, and the replicate npm client's
// lib/stream.js): `output` carries plain text (one output file URL per event), `error` and `done`
// carry JSON; `log` (one log line, plain text) and `progress` (JSON {step,total}) are ours — the
// official client's `stream()` passes them through as events whose toString() is ''.

import type { FastifyReply } from 'fastify';
import type { EventSubscriber, EventSubscription } from './service/types.js';

export type StreamEventName = 'start' | 'log' | 'progress' | 'output' | 'error' | 'done';

export interface StreamEvent {
  /** 1-based, per prediction; sent as the SSE `id:` so a client can resume. */
  readonly id: number;
  readonly event: StreamEventName;
  readonly data: string;
}

/** One SSE frame: `id`, `event`, then one `data:` line per line of the data. */
export function formatEvent(e: StreamEvent): string {
  const lines = e.data.split(/\r\n|\r|\n/);
  return `id: ${e.id}\nevent: ${e.event}\n${lines.map((l) => `data: ${l}\n`).join('')}\n`;
}

/** `Last-Event-ID` as a number (0: from the start). */
export function lastEventIdOf(header: string | string[] | undefined): number {
  const raw = Array.isArray(header) ? header[0] : header;
  return raw !== undefined && /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : 0;
}

export interface SseOptions {
  /** Comment sent while nothing else is (proxies drop idle connections); 15 s like coglet. */
  readonly keepAliveMs?: number | undefined;
}

/**
 * Serves a prediction's events on `reply` (hijacked: fastify no longer owns the response) from
 * `subscribe`: the history after `Last-Event-ID`, then live events. The stream ends after `done`,
 * when the service ends the subscription, or when `subscribe` finds nothing; a client that
 * disconnects is unsubscribed at once.
 */
export async function serveEventStream(
  reply: FastifyReply,
  subscribe: (s: EventSubscriber) => Promise<EventSubscription | undefined>,
  lastEventId: string | string[] | undefined,
  opts: SseOptions = {},
): Promise<void> {
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
  let subscription: EventSubscription | undefined;
  let keepAlive: NodeJS.Timeout | undefined;
  const end = () => {
    if (ended) return;
    ended = true;
    subscription?.close();
    clearInterval(keepAlive);
    res.off('close', end);
    if (!res.writableEnded) res.end();
  };
  res.once('close', end);
  subscription = await subscribe({
    afterId: lastEventIdOf(lastEventId),
    onEvent: (e) => {
      if (ended) return;
      res.write(formatEvent(e));
      if (e.event === 'done') setImmediate(end);
    },
    onEnd: end,
  });
  if (!subscription) return end();
  if (ended) return subscription.close();
  keepAlive = setInterval(() => res.write(': keep-alive\n\n'), opts.keepAliveMs ?? 15_000);
  keepAlive.unref();
}
