// CLIP text model: config parsing, pooled index (CLIPTextTransformer.forward), loading errors,
// causality, and the forward pass on tiny random weights against a float64 reference written here
// from the HF modeling_clip.py definitions (a second, independent implementation).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MapSource } from '../../src/io/source.js';
import { CLIP_VIT_L14_TEXT, CLIPTextModel, type ClipTextConfig, parseClipTextConfig, pooledIndex } from '../../src/models/clip.js';
import { CheckpointError } from '../../src/models/weights.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { type WeightSpec, asF64, matmulT, randomSource, randomTokens, relErr, softmaxRow } from './textenc-helpers.js';

const TINY: ClipTextConfig = parseClipTextConfig({
  vocab_size: 50,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  max_position_embeddings: 12,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  eos_token_id: 2,
});

function clipSpecs(c: ClipTextConfig): Map<string, WeightSpec> {
  const D = c.hidden_size;
  const m = new Map<string, WeightSpec>();
  m.set('text_model.embeddings.token_embedding.weight', { shape: [c.vocab_size, D], scale: 1 });
  m.set('text_model.embeddings.position_embedding.weight', { shape: [c.max_position_embeddings, D], scale: 0.5 });
  const lin = (name: string, out: number, inp: number) => {
    m.set(`${name}.weight`, { shape: [out, inp], scale: 0.3 });
    m.set(`${name}.bias`, { shape: [out], scale: 0.1 });
  };
  const ln = (name: string) => {
    m.set(`${name}.weight`, { shape: [D], scale: 0.1, offset: 1 });
    m.set(`${name}.bias`, { shape: [D], scale: 0.1 });
  };
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `text_model.encoder.layers.${i}`;
    for (const x of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) lin(`${p}.self_attn.${x}`, D, D);
    ln(`${p}.layer_norm1`);
    lin(`${p}.mlp.fc1`, c.intermediate_size, D);
    lin(`${p}.mlp.fc2`, D, c.intermediate_size);
    ln(`${p}.layer_norm2`);
  }
  ln('text_model.final_layer_norm');
  return m;
}

// ---- float64 reference (HF CLIPTextEmbeddings, CLIPAttention, CLIPMLP, CLIPEncoderLayer) -------

function refLayerNorm(h: Float64Array, L: number, D: number, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const out = new Float64Array(L * D);
  for (let i = 0; i < L; i++) {
    let mean = 0;
    for (let d = 0; d < D; d++) mean += h[i * D + d]!;
    mean /= D;
    let v = 0;
    for (let d = 0; d < D; d++) v += (h[i * D + d]! - mean) ** 2;
    const r = 1 / Math.sqrt(v / D + eps);
    for (let d = 0; d < D; d++) out[i * D + d] = (h[i * D + d]! - mean) * r * w[d]! + b[d]!;
  }
  return out;
}

const quickGelu = (x: number) => x / (1 + Math.exp(-1.702 * x));

function clipReference(c: ClipTextConfig, W: Map<string, Float64Array>, ids: Int32Array): Float64Array {
  const L = ids.length;
  const D = c.hidden_size;
  const H = c.num_attention_heads;
  const hd = D / H;
  const g = (k: string) => W.get(k)!;
  const tok = g('text_model.embeddings.token_embedding.weight');
  const pos = g('text_model.embeddings.position_embedding.weight');
  let h = new Float64Array(L * D);
  for (let i = 0; i < L; i++) for (let d = 0; d < D; d++) h[i * D + d] = tok[ids[i]! * D + d]! + pos[i * D + d]!;
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `text_model.encoder.layers.${l}`;
    const n = refLayerNorm(h, L, D, g(`${p}.layer_norm1.weight`), g(`${p}.layer_norm1.bias`), c.layer_norm_eps);
    const proj = (x: string) => matmulT(n, L, D, g(`${p}.self_attn.${x}.weight`), D, g(`${p}.self_attn.${x}.bias`));
    const q = proj('q_proj').map((x) => x * hd ** -0.5);
    const k = proj('k_proj');
    const v = proj('v_proj');
    const o = new Float64Array(L * D);
    for (let a = 0; a < H; a++) {
      for (let i = 0; i < L; i++) {
        const s = new Float64Array(i + 1); // causal: keys 0..i only
        for (let j = 0; j <= i; j++) {
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += q[i * D + a * hd + d]! * k[j * D + a * hd + d]!;
          s[j] = dot;
        }
        softmaxRow(s);
        for (let d = 0; d < hd; d++) {
          let acc = 0;
          for (let j = 0; j <= i; j++) acc += s[j]! * v[j * D + a * hd + d]!;
          o[i * D + a * hd + d] = acc;
        }
      }
    }
    const attn = matmulT(o, L, D, g(`${p}.self_attn.out_proj.weight`), D, g(`${p}.self_attn.out_proj.bias`));
    h = h.map((x, i) => x + attn[i]!);
    const n2 = refLayerNorm(h, L, D, g(`${p}.layer_norm2.weight`), g(`${p}.layer_norm2.bias`), c.layer_norm_eps);
    const f1 = matmulT(n2, L, D, g(`${p}.mlp.fc1.weight`), c.intermediate_size, g(`${p}.mlp.fc1.bias`)).map(quickGelu);
    const f2 = matmulT(f1, L, c.intermediate_size, g(`${p}.mlp.fc2.weight`), D, g(`${p}.mlp.fc2.bias`));
    h = h.map((x, i) => x + f2[i]!);
  }
  return refLayerNorm(h, L, D, g('text_model.final_layer_norm.weight'), g('text_model.final_layer_norm.bias'), c.layer_norm_eps);
}

function load(src: MapSource, cfg = TINY): CLIPTextModel {
  return CLIPTextModel.load(src, cpuBackend, cfg);
}

/** A FLUX-like row: BOS, prompt ids, EOS (the largest id), padded with EOS. */
function promptRow(prompt: number[], L: number, bos: number, eos: number): Int32Array {
  const row = new Int32Array(L).fill(eos);
  row[0] = bos;
  row.set(prompt.slice(0, L - 2), 1);
  row[Math.min(prompt.length + 1, L - 1)] = eos;
  return row;
}

describe('parseClipTextConfig', () => {
  const flux = {
    architectures: ['CLIPTextModel'],
    attention_dropout: 0,
    bos_token_id: 0,
    dropout: 0,
    eos_token_id: 2,
    hidden_act: 'quick_gelu',
    hidden_size: 768,
    initializer_factor: 1,
    initializer_range: 0.02,
    intermediate_size: 3072,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 77,
    model_type: 'clip_text_model',
    num_attention_heads: 12,
    num_hidden_layers: 12,
    pad_token_id: 1,
    projection_dim: 768,
    torch_dtype: 'bfloat16',
    vocab_size: 49408,
  };

  it('reads the FLUX text_encoder/config.json', () => {
    assert.deepEqual(parseClipTextConfig(flux), CLIP_VIT_L14_TEXT);
  });

  it("reads a full CLIPConfig's text_config", () => {
    assert.deepEqual(parseClipTextConfig({ model_type: 'clip', projection_dim: 768, text_config: { ...flux, projection_dim: undefined } }), CLIP_VIT_L14_TEXT);
  });

  it('rejects an unsupported activation naming the allowed ones', () => {
    assert.throws(() => parseClipTextConfig({ ...flux, hidden_act: 'relu' }), /quick_gelu, gelu, gelu_new/);
  });
});

describe('CLIP pooled index (CLIPTextTransformer.forward)', () => {
  const bos = 49406;
  const eos = 49407;
  it('"a cat" (2 tokens) pools at 3 on both the legacy and the eos-id path', () => {
    const row = promptRow([320, 2368], 77, bos, eos);
    assert.equal(pooledIndex(row, 2), 3);
    assert.equal(pooledIndex(row, eos), 3);
  });

  it('a truncated prompt pools at 76; an empty one at 1', () => {
    const long = promptRow(
      Array.from({ length: 90 }, (_, i) => 400 + i),
      77,
      bos,
      eos,
    );
    assert.equal(pooledIndex(long, 2), 76);
    assert.equal(pooledIndex(promptRow([], 77, bos, eos), 2), 1);
  });

  it('the eos-id path gives 0 when there is no EOS', () => {
    assert.equal(pooledIndex(Int32Array.of(5, 6, 7), 9), 0);
  });
});

describe('CLIPTextModel forward (cpu, f32) vs float64 reference', () => {
  it('matches last_hidden_state and pooled for two padded rows', () => {
    const src = randomSource(clipSpecs(TINY), 4321);
    const model = load(src);
    const bos = 48;
    const eos = 49;
    const tokens = [promptRow([10, 11, 12], 12, bos, eos), promptRow([3, 30, 7, 7, 21, 9, 40], 12, bos, eos)];
    const { last_hidden_state, pooled } = model.forward(tokens);
    assert.deepEqual(last_hidden_state.shape, [2, 12, 16]);
    assert.deepEqual(pooled.shape, [2, 16]);
    const got = last_hidden_state.toFloat32();
    const gotPooled = pooled.toFloat32();
    const W = asF64(src);
    const D = TINY.hidden_size;
    tokens.forEach((row, b) => {
      const ref = clipReference(TINY, W, row);
      const e = relErr(got.subarray(b * 12 * D, (b + 1) * 12 * D), ref);
      assert.ok(e < 1e-5, `row ${b}: relative error ${e}`);
      const at = pooledIndex(row, TINY.eos_token_id);
      assert.equal(at, b === 0 ? 4 : 8);
      const ep = relErr(gotPooled.subarray(b * D, (b + 1) * D), ref.subarray(at * D, (at + 1) * D));
      assert.ok(ep < 1e-5, `pooled row ${b}: relative error ${ep}`);
    });
    model.dispose();
  });

  it('runs a sequence shorter than max_position_embeddings', () => {
    const src = randomSource(clipSpecs(TINY), 11);
    const tokens = randomTokens(12, 1, 5, 0, TINY.vocab_size);
    const out = load(src).forward(tokens);
    const e = relErr(out.last_hidden_state.toFloat32(), clipReference(TINY, asF64(src), tokens[0]!));
    assert.ok(e < 1e-5, `relative error ${e}`);
  });

  it('is causal: changing a later token leaves earlier positions unchanged', () => {
    const model = load(randomSource(clipSpecs(TINY), 17));
    const a = randomTokens(3, 1, 12, 0, TINY.vocab_size)[0]!;
    const b = Int32Array.from(a);
    b[7] = (a[7]! + 5) % TINY.vocab_size;
    b[11] = (a[11]! + 9) % TINY.vocab_size;
    const ha = model.forward([a]).last_hidden_state.toFloat32();
    const hb = model.forward([b]).last_hidden_state.toFloat32();
    const D = TINY.hidden_size;
    assert.deepEqual(hb.subarray(0, 7 * D), ha.subarray(0, 7 * D));
    assert.notDeepEqual(hb.subarray(7 * D, 8 * D), ha.subarray(7 * D, 8 * D));
  });

  it('uses the first eos_token_id when the config is not legacy', () => {
    const cfg = parseClipTextConfig({ ...TINY, eos_token_id: 30 });
    const src = randomSource(clipSpecs(cfg), 23);
    const row = Int32Array.of(48, 5, 30, 45, 30, 49, 49, 49, 49, 49, 49, 49);
    const { last_hidden_state, pooled } = load(src, cfg).forward([row]);
    const D = cfg.hidden_size;
    assert.deepEqual(pooled.toFloat32(), last_hidden_state.toFloat32().subarray(2 * D, 3 * D));
  });

  it('refuses more tokens than position embeddings', () => {
    const model = load(randomSource(clipSpecs(TINY), 2));
    assert.throws(() => model.forward(randomTokens(1, 1, 13, 0, 50)), /13 tokens, at most max_position_embeddings=12/);
  });
});

describe('CLIPTextModel loading', () => {
  it('names a missing key', () => {
    const src = randomSource(clipSpecs(TINY), 3);
    src.entries.delete('text_model.encoder.layers.1.mlp.fc2.bias');
    assert.throws(
      () => load(src),
      (e: unknown) => e instanceof CheckpointError && e.missing.some((k) => k.startsWith('text_model.encoder.layers.1.mlp.fc2.bias')),
    );
  });

  it('names an unexpected key', () => {
    const src = randomSource(clipSpecs(TINY), 3);
    src.set('text_model.encoder.layers.2.layer_norm1.weight', 'f32', [16], new Float32Array(16));
    assert.throws(() => load(src), /unexpected keys: text_model\.encoder\.layers\.2\.layer_norm1\.weight/);
  });

  it('ignores the position_ids buffer of old files and keeps a text_projection', () => {
    const src = randomSource(clipSpecs(TINY), 3);
    src.set(
      'text_model.embeddings.position_ids',
      'i32',
      [1, 12],
      Int32Array.from({ length: 12 }, (_, i) => i),
    );
    src.set('text_projection.weight', 'f32', [16, 16], new Float32Array(256));
    const model = load(src);
    assert.deepEqual(model.text_projection?.shape, [16, 16]);
  });
});
