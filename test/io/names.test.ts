import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import {
  type AutoencoderKeyConfig,
  type FluxKeyConfig,
  type KeyShapes,
  bflAutoencoderKeys,
  bflToDiffusersTransformer,
  bflToDiffusersVae,
  bflTransformerKeys,
  detectTransformerLayout,
  detectVaeLayout,
  diffusersToBflTransformer,
  diffusersToBflVae,
  diffusersTransformerKeys,
  diffusersVaeKeys,
  stripBflPrefix,
} from '../../src/io/names.js';
import { MapSource, type TensorInfo, type TensorSource } from '../../src/io/source.js';
import { type DType, type RawArray, allocRaw, bytesOf } from '../../src/tensor/dtype.js';
import { numel } from '../../src/tensor/tensor.js';
import { FLUX_DEV } from '../../src/models/flux/config.js';

// ---------------------------------------------------------------------------------------------
// Configs

const DEV: FluxKeyConfig = FLUX_DEV; // black-forest-labs/flux util.py flux-dev (flux-spec §1.1)
const SCHNELL: FluxKeyConfig = { ...DEV, guidance_embed: false };

const AE: AutoencoderKeyConfig = {
  resolution: 256,
  in_channels: 3,
  ch: 128,
  out_ch: 3,
  ch_mult: [1, 2, 4, 4],
  num_res_blocks: 2,
  z_channels: 16,
  scale_factor: 0.3611,
  shift_factor: 0.1159,
};

// Small but with every feature: guidance, uneven in/out channels, mlp != 4h would also work.
const TINY: FluxKeyConfig = {
  in_channels: 12,
  out_channels: 8,
  vec_in_dim: 6,
  context_in_dim: 10,
  hidden_size: 16,
  mlp_ratio: 4.0,
  num_heads: 2,
  depth: 2,
  depth_single_blocks: 3,
  axes_dim: [2, 3, 3],
  theta: 10_000,
  qkv_bias: true,
  guidance_embed: true,
};
// Three levels with distinct widths, so a wrong up-block reversal changes shapes.
const TINY_AE: AutoencoderKeyConfig = {
  in_channels: 3,
  ch: 4,
  out_ch: 3,
  ch_mult: [1, 2, 3],
  num_res_blocks: 1,
  z_channels: 2,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/** mulberry32: a tiny seeded PRNG, values in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomRaw(dtype: DType, n: number, rnd: () => number): RawArray {
  const a = allocRaw(dtype, n);
  if (a instanceof Float32Array) for (let i = 0; i < n; i++) a[i] = rnd() * 2 - 1;
  else for (let i = 0; i < n; i++) a[i] = Math.floor(rnd() * 0x10000) & (dtype === 'f8e4m3' ? 0x7e : 0xffff);
  return a;
}

function randomSource(keys: KeyShapes, dtype: DType, seed: number, label = 'random'): MapSource {
  const rnd = prng(seed);
  const s = new MapSource(label);
  for (const [k, shape] of keys) s.set(k, dtype, shape, randomRaw(dtype, numel(shape), rnd));
  return s;
}

/** Names and shapes only; reading throws (for real-size key lists). */
class ShapeSource implements TensorSource {
  constructor(
    private readonly shapes: KeyShapes,
    readonly label = 'shapes',
    private readonly dtype: DType = 'bf16',
  ) {}
  keys(): string[] {
    return [...this.shapes.keys()];
  }
  info(name: string): TensorInfo | undefined {
    const s = this.shapes.get(name);
    return s && { dtype: this.dtype, shape: s };
  }
  read(name: string): RawArray {
    throw new Error(`ShapeSource: read(${name}) not expected`);
  }
}

/** Counts the reads that pass through it. */
class CountingSource implements TensorSource {
  readonly reads: string[] = [];
  constructor(private readonly inner: TensorSource) {}
  get label(): string {
    return this.inner.label;
  }
  keys(): string[] {
    return this.inner.keys();
  }
  info(name: string): TensorInfo | undefined {
    return this.inner.info(name);
  }
  read(name: string): RawArray {
    this.reads.push(name);
    return this.inner.read(name);
  }
}

function shapesOf(src: TensorSource): KeyShapes {
  const m: KeyShapes = new Map();
  for (const k of src.keys()) m.set(k, [...src.info(k)!.shape]);
  return m;
}

function sorted(m: KeyShapes): Array<[string, number[]]> {
  return [...m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function assertSameKeyShapes(actual: KeyShapes, expected: KeyShapes): void {
  const missing = [...expected.keys()].filter((k) => !actual.has(k));
  const extra = [...actual.keys()].filter((k) => !expected.has(k));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] });
  assert.deepEqual(sorted(actual), sorted(expected));
}

/** Reads every tensor of a view into a MapSource (what a file writer would do). */
function materialize(src: TensorSource, label = 'materialized'): MapSource {
  const out = new MapSource(label);
  for (const k of src.keys()) {
    const info = src.info(k)!;
    out.set(k, info.dtype, info.shape, src.read(k));
  }
  return out;
}

function bytesEqual(a: RawArray, b: RawArray): boolean {
  return Buffer.compare(Buffer.from(bytesOf(a)), Buffer.from(bytesOf(b))) === 0;
}

function assertSameSource(actual: TensorSource, expected: TensorSource): void {
  assertSameKeyShapes(shapesOf(actual), shapesOf(expected));
  for (const k of expected.keys()) {
    assert.equal(actual.info(k)!.dtype, expected.info(k)!.dtype, k);
    assert.ok(bytesEqual(actual.read(k), expected.read(k)), `values of ${k}`);
  }
}

function paramCount(m: KeyShapes): number {
  let n = 0;
  for (const s of m.values()) n += numel(s);
  return n;
}

/** Minimal safetensors header parser: 8-byte little-endian length, then a JSON object. */
function safetensorsHeader(path: string): Map<string, { dtype: string; shape: number[] }> {
  const buf = readFileSync(path);
  const len = Number(buf.readBigUInt64LE(0));
  const json = JSON.parse(buf.subarray(8, 8 + len).toString('utf8')) as Record<string, unknown>;
  const out = new Map<string, { dtype: string; shape: number[] }>();
  for (const [k, v] of Object.entries(json)) {
    if (k === '__metadata__') continue;
    const e = v as { dtype: string; shape: number[] };
    out.set(k, { dtype: e.dtype, shape: e.shape });
  }
  return out;
}

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/bfl-tiny-a', import.meta.url));

// ---------------------------------------------------------------------------------------------
// Transformer key lists

describe('bflTransformerKeys at FLUX.1 size', () => {
  // Counted from flux-spec §1.11 (every Linear has weight + bias; QK norms have one scale each):
  const embedders = 2 /* img_in */ + 2 /* txt_in */ + 4 /* time_in */ + 4 /* vector_in */;
  const guidance = 4; // guidance_in.{in,out}_layer.{weight,bias}
  // img_mod 2 + img_attn.qkv 2 + img_attn norms 2 + img_attn.proj 2 + img_mlp.0/2 4 = 12, and the same for txt
  const perDouble = 2 * 12;
  // modulation 2 + linear1 2 + linear2 2 + norms 2
  const perSingle = 8;
  const finalLayer = 4; // final_layer.linear + adaLN_modulation.1

  it('has the right number of tensors (dev and schnell)', () => {
    assert.equal(bflTransformerKeys(DEV).size, embedders + guidance + 19 * perDouble + 38 * perSingle + finalLayer);
    assert.equal(bflTransformerKeys(DEV).size, 780);
    assert.equal(bflTransformerKeys(SCHNELL).size, 776);
    assert.ok(!bflTransformerKeys(SCHNELL).has('guidance_in.in_layer.weight'));
    assert.ok(!bflTransformerKeys(SCHNELL).has('guidance_in.out_layer.bias'));
  });

  it('has the shapes of the spec table', () => {
    const k = bflTransformerKeys(DEV);
    const expect: Array<[string, number[]]> = [
      ['img_in.weight', [3072, 64]],
      ['img_in.bias', [3072]],
      ['txt_in.weight', [3072, 4096]],
      ['time_in.in_layer.weight', [3072, 256]],
      ['time_in.out_layer.weight', [3072, 3072]],
      ['guidance_in.in_layer.weight', [3072, 256]],
      ['guidance_in.out_layer.weight', [3072, 3072]],
      ['vector_in.in_layer.weight', [3072, 768]],
      ['vector_in.out_layer.weight', [3072, 3072]],
      ['double_blocks.0.img_mod.lin.weight', [18432, 3072]],
      ['double_blocks.18.txt_mod.lin.weight', [18432, 3072]],
      ['double_blocks.5.img_attn.qkv.weight', [9216, 3072]],
      ['double_blocks.5.img_attn.qkv.bias', [9216]],
      ['double_blocks.5.txt_attn.qkv.weight', [9216, 3072]],
      ['double_blocks.0.img_attn.norm.query_norm.scale', [128]],
      ['double_blocks.0.txt_attn.norm.key_norm.scale', [128]],
      ['double_blocks.0.img_attn.proj.weight', [3072, 3072]],
      ['double_blocks.0.txt_attn.proj.weight', [3072, 3072]],
      ['double_blocks.0.img_mlp.0.weight', [12288, 3072]],
      ['double_blocks.0.img_mlp.2.weight', [3072, 12288]],
      ['double_blocks.0.txt_mlp.0.weight', [12288, 3072]],
      ['double_blocks.0.txt_mlp.2.weight', [3072, 12288]],
      ['single_blocks.0.modulation.lin.weight', [9216, 3072]],
      ['single_blocks.37.linear1.weight', [21504, 3072]],
      ['single_blocks.37.linear1.bias', [21504]],
      ['single_blocks.0.norm.query_norm.scale', [128]],
      ['single_blocks.0.norm.key_norm.scale', [128]],
      ['single_blocks.37.linear2.weight', [3072, 15360]],
      ['final_layer.linear.weight', [64, 3072]],
      ['final_layer.adaLN_modulation.1.weight', [6144, 3072]],
      ['final_layer.adaLN_modulation.1.bias', [6144]],
    ];
    for (const [name, shape] of expect) assert.deepEqual(k.get(name), shape, name);
    assert.ok(!k.has('double_blocks.19.img_mod.lin.weight'));
    assert.ok(!k.has('single_blocks.38.linear1.weight'));
  });

  it('adds up to the spec parameter counts (~11.9 B; double ~340 M, single ~141.6 M)', () => {
    const k = bflTransformerKeys(DEV);
    const block = (prefix: string) => paramCount(new Map([...k].filter(([n]) => n.startsWith(prefix))));
    assert.ok(Math.abs(block('double_blocks.0.') / 1e6 - 340) < 1, `double ${block('double_blocks.0.')}`);
    assert.ok(Math.abs(block('single_blocks.0.') / 1e6 - 141.6) < 0.1, `single ${block('single_blocks.0.')}`);
    const total = paramCount(k);
    assert.ok(total > 11.85e9 && total < 11.95e9, `total ${total}`);
  });
});

describe('diffusersTransformerKeys at FLUX.1 size', () => {
  it('has the right number of tensors', () => {
    // per double block: norm1 2 + norm1_context 2 + to_q/k/v 6 + add_q/k/v 6 + 4 norms + to_out.0 2 +
    // to_add_out 2 + ff 4 + ff_context 4 = 32; per single: norm 2 + to_q/k/v 6 + 2 norms + proj_mlp 2 +
    // proj_out 2 = 14; embedders 16 with guidance; norm_out + proj_out 4.
    assert.equal(diffusersTransformerKeys(DEV).size, 16 + 19 * 32 + 38 * 14 + 4);
    assert.equal(diffusersTransformerKeys(SCHNELL).size, 12 + 19 * 32 + 38 * 14 + 4);
    assert.equal(paramCount(diffusersTransformerKeys(DEV)), paramCount(bflTransformerKeys(DEV)));
  });

  it('contains well-known exact names', () => {
    const k = diffusersTransformerKeys(DEV);
    const expect: Array<[string, number[]]> = [
      ['transformer_blocks.0.attn.norm_added_k.weight', [128]],
      ['transformer_blocks.18.attn.to_q.weight', [3072, 3072]],
      ['transformer_blocks.0.attn.add_v_proj.bias', [3072]],
      ['transformer_blocks.0.attn.to_out.0.weight', [3072, 3072]],
      ['transformer_blocks.0.attn.to_add_out.weight', [3072, 3072]],
      ['transformer_blocks.0.ff.net.0.proj.weight', [12288, 3072]],
      ['transformer_blocks.0.ff_context.net.2.weight', [3072, 12288]],
      ['transformer_blocks.0.norm1.linear.weight', [18432, 3072]],
      ['transformer_blocks.0.norm1_context.linear.weight', [18432, 3072]],
      ['single_transformer_blocks.37.proj_out.weight', [3072, 15360]],
      ['single_transformer_blocks.37.proj_mlp.weight', [12288, 3072]],
      ['single_transformer_blocks.0.attn.to_k.weight', [3072, 3072]],
      ['single_transformer_blocks.0.norm.linear.weight', [9216, 3072]],
      ['time_text_embed.guidance_embedder.linear_2.weight', [3072, 3072]],
      ['time_text_embed.timestep_embedder.linear_1.weight', [3072, 256]],
      ['time_text_embed.text_embedder.linear_1.weight', [3072, 768]],
      ['context_embedder.weight', [3072, 4096]],
      ['x_embedder.weight', [3072, 64]],
      ['norm_out.linear.weight', [6144, 3072]],
      ['proj_out.weight', [64, 3072]],
    ];
    for (const [name, shape] of expect) assert.deepEqual(k.get(name), shape, name);
    assert.ok(!k.has('single_transformer_blocks.0.attn.to_out.0.weight'), 'single blocks are pre_only');
    assert.ok(!diffusersTransformerKeys(SCHNELL).has('time_text_embed.guidance_embedder.linear_2.weight'));
  });
});

// ---------------------------------------------------------------------------------------------
// Transformer conversion

describe('transformer conversion', () => {
  for (const [label, cfg] of [
    ['dev', DEV],
    ['schnell', SCHNELL],
  ] as const) {
    it(`maps the full ${label} key lists onto each other exactly (names and shapes)`, () => {
      const bfl = new ShapeSource(bflTransformerKeys(cfg), `bfl-${label}`);
      const diff = new ShapeSource(diffusersTransformerKeys(cfg), `diffusers-${label}`);
      assertSameKeyShapes(shapesOf(bflToDiffusersTransformer(bfl)), diffusersTransformerKeys(cfg));
      assertSameKeyShapes(shapesOf(diffusersToBflTransformer(diff)), bflTransformerKeys(cfg));
      assert.equal(detectTransformerLayout(bfl.keys()), 'bfl');
      assert.equal(detectTransformerLayout(diff.keys()), 'diffusers');
    });
  }

  for (const dtype of ['f32', 'bf16'] as const) {
    it(`round-trips names, shapes and values (${dtype}, tiny config)`, () => {
      const bfl = randomSource(bflTransformerKeys(TINY), dtype, 1234);
      const diff = materialize(bflToDiffusersTransformer(bfl), 'diffusers');
      assertSameKeyShapes(shapesOf(diff), diffusersTransformerKeys(TINY));
      assertSameSource(diffusersToBflTransformer(diff), bfl);
    });
  }

  it('concatenates q, k, v (and the MLP input) rows in order', () => {
    const diff = materialize(bflToDiffusersTransformer(randomSource(bflTransformerKeys(TINY), 'f32', 7)));
    const back = diffusersToBflTransformer(diff);
    const cat = (names: string[]) => {
      const parts = names.map((n) => diff.read(n) as Float32Array);
      const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    };
    for (const s of ['weight', 'bias']) {
      const qkv = ['to_q', 'to_k', 'to_v'].map((x) => `transformer_blocks.1.attn.${x}.${s}`);
      assert.deepEqual(back.read(`double_blocks.1.img_attn.qkv.${s}`), cat(qkv));
      const add = ['add_q_proj', 'add_k_proj', 'add_v_proj'].map((x) => `transformer_blocks.0.attn.${x}.${s}`);
      assert.deepEqual(back.read(`double_blocks.0.txt_attn.qkv.${s}`), cat(add));
      const l1 = ['attn.to_q', 'attn.to_k', 'attn.to_v', 'proj_mlp'].map((x) => `single_transformer_blocks.2.${x}.${s}`);
      assert.deepEqual(back.read(`single_blocks.2.linear1.${s}`), cat(l1));
    }
    // the split sizes: q, k, v are `hidden` rows each, the rest is the MLP
    assert.deepEqual(diff.info('single_transformer_blocks.2.proj_mlp.weight')!.shape, [64, 16]);
    assert.deepEqual(diff.info('single_transformer_blocks.2.proj_mlp.bias')!.shape, [64]);
    assert.deepEqual(diff.info('single_transformer_blocks.2.attn.to_v.bias')!.shape, [16]);
  });

  it('swaps the final layer halves (shift, scale) <-> (scale, shift)', () => {
    const h = TINY.hidden_size;
    const diff = materialize(bflToDiffusersTransformer(randomSource(bflTransformerKeys(TINY), 'f32', 9)));
    // Mark every row of the diffusers weight with its row index, every bias entry with its index.
    const w = new Float32Array(2 * h * h);
    for (let r = 0; r < 2 * h; r++) w.fill(r, r * h, (r + 1) * h);
    const b = Float32Array.from({ length: 2 * h }, (_, r) => r + 0.5);
    diff.set('norm_out.linear.weight', 'f32', [2 * h, h], w);
    diff.set('norm_out.linear.bias', 'f32', [2 * h], b);
    const bfl = diffusersToBflTransformer(diff);
    const bw = bfl.read('final_layer.adaLN_modulation.1.weight') as Float32Array;
    const bb = bfl.read('final_layer.adaLN_modulation.1.bias') as Float32Array;
    // BFL's first half is shift = diffusers' second half (diffusers chunks scale, shift).
    for (let r = 0; r < 2 * h; r++) {
      const from = (r + h) % (2 * h);
      assert.equal(bw[r * h], from, `weight row ${r}`);
      assert.equal(bw[r * h + h - 1], from, `weight row ${r}`);
      assert.equal(bb[r], from + 0.5, `bias ${r}`);
    }
    assert.deepEqual(bfl.info('final_layer.adaLN_modulation.1.weight')!.shape, [2 * h, h]);
    // and back again
    const again = bflToDiffusersTransformer(materialize(bfl));
    assert.deepEqual(again.read('norm_out.linear.weight'), w);
    assert.deepEqual(again.read('norm_out.linear.bias'), b);
  });

  it('names the missing diffusers key of a concatenation', () => {
    const diff = materialize(bflToDiffusersTransformer(randomSource(bflTransformerKeys(TINY), 'f32', 3)));
    diff.entries.delete('transformer_blocks.1.attn.to_k.weight');
    const bfl = diffusersToBflTransformer(diff);
    assert.ok(bfl.keys().includes('double_blocks.1.img_attn.qkv.weight'), 'still listed');
    assert.throws(() => bfl.info('double_blocks.1.img_attn.qkv.weight'), /transformer_blocks\.1\.attn\.to_k\.weight/);
    assert.throws(() => bfl.read('double_blocks.1.img_attn.qkv.weight'), /transformer_blocks\.1\.attn\.to_k\.weight/);
    // the other tensors are unaffected
    assert.deepEqual(bfl.info('double_blocks.1.img_attn.qkv.bias')!.shape, [48]);

    diff.entries.delete('single_transformer_blocks.0.proj_mlp.bias');
    assert.throws(() => diffusersToBflTransformer(diff).read('single_blocks.0.linear1.bias'), /single_transformer_blocks\.0\.proj_mlp\.bias/);
  });

  it('refuses to concatenate parts of different dtypes, naming them', () => {
    const diff = materialize(bflToDiffusersTransformer(randomSource(bflTransformerKeys(TINY), 'f32', 4)));
    diff.set('transformer_blocks.0.attn.to_v.weight', 'bf16', [16, 16], new Uint16Array(256));
    const bfl = diffusersToBflTransformer(diff);
    assert.throws(
      () => bfl.read('double_blocks.0.img_attn.qkv.weight'),
      (e: Error) => {
        assert.match(e.message, /transformer_blocks\.0\.attn\.to_v\.weight bf16/);
        assert.match(e.message, /transformer_blocks\.0\.attn\.to_q\.weight f32/);
        return true;
      },
    );
  });

  it('passes unknown keys through under their own name', () => {
    const diff = materialize(bflToDiffusersTransformer(randomSource(bflTransformerKeys(TINY), 'f32', 5)));
    diff.set('transformer_blocks.0.attn.extra_thing.weight', 'f32', [2], new Float32Array([1, 2]));
    diff.set('some_buffer', 'i32', [1], new Int32Array([7]));
    const bfl = diffusersToBflTransformer(diff);
    assert.ok(bfl.keys().includes('transformer_blocks.0.attn.extra_thing.weight'));
    assert.deepEqual(bfl.read('some_buffer'), new Int32Array([7]));
    assert.equal(bfl.keys().length, bflTransformerKeys(TINY).size + 2);
  });

  it('reads lazily: listing reads nothing, one BFL tensor reads only its parts', () => {
    const diff = new CountingSource(materialize(bflToDiffusersTransformer(randomSource(bflTransformerKeys(TINY), 'f32', 6))));
    const bfl = diffusersToBflTransformer(diff);
    for (const k of bfl.keys()) bfl.info(k);
    assert.deepEqual(diff.reads, []);
    bfl.read('single_blocks.1.linear1.weight');
    assert.deepEqual(diff.reads, [
      'single_transformer_blocks.1.attn.to_q.weight',
      'single_transformer_blocks.1.attn.to_k.weight',
      'single_transformer_blocks.1.attn.to_v.weight',
      'single_transformer_blocks.1.proj_mlp.weight',
    ]);
    diff.reads.length = 0;
    bfl.read('img_in.weight');
    assert.deepEqual(diff.reads, ['x_embedder.weight']);
  });

  it('strips the model.diffusion_model. prefix', () => {
    const bfl = randomSource(bflTransformerKeys(TINY), 'f32', 8);
    const prefixed = new MapSource('comfy');
    for (const [k, e] of bfl.entries) prefixed.set(`model.diffusion_model.${k}`, e.dtype, e.shape, e.data);
    prefixed.set('vae.encoder.conv_in.weight', 'f32', [1], new Float32Array(1));
    assert.equal(detectTransformerLayout(prefixed.keys()), 'bfl');
    const stripped = stripBflPrefix(prefixed);
    assert.ok(stripped.keys().includes('vae.encoder.conv_in.weight'), 'other keys kept for the loader to report');
    assert.equal(stripped.keys().length, bfl.keys().length + 1);
    for (const k of bfl.keys()) assert.equal(stripped.read(k), bfl.read(k), k);
    assert.equal(stripBflPrefix(bfl), bfl, 'no prefix: the source itself');
  });

  it('detects layouts and refuses to guess', () => {
    assert.equal(detectTransformerLayout(['double_blocks.0.img_mod.lin.weight']), 'bfl');
    assert.equal(detectTransformerLayout(['transformer_blocks.0.norm1.linear.weight']), 'diffusers');
    assert.throws(() => detectTransformerLayout(['foo.weight']), /neither/);
    assert.throws(() => detectTransformerLayout([]), /neither/);
    assert.throws(() => detectTransformerLayout(['img_in.weight', 'x_embedder.weight']), /mixes/);
  });
});

// ---------------------------------------------------------------------------------------------
// VAE

describe('VAE key lists at FLUX.1 size', () => {
  it('has the right number of tensors and parameters', () => {
    // resnet: norm1, conv1, norm2, conv2 (x2 each) = 8, + 2 for nin_shortcut
    // encoder: conv_in 2 + 4x2 resnets 64 + 2 shortcuts (down.1, down.2) 4 + 3 downsamples 6
    //          + mid (2 resnets 16 + attn norm 2 + q,k,v,proj_out 8) 26 + norm_out 2 + conv_out 2 = 106
    // decoder: conv_in 2 + mid 26 + 4x3 resnets 96 + 2 shortcuts (up.1, up.0) 4 + 3 upsamples 6
    //          + norm_out 2 + conv_out 2 = 138
    assert.equal(bflAutoencoderKeys(AE).size, 106 + 138);
    assert.equal(diffusersVaeKeys(AE).size, 244);
    const p = paramCount(bflAutoencoderKeys(AE));
    assert.ok(Math.abs(p / 1e6 - 83.8) < 0.1, `params ${p}`);
    assert.equal(paramCount(diffusersVaeKeys(AE)), p);
  });

  it('has BFL shapes and structure of the spec', () => {
    const k = bflAutoencoderKeys(AE);
    const expect: Array<[string, number[]]> = [
      ['encoder.conv_in.weight', [128, 3, 3, 3]],
      ['encoder.conv_out.weight', [32, 512, 3, 3]],
      ['encoder.down.1.block.0.nin_shortcut.weight', [256, 128, 1, 1]],
      ['encoder.down.2.block.0.conv1.weight', [512, 256, 3, 3]],
      ['encoder.down.2.downsample.conv.weight', [512, 512, 3, 3]],
      ['encoder.mid.attn_1.q.weight', [512, 512, 1, 1]],
      ['encoder.mid.attn_1.proj_out.bias', [512]],
      ['encoder.norm_out.weight', [512]],
      ['decoder.conv_in.weight', [512, 16, 3, 3]],
      ['decoder.up.3.block.2.conv2.weight', [512, 512, 3, 3]],
      ['decoder.up.1.block.0.nin_shortcut.weight', [256, 512, 1, 1]],
      ['decoder.up.1.block.0.norm1.weight', [512]],
      ['decoder.up.0.block.0.nin_shortcut.weight', [128, 256, 1, 1]],
      ['decoder.up.1.upsample.conv.weight', [256, 256, 3, 3]],
      ['decoder.norm_out.weight', [128]],
      ['decoder.conv_out.weight', [3, 128, 3, 3]],
    ];
    for (const [name, shape] of expect) assert.deepEqual(k.get(name), shape, name);
    const shortcuts = [...k.keys()].filter((n) => n.includes('nin_shortcut.weight')).sort();
    assert.deepEqual(shortcuts, [
      'decoder.up.0.block.0.nin_shortcut.weight',
      'decoder.up.1.block.0.nin_shortcut.weight',
      'encoder.down.1.block.0.nin_shortcut.weight',
      'encoder.down.2.block.0.nin_shortcut.weight',
    ]);
    const down = [...k.keys()].filter((n) => n.endsWith('downsample.conv.weight')).sort();
    assert.deepEqual(
      down,
      [0, 1, 2].map((i) => `encoder.down.${i}.downsample.conv.weight`),
    );
    const up = [...k.keys()].filter((n) => n.endsWith('upsample.conv.weight')).sort();
    assert.deepEqual(
      up,
      [1, 2, 3].map((i) => `decoder.up.${i}.upsample.conv.weight`),
    );
    assert.ok(![...k.keys()].some((n) => /\.attn\.\d/.test(n)), 'no attention outside mid');
  });

  it('contains well-known diffusers names', () => {
    const k = diffusersVaeKeys(AE);
    const expect: Array<[string, number[]]> = [
      ['decoder.up_blocks.0.resnets.2.conv2.weight', [512, 512, 3, 3]],
      ['decoder.up_blocks.0.upsamplers.0.conv.weight', [512, 512, 3, 3]],
      ['decoder.up_blocks.2.resnets.0.conv_shortcut.weight', [256, 512, 1, 1]],
      ['decoder.up_blocks.3.resnets.0.conv_shortcut.weight', [128, 256, 1, 1]],
      ['encoder.mid_block.attentions.0.to_q.weight', [512, 512]],
      ['encoder.mid_block.attentions.0.to_out.0.weight', [512, 512]],
      ['decoder.mid_block.attentions.0.group_norm.bias', [512]],
      ['encoder.down_blocks.1.resnets.0.conv_shortcut.weight', [256, 128, 1, 1]],
      ['encoder.down_blocks.0.downsamplers.0.conv.weight', [128, 128, 3, 3]],
      ['encoder.conv_norm_out.weight', [512]],
      ['decoder.conv_norm_out.weight', [128]],
      ['decoder.mid_block.resnets.1.conv1.weight', [512, 512, 3, 3]],
    ];
    for (const [name, shape] of expect) assert.deepEqual(k.get(name), shape, name);
    assert.ok(!k.has('decoder.up_blocks.3.upsamplers.0.conv.weight'));
    assert.ok(!k.has('encoder.down_blocks.3.downsamplers.0.conv.weight'));
    assert.ok(![...k.keys()].some((n) => n.includes('quant_conv')));
  });

  it('maps the full key lists onto each other exactly (names and shapes)', () => {
    const bfl = new ShapeSource(bflAutoencoderKeys(AE), 'ae', 'f32');
    const diff = new ShapeSource(diffusersVaeKeys(AE), 'vae', 'f32');
    assertSameKeyShapes(shapesOf(bflToDiffusersVae(bfl)), diffusersVaeKeys(AE));
    assertSameKeyShapes(shapesOf(diffusersToBflVae(diff)), bflAutoencoderKeys(AE));
    assert.equal(detectVaeLayout(bfl.keys()), 'bfl');
    assert.equal(detectVaeLayout(diff.keys()), 'diffusers');
    assert.throws(() => detectVaeLayout(['x']), /neither/);
  });
});

describe('VAE conversion', () => {
  for (const dtype of ['f32', 'f16'] as const) {
    it(`round-trips names, shapes and values (${dtype}, tiny config)`, () => {
      const bfl = randomSource(bflAutoencoderKeys(TINY_AE), dtype, 99);
      const diff = materialize(bflToDiffusersVae(bfl), 'vae');
      assertSameKeyShapes(shapesOf(diff), diffusersVaeKeys(TINY_AE));
      assertSameSource(diffusersToBflVae(diff), bfl);
    });
  }

  it('reverses the up-block index and squeezes the 1x1 attention convs, keeping values', () => {
    const bfl = randomSource(bflAutoencoderKeys(TINY_AE), 'f32', 11);
    const diff = bflToDiffusersVae(bfl);
    assert.equal(diff.read('decoder.up_blocks.0.resnets.1.conv2.weight'), bfl.read('decoder.up.2.block.1.conv2.weight'));
    assert.equal(diff.read('decoder.up_blocks.2.resnets.0.conv_shortcut.bias'), bfl.read('decoder.up.0.block.0.nin_shortcut.bias'));
    assert.equal(diff.read('decoder.up_blocks.1.upsamplers.0.conv.weight'), bfl.read('decoder.up.1.upsample.conv.weight'));
    assert.deepEqual(diff.info('decoder.mid_block.attentions.0.to_v.weight')!.shape, [12, 12]);
    assert.deepEqual(diff.info('decoder.mid_block.attentions.0.to_v.bias')!.shape, [12]);
    assert.equal(diff.read('decoder.mid_block.attentions.0.to_v.weight'), bfl.read('decoder.mid.attn_1.v.weight'));
    // a diffusers file that kept 4-D attention weights converts too
    const d4 = materialize(diff);
    d4.set('encoder.mid_block.attentions.0.to_q.weight', 'f32', [12, 12, 1, 1], d4.read('encoder.mid_block.attentions.0.to_q.weight'));
    assert.deepEqual(diffusersToBflVae(d4).info('encoder.mid.attn_1.q.weight')!.shape, [12, 12, 1, 1]);
  });

  it('passes unknown VAE keys through', () => {
    const diff = materialize(bflToDiffusersVae(randomSource(bflAutoencoderKeys(TINY_AE), 'f32', 12)));
    diff.set('quant_conv.weight', 'f32', [1], new Float32Array(1));
    const bfl = diffusersToBflVae(diff);
    assert.ok(bfl.keys().includes('quant_conv.weight'));
    assert.equal(bfl.keys().length, bflAutoencoderKeys(TINY_AE).size + 1);
  });
});

// ---------------------------------------------------------------------------------------------
// The reference fixture (weights written by BFL's own model code)

describe('fixture bfl-tiny-a', () => {
  const config = JSON.parse(readFileSync(`${FIXTURE}/config.json`, 'utf8')) as {
    flux: FluxKeyConfig;
    ae: AutoencoderKeyConfig;
  };
  const fromHeader = (file: string): KeyShapes => {
    const m: KeyShapes = new Map();
    for (const [k, v] of safetensorsHeader(`${FIXTURE}/${file}`)) m.set(k, v.shape);
    return m;
  };

  it('bflTransformerKeys equals the fixture transformer state dict', () => {
    assertSameKeyShapes(bflTransformerKeys(config.flux), fromHeader('weights-flux.safetensors'));
  });

  it('bflAutoencoderKeys equals the fixture autoencoder state dict', () => {
    assertSameKeyShapes(bflAutoencoderKeys(config.ae), fromHeader('weights-ae.safetensors'));
  });

  it('round-trips through the diffusers layout at the fixture config', () => {
    const flux = new ShapeSource(fromHeader('weights-flux.safetensors'), 'fixture-flux', 'f32');
    assertSameKeyShapes(shapesOf(bflToDiffusersTransformer(flux)), diffusersTransformerKeys(config.flux));
    const ae = new ShapeSource(fromHeader('weights-ae.safetensors'), 'fixture-ae', 'f32');
    assertSameKeyShapes(shapesOf(bflToDiffusersVae(ae)), diffusersVaeKeys(config.ae));
    assertSameKeyShapes(shapesOf(diffusersToBflVae(new ShapeSource(diffusersVaeKeys(config.ae)))), bflAutoencoderKeys(config.ae));
  });
});
