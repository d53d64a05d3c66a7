// The built-in tiny model: deterministic files, both layouts load, and give identical outputs.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadModels, type FluxModels } from '../../src/models/load.js';
import { fromArray } from '../../src/tensor/ops.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { tidy } from '../../src/tensor/scope.js';
import { TINY_AE, TINY_FLUX, ensureTinyModel, writeTinyModel } from '../../src/tiny/generate.js';
import { imageIds, textIds } from '../../src/sampling/latents.js';

function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

function seeded(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

describe('tiny model', () => {
  let root: string;
  let a: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'fluxserve-tiny-'));
    a = join(root, 'a');
    writeTinyModel(a);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('is written byte-identically on every run, in both layouts', () => {
    const b = join(root, 'b');
    writeTinyModel(b);
    const fa = files(a);
    assert.deepEqual(fa, files(b));
    for (const need of [
      'model_index.json',
      'scheduler/scheduler_config.json',
      'transformer/config.json',
      'transformer/diffusion_pytorch_model.safetensors',
      'vae/config.json',
      'vae/diffusion_pytorch_model.safetensors',
      'text_encoder/config.json',
      'text_encoder/model.safetensors',
      'text_encoder_2/config.json',
      'text_encoder_2/model.safetensors.index.json',
      'tokenizer/vocab.json',
      'tokenizer/merges.txt',
      'tokenizer_2/tokenizer.json',
      'bfl/flux1-tiny.safetensors',
      'bfl/ae.safetensors',
      'bfl/config.json',
    ]) {
      assert.ok(fa.includes(need), `missing ${need}`);
    }
    for (const f of fa) assert.ok(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), `${f} differs between two runs`);
  });

  it("has FLUX's architecture at tiny sizes (scale factor 8, 2 + 2 blocks)", () => {
    assert.equal(TINY_FLUX.hidden_size, 64);
    assert.equal(TINY_FLUX.depth, 2);
    assert.equal(TINY_FLUX.depth_single_blocks, 2);
    assert.equal(2 ** (TINY_AE.ch_mult.length - 1), 8);
  });

  it('loads from both layouts and gives identical outputs', () => {
    const models: FluxModels[] = [loadModels(a, cpuBackend), loadModels(join(a, 'bfl'), cpuBackend)];
    try {
      assert.deepEqual(
        models.map((m) => m.layout),
        ['diffusers', 'bfl'],
      );
      const outs = models.map((m) =>
        tidy(() => {
          const c = m.clipTokenizer.encode('a red fox in the snow');
          const t = m.t5Tokenizer.encode('a red fox in the snow');
          const { pooled } = m.clip.forward([c.ids]);
          const txt = m.t5.forward([t.ids]);
          const h = 4,
            w = 6; // latent 4x6 -> 2x3 tokens
          const img = fromArray(cpuBackend, [1, (h / 2) * (w / 2), 64], seeded(6 * 64, 7));
          const v = m.flux.forward(img, imageIds(h, w), txt, textIds(txt.shape[1]!), [0.7], pooled, [3.5]);
          const z = fromArray(cpuBackend, [1, 16, h, w], seeded(16 * h * w, 9));
          return [pooled.toFloat32(), txt.toFloat32(), v.toFloat32(), m.ae.decode(z).toFloat32()];
        }),
      );
      for (let i = 0; i < 4; i++) {
        assert.ok(outs[0]![i]!.length > 0);
        assert.deepEqual(outs[0]![i], outs[1]![i], `output ${i} differs between the layouts`);
      }
    } finally {
      for (const m of models) m.dispose();
    }
  });

  it('is generated once into the cache folder and reused', () => {
    const cache = join(root, 'cache');
    const d1 = ensureTinyModel(cache);
    const stamp = statSync(join(d1, 'fluxserve-tiny.json')).mtimeMs;
    const d2 = ensureTinyModel(cache);
    assert.equal(d1, d2);
    assert.equal(statSync(join(d2, 'fluxserve-tiny.json')).mtimeMs, stamp);
    assert.deepEqual(
      readdirSync(cache).filter((n) => n.startsWith('.tiny-tmp-')),
      [],
    );
  });
});
