// T5 v1.1 encoder: relative position buckets (docs/references.md, "Test vectors"), config parsing,
// loading errors, and the forward pass on tiny random weights against a float64 reference written
// here from the HF modeling_t5.py definitions (a second, independent implementation).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MapSource } from '../../src/io/source.js';
import { T5_V1_1_XXL, T5EncoderModel, type T5Config, parseT5Config, relativePositionBucket, relativePositionBuckets } from '../../src/models/t5.js';
import { CheckpointError } from '../../src/models/weights.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { scopeDepth } from '../../src/tensor/scope.js';
import { type WeightSpec, asF64, matmulT, randomSource, randomTokens, relErr, softmaxRow } from './textenc-helpers.js';

const TINY: T5Config = parseT5Config({
  vocab_size: 40,
  d_model: 16,
  d_kv: 6,
  d_ff: 24,
  num_layers: 2,
  num_heads: 3,
  relative_attention_num_buckets: 8,
  relative_attention_max_distance: 12,
  layer_norm_epsilon: 1e-6,
  feed_forward_proj: 'gated-gelu',
});

function t5Specs(c: T5Config): Map<string, WeightSpec> {
  const inner = c.num_heads * c.d_kv;
  const m = new Map<string, WeightSpec>();
  m.set('shared.weight', { shape: [c.vocab_size, c.d_model], scale: 1 });
  for (let i = 0; i < c.num_layers; i++) {
    const p = `encoder.block.${i}.layer`;
    for (const x of ['q', 'k', 'v']) m.set(`${p}.0.SelfAttention.${x}.weight`, { shape: [inner, c.d_model], scale: 0.3 });
    m.set(`${p}.0.SelfAttention.o.weight`, { shape: [c.d_model, inner], scale: 0.3 });
    if (i === 0) {
      m.set(`${p}.0.SelfAttention.relative_attention_bias.weight`, { shape: [c.relative_attention_num_buckets, c.num_heads], scale: 1 });
    }
    m.set(`${p}.0.layer_norm.weight`, { shape: [c.d_model], scale: 0.1, offset: 1 });
    m.set(`${p}.1.DenseReluDense.wi_0.weight`, { shape: [c.d_ff, c.d_model], scale: 0.3 });
    m.set(`${p}.1.DenseReluDense.wi_1.weight`, { shape: [c.d_ff, c.d_model], scale: 0.3 });
    m.set(`${p}.1.DenseReluDense.wo.weight`, { shape: [c.d_model, c.d_ff], scale: 0.3 });
    m.set(`${p}.1.layer_norm.weight`, { shape: [c.d_model], scale: 0.1, offset: 1 });
  }
  m.set('encoder.final_layer_norm.weight', { shape: [c.d_model], scale: 0.1, offset: 1 });
  return m;
}

// ---- float64 reference (HF T5LayerNorm, T5Attention, T5DenseGatedActDense, T5Stack) ----------

function refBucket(rel: number, numBuckets: number, maxDistance: number): number {
  const half = numBuckets / 2;
  const exact = half / 2;
  const n = Math.abs(rel);
  const base = rel > 0 ? half : 0;
  if (n < exact) return base + n;
  return base + Math.min(half - 1, exact + Math.floor((Math.log(n / exact) / Math.log(maxDistance / exact)) * (half - exact)));
}

function refRms(h: Float64Array, L: number, D: number, w: Float64Array, eps: number): Float64Array {
  const out = new Float64Array(L * D);
  for (let i = 0; i < L; i++) {
    let ss = 0;
    for (let d = 0; d < D; d++) ss += h[i * D + d]! ** 2;
    const r = 1 / Math.sqrt(ss / D + eps);
    for (let d = 0; d < D; d++) out[i * D + d] = h[i * D + d]! * r * w[d]!;
  }
  return out;
}

const geluNew = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

function t5Reference(c: T5Config, W: Map<string, Float64Array>, ids: Int32Array): Float64Array {
  const L = ids.length;
  const D = c.d_model;
  const H = c.num_heads;
  const dk = c.d_kv;
  const inner = H * dk;
  const g = (k: string) => W.get(k)!;
  let h = new Float64Array(L * D);
  for (let i = 0; i < L; i++) for (let d = 0; d < D; d++) h[i * D + d] = g('shared.weight')[ids[i]! * D + d]!;
  const E = g('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight');
  for (let l = 0; l < c.num_layers; l++) {
    const p = `encoder.block.${l}.layer`;
    const n = refRms(h, L, D, g(`${p}.0.layer_norm.weight`), c.layer_norm_epsilon);
    const q = matmulT(n, L, D, g(`${p}.0.SelfAttention.q.weight`), inner);
    const k = matmulT(n, L, D, g(`${p}.0.SelfAttention.k.weight`), inner);
    const v = matmulT(n, L, D, g(`${p}.0.SelfAttention.v.weight`), inner);
    const o = new Float64Array(L * inner);
    for (let hd = 0; hd < H; hd++) {
      for (let i = 0; i < L; i++) {
        const s = new Float64Array(L);
        for (let j = 0; j < L; j++) {
          let dot = 0;
          for (let d = 0; d < dk; d++) dot += q[i * inner + hd * dk + d]! * k[j * inner + hd * dk + d]!;
          const bucket = refBucket(j - i, c.relative_attention_num_buckets, c.relative_attention_max_distance);
          s[j] = dot + E[bucket * H + hd]!; // no 1/sqrt(d) in T5
        }
        softmaxRow(s);
        for (let d = 0; d < dk; d++) {
          let acc = 0;
          for (let j = 0; j < L; j++) acc += s[j]! * v[j * inner + hd * dk + d]!;
          o[i * inner + hd * dk + d] = acc;
        }
      }
    }
    const attn = matmulT(o, L, inner, g(`${p}.0.SelfAttention.o.weight`), D);
    h = h.map((x, i) => x + attn[i]!);
    const n2 = refRms(h, L, D, g(`${p}.1.layer_norm.weight`), c.layer_norm_epsilon);
    const a = matmulT(n2, L, D, g(`${p}.1.DenseReluDense.wi_0.weight`), c.d_ff);
    const b = matmulT(n2, L, D, g(`${p}.1.DenseReluDense.wi_1.weight`), c.d_ff);
    const gated = a.map((x, i) => geluNew(x) * b[i]!);
    const ff = matmulT(gated, L, c.d_ff, g(`${p}.1.DenseReluDense.wo.weight`), D);
    h = h.map((x, i) => x + ff[i]!);
  }
  return refRms(h, L, D, g('encoder.final_layer_norm.weight'), c.layer_norm_epsilon);
}

function load(src: MapSource, cfg = TINY): T5EncoderModel {
  return T5EncoderModel.load(src, cpuBackend, cfg);
}

describe('T5 relative position buckets (T5Attention._relative_position_bucket)', () => {
  it('gives the test vectors of docs/references.md', () => {
    assert.equal(relativePositionBucket(100 - 0), 31); // query 0, key 100
    assert.equal(relativePositionBucket(0 - 100), 15); // query 100, key 0
    for (const i of [0, 5, 300]) {
      assert.equal(relativePositionBucket(i + 1 - i), 17); // (i, i+1)
      assert.equal(relativePositionBucket(i - (i + 1)), 1); // (i+1, i)
    }
  });

  it('matches the n -> offset table, both directions, including the exact 16/32/64 boundaries', () => {
    const table: Array<[number, number, number]> = [
      [0, 7, -1],
      [8, 11, 8],
      [12, 15, 9],
      [16, 22, 10],
      [23, 31, 11],
      [32, 45, 12],
      [46, 63, 13],
      [64, 90, 14],
      [91, 600, 15],
    ];
    for (const [lo, hi, off] of table) {
      for (let n = lo; n <= hi; n++) {
        const want = off < 0 ? n : off;
        assert.equal(relativePositionBucket(-n), want, `rel -${n}`);
        if (n > 0) assert.equal(relativePositionBucket(n), 16 + want, `rel +${n}`);
      }
    }
  });

  it('lays the L x L grid out as bucket(key - query)', () => {
    const b = relativePositionBuckets(3, 4, 32, 128);
    assert.deepEqual(Array.from(b), [0, 17, 18, 19, 1, 0, 17, 18, 2, 1, 0, 17]);
  });
});

describe('parseT5Config', () => {
  it('reads the FLUX text_encoder_2/config.json fields', () => {
    const cfg = parseT5Config({
      architectures: ['T5EncoderModel'],
      d_ff: 10240,
      d_kv: 64,
      d_model: 4096,
      dense_act_fn: 'gelu_new',
      feed_forward_proj: 'gated-gelu',
      is_encoder_decoder: true,
      is_gated_act: true,
      layer_norm_epsilon: 1e-6,
      model_type: 't5',
      num_decoder_layers: 24,
      num_heads: 64,
      num_layers: 24,
      pad_token_id: 0,
      relative_attention_max_distance: 128,
      relative_attention_num_buckets: 32,
      tie_word_embeddings: false,
      torch_dtype: 'bfloat16',
      vocab_size: 32128,
    });
    assert.deepEqual(cfg, T5_V1_1_XXL);
  });

  it('rejects a non-gated-gelu feed-forward and names the allowed value', () => {
    assert.throws(() => parseT5Config({ ...T5_V1_1_XXL, feed_forward_proj: 'relu' }), /gated-gelu/);
    assert.throws(() => parseT5Config({ ...T5_V1_1_XXL, d_model: undefined }), /d_model/);
  });
});

describe('T5EncoderModel forward (cpu, f32) vs float64 reference', () => {
  it('matches for a batch of two rows, log buckets and the clamp exercised (L=20 > max_distance)', () => {
    const src = randomSource(t5Specs(TINY), 1234);
    const model = load(src);
    const tokens = randomTokens(99, 2, 20, 0, TINY.vocab_size);
    const out = model.forward(tokens);
    assert.deepEqual(out.shape, [2, 20, TINY.d_model]);
    assert.equal(out.dtype, 'f32');
    const got = out.toFloat32();
    const W = asF64(src);
    for (let b = 0; b < 2; b++) {
      const ref = t5Reference(TINY, W, tokens[b]!);
      const row = got.subarray(b * 20 * TINY.d_model, (b + 1) * 20 * TINY.d_model);
      const e = relErr(row, ref);
      assert.ok(e < 1e-5, `row ${b}: relative error ${e}`);
    }
    assert.equal(scopeDepth(), 0);
    out.dispose();
    model.dispose();
  });

  it('matches with the XXL bucket settings (32 buckets, max distance 128)', () => {
    const cfg = parseT5Config({ ...TINY, relative_attention_num_buckets: 32, relative_attention_max_distance: 128, num_layers: 1 });
    const src = randomSource(t5Specs(cfg), 77);
    const model = load(src, cfg);
    const tokens = randomTokens(5, 1, 24, 0, cfg.vocab_size);
    const out = model.forward(tokens);
    const e = relErr(out.toFloat32(), t5Reference(cfg, asF64(src), tokens[0]!));
    assert.ok(e < 1e-5, `relative error ${e}`);
    out.dispose();
    model.dispose();
  });

  it('accepts the tied embedding under either name, or both', () => {
    const base = randomSource(t5Specs(TINY), 5);
    const tokens = randomTokens(6, 1, 7, 0, TINY.vocab_size);
    const want = load(base).forward(tokens).toFloat32();
    const shared = base.entries.get('shared.weight')!;

    const onlyEmbed = randomSource(t5Specs(TINY), 5);
    onlyEmbed.entries.delete('shared.weight');
    onlyEmbed.set('encoder.embed_tokens.weight', shared.dtype, shared.shape, shared.data);
    assert.deepEqual(load(onlyEmbed).forward(tokens).toFloat32(), want);

    const both = randomSource(t5Specs(TINY), 5);
    both.set('encoder.embed_tokens.weight', shared.dtype, shared.shape, shared.data);
    assert.deepEqual(load(both).forward(tokens).toFloat32(), want);
  });

  it('rejects token ids outside the vocabulary and ragged rows', () => {
    const model = load(randomSource(t5Specs(TINY), 8));
    assert.throws(() => model.forward([Int32Array.of(1, TINY.vocab_size)]), /token id 40 outside 0\.\.39/);
    assert.throws(() => model.forward([Int32Array.of(1, 2), Int32Array.of(1)]), /differ in length/);
  });
});

describe('T5EncoderModel loading errors', () => {
  it('names a missing key', () => {
    const src = randomSource(t5Specs(TINY), 3);
    src.entries.delete('encoder.block.1.layer.1.DenseReluDense.wo.weight');
    assert.throws(
      () => load(src),
      (e: unknown) => e instanceof CheckpointError && /missing keys: encoder\.block\.1\.layer\.1\.DenseReluDense\.wo\.weight/.test(e.message),
    );
  });

  it('names an unexpected key (a relative_attention_bias outside block 0, a third block)', () => {
    const src = randomSource(t5Specs(TINY), 3);
    src.set('encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight', 'f32', [8, 3], new Float32Array(24));
    src.set('encoder.block.2.layer.0.layer_norm.weight', 'f32', [16], new Float32Array(16));
    assert.throws(
      () => load(src),
      (e: unknown) =>
        e instanceof CheckpointError &&
        e.unexpected.includes('encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight') &&
        e.unexpected.includes('encoder.block.2.layer.0.layer_norm.weight'),
    );
  });

  it('names a mis-shaped key', () => {
    const src = randomSource(t5Specs(TINY), 3);
    src.set('encoder.final_layer_norm.weight', 'f32', [17], new Float32Array(17));
    assert.throws(() => load(src), /encoder\.final_layer_norm\.weight: expected \[16\], found \[17\]/);
  });
});
