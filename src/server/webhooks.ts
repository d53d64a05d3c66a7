// Prediction webhooks (https://github.com/replicate/cog/blob/main/docs/http.md#webhooks, cog's
// python/cog/server/webhook.py and response_throttler.py; https://replicate.com/docs/topics/webhooks):
// POST the prediction object as JSON for the events in `webhook_events_filter` (start, output,
// logs, completed), one at a time and in order. The non-terminal ones are throttled (at most one
// per `throttleMs`; a dropped update is covered by the next one, as in Cog) and sent once; the
// terminal `completed` one is always sent and retried with exponential backoff on network errors,
// 429 and 5xx (coglet: 100 ms x 2^attempt, 12 retries). parseWebhook checks a request's two
// webhook fields the same way for both APIs.

import { type FieldProblem, ServiceError } from './errors.js';

export const WEBHOOK_EVENTS = ['start', 'output', 'logs', 'completed'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export function isWebhookEvent(v: unknown): v is WebhookEvent {
  return typeof v === 'string' && (WEBHOOK_EVENTS as readonly string[]).includes(v);
}

export interface WebhookRequest {
  readonly url: string | undefined;
  /** Deduplicated; undefined: every event. */
  readonly events: WebhookEvent[] | undefined;
}

const webhookProblem = (loc: (string | number)[], msg: string): ServiceError => {
  const field: FieldProblem = { loc: ['body', ...loc], msg, type: 'value_error', replicate: { type: 'invalid' } };
  return new ServiceError('invalid-request', msg, [field]);
};

/** `webhook` and `webhook_events_filter` of a request, checked like Cog's request model (throws ServiceError). */
export function parseWebhook(webhook: unknown, filter: unknown): WebhookRequest {
  let url: string | undefined;
  if (webhook !== undefined && webhook !== null) {
    let parsed: URL | undefined;
    try {
      parsed = typeof webhook === 'string' ? new URL(webhook) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || (webhook as string).length > 65536) {
      throw webhookProblem(['webhook'], 'webhook: must be an http or https URL');
    }
    url = webhook as string;
  }
  let events: WebhookEvent[] | undefined;
  if (filter !== undefined && filter !== null) {
    if (!Array.isArray(filter)) throw webhookProblem(['webhook_events_filter'], 'webhook_events_filter: must be a list of start, output, logs, completed');
    filter.forEach((f: unknown, i) => {
      if (!isWebhookEvent(f))
        throw webhookProblem(['webhook_events_filter', i], `webhook_events_filter: ${JSON.stringify(f)} is not one of start, output, logs, completed`);
    });
    events = [...new Set(filter as WebhookEvent[])];
  }
  return { url, events };
}

export interface WebhookOptions {
  /** Minimum interval between non-terminal sends (COG_THROTTLE_RESPONSE_INTERVAL, 0.5 s). */
  throttleMs?: number;
  /** Retries of the terminal send (12). */
  retries?: number;
  /** First retry delay; doubles each time up to 2^10 times this (100 ms). */
  backoffMs?: number;
  /** Per-request timeout (30 s). */
  timeoutMs?: number;
  /** Sent as `Authorization: Bearer ...` (WEBHOOK_AUTH_TOKEN). */
  authToken?: string | undefined;
  userAgent?: string;
  /** Where delivery failures are reported (never with the auth token). */
  onError?: (message: string) => void;
}

const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);

export class WebhookSender {
  private chain: Promise<void> = Promise.resolve();
  private lastSent = -Infinity;
  private readonly throttleMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly timeoutMs: number;

  constructor(
    readonly url: string,
    readonly events: ReadonlySet<WebhookEvent>,
    private readonly opts: WebhookOptions = {},
  ) {
    this.throttleMs = opts.throttleMs ?? 500;
    this.retries = opts.retries ?? 12;
    this.backoffMs = opts.backoffMs ?? 100;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** A non-terminal event; `body` is the prediction object at this moment. */
  notify(event: Exclude<WebhookEvent, 'completed'>, body: unknown): void {
    if (!this.events.has(event)) return;
    const now = performance.now();
    // `start` is the first send, so the throttle never drops it.
    if (event !== 'start' && now - this.lastSent < this.throttleMs) return;
    this.lastSent = now;
    const payload = JSON.stringify(body);
    this.chain = this.chain.then(() => this.sendOnce(payload).then(() => undefined));
  }

  /** The terminal event: sent after every earlier one, retried; resolves when delivered or given up. */
  complete(body: unknown): Promise<void> {
    if (!this.events.has('completed')) return this.chain;
    const payload = JSON.stringify(body);
    this.chain = this.chain.then(() => this.sendWithRetries(payload));
    return this.chain;
  }

  /** Resolves when every queued send has finished. */
  idle(): Promise<void> {
    return this.chain;
  }

  private async sendWithRetries(payload: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.sendOnce(payload);
      if (r === 'ok' || r === 'give-up') return;
      if (attempt >= this.retries) {
        this.opts.onError?.(`webhook ${redact(this.url)}: giving up after ${attempt + 1} attempts`);
        return;
      }
      await sleep(this.backoffMs * 2 ** Math.min(attempt, 10));
    }
  }

  private async sendOnce(payload: string): Promise<'ok' | 'retry' | 'give-up'> {
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': this.opts.userAgent ?? 'fluxserve' };
    if (this.opts.authToken) headers['authorization'] = `Bearer ${this.opts.authToken}`;
    try {
      const res = await fetch(this.url, { method: 'POST', headers, body: payload, redirect: 'manual', signal: AbortSignal.timeout(this.timeoutMs) });
      await res.body?.cancel();
      if (res.ok) return 'ok';
      this.opts.onError?.(`webhook ${redact(this.url)}: HTTP ${res.status}`);
      return RETRY_STATUSES.has(res.status) ? 'retry' : 'give-up';
    } catch (e) {
      this.opts.onError?.(`webhook ${redact(this.url)}: ${e instanceof Error ? e.message : String(e)}`);
      return 'retry';
    }
  }
}

/** The URL without credentials or query (which may carry secrets), for messages. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
