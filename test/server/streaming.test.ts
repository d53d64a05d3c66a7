// Prediction progress as server-sent events: `urls.stream` with the official client's stream(),
// late subscribers (history, Last-Event-ID), live events, unsubscribe on disconnect, failures,
// and the Cog-side stream of an in-flight prediction.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Replicate, { type Prediction } from 'replicate';
import sharp from 'sharp';
import { validateInput } from '../../src/predictor/validate.js';
import type { PredictCallbacks, PredictionResult } from '../../src/predictor/predictor.js';
import type { ServedPredictor } from '../../src/server/models.js';
import { GatedPredictor, type Running, SMALL, fromDataUri, json, post, readSse, startServer, tinyPredictor, waitUntil } from './helpers.js';

const TOKEN = 'sse-token';
const auth = { authorization: `Bearer ${TOKEN}` };

/** Logs and reports `steps` steps, then returns a small webp (or fails, when `fail` is set). */
class ProgressStub implements ServedPredictor {
  constructor(
    readonly inner: ServedPredictor,
    private readonly fail?: string,
  ) {}
  get profile() {
    return this.inner.profile;
  }
  setup(): void {}
  async predict(raw: Record<string, unknown>, cb: PredictCallbacks = {}): Promise<PredictionResult> {
    const v = validateInput(this.profile, raw);
    const total = Number((v.input as Record<string, unknown>)['num_inference_steps']);
    cb.log?.('Using seed: 7');
    for (let step = 1; step <= total; step++) {
      await new Promise((r) => setImmediate(r));
      cb.signal?.throwIfAborted();
      cb.log?.(`step ${step}/${total}`);
      cb.progress?.({ step, total, itPerSec: 1 });
    }
    if (this.fail) throw new Error(this.fail);
    const data = await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 0, g: 90, b: 0 } } })
      .webp()
      .toBuffer();
    return {
      files: [
        { name: 'out-0.webp', contentType: 'image/webp', data },
        { name: 'out-1.webp', contentType: 'image/webp', data },
      ],
      seed: 7,
      predictTime: 0.001,
    };
  }
}

describe('prediction events (SSE)', () => {
  let s: Running;
  before(async () => {
    s = await startServer({ auth: TOKEN });
  });
  after(async () => {
    await s.close();
    tinyPredictor().dispose();
  });

  it('replicate.stream() follows urls.stream: progress and log events, each output, then done', async () => {
    const r = new Replicate({ auth: TOKEN, baseUrl: `${s.url}/v1` });
    const events: { event: string; data: unknown; text: string }[] = [];
    for await (const e of r.stream('fluxserve/tiny', { input: { ...SMALL, num_inference_steps: 2, seed: 1 } })) {
      events.push({ event: e.event, data: e.data, text: String(e) });
    }
    const names = events.map((e) => e.event);
    assert.deepEqual(
      events.filter((e) => e.event === 'progress').map((e) => JSON.parse(String(e.data))),
      [
        { step: 1, total: 2 },
        { step: 2, total: 2 },
      ],
    );
    assert.ok(
      events.some((e) => e.event === 'log' && /^step 2\/2/.test(String(e.data))),
      names.join(','),
    );
    const outputs = events.filter((e) => e.event === 'output');
    assert.equal(outputs.length, 1);
    assert.match(outputs[0]!.text, /^data:image\/webp;base64,/);
    const meta = await sharp(fromDataUri(outputs[0]!.text).data).metadata();
    assert.deepEqual([meta.width, meta.height], [256, 256]);
    assert.equal(names.at(-1), 'done');
    assert.deepEqual(JSON.parse(String(events.at(-1)!.data)), {});
    assert.ok(names.indexOf('output') > names.lastIndexOf('progress'));
    // Non-output events stringify to '' for the client, so `for await ... write(String(e))` prints only outputs.
    assert.equal(events.find((e) => e.event === 'log')!.text, '');
  });

  it('late subscribers get the whole history and the stream closes; Last-Event-ID resumes; auth rules', async () => {
    const res = await post(`${s.url}/v1/models/fluxserve/tiny/predictions`, { input: { ...SMALL, seed: 2 } }, { ...auth, prefer: 'wait' });
    const p = (await json(res)) as unknown as Prediction & { urls: { stream: string } };
    assert.equal(p.status, 'succeeded');
    assert.match(p.urls.stream, new RegExp(`^${s.url}/v1/streams/[a-z2-7]{26}$`));

    const viaKey = await readSse(p.urls.stream); // no token: the URL is the credential
    assert.equal(viaKey.status, 200);
    assert.match(String(viaKey.contentType), /^text\/event-stream/);
    const names = viaKey.events.map((e) => e.event);
    assert.deepEqual(
      names.filter((n) => n !== 'log'),
      ['progress', 'output', 'done'],
    );
    assert.deepEqual(
      viaKey.events.map((e) => Number(e.id)),
      viaKey.events.map((_, i) => i + 1),
    );
    assert.equal(viaKey.events.find((e) => e.event === 'output')!.data, (p.output as string[])[0]);

    const viaId = await readSse(`${s.url}/v1/predictions/${p.id}/stream`, { headers: auth });
    assert.deepEqual(viaId.events, viaKey.events);
    const resumed = await readSse(`${s.url}/v1/predictions/${p.id}/stream`, { headers: { ...auth, 'last-event-id': String(viaKey.events.length - 2) } });
    assert.deepEqual(resumed.events, viaKey.events.slice(-2));

    assert.equal((await readSse(`${s.url}/v1/predictions/${p.id}/stream`)).status, 401);
    assert.equal((await readSse(`${s.url}/v1/streams/nosuchkey`)).status, 404);
    assert.equal((await readSse(`${s.url}/v1/predictions/nosuchid/stream`, { headers: auth })).status, 404);
  });
});

describe('prediction events: live subscribers', () => {
  it('live events after the history; a client that leaves is unsubscribed; the stream ends at done', async () => {
    const gated = new GatedPredictor(new ProgressStub(tinyPredictor()));
    const s = await startServer({ predictor: gated, auth: TOKEN, sseKeepAliveMs: 20 });
    try {
      await waitUntil(() => s.service.setup.status === 'succeeded');
      const started = gated.nextStart();
      const created = await json(await post(`${s.url}/v1/models/fluxserve/tiny/predictions`, { input: { ...SMALL, num_inference_steps: 3 } }, auth));
      const id = String(created['id']);
      const stream = (created['urls'] as Record<string, string>)['stream']!;
      await started;
      const p = s.service.apiPrediction(id)!;

      // One subscriber leaves before anything happened.
      const leaver = new AbortController();
      const leaving = readSse(stream, { signal: leaver.signal });
      await waitUntil(() => p.events.subscriberCount === 1);
      leaver.abort();
      await leaving.catch(() => undefined);
      await waitUntil(() => p.events.subscriberCount === 0 && s.service.openStreams === 0, 5_000);

      // Another stays for the whole prediction: keep-alive comments do not disturb it.
      const seen: string[] = [];
      const staying = readSse(stream, { onEvent: (e) => seen.push(e.event) });
      await waitUntil(() => p.events.subscriberCount === 1);
      await new Promise((r) => setTimeout(r, 60)); // a few keep-alive comments
      gated.release();
      const got = await staying;
      assert.deepEqual(
        got.events.map((e) => e.event).filter((n) => n !== 'log'),
        ['progress', 'progress', 'progress', 'output', 'output', 'done'],
      );
      assert.deepEqual(
        got.events.filter((e) => e.event === 'log').map((e) => e.data),
        ['Using seed: 7', 'step 1/3', 'step 2/3', 'step 3/3'],
      );
      assert.equal(p.events.subscriberCount, 0);
      await waitUntil(() => s.service.openStreams === 0, 5_000);
    } finally {
      await s.close();
    }
  });

  it('a failed prediction sends error then done; replicate.stream() rejects with it', async () => {
    const s = await startServer({ predictor: new ProgressStub(tinyPredictor(), 'the GPU caught fire'), auth: TOKEN });
    try {
      await waitUntil(() => s.service.setup.status === 'succeeded');
      const r = new Replicate({ auth: TOKEN, baseUrl: `${s.url}/v1` });
      await assert.rejects(async () => {
        for await (const _ of r.stream('fluxserve/tiny', { input: { ...SMALL } })) {
          // drain
        }
      }, /GPU caught fire/);
      const list = await json(await fetch(`${s.url}/v1/predictions`, { headers: auth }));
      const id = String((list['results'] as Record<string, unknown>[])[0]!['id']);
      const got = await readSse(`${s.url}/v1/predictions/${id}/stream`, { headers: auth });
      const tail = got.events.slice(-2);
      assert.deepEqual(
        tail.map((e) => e.event),
        ['error', 'done'],
      );
      assert.deepEqual(JSON.parse(tail[0]!.data), { detail: 'the GPU caught fire' });
      assert.deepEqual(JSON.parse(tail[1]!.data), { reason: 'error' });
    } finally {
      await s.close();
    }
  });

  it('Cog: GET /predictions/{id}/stream while in flight; canceled ends with done {reason: canceled}', async () => {
    const gated = new GatedPredictor(new ProgressStub(tinyPredictor()));
    const s = await startServer({ predictor: gated });
    try {
      await waitUntil(() => s.service.setup.status === 'succeeded');
      const started = gated.nextStart();
      const r = await post(`${s.url}/predictions`, { id: 'cog-sse', input: SMALL }, { prefer: 'respond-async' });
      assert.equal(r.status, 202);
      await started;
      const reading = readSse(`${s.url}/predictions/cog-sse/stream`);
      await waitUntil(() => s.service.inFlightPrediction('cog-sse')!.events.subscriberCount === 1);
      assert.equal((await fetch(`${s.url}/predictions/cog-sse/cancel`, { method: 'POST' })).status, 200);
      const got = await reading;
      assert.deepEqual(
        got.events.map((e) => e.event),
        ['done'],
      );
      assert.deepEqual(JSON.parse(got.events[0]!.data), { reason: 'canceled' });
      assert.equal((await readSse(`${s.url}/predictions/cog-sse/stream`)).status, 404);
    } finally {
      await s.close();
    }
  });
});
