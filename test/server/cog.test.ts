// The Cog prediction API (api-compat.md Part A) on a real socket with the tiny model.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import sharp from 'sharp';
import { openApiDocument } from '../../src/predictor/openapi.js';
import { GatedPredictor, SMALL, SlowSetupPredictor, fromDataUri, json, post, put, startServer, tinyPredictor, waitUntil, webhookReceiver } from './helpers.js';

const health = async (url: string) => json(await fetch(`${url}/health-check`));

describe('Cog API', () => {
  after(() => tinyPredictor().dispose());

  it('health-check: STARTING while setup runs (predictions 503), then READY', async () => {
    const slow = new SlowSetupPredictor(tinyPredictor());
    const s = await startServer({ predictor: slow });
    try {
      const h = await health(s.url);
      assert.equal(h['status'], 'STARTING');
      assert.equal((h['setup'] as Record<string, unknown>)['status'], 'starting');
      assert.match(String((h['setup'] as Record<string, unknown>)['logs']), /loading weights/);
      const r = await post(`${s.url}/predictions`, { input: SMALL });
      assert.equal(r.status, 503);
      assert.equal((await json(r))['status'], 'failed');
      slow.finish();
      await waitUntil(async () => (await health(s.url))['status'] === 'READY');
      const ready = await health(s.url);
      const setup = ready['setup'] as Record<string, unknown>;
      assert.equal(setup['status'], 'succeeded');
      assert.ok(Date.parse(String(setup['completed_at'])) >= Date.parse(String(setup['started_at'])));
    } finally {
      await s.close();
    }
  });

  it('health-check: SETUP_FAILED with the setup logs', async () => {
    const slow = new SlowSetupPredictor(tinyPredictor());
    const s = await startServer({ predictor: slow });
    try {
      slow.fail(new Error('weights file is truncated'));
      await waitUntil(async () => (await health(s.url))['status'] === 'SETUP_FAILED');
      const setup = (await health(s.url))['setup'] as Record<string, unknown>;
      assert.equal(setup['status'], 'failed');
      assert.match(String(setup['logs']), /loading weights \(slowly\)[\s\S]*weights file is truncated/);
      assert.equal((await post(`${s.url}/predictions`, { input: SMALL })).status, 503);
    } finally {
      await s.close();
    }
  });

  it('GET / and /openapi.json', async () => {
    const s = await startServer();
    try {
      const root = await json(await fetch(`${s.url}/`));
      assert.equal(root['predictions_url'], '/predictions');
      assert.equal(root['healthcheck_url'], '/health-check');
      assert.equal(root['predictions_cancel_url'], '/predictions/{prediction_id}/cancel');
      const doc = await json(await fetch(`${s.url}/openapi.json`));
      assert.deepEqual(doc, openApiDocument(tinyPredictor().profile));
    } finally {
      await s.close();
    }
  });

  it('sync prediction: 200 with data-URI outputs, logs (seed), timestamps and predict_time', async () => {
    const s = await startServer();
    try {
      const r = await post(`${s.url}/predictions`, { input: { ...SMALL, seed: 42, unknown_key: 1 } });
      assert.equal(r.status, 200);
      const p = await json(r);
      assert.equal(p['status'], 'succeeded', String(p['error']));
      assert.equal(p['error'], null);
      assert.equal(typeof p['id'], 'string');
      const output = p['output'] as string[];
      assert.equal(output.length, 1);
      assert.match(output[0]!, /^data:image\/webp;base64,/);
      const meta = await sharp(fromDataUri(output[0]!).data).metadata();
      assert.equal(meta.format, 'webp');
      assert.deepEqual([meta.width, meta.height], [256, 256]);
      assert.match(String(p['logs']), /Using seed: 42\n/);
      const input = p['input'] as Record<string, unknown>;
      assert.equal(input['seed'], 42);
      assert.equal(input['output_format'], 'webp'); // defaults injected
      assert.equal('unknown_key' in input, false); // unknown keys dropped, as Cog does
      for (const k of ['created_at', 'started_at', 'completed_at']) assert.ok(!Number.isNaN(Date.parse(String(p[k]))), k);
      assert.ok(((p['metrics'] as Record<string, number>)['predict_time'] ?? 0) > 0);
    } finally {
      await s.close();
    }
  });

  it('422 with {detail: [...]} on bad input; PUT with a mismatched id', async () => {
    const s = await startServer();
    try {
      const r = await post(`${s.url}/predictions`, { input: { num_outputs: 9, aspect_ratio: 'wide' } });
      assert.equal(r.status, 422);
      const body = await json(r);
      const detail = body['detail'] as { loc: string[]; msg: string; type: string }[];
      assert.deepEqual(
        detail.map((d) => d.loc),
        [
          ['body', 'input', 'prompt'],
          ['body', 'input', 'aspect_ratio'],
          ['body', 'input', 'num_outputs'],
        ],
      );
      assert.match(detail[2]!.msg, /between 1 and 4/);
      const m = await put(`${s.url}/predictions/abc`, { id: 'xyz', input: SMALL });
      assert.equal(m.status, 422);
      assert.deepEqual((await json(m))['detail'], [{ loc: ['body', 'id'], msg: 'prediction ID must match the ID supplied in the URL', type: 'value_error' }]);
      const w = await post(`${s.url}/predictions`, { input: SMALL, webhook: 'ftp://x', webhook_events_filter: ['start'] });
      assert.equal(w.status, 422);
    } finally {
      await s.close();
    }
  });

  it('async + busy: 202, BUSY, 409 at capacity, PUT idempotent while in flight, cancel 200 {} / 404 {}', async () => {
    const gated = new GatedPredictor(tinyPredictor());
    const s = await startServer({ predictor: gated });
    try {
      await waitUntil(async () => (await health(s.url))['status'] === 'READY');
      const started = gated.nextStart();
      const a = await put(`${s.url}/predictions/job-1`, { input: SMALL }, { prefer: 'respond-async' });
      assert.equal(a.status, 202);
      const ab = await json(a);
      assert.equal(ab['id'], 'job-1');
      assert.ok(['starting', 'processing'].includes(String(ab['status'])));
      await started;
      assert.equal((await health(s.url))['status'], 'BUSY');

      const busy = await post(`${s.url}/predictions`, { input: SMALL });
      assert.equal(busy.status, 409);
      assert.deepEqual(await json(busy), { error: 'At capacity - all prediction slots busy', status: 'failed' });
      const busyPut = await put(`${s.url}/predictions/job-2`, { input: SMALL }, { prefer: 'respond-async' });
      assert.equal(busyPut.status, 409);

      const again = await put(`${s.url}/predictions/job-1`, { input: { prompt: 'something else' } });
      assert.equal(again.status, 202);
      const ag = await json(again);
      assert.equal(ag['id'], 'job-1');
      assert.equal(ag['status'], 'processing');
      assert.equal((ag['input'] as Record<string, unknown>)['prompt'], SMALL.prompt);
      assert.equal(gated.started.length, 1, 'the repeated PUT must not start a second prediction');

      const c = await fetch(`${s.url}/predictions/job-1/cancel`, { method: 'POST' });
      assert.equal(c.status, 200);
      assert.deepEqual(await json(c), {});
      const c2 = await fetch(`${s.url}/predictions/job-1/cancel`, { method: 'POST' });
      assert.equal(c2.status, 404);
      assert.deepEqual(await json(c2), {});
      await waitUntil(async () => (await health(s.url))['status'] === 'READY');
    } finally {
      await s.close();
    }
  });

  it('cancel stops a running sync prediction: the held request returns 200 canceled', async () => {
    const s = await startServer();
    try {
      const pending = put(`${s.url}/predictions/long-1`, { input: { ...SMALL, num_inference_steps: 50 } });
      await waitUntil(async () => (await health(s.url))['status'] === 'BUSY');
      await new Promise((r) => setTimeout(r, 300));
      const c = await fetch(`${s.url}/predictions/long-1/cancel`, { method: 'POST' });
      assert.equal(c.status, 200);
      const r = await pending;
      assert.equal(r.status, 200);
      const p = await json(r);
      assert.equal(p['status'], 'canceled');
      assert.equal(p['output'], null);
      assert.ok(p['completed_at']);
      // The slot frees once the predictor has stopped at its next step.
      await waitUntil(async () => (await health(s.url))['status'] === 'READY');
    } finally {
      await s.close();
    }
  });

  it('webhooks: start..completed in order; the completed one retried after two failures', async () => {
    const rx = await webhookReceiver(2);
    const s = await startServer({ webhooks: { throttleMs: 0, backoffMs: 20 }, webhookAuthToken: 'hook-secret' });
    try {
      const r = await post(`${s.url}/predictions`, { id: 'hooked', input: SMALL, webhook: rx.url }, { prefer: 'respond-async' });
      assert.equal(r.status, 202);
      await rx.waitFor((h) => h.some((x) => x.body['status'] === 'succeeded' && x.answered === 200));
      const statuses = rx.hooks.map((h) => String(h.body['status']));
      assert.equal(statuses[0], 'processing', 'start comes first');
      assert.ok(rx.hooks.every((h) => h.body['id'] === 'hooked'));
      const firstTerminal = statuses.indexOf('succeeded');
      assert.ok(
        statuses.slice(0, firstTerminal).every((x) => x === 'processing'),
        statuses.join(','),
      );
      // Exactly three deliveries of the completed event: 500, 500, 200.
      assert.deepEqual(
        rx.hooks.slice(firstTerminal).map((h) => [h.body['status'], h.answered]),
        [
          ['succeeded', 500],
          ['succeeded', 500],
          ['succeeded', 200],
        ],
      );
      const logsSeen = rx.hooks.map((h) => String(h.body['logs']));
      for (let i = 1; i < logsSeen.length; i++) assert.ok(logsSeen[i]!.startsWith(logsSeen[i - 1]!), 'logs only grow');
      const last = rx.hooks[rx.hooks.length - 1]!.body;
      assert.match((last['output'] as string[])[0]!, /^data:image\/webp;base64,/);
      assert.equal(rx.hooks[0]!.headers['authorization'], 'Bearer hook-secret');
      assert.equal(rx.hooks[0]!.headers['content-type'], 'application/json');
    } finally {
      await s.close();
      await rx.close();
    }
  });

  it('webhook_events_filter: only the chosen events are sent', async () => {
    const rx = await webhookReceiver(0);
    const gated = new GatedPredictor(tinyPredictor());
    const s = await startServer({ predictor: gated, webhooks: { throttleMs: 0 } });
    try {
      await waitUntil(async () => (await health(s.url))['status'] === 'READY');
      const started = gated.nextStart();
      await post(`${s.url}/predictions`, { id: 'filtered', input: SMALL, webhook: rx.url, webhook_events_filter: ['completed'] }, { prefer: 'respond-async' });
      await started;
      await fetch(`${s.url}/predictions/filtered/cancel`, { method: 'POST' });
      await rx.waitFor((h) => h.length >= 1);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(
        rx.hooks.map((h) => h.body['status']),
        ['canceled'],
      );
    } finally {
      await s.close();
      await rx.close();
    }
  });

  it('POST /shutdown: 200 {}, the running prediction is failed (completed webhook), the server closes', async () => {
    const rx = await webhookReceiver(0);
    const gated = new GatedPredictor(tinyPredictor());
    const s = await startServer({ predictor: gated, webhooks: { throttleMs: 0 } });
    await waitUntil(async () => (await health(s.url))['status'] === 'READY');
    const started = gated.nextStart();
    await post(`${s.url}/predictions`, { id: 'doomed', input: SMALL, webhook: rx.url }, { prefer: 'respond-async' });
    await started;
    const r = await fetch(`${s.url}/shutdown`, { method: 'POST' });
    assert.equal(r.status, 200);
    assert.deepEqual(await json(r), {});
    await rx.waitFor((h) => h.some((x) => x.body['status'] === 'failed'));
    const last = rx.hooks[rx.hooks.length - 1]!.body;
    assert.equal(last['status'], 'failed');
    assert.match(String(last['error']), /shut down/);
    await waitUntil(async () => {
      try {
        await fetch(`${s.url}/health-check`);
        return false;
      } catch {
        return true;
      }
    }, 10_000);
    await rx.close();
  });
});
