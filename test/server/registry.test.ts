// The model registry: a config file's fine-tunes served by one loaded base model (one ModelHost,
// LoRAs swapped per prediction), per-model schemas and defaults, the LoRA downloader wired in
// (fake Hugging Face on loopback, cached), the registry as a LoRA source, no token in any response
// or log. Config validation errors name the field.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { AddressInfo } from 'node:net';
import Replicate, { type FileOutput } from 'replicate';
import sharp from 'sharp';

import { buildServer } from '../../src/server/app.js';
import { ConfigError, parseServerConfig } from '../../src/server/config.js';
import { type HostedModels, hostModels } from '../../src/server/registry.js';
import { defaultBackend } from '../../src/tensor/registry.js';
import { ensureTinyModel } from '../../src/tiny/generate.js';
import { type FakeHubs, startFakeHubs } from '../helpers/fake-hubs.js';
import { tinyLora } from '../helpers/tiny-lora.js';

const H = 64;
const MLP = 256;
const HF_TOKEN = 'hf_registryTESTtoken_0123456789';

describe('server config validation', () => {
  const bad = (raw: unknown, field: string, msg?: RegExp) => {
    assert.throws(
      () => parseServerConfig(raw, '/cfg'),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.equal(e.field, field, e.message);
        assert.ok(e.message.startsWith(`${field}: `), e.message);
        if (msg) assert.match(e.message, msg);
        return true;
      },
    );
  };
  const m = (o: Record<string, unknown>) => ({ models: [{ owner: 'acme', name: 'x', ...o }] });

  it('names the field of every error', () => {
    bad({ modle: 'x' }, 'modle', /unknown field/);
    bad({ profile: 'dev' }, 'profile', /"trainer" or "hotswap"/);
    bad({ models: {} }, 'models', /list/);
    bad({ models: [{ name: 'x' }] }, 'models[0].owner', /required/);
    bad(m({ profile: 'fast' }), 'models[0].profile');
    bad(m({ lora_scale: 'big', lora: 'acme/y' }), 'models[0].lora_scale', /number/);
    bad(m({ lora: 'ftp://x/y' }), 'models[0].lora', /unsupported URL scheme/);
    bad(m({ replicate_weights: true }), 'models[0].replicate_weights', /hotswap/);
    bad(m({ profile: 'hotswap', replicate_weights: false }), 'models[0].replicate_weights', /needs a lora/);
    bad(m({ defaults: { num_inference_steps: 99 } }), 'models[0].defaults.num_inference_steps', /between 1 and 50/);
    bad(m({ defaults: { replicate_weights: 'a/b' } }), 'models[0].defaults.replicate_weights', /not an input/);
    bad(m({ extra: 1 }), 'models[0].extra', /unknown field/);
    bad(
      {
        models: [
          { owner: 'acme', name: 'x' },
          { owner: 'acme', name: 'x' },
        ],
      },
      'models[1].name',
      /twice/,
    );
    bad({ lora_cache: { max_bytes: -1 } }, 'lora_cache.max_bytes');
    bad({ hub_endpoints: { hf: 'nope' } }, 'hub_endpoints.hf', /URL/);
    bad({ allow_local_loras: 'yes' }, 'allow_local_loras');
  });

  it('resolves relative paths against the config folder and fills defaults', () => {
    const c = parseServerConfig(
      {
        model: 'weights',
        profile: 'hotswap',
        models: [
          { owner: 'a', name: 'b', lora: './l.safetensors' },
          { owner: 'a', name: 'c' },
        ],
      },
      '/cfg',
    );
    assert.equal(c.model, '/cfg/weights');
    assert.equal(c.models[0]!.lora, '/cfg/l.safetensors');
    assert.equal(c.models[0]!.profile, 'hotswap');
    assert.equal(c.models[0]!.replicateWeights, false, 'hotswap with a LoRA: fixed weights by default');
    assert.equal(c.models[1]!.replicateWeights, true);
  });
});

describe('registered fine-tunes on one base model', () => {
  let root: string;
  let hubs: FakeHubs;
  let hosted: HostedModels;
  let app: ReturnType<typeof buildServer>;
  let url: string;
  let replicate: Replicate;
  const logs: string[] = [];
  let input: Record<string, unknown>;
  let loraA: Buffer;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'fluxserve-registry-'));
    hubs = await startFakeHubs();
    const a = (loraA = tinyLora(1, [
      ['transformer_blocks.0.attn.to_q', H, H],
      ['transformer_blocks.1.ff.net.0.proj', H, MLP],
      ['proj_out', H, 64],
    ]));
    const b = tinyLora(2, [
      ['transformer_blocks.1.attn.to_out.0', H, H],
      ['single_transformer_blocks.1.proj_out', H + MLP, H],
    ]);
    const c = tinyLora(3, [['single_transformer_blocks.0.proj_mlp', H, MLP]]);
    writeFileSync(join(root, 'a.safetensors'), a);
    hubs.hfRepos.set('acme/lora-c', { files: { 'c.safetensors': c }, token: HF_TOKEN });
    const config = parseServerConfig(
      {
        models: [
          { owner: 'acme', name: 'style-a', profile: 'trainer', lora: './a.safetensors', trigger_word: 'STYLEA', defaults: { disable_safety_checker: true } },
          {
            owner: 'acme',
            name: 'style-b',
            profile: 'trainer',
            lora: `data:application/octet-stream;base64,${b.toString('base64')}`,
            lora_scale: 0.8,
            defaults: { disable_safety_checker: true, output_format: 'png' },
          },
          { owner: 'acme', name: 'hot', profile: 'hotswap', defaults: { disable_safety_checker: true } },
        ],
        lora_cache: { dir: './cache' },
        hub_endpoints: { hf: hubs.hf },
      },
      root,
    );
    hosted = hostModels(config, {
      modelDir: ensureTinyModel(),
      backend: defaultBackend(),
      baseName: 'fluxserve/tiny',
      profile: 'trainer',
      env: { HF_TOKEN },
      loraDataDir: join(root, 'data'),
    });
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        logs.push(chunk.toString('utf8'));
        done();
      },
    });
    app = buildServer({ predictor: hosted.cogPredictor, models: hosted.models, logger: { level: 'debug', stream } });
    await app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    replicate = new Replicate({ auth: 'x', baseUrl: `${url}/v1` });
    await app.predictions.start();
    const raw = Buffer.alloc(64 * 48 * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 37) % 251;
    const png = await sharp(raw, { raw: { width: 64, height: 48, channels: 3 } })
      .png()
      .toBuffer();
    input = {
      prompt: 'a fox',
      image: `data:image/png;base64,${png.toString('base64')}`,
      prompt_strength: 1,
      num_inference_steps: 1,
      seed: 7,
      output_format: 'png',
    };
  });
  after(async () => {
    await app?.close();
    hosted?.dispose();
    await hubs?.close();
    rmSync(root, { recursive: true, force: true });
  });

  const runModel = async (model: `${string}/${string}`, extra: Record<string, unknown> = {}) => {
    const out = (await replicate.run(model, { input: { ...input, ...extra } })) as FileOutput[];
    assert.equal(out.length, 1);
    return Buffer.from(await (await out[0]!.blob()).arrayBuffer());
  };

  it('serves each model with its own schema and one shared host', async () => {
    const list = (await (await fetch(`${url}/v1/models`)).json()) as {
      results: {
        owner: string;
        name: string;
        description: string;
        latest_version: { id: string; openapi_schema: { components: { schemas: { Input: { properties: Record<string, unknown> } } } } };
      }[];
    };
    const names = list.results.map((m) => `${m.owner}/${m.name}`);
    assert.deepEqual(names, ['fluxserve/tiny', 'acme/style-a', 'acme/style-b', 'acme/hot']);
    const props = (n: string) =>
      Object.keys(list.results.find((m) => `${m.owner}/${m.name}` === n)!.latest_version.openapi_schema.components.schemas.Input.properties);
    assert.ok(!props('acme/style-a').includes('replicate_weights'));
    assert.ok(props('acme/hot').includes('replicate_weights'));
    assert.match(list.results[1]!.description, /trigger word: STYLEA/);
    const one = (await (await fetch(`${url}/v1/models/acme/hot`)).json()) as { latest_version: { id: string } };
    assert.equal(one.latest_version.id, list.results[3]!.latest_version.id);
    const hosts = new Set(hosted.models.map((m) => (m.predictor as unknown as { host: unknown }).host));
    assert.equal(hosts.size, 1);
  });

  it('two fine-tunes give different outputs; alternating A, B, A gives A again bit for bit', async () => {
    const a1 = await runModel('acme/style-a');
    const b1 = await runModel('acme/style-b');
    const a2 = await runModel('acme/style-a');
    const base = await runModel('fluxserve/tiny', { disable_safety_checker: true });
    assert.ok(!a1.equals(b1), 'A and B differ');
    assert.ok(!a1.equals(base) && !b1.equals(base), 'both differ from the base');
    assert.ok(a1.equals(a2), 'A again is identical');
    const p = (await replicate.predictions.list()).results[1]!;
    const full = await replicate.predictions.get(p.id);
    assert.match(String(full.logs), /does not contain this model's trigger word "STYLEA"/);
  });

  it('hotswap replicate_weights from (fake) Hugging Face downloads once, then comes from the cache', async () => {
    const ref = 'https://huggingface.co/acme/lora-c/resolve/main/c.safetensors';
    const before = hubs.hits.length;
    const c1 = await runModel('acme/hot', { replicate_weights: ref });
    const afterFirst = hubs.hits.length;
    assert.ok(afterFirst > before, 'the first prediction downloads');
    assert.ok(
      hubs.hits.slice(before).some((h) => h.authorization === `Bearer ${HF_TOKEN}` && h.server === 'hf'),
      'the server token is sent to the hub',
    );
    await runModel('acme/style-a'); // another LoRA in between
    const c2 = await runModel('acme/hot', { replicate_weights: ref });
    assert.equal(hubs.hits.length, afterFirst, 'no hub request the second time');
    assert.ok(c1.equals(c2));
    assert.equal(hosted.cache.stats.misses, 1);
  });

  it('extra_lora "owner/name" of a registered fine-tune resolves through the registry, without network', async () => {
    const before = hubs.hits.length;
    const viaRegistry = await runModel('acme/hot', { extra_lora: 'acme/style-a' });
    assert.equal(hubs.hits.length, before, 'no hub request');
    const p = (await replicate.predictions.list()).results[0]!;
    const full = await replicate.predictions.get(p.id);
    assert.match(String(full.logs), /acme\/style-a \(registered: /);
    // The same LoRA as giving A's bytes directly.
    assert.ok(viaRegistry.equals(await runModel('acme/hot', { extra_lora: `data:application/octet-stream;base64,${loraA.toString('base64')}` })));
  });

  it('a malformed LoRA reference is refused when the prediction is created, naming the field', async () => {
    const before = (await replicate.predictions.list()).results.length;
    for (const [field, ref] of [
      ['replicate_weights', 'huggingface.co/only-an-owner'],
      ['extra_lora', '/etc/some/local.safetensors'],
    ] as const) {
      const res = await fetch(`${url}/v1/models/acme/hot/predictions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer x' },
        body: JSON.stringify({ input: { prompt: 'x', [field]: ref } }),
      });
      assert.equal(res.status, 422, field);
      const body = (await res.json()) as { invalid_fields: { field: string; description: string }[] };
      assert.equal(body.invalid_fields[0]!.field, `input.${field}`);
      assert.match(body.invalid_fields[0]!.description, new RegExp(`^${field}: `));
    }
    assert.equal((await replicate.predictions.list()).results.length, before, 'nothing was queued');
  });

  it('the Cog routes serve the default model; no token appears in any response or log', async () => {
    const r = await fetch(`${url}/predictions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: { ...input, disable_safety_checker: true } }),
    });
    assert.equal(r.status, 200);
    const body = await r.text();
    assert.ok(!body.includes(HF_TOKEN));
    const all = (await replicate.predictions.list()).results;
    for (const p of all) {
      const full = JSON.stringify(await replicate.predictions.get(p.id));
      assert.ok(!full.includes(HF_TOKEN) && !full.includes(hubs.signature), 'no token or signed query in a prediction');
    }
    assert.ok(logs.length > 0);
    assert.ok(!logs.join('').includes(HF_TOKEN) && !logs.join('').includes(hubs.signature), 'no token in the server log');
  });
});
