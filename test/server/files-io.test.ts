// Files in and out: outputs PUT to `--upload-url` as Cog does (api-compat.md A.15), file inputs
// given as http(s) URLs downloaded by the server within limits (A.14), and shutdown with SSE
// subscribers and uploads in flight leaving nothing processing.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Replicate from 'replicate';
import sharp from 'sharp';
import type { PredictCallbacks, PredictionResult } from '../../src/predictor/predictor.js';
import { validateInput } from '../../src/predictor/validate.js';
import type { ServedPredictor } from '../../src/server/models.js';
import { uploadTarget } from '../../src/server/uploads.js';
import { SMALL, StubPredictor, fromDataUri, json, localServer, post, readSse, startServer, tinyPredictor, waitUntil } from './helpers.js';

/** Records the inputs it receives; answers with one small webp for every mode. */
class RecordingStub implements ServedPredictor {
  readonly inputs: Record<string, unknown>[] = [];
  constructor(readonly inner: ServedPredictor) {}
  get profile() {
    return this.inner.profile;
  }
  setup(): void {}
  async predict(raw: Record<string, unknown>, _cb: PredictCallbacks = {}): Promise<PredictionResult> {
    validateInput(this.profile, raw);
    this.inputs.push(raw);
    const data = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 1, g: 2, b: 3 } } })
      .webp()
      .toBuffer();
    return { files: [{ name: 'out-0.webp', contentType: 'image/webp', data }], seed: 1, predictTime: 0.001 };
  }
}

const sink = (lines: string[]) =>
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });

describe('--upload-url: output files PUT like Cog', () => {
  it('the URL form, Content-Type, X-Prediction-ID, raw bytes; output = request URL or Location without query', async () => {
    assert.equal(uploadTarget('http://h/up', 'out-0.webp'), 'http://h/up/out-0.webp');
    assert.equal(uploadTarget('http://h/up/', 'out-0.webp'), 'http://h/up/out-0.webp');
    let location: string | undefined;
    const rx = await localServer((_req, _body, res) => {
      res.writeHead(200, location ? { location } : {}).end();
    });
    const s = await startServer({ predictor: new StubPredictor(tinyPredictor()), uploadUrl: `${rx.url}/uploads` });
    try {
      await waitUntil(() => s.service.setup.status === 'succeeded');
      // Cog sync prediction.
      const r = await json(await post(`${s.url}/predictions`, { id: 'up-1', input: SMALL }));
      assert.equal(r['status'], 'succeeded', String(r['error']));
      assert.deepEqual(r['output'], [`${rx.url}/uploads/out-0.webp`]);
      const put = rx.requests[0]!;
      assert.equal(put.method, 'PUT');
      assert.equal(put.url, '/uploads/out-0.webp');
      assert.equal(put.headers['content-type'], 'image/webp');
      assert.equal(put.headers['x-prediction-id'], 'up-1');
      assert.equal((await sharp(put.body).metadata()).format, 'webp');

      // The receiver names the final URL (signed): the output is it, without the query string.
      location = 'https://cdn.example.com/o/abc/out-0.webp?X-Amz-Signature=s3cr3t&X-Amz-Expires=60';
      const v1 = await json(await post(`${s.url}/v1/models/fluxserve/tiny/predictions`, { input: SMALL }, { prefer: 'wait' }));
      assert.equal(v1['status'], 'succeeded');
      assert.deepEqual(v1['output'], ['https://cdn.example.com/o/abc/out-0.webp']);
      assert.equal(rx.requests[1]!.headers['x-prediction-id'], v1['id']);
    } finally {
      await s.close();
      await rx.close();
    }
  });

  it('retries 503, then fails the prediction when the upload keeps failing (URL logged without its query)', async () => {
    let answers = [503, 200];
    const rx = await localServer((_req, _body, res) => res.writeHead(answers.shift() ?? 403).end());
    const lines: string[] = [];
    const s = await startServer({
      predictor: new StubPredictor(tinyPredictor()),
      uploadUrl: `${rx.url}/up`,
      upload: { retries: 2, backoffMs: 1 },
      logger: { level: 'trace', stream: sink(lines) },
    });
    try {
      await waitUntil(() => s.service.setup.status === 'succeeded');
      const ok = await json(await post(`${s.url}/predictions`, { input: SMALL }));
      assert.equal(ok['status'], 'succeeded');
      assert.equal(rx.requests.length, 2);
      answers = [500, 500, 500, 500];
      const failed = await json(await post(`${s.url}/predictions`, { input: SMALL }));
      assert.equal(failed['status'], 'failed');
      assert.equal(failed['error'], 'Got error trying to upload output files');
      assert.match(String(failed['logs']), /HTTP 500 from http:\/\/127\.0\.0\.1:\d+\/up\/out-0\.webp \(after 3 attempts\)/);
      answers = [];
      const forbidden = await json(await post(`${s.url}/predictions`, { input: SMALL }));
      assert.equal(forbidden['status'], 'failed');
      assert.match(String(forbidden['logs']), /HTTP 403/);
      assert.equal(rx.requests.length, 2 + 3 + 1, 'a 403 is not retried');
    } finally {
      await s.close();
      await rx.close();
    }
  });

  it('without --upload-url: data URIs by default, URLs under publicBaseUrl for /v1 (unchanged)', async () => {
    const s = await startServer({ predictor: new StubPredictor(tinyPredictor()) });
    try {
      await waitUntil(() => s.service.setup.status === 'succeeded');
      const r = await json(await post(`${s.url}/predictions`, { input: SMALL }));
      assert.match((r['output'] as string[])[0]!, /^data:image\/webp;base64,/);
    } finally {
      await s.close();
    }
  });
});

describe('file inputs by http(s) URL', () => {
  let files: Awaited<ReturnType<typeof localServer>>;
  let png: Buffer;
  const lines: string[] = [];
  const recorder = new RecordingStub(tinyPredictor());
  let s: Awaited<ReturnType<typeof startServer>>;
  const MAX = 20_000;

  before(async () => {
    png = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 10, g: 200, b: 30 } } })
      .png()
      .toBuffer();
    files = await localServer((req, _body, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (path === '/img.png') return void res.writeHead(200, { 'content-type': 'image/png' }).end(png);
      if (path === '/bin') return void res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(png);
      if (path === '/redirect') return void res.writeHead(302, { location: '/img.png?X-Amz-Signature=hop' }).end();
      if (path === '/loop') return void res.writeHead(302, { location: '/loop' }).end();
      if (path === '/page.html') return void res.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>');
      if (path === '/big') return void res.writeHead(200, { 'content-type': 'image/png' }).end(Buffer.alloc(MAX + 1));
      if (path === '/big-chunked') {
        res.writeHead(200, { 'content-type': 'image/png', 'transfer-encoding': 'chunked' });
        for (let i = 0; i < 5; i++) res.write(Buffer.alloc(MAX / 4));
        return void res.end();
      }
      if (path === '/slow') {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.write(png.subarray(0, 10)); // ...and the rest never comes
        return;
      }
      res.writeHead(404).end('not found');
    });
    s = await startServer({
      predictor: recorder,
      auth: 'tok',
      inputFetch: { maxBytes: MAX, timeoutMs: 500, maxRedirects: 3 },
      logger: { level: 'trace', stream: sink(lines) },
    });
    await waitUntil(() => s.service.setup.status === 'succeeded');
  });
  after(async () => {
    await s.close();
    await files.close();
    tinyPredictor().dispose();
  });

  it('Cog: the image is downloaded and handed to the predictor as a data URI; the echoed input keeps the URL', async () => {
    const url = `${files.url}/img.png?X-Amz-Signature=secret1`;
    const r = await json(await post(`${s.url}/predictions`, { input: { prompt: 'x', image: url, num_inference_steps: 1 } }));
    assert.equal(r['status'], 'succeeded', String(r['error']));
    assert.equal((r['input'] as Record<string, unknown>)['image'], url);
    const got = fromDataUri(String(recorder.inputs.at(-1)!['image']));
    assert.equal(got.type, 'image/png');
    assert.ok(got.data.equals(png));
    // Redirects are followed (within the limit); a generic binary type is accepted.
    for (const path of ['/redirect', '/bin']) {
      const r2 = await json(await post(`${s.url}/predictions`, { input: { prompt: 'x', image: `${files.url}${path}`, num_inference_steps: 1 } }));
      assert.equal(r2['status'], 'succeeded', `${path}: ${String(r2['error'])}`);
      assert.ok(fromDataUri(String(recorder.inputs.at(-1)!['image'])).data.equals(png));
    }
  });

  it('Cog: 404, oversized, slow, redirect loop, HTML -> 422 naming the field; signed queries never echoed or logged', async () => {
    const cases: [string, RegExp][] = [
      ['/missing?X-Amz-Signature=secret2', /image: could not fetch http:\/\/127\.0\.0\.1:\d+\/missing: HTTP 404$/],
      ['/big?sig=secret3', /larger than 20000 bytes/],
      ['/big-chunked?sig=secret4', /larger than 20000 bytes/],
      ['/slow?sig=secret5', /timed out after 0\.5 s/],
      ['/loop?sig=secret6', /more than 3 redirects/],
      ['/page.html?sig=secret7', /expected an image, got content-type text\/html/],
    ];
    for (const [path, msg] of cases) {
      const res = await post(`${s.url}/predictions`, { input: { prompt: 'x', image: `${files.url}${path}` } });
      assert.equal(res.status, 422, path);
      const body = (await json(res)) as { detail: { loc: unknown[]; msg: string }[] };
      assert.deepEqual(body.detail[0]!.loc, ['body', 'input', 'image'], path);
      assert.match(body.detail[0]!.msg, msg);
      assert.doesNotMatch(body.detail[0]!.msg, /secret/);
    }
    const mask = await post(`${s.url}/predictions`, { input: { prompt: 'x', image: `${files.url}/img.png`, mask: `${files.url}/nope` } });
    assert.equal(mask.status, 422);
    assert.deepEqual(
      ((await json(mask)) as { detail: { loc: unknown[] }[] }).detail.map((d) => d.loc),
      [['body', 'input', 'mask']],
    );
    assert.equal(s.service.queue.runningCount, 0);
    assert.doesNotMatch(lines.join(''), /secret/);
  });

  it('/v1: a failed download is a 422 problem with invalid_fields naming input.image', async () => {
    const res = await post(
      `${s.url}/v1/models/fluxserve/tiny/predictions`,
      { input: { prompt: 'x', image: `${files.url}/missing?token=secret8` } },
      { authorization: 'Bearer tok' },
    );
    assert.equal(res.status, 422);
    const body = await json(res);
    assert.deepEqual(
      (body['invalid_fields'] as Record<string, unknown>[]).map((f) => [f['type'], f['field']]),
      [['file_fetch_failed', 'input.image']],
    );
    assert.doesNotMatch(JSON.stringify(body), /secret/);
  });
});

describe('file inputs by URL through the real model', () => {
  it('img2img with the official client and an http image URL (tiny model, one step)', async () => {
    const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 90, g: 20, b: 200 } } })
      .png()
      .toBuffer();
    const files = await localServer((_req, _body, res) => res.writeHead(200, { 'content-type': 'image/png' }).end(png));
    const s = await startServer({});
    try {
      const r = new Replicate({ auth: 'x', baseUrl: `${s.url}/v1`, useFileOutput: false });
      const out = (await r.run('fluxserve/tiny', {
        input: { prompt: 'a fox', image: `${files.url}/in.png`, num_inference_steps: 1, prompt_strength: 0.5 },
      })) as string[];
      const meta = await sharp(fromDataUri(out[0]!).data).metadata();
      assert.deepEqual([meta.width, meta.height], [64, 48]);
      assert.equal(files.requests.length, 1);
    } finally {
      await s.close();
      await files.close();
      tinyPredictor().dispose();
    }
  });
});

describe('shutdown with SSE subscribers and uploads in flight', () => {
  it('close() ends the streams (error, done), aborts the upload, fails the prediction; nothing left processing', async () => {
    let uploadArrived!: () => void;
    const arrived = new Promise<void>((r) => (uploadArrived = r));
    let uploadAborted = false;
    const rx = await localServer((req, _body, res) => {
      res.once('close', () => (uploadAborted = !res.writableEnded));
      uploadArrived(); // ...and never answer
      void req;
    });
    const s = await startServer({ predictor: new StubPredictor(tinyPredictor()), uploadUrl: `${rx.url}/hold` });
    try {
      await waitUntil(() => s.service.setup.status === 'succeeded');
      const created = await json(await post(`${s.url}/v1/models/fluxserve/tiny/predictions`, { input: SMALL }));
      const stream = (created['urls'] as Record<string, string>)['stream']!;
      const cogDone = post(`${s.url}/predictions`, { input: SMALL }).catch(() => undefined); // 409 or queued behind: either is fine
      const readers = [readSse(stream), readSse(`${s.url}/v1/predictions/${String(created['id'])}/stream`)];
      await arrived;
      const p = s.service.apiPrediction(String(created['id']))!;
      await waitUntil(() => p.events.subscriberCount === 2);
      assert.equal(p.status, 'processing');

      await s.close();
      assert.equal(p.status, 'failed');
      assert.match(String(p.error), /shut down/);
      for (const got of await Promise.all(readers)) {
        assert.deepEqual(
          got.events.slice(-2).map((e) => e.event),
          ['error', 'done'],
        );
        assert.match(JSON.parse(got.events.at(-2)!.data).detail, /shut down/);
      }
      assert.equal(p.events.subscriberCount, 0);
      assert.equal(s.service.openStreams, 0);
      assert.equal(s.service.queue.runningCount, 0);
      assert.ok(s.service.apiPredictions().every((x) => x.terminal));
      await waitUntil(() => uploadAborted, 5_000);
      await cogDone;
    } finally {
      await s.close();
      await rx.close();
      tinyPredictor().dispose();
    }
  });
});
