// T5 v1.1 encoder (transformers models/t5/modeling_t5.py `T5EncoderModel`). Fields keep
// the checkpoint's spelling: `encoder.block[i].layer[0].SelfAttention.q`, `...layer[1].DenseReluDense.wi_0`.
//
//   h = shared[ids]                                  (no √d scaling, no absolute positions)
//   bias = E[bucket(j - i)]  from block 0, reused by every block
//   per block: h += o(attn(RMS(h)·q, ·k, ·v; scale 1, + bias)) ; h += wo(gelu_new(wi_0 n) ⊙ wi_1 n)
//   h = RMS(h)·final_layer_norm
//
// No attention mask: FLUX passes none (BFL src/flux/modules/conditioner.py HFEmbedder.forward), so
// pad tokens attend and are attended to.

import { Linear } from './nn.js';
import { packTokens } from './tokens.js';
import { type LoadOptions, Weights } from './weights.js';
import type { TensorSource } from '../io/source.js';
import type { Backend } from '../tensor/backend.js';
import { add, attention, embedding, fromArray, mul, permute, reshape, rmsNorm, splitHeads } from '../tensor/ops.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

export interface T5Config {
  readonly vocab_size: number;
  readonly d_model: number;
  readonly d_kv: number;
  readonly d_ff: number;
  readonly num_layers: number;
  readonly num_heads: number;
  readonly relative_attention_num_buckets: number;
  readonly relative_attention_max_distance: number;
  readonly layer_norm_epsilon: number;
  /** Only "gated-gelu" (T5 v1.1: gelu_new = tanh GELU, gated) is supported by the op list. */
  readonly feed_forward_proj: 'gated-gelu';
}

/** google/t5-v1_1-xxl, the FLUX text_encoder_2 (its hub config.json). */
export const T5_V1_1_XXL: T5Config = Object.freeze({
  vocab_size: 32128,
  d_model: 4096,
  d_kv: 64,
  d_ff: 10240,
  num_layers: 24,
  num_heads: 64,
  relative_attention_num_buckets: 32,
  relative_attention_max_distance: 128,
  layer_norm_epsilon: 1e-6,
  feed_forward_proj: 'gated-gelu',
});

function num(json: Record<string, unknown>, key: string, fallback?: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`T5 config: ${key} must be a number (got ${JSON.stringify(v)})`);
  return v;
}

/** A T5Config from an HF config.json object (text_encoder_2/config.json). */
export function parseT5Config(json: Record<string, unknown>): T5Config {
  const ff = json.feed_forward_proj ?? 'relu';
  if (ff !== 'gated-gelu') {
    throw new Error(`T5 config: feed_forward_proj must be "gated-gelu" (T5 v1.1); got ${JSON.stringify(ff)}`);
  }
  if (json.is_encoder_decoder === false && json.is_decoder === true) throw new Error('T5 config: a decoder config, not an encoder');
  return Object.freeze({
    vocab_size: num(json, 'vocab_size'),
    d_model: num(json, 'd_model'),
    d_kv: num(json, 'd_kv'),
    d_ff: num(json, 'd_ff'),
    num_layers: num(json, 'num_layers'),
    num_heads: num(json, 'num_heads'),
    relative_attention_num_buckets: num(json, 'relative_attention_num_buckets', 32),
    relative_attention_max_distance: num(json, 'relative_attention_max_distance', 128),
    layer_norm_epsilon: num(json, 'layer_norm_epsilon', 1e-6),
    feed_forward_proj: 'gated-gelu',
  });
}

// ---------------------------------------------------------------------------------------------
// Relative position buckets (host side; modeling_t5.py T5Attention._relative_position_bucket)

const f32 = Math.fround;

/**
 * Bucket of `rel = key_pos - query_pos`. Bidirectional: half the buckets for rel > 0. Small
 * distances get one bucket each; larger ones share log-spaced buckets up to max_distance. The log
 * path is evaluated in fp32 like the reference (`torch.log` on a float tensor), then truncated.
 */
export function relativePositionBucket(rel: number, numBuckets = 32, maxDistance = 128, bidirectional = true): number {
  let ret = 0;
  let n: number;
  let buckets = numBuckets;
  if (bidirectional) {
    buckets = Math.floor(buckets / 2);
    if (rel > 0) ret += buckets;
    n = Math.abs(rel);
  } else {
    n = -Math.min(rel, 0);
  }
  const maxExact = Math.floor(buckets / 2);
  if (n < maxExact) return ret + n;
  const ratio = f32(f32(Math.log(f32(n / maxExact))) / f32(Math.log(maxDistance / maxExact)));
  const large = maxExact + Math.trunc(f32(ratio * (buckets - maxExact)));
  return ret + Math.min(large, buckets - 1);
}

/** Buckets for an Lq x Lk attention: out[i*Lk + j] = bucket(j - i). */
export function relativePositionBuckets(Lq: number, Lk: number, numBuckets: number, maxDistance: number): Int32Array {
  const out = new Int32Array(Lq * Lk);
  for (let i = 0; i < Lq; i++) {
    for (let j = 0; j < Lk; j++) out[i * Lk + j] = relativePositionBucket(j - i, numBuckets, maxDistance);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Modules (names as in modeling_t5.py)

/** T5Attention: q, k, v, o without biases; block 0 also owns the relative_attention_bias table. */
class T5Attention {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly relative_attention_bias: Tensor | undefined;

  constructor(
    readonly cfg: T5Config,
    w: Weights,
    hasRelativeAttentionBias: boolean,
  ) {
    const inner = cfg.num_heads * cfg.d_kv;
    this.q = new Linear(w.pp('q'), cfg.d_model, inner, false);
    this.k = new Linear(w.pp('k'), cfg.d_model, inner, false);
    this.v = new Linear(w.pp('v'), cfg.d_model, inner, false);
    this.o = new Linear(w.pp('o'), inner, cfg.d_model, false);
    this.relative_attention_bias = hasRelativeAttentionBias
      ? w.get('relative_attention_bias.weight', [cfg.relative_attention_num_buckets, cfg.num_heads])
      : undefined;
  }

  /** Position bias [1, H, L, L] (T5Attention.compute_bias): buckets on the host, gathered on device. */
  computeBias(L: number): Tensor {
    const table = this.relative_attention_bias;
    if (!table) throw new Error('T5Attention.computeBias: only block 0 has relative_attention_bias');
    const c = this.cfg;
    return tidy(() => {
      const buckets = relativePositionBuckets(L, L, c.relative_attention_num_buckets, c.relative_attention_max_distance);
      const ids = fromArray(table.backend, [L, L], buckets, 'i32'); // [L, L]
      const values = embedding(table, ids); // [L, L, H]
      return reshape(permute(values, [2, 0, 1]), [1, c.num_heads, L, L]); // [1, H, L, L]
    });
  }

  forward(x: Tensor, bias: Tensor): Tensor {
    const H = this.cfg.num_heads;
    const [q] = splitHeads(this.q.forward(x), 1, H) as [Tensor]; // [B, H, L, d_kv]
    const [k] = splitHeads(this.k.forward(x), 1, H) as [Tensor]; // [B, H, L, d_kv]
    const [v] = splitHeads(this.v.forward(x), 1, H) as [Tensor]; // [B, H, L, d_kv]
    // T5 folds the 1/√d into its initialisation: scores are q·kᵀ unscaled (T5Attention.forward).
    // The bf16 eager reference rounds q·kᵀ to bf16 before adding the bias; the op keeps both in
    // fp32 (docs/references.md, "Precision of the references").
    const o = attention(q, k, v, { scale: 1, bias }); // [B, L, H*d_kv]
    return this.o.forward(o); // [B, L, d_model]
  }
}

class T5LayerSelfAttention {
  readonly SelfAttention: T5Attention;
  readonly layer_norm: Tensor;

  constructor(
    readonly cfg: T5Config,
    w: Weights,
    hasRelativeAttentionBias: boolean,
  ) {
    this.SelfAttention = new T5Attention(cfg, w.pp('SelfAttention'), hasRelativeAttentionBias);
    this.layer_norm = w.get('layer_norm.weight', [cfg.d_model]);
  }

  forward(h: Tensor, bias: Tensor): Tensor {
    const n = rmsNorm(h, this.layer_norm, this.cfg.layer_norm_epsilon); // [B, L, d_model]
    return add(h, this.SelfAttention.forward(n, bias)); // [B, L, d_model]
  }
}

/** T5DenseGatedActDense: wo(gelu_new(wi_0 x) ⊙ wi_1 x). */
class T5DenseGatedActDense {
  readonly wi_0: Linear;
  readonly wi_1: Linear;
  readonly wo: Linear;

  constructor(cfg: T5Config, w: Weights) {
    this.wi_0 = new Linear(w.pp('wi_0'), cfg.d_model, cfg.d_ff, false);
    this.wi_1 = new Linear(w.pp('wi_1'), cfg.d_model, cfg.d_ff, false);
    this.wo = new Linear(w.pp('wo'), cfg.d_ff, cfg.d_model, false);
  }

  forward(x: Tensor): Tensor {
    const gelu = this.wi_0.forward(x, 'gelu_tanh'); // [B, L, d_ff]  (gelu_new = tanh approximation)
    const lin = this.wi_1.forward(x); // [B, L, d_ff]
    return this.wo.forward(mul(gelu, lin)); // [B, L, d_model]
  }
}

class T5LayerFF {
  readonly DenseReluDense: T5DenseGatedActDense;
  readonly layer_norm: Tensor;

  constructor(
    readonly cfg: T5Config,
    w: Weights,
  ) {
    this.DenseReluDense = new T5DenseGatedActDense(cfg, w.pp('DenseReluDense'));
    this.layer_norm = w.get('layer_norm.weight', [cfg.d_model]);
  }

  forward(h: Tensor): Tensor {
    const n = rmsNorm(h, this.layer_norm, this.cfg.layer_norm_epsilon); // [B, L, d_model]
    return add(h, this.DenseReluDense.forward(n)); // [B, L, d_model]
  }
}

/** T5Block: layer[0] = self-attention, layer[1] = feed-forward (an encoder has no cross-attention). */
class T5Block {
  readonly layer: readonly [T5LayerSelfAttention, T5LayerFF];

  constructor(cfg: T5Config, w: Weights, index: number) {
    this.layer = [new T5LayerSelfAttention(cfg, w.pp('layer').pp(0), index === 0), new T5LayerFF(cfg, w.pp('layer').pp(1))];
  }

  // HF clamps fp16 activations to avoid inf here; FLUX runs T5 in bf16/f32, where no clamp applies.
  forward(h: Tensor, bias: Tensor): Tensor {
    return this.layer[1].forward(this.layer[0].forward(h, bias)); // [B, L, d_model]
  }
}

class T5Stack {
  readonly block: readonly T5Block[];
  readonly final_layer_norm: Tensor;

  constructor(
    readonly cfg: T5Config,
    w: Weights,
  ) {
    this.block = Array.from({ length: cfg.num_layers }, (_, i) => new T5Block(cfg, w.pp('block').pp(i), i));
    this.final_layer_norm = w.get('final_layer_norm.weight', [cfg.d_model]);
  }
}

export class T5EncoderModel {
  /** The token embedding (`shared.weight`, tied to `encoder.embed_tokens.weight`). */
  readonly shared: Tensor;
  readonly encoder: T5Stack;
  private readonly owned: readonly Tensor[];

  /** Build from a prefix builder; call `w.finish()` afterwards (or use `T5EncoderModel.load`). */
  constructor(
    readonly config: T5Config,
    w: Weights,
  ) {
    if (config.num_layers < 1) throw new Error('T5EncoderModel: num_layers must be >= 1');
    const before = w.tensors.length;
    const shape = [config.vocab_size, config.d_model];
    // The embedding is tied: a file may hold shared.weight, encoder.embed_tokens.weight, or both.
    const hasShared = w.has('shared.weight');
    const hasEmbed = w.has('encoder.embed_tokens.weight');
    this.shared = hasEmbed && !hasShared ? w.get('encoder.embed_tokens.weight', shape) : w.get('shared.weight', shape);
    if (hasShared && hasEmbed) w.getOptional('encoder.embed_tokens.weight', shape)?.dispose(); // consumed, unused
    this.encoder = new T5Stack(config, w.pp('encoder'));
    this.owned = w.tensors.slice(before).filter((t) => !t.disposed);
  }

  /** Load, verify every key (CheckpointError names missing, mis-shaped and unexpected ones). */
  static load(source: TensorSource, backend: Backend, config: T5Config, opts: LoadOptions = {}): T5EncoderModel {
    const w = Weights.from(source, backend, opts);
    const model = new T5EncoderModel(config, w);
    w.finish();
    return model;
  }

  /**
   * last_hidden_state [B, L, d_model] for token rows of equal length (one Int32Array per batch
   * item), in the weights' dtype.
   */
  forward(tokens: readonly Int32Array[]): Tensor {
    const { B, L, flat } = packTokens('T5EncoderModel', tokens, this.config.vocab_size);
    const blocks = this.encoder.block;
    return tidy(() => {
      const ids = fromArray(this.shared.backend, [B, L], flat, 'i32'); // [B, L]
      let h = embedding(this.shared, ids); // [B, L, d_model]
      const bias = blocks[0]!.layer[0].SelfAttention.computeBias(L); // [1, H, L, L]
      for (const blk of blocks) {
        const next = tidy(() => blk.forward(h, bias)); // [B, L, d_model]
        h.dispose();
        h = next;
      }
      return rmsNorm(h, this.encoder.final_layer_norm, this.config.layer_norm_epsilon); // [B, L, d_model]
    });
  }

  /** Free the weights. */
  dispose(): void {
    for (const t of this.owned) t.dispose();
  }
}
