// Server test helpers: one real Predictor on the tiny model per test file (setup once), servers on
// a real loopback socket, wrappers that hold a prediction in its slot until the test lets it go,
// and a webhook receiver.

import { type IncomingMessage, type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { InputValidationError } from '../../src/predictor/errors.js';
import type { PredictCallbacks, PredictionResult } from '../../src/predictor/predictor.js';
import { Predictor } from '../../src/predictor/predictor.js';
import { validateInput } from '../../src/predictor/validate.js';
import { type ServerOptions, buildServer } from '../../src/server/app.js';
import type { ServedPredictor } from '../../src/server/models.js';
import { LocalPredictionService } from '../../src/server/service/local.js';
import { defaultBackend } from '../../src/tensor/registry.js';
import { ensureTinyModel } from '../../src/tiny/generate.js';

/** Small and fast on the tiny model: 256x256, one step. */
export const SMALL = Object.freeze({ prompt: 'a photo of a cat', aspect_ratio: 'custom', width: 256, height: 256, num_inference_steps: 1 });

let shared: Predictor | undefined;

/** The tiny-model Predictor shared by every test of the file, set up once. */
export function tinyPredictor(): Predictor {
  if (!shared) {
    shared = new Predictor({ modelDir: ensureTinyModel(), backend: defaultBackend(), profile: 'trainer' });
    shared.setup();
  }
  return shared;
}

export interface Running {
  readonly app: FastifyInstance;
  /** The in-process service behind both APIs, for looking at its live state. */
  readonly service: LocalPredictionService;
  /** http://127.0.0.1:PORT */
  readonly url: string;
  close(): Promise<void>;
}

export async function startServer(opts: Partial<ServerOptions> & { predictor?: ServedPredictor } = {}): Promise<Running> {
  const app = buildServer({ predictor: opts.predictor ?? tinyPredictor(), ...opts });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  const service = app.predictions;
  if (!(service instanceof LocalPredictionService)) throw new Error('buildServer must use the in-process service');
  return { app, service, url: `http://127.0.0.1:${port}`, close: () => app.close() };
}

/**
 * Delegates to a real predictor, but each predict() first waits until `release()` (or until its
 * signal aborts): tests can hold a slot busy for as long as they need, deterministically.
 */
export class GatedPredictor implements ServedPredictor {
  readonly started: string[] = [];
  private waiting: (() => void)[] = [];
  private open = false;
  /** Resolves when a predict() call has begun waiting. */
  private onStart: (() => void) | undefined;

  constructor(readonly inner: ServedPredictor) {}

  get profile() {
    return this.inner.profile;
  }

  setup(log: (line: string) => void): void | Promise<void> {
    return this.inner.setup(log);
  }

  /** Resolves once a predict() call is waiting at the gate (or has passed it). */
  nextStart(): Promise<void> {
    return new Promise((resolve) => (this.onStart = resolve));
  }

  release(): void {
    this.open = true;
    for (const w of this.waiting.splice(0)) w();
  }

  async predict(raw: Record<string, unknown>, cb: PredictCallbacks = {}): Promise<PredictionResult> {
    this.started.push(String(raw['prompt']));
    const s = this.onStart;
    this.onStart = undefined;
    s?.();
    if (!this.open) {
      await new Promise<void>((resolve, reject) => {
        this.waiting.push(resolve);
        cb.signal?.addEventListener('abort', () => reject(cb.signal!.reason), { once: true });
      });
    }
    return this.inner.predict(raw, cb);
  }
}

/** A predictor whose setup waits for `finish()` or fails with `fail()` (health-check states). */
export class SlowSetupPredictor implements ServedPredictor {
  private settle!: (err?: Error) => void;
  private readonly done = new Promise<Error | undefined>((resolve) => (this.settle = resolve));

  constructor(readonly inner: ServedPredictor) {}

  get profile() {
    return this.inner.profile;
  }

  async setup(log: (line: string) => void): Promise<void> {
    log('loading weights (slowly)');
    const err = await this.done;
    if (err) throw err;
    await this.inner.setup(log);
  }

  finish(): void {
    this.settle(undefined);
  }

  fail(err: Error): void {
    this.settle(err);
  }

  predict(raw: Record<string, unknown>, cb?: PredictCallbacks): Promise<PredictionResult> {
    return this.inner.predict(raw, cb);
  }
}

/** Records every input predict() receives, then delegates. */
export class SpyPredictor implements ServedPredictor {
  readonly inputs: Record<string, unknown>[] = [];
  constructor(readonly inner: ServedPredictor) {}
  get profile() {
    return this.inner.profile;
  }
  setup(log: (line: string) => void): void | Promise<void> {
    return this.inner.setup(log);
  }
  predict(raw: Record<string, unknown>, cb?: PredictCallbacks): Promise<PredictionResult> {
    this.inputs.push(raw);
    return this.inner.predict(raw, cb);
  }
}

/**
 * For protocol-only tests (pagination, queue limits): validates like the real predictor, then
 * returns a fixed 16x16 webp at once instead of running the model.
 */
export class StubPredictor implements ServedPredictor {
  constructor(readonly inner: ServedPredictor) {}
  get profile() {
    return this.inner.profile;
  }
  setup(): void {}
  async predict(raw: Record<string, unknown>, cb: PredictCallbacks = {}): Promise<PredictionResult> {
    const v = validateInput(this.profile, raw);
    if (v.mode !== 'txt2img')
      throw new InputValidationError([{ loc: ['body', 'input', 'image'], msg: 'image: not supported by the stub', type: 'value_error' }]);
    cb.log?.('Using seed: 7');
    const data = await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 200, g: 10, b: 10 } } })
      .webp()
      .toBuffer();
    return { files: [{ name: 'out-0.webp', contentType: 'image/webp', data }], seed: 7, predictTime: 0.001 };
  }
}

export interface ReceivedHook {
  readonly body: Record<string, unknown>;
  readonly headers: IncomingMessage['headers'];
  /** The HTTP status the receiver answered with. */
  readonly answered: number;
}

/** A webhook receiver on loopback; `failCompleted` terminal deliveries are answered 500 first. */
export async function webhookReceiver(
  failCompleted = 0,
): Promise<{ url: string; hooks: ReceivedHook[]; waitFor(pred: (h: ReceivedHook[]) => boolean, ms?: number): Promise<void>; close(): Promise<void> }> {
  const hooks: ReceivedHook[] = [];
  let failures = failCompleted;
  let notify: (() => void) | undefined;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      const terminal = ['succeeded', 'failed', 'canceled'].includes(String(body['status']));
      let status = 200;
      if (terminal && failures > 0) {
        failures--;
        status = 500;
      }
      hooks.push({ body, headers: req.headers, answered: status });
      res.writeHead(status).end();
      notify?.();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook?secret=abc`,
    hooks,
    async waitFor(pred, ms = 60_000) {
      const deadline = Date.now() + ms;
      while (!pred(hooks)) {
        if (Date.now() > deadline) throw new Error(`webhook receiver: condition not met in ${ms} ms (got ${hooks.length} hooks)`);
        await new Promise<void>((resolve) => {
          notify = resolve;
          setTimeout(resolve, 200);
        });
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

export function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

export function put(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'PUT', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

/** Decodes a data URI's bytes. */
export function fromDataUri(uri: string): { type: string; data: Buffer } {
  const m = /^data:([^;,]+);base64,(.*)$/s.exec(uri);
  if (!m) throw new Error(`not a base64 data URI: ${uri.slice(0, 40)}`);
  return { type: m[1]!, data: Buffer.from(m[2]!, 'base64') };
}

export async function waitUntil(cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface SseEvent {
  readonly id: string | undefined;
  readonly event: string;
  readonly data: string;
}

/**
 * Reads a server-sent event stream until the server ends it (or `stopWhen` says so, then the
 * connection is dropped). `onEvent` sees each event as it arrives.
 */
export async function readSse(
  url: string,
  opts: { headers?: Record<string, string>; signal?: AbortSignal; onEvent?: (e: SseEvent) => void; stopWhen?: (e: SseEvent) => boolean } = {},
): Promise<{ status: number; contentType: string | null; events: SseEvent[] }> {
  const ac = new AbortController();
  opts.signal?.addEventListener('abort', () => ac.abort(), { once: true });
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...opts.headers }, signal: ac.signal });
  const events: SseEvent[] = [];
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    return { status: res.status, contentType: res.headers.get('content-type'), events };
  }
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let sep: number;
      while ((sep = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, sep);
        buf = buf.slice(sep + 2);
        let id: string | undefined;
        let event = 'message';
        const data: string[] = [];
        for (const line of frame.split('\n')) {
          if (line.startsWith(':')) continue;
          const i = line.indexOf(':');
          const field = i < 0 ? line : line.slice(0, i);
          const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (field === 'id') id = value;
          else if (field === 'event') event = value;
          else if (field === 'data') data.push(value);
        }
        if (data.length === 0 && id === undefined) continue;
        const e = { id, event, data: data.join('\n') };
        events.push(e);
        opts.onEvent?.(e);
        if (opts.stopWhen?.(e)) {
          ac.abort();
          return { status: res.status, contentType: res.headers.get('content-type'), events };
        }
      }
    }
  } catch (e) {
    if (!ac.signal.aborted) throw e;
  }
  return { status: res.status, contentType: res.headers.get('content-type'), events };
}

/** A loopback HTTP server answering with `handler`; records every request it got. */
export async function localServer(
  handler: (req: IncomingMessage, body: Buffer, res: import('node:http').ServerResponse) => void,
): Promise<{ url: string; requests: { method: string; url: string; headers: IncomingMessage['headers']; body: Buffer }[]; close(): Promise<void> }> {
  const requests: { method: string; url: string; headers: IncomingMessage['headers']; body: Buffer }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, body, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
