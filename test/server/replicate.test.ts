// Replicate's /v1 API driven by the official `replicate` npm client (api-compat.md Parts B-D), on a
// real socket with the tiny model.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Replicate, { type FileOutput, type Prediction } from 'replicate';
import sharp from 'sharp';
import { openApiDocument } from '../../src/predictor/openapi.js';
import {
  GatedPredictor,
  type Running,
  SMALL,
  SpyPredictor,
  StubPredictor,
  fromDataUri,
  json,
  post,
  startServer,
  tinyPredictor,
  waitUntil,
  webhookReceiver,
} from './helpers.js';

const TOKEN = 'test-token';

function client(s: Running, extra: Record<string, unknown> = {}): Replicate {
  return new Replicate({ auth: TOKEN, baseUrl: `${s.url}/v1`, ...extra });
}

async function assertWebp256(data: Buffer): Promise<void> {
  const meta = await sharp(data).metadata();
  assert.equal(meta.format, 'webp');
  assert.deepEqual([meta.width, meta.height], [256, 256]);
}

describe('Replicate API with the official client', () => {
  let s: Running;
  const logLines: string[] = [];
  const responses: string[] = [];

  before(async () => {
    const logStream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logLines.push(chunk.toString('utf8'));
        cb();
      },
    });
    s = await startServer({ auth: TOKEN, logger: { level: 'trace', stream: logStream } });
  });
  after(async () => {
    await s.close();
    tinyPredictor().dispose();
  });

  /** A fetch that records every response body the client sees. */
  const recordingFetch: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    responses.push(await res.clone().text());
    return res;
  };

  it('run(owner/name) blocks (Prefer: wait) and returns FileOutputs for data-URI outputs', async () => {
    const r = client(s, { fetch: recordingFetch });
    const output = (await r.run('fluxserve/tiny', { input: { ...SMALL, seed: 3 } })) as FileOutput[];
    assert.equal(output.length, 1);
    assert.match(String(output[0]), /^data:image\/webp;base64,/);
    const blob = await output[0]!.blob();
    await assertWebp256(Buffer.from(await blob.arrayBuffer()));
  });

  it('run() with useFileOutput: false and polling (wait.mode poll) returns data-URI strings', async () => {
    const r = client(s, { useFileOutput: false, fetch: recordingFetch });
    const seen: string[] = [];
    const output = (await r.run('fluxserve/tiny', { input: SMALL, wait: { mode: 'poll', interval: 100 } }, (p) => seen.push(p.status))) as string[];
    assert.equal(typeof output[0], 'string');
    await assertWebp256(fromDataUri(output[0]!).data);
    assert.equal(seen[seen.length - 1], 'succeeded');
  });

  it('predictions.create + replicate.wait, then get; versions resolve by id and by owner/name:id', async () => {
    const r = client(s, { fetch: recordingFetch });
    const model = await r.models.get('fluxserve', 'tiny');
    assert.deepEqual(model.latest_version?.openapi_schema, openApiDocument(tinyPredictor().profile));
    const created = await r.predictions.create({ version: model.latest_version!.id, input: SMALL });
    assert.equal(created.status, 'starting');
    assert.equal(created.model, 'fluxserve/tiny');
    assert.equal(created.urls.get, `${s.url}/v1/predictions/${created.id}`);
    const done = await r.wait(created, { interval: 100 });
    assert.equal(done.status, 'succeeded');
    assert.ok((done.metrics?.predict_time ?? 0) > 0);
    const got = await r.predictions.get(created.id);
    assert.deepEqual(got.output, done.output);
    assert.match(String(got.logs), /Using seed: \d+/);

    const byRef = await r.predictions
      .create({ version: `fluxserve/tiny:${model.latest_version!.id}`, input: { prompt: 'x', num_outputs: 9 } })
      .catch((e: Error) => e);
    assert.ok(byRef instanceof Error);
    assert.match(byRef.message, /status 422/);
    assert.match(byRef.message, /num_outputs: must be between 1 and 4/);
    const bad = await r.predictions.create({ version: 'f'.repeat(64), input: SMALL }).catch((e: Error) => e);
    assert.ok(bad instanceof Error);
    assert.match(bad.message, /Invalid version or not permitted/);
  });

  it('a Buffer input is uploaded to /v1/files and reaches the predictor as the same bytes', async () => {
    const spy = new SpyPredictor(tinyPredictor());
    const s2 = await startServer({ predictor: spy, auth: TOKEN });
    try {
      const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 10, g: 120, b: 200 } } })
        .png()
        .toBuffer();
      const r = client(s2, { useFileOutput: false });
      // The client uploads the Buffer (POST /v1/files, multipart) and sends the file's URL as `image`.
      const result = await r.run('fluxserve/tiny', { input: { ...SMALL, image: png } }).then(
        (out) => ({ ok: true as const, out }),
        (e: Error) => ({ ok: false as const, e }),
      );
      assert.equal(spy.inputs.length, 1);
      const image = spy.inputs[0]!['image'];
      assert.equal(typeof image, 'string');
      const { data } = fromDataUri(image as string);
      assert.ok(data.equals(png), 'the predictor receives the uploaded bytes as a data URI');
      // The echoed input keeps the file URL; the prediction either ran img2img or failed saying why.
      const list = await r.predictions.list();
      const p = await r.predictions.get(list.results[0]!.id);
      const echoed = p.input as Record<string, unknown>;
      assert.match(String(echoed['image']), new RegExp(`^${s2.url}/v1/files/[a-z0-9]+$`));
      if (!result.ok) assert.match(result.e.message, /Prediction failed: .*image/);
      else assert.equal((result.out as string[]).length, 1);
      // The uploaded file itself.
      const id = String(echoed['image']).split('/').pop()!;
      const meta = await json(await fetch(`${s2.url}/v1/files/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } }));
      assert.equal(meta['size'], png.length);
      const dl = await fetch(`${s2.url}/v1/files/${id}/download`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.ok(Buffer.from(await dl.arrayBuffer()).equals(png));
    } finally {
      await s2.close();
    }
  });

  it('outputs as URLs when configured (served without auth); publicBaseUrl sets every absolute URL', async () => {
    const s2 = await startServer({ auth: TOKEN, outputs: 'url' });
    try {
      const r = client(s2);
      const output = (await r.run('fluxserve/tiny', { input: SMALL })) as string[];
      // http: URLs come back from the client as plain strings (api-compat C.4).
      assert.match(output[0]!, new RegExp(`^${s2.url}/outputs/[a-z0-9]+/out-0\\.webp$`));
      const res = await fetch(output[0]!);
      assert.equal(res.headers.get('content-type'), 'image/webp');
      await assertWebp256(Buffer.from(await res.arrayBuffer()));
    } finally {
      await s2.close();
    }
    const pub = 'https://img.example.test';
    const s3 = await startServer({ predictor: new StubPredictor(tinyPredictor()), auth: TOKEN, publicBaseUrl: pub });
    try {
      const r = client(s3, { useFileOutput: false });
      const p = await r.predictions.create({ model: 'fluxserve/tiny', input: SMALL, wait: true });
      assert.equal(p.status, 'succeeded');
      assert.equal(p.urls.get, `${pub}/v1/predictions/${p.id}`);
      const out = (p.output as string[])[0]!;
      assert.match(out, /^https:\/\/img\.example\.test\/outputs\/[a-z0-9]+\/out-0\.webp$/);
      // The same file, fetched here through the local socket.
      const local = await fetch(out.replace(pub, s3.url));
      assert.equal(local.status, 200);
    } finally {
      await s3.close();
    }
  });

  it('Prefer: wait that expires answers `starting`; cancel through the client', async () => {
    const gated = new GatedPredictor(tinyPredictor());
    const s2 = await startServer({ predictor: gated, auth: TOKEN });
    try {
      const r = client(s2);
      const t0 = Date.now();
      const p = await r.predictions.create({ model: 'fluxserve/tiny', input: SMALL, wait: 1 });
      assert.ok(Date.now() - t0 >= 900);
      assert.equal(p.status, 'starting');
      assert.equal((await r.predictions.get(p.id)).status, 'processing');
      const queued = await r.predictions.create({ model: 'fluxserve/tiny', input: SMALL });
      assert.equal((await r.predictions.get(queued.id)).status, 'starting');
      const c = await r.predictions.cancel(queued.id);
      assert.equal(c.status, 'canceled');
      const c2 = await r.predictions.cancel(p.id);
      assert.equal(c2.status, 'canceled');
      assert.equal((await r.predictions.get(p.id)).status, 'canceled');
      assert.equal(gated.started.length, 1, 'the canceled queued prediction never ran');
      // run() with an aborted signal cancels and returns the canceled prediction's output (null).
      const ac = new AbortController();
      const running = r.run('fluxserve/tiny', { input: SMALL, wait: { mode: 'poll', interval: 50 }, signal: ac.signal });
      await waitUntil(() => gated.started.length === 2);
      ac.abort();
      assert.equal(await running, null);
    } finally {
      await s2.close();
    }
  });

  it('queue: a full backlog answers 503 problem+json', async () => {
    const gated = new GatedPredictor(new StubPredictor(tinyPredictor()));
    const s2 = await startServer({ predictor: gated, auth: TOKEN, concurrency: 1, maxQueue: 1 });
    try {
      const r = client(s2);
      const a = await r.predictions.create({ model: 'fluxserve/tiny', input: SMALL });
      await waitUntil(() => gated.started.length === 1);
      const b = await r.predictions.create({ model: 'fluxserve/tiny', input: SMALL });
      const full = await post(`${s2.url}/v1/models/fluxserve/tiny/predictions`, { input: SMALL }, { authorization: `Bearer ${TOKEN}` });
      assert.equal(full.status, 503);
      assert.equal(full.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      const body = await json(full);
      assert.equal(body['status'], 503);
      assert.match(String(body['detail']), /queue is full/);
      gated.release();
      const done = await Promise.all([r.wait(a as Prediction, { interval: 50 }), r.wait(b as Prediction, { interval: 50 })]);
      assert.deepEqual(
        done.map((p) => p.status),
        ['succeeded', 'succeeded'],
      );
    } finally {
      await s2.close();
    }
  });

  it('list: newest first, paginated with absolute next/previous URLs', async () => {
    const s2 = await startServer({ predictor: new StubPredictor(tinyPredictor()), auth: TOKEN, pageSize: 2 });
    try {
      const r = client(s2);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await r.predictions.create({ model: 'fluxserve/tiny', input: { ...SMALL, prompt: `p${i}` }, wait: true })).id);
      const first = await r.predictions.list();
      assert.equal(first.results.length, 2);
      assert.equal(first.previous, null);
      assert.match(String(first.next), new RegExp(`^${s2.url}/v1/predictions\\?cursor=`));
      const seen: string[] = [];
      for await (const page of r.paginate(r.predictions.list)) seen.push(...page.map((p) => p.id));
      assert.deepEqual(seen, [...ids].reverse());
      const second = await json(await fetch(String(first.next), { headers: { authorization: `Bearer ${TOKEN}` } }));
      const back = await json(await fetch(String(second['previous']), { headers: { authorization: `Bearer ${TOKEN}` } }));
      assert.deepEqual(
        (back['results'] as { id: string }[]).map((p) => p.id),
        first.results.map((p) => p.id),
      );
    } finally {
      await s2.close();
    }
  });

  it('webhooks for /v1 predictions carry the Replicate prediction object, filtered', async () => {
    const rx = await webhookReceiver(1);
    const s2 = await startServer({ predictor: new StubPredictor(tinyPredictor()), auth: TOKEN, webhooks: { throttleMs: 0, backoffMs: 10 } });
    try {
      const r = client(s2);
      const p = await r.predictions.create({ model: 'fluxserve/tiny', input: SMALL, webhook: rx.url, webhook_events_filter: ['start', 'completed'] });
      await rx.waitFor((h) => h.some((x) => x.answered === 200 && x.body['status'] === 'succeeded'));
      assert.deepEqual(
        rx.hooks.map((h) => [h.body['status'], h.answered]),
        [
          ['processing', 200],
          ['succeeded', 500],
          ['succeeded', 200],
        ],
      );
      const last = rx.hooks[2]!.body;
      assert.equal(last['id'], p.id);
      assert.equal(last['model'], 'fluxserve/tiny');
      assert.equal((last['urls'] as Record<string, string>)['get'], `${s2.url}/v1/predictions/${p.id}`);
      assert.deepEqual(last['webhook_events_filter'], ['start', 'completed']);
      assert.equal(rx.hooks[0]!.headers['authorization'], undefined, 'no WEBHOOK_AUTH_TOKEN configured');
    } finally {
      await s2.close();
      await rx.close();
    }
  });

  it('auth: 401 problem+json without or with a wrong token; the token never appears in logs or responses', async () => {
    const none = await fetch(`${s.url}/v1/predictions`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    assert.deepEqual(await json(none), { title: 'Unauthenticated', detail: 'You did not pass an authentication token', status: 401 });
    const wrong = await fetch(`${s.url}/v1/models`, { headers: { authorization: 'Bearer not-the-token' } });
    assert.equal(wrong.status, 401);
    const wrongBody = await wrong.text();
    assert.doesNotMatch(wrongBody, /not-the-token/);
    const badClient = new Replicate({ auth: 'nope', baseUrl: `${s.url}/v1` });
    await assert.rejects(badClient.run('fluxserve/tiny', { input: SMALL }), /status 401/);
    // The Cog routes have no auth (as Cog), but nothing there echoes the token either.
    const cog = await post(`${s.url}/predictions`, { input: { prompt: 1 } }, { authorization: `Bearer ${TOKEN}` });
    responses.push(await cog.text());
    assert.ok(responses.length > 5);
    assert.ok(logLines.length > 5, 'the server logged requests');
    for (const text of [...responses, ...logLines]) assert.equal(text.includes(TOKEN), false, `token leaked: ${text.slice(0, 200)}`);
  });
});
