// CLIP text model (transformers models/clip/modeling_clip.py `CLIPTextModel`). Fields keep
// the checkpoint's spelling: `text_model.encoder.layers[i].self_attn.q_proj`, `.mlp.fc1`, ...
//
//   h = token_embedding[ids] + position_embedding[0..L)
//   per layer (pre-LN): h += out_proj(causal_attn(layer_norm1 h)) ; h += fc2(act(fc1(layer_norm2 h)))
//   last_hidden_state = final_layer_norm(h) ; pooled = last_hidden_state[b, eos position of row b]
//
// FLUX uses `pooler_output` (768-d) with no text_projection; a CLIPTextModelWithProjection file's
// `text_projection.weight` is accepted and kept, but not applied.

import { Linear } from './nn.js';
import { packTokens } from './tokens.js';
import { type LoadOptions, Weights } from './weights.js';
import type { TensorSource } from '../io/source.js';
import type { Activation, Backend } from '../tensor/backend.js';
import { add, attention, embedding, fromArray, layerNorm, reshape, slice, splitHeads } from '../tensor/ops.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

export interface ClipTextConfig {
  readonly vocab_size: number;
  readonly hidden_size: number;
  readonly intermediate_size: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  readonly max_position_embeddings: number;
  readonly hidden_act: 'quick_gelu' | 'gelu' | 'gelu_new';
  readonly layer_norm_eps: number;
  /** 2 in the legacy configs (FLUX's): the pooled token is then the argmax of the ids. */
  readonly eos_token_id: number;
  /** Only used to check a text_projection.weight when a file has one. */
  readonly projection_dim: number | undefined;
}

/** openai/clip-vit-large-patch14 text config, as in FLUX's text_encoder/config.json. */
export const CLIP_VIT_L14_TEXT: ClipTextConfig = Object.freeze({
  vocab_size: 49408,
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  eos_token_id: 2,
  projection_dim: 768,
});

const ACTIVATIONS: Record<ClipTextConfig['hidden_act'], Activation> = {
  quick_gelu: 'quick_gelu',
  gelu: 'gelu',
  gelu_new: 'gelu_tanh',
};

/** A ClipTextConfig from an HF config.json: a CLIPTextConfig, or a CLIPConfig's `text_config`. */
export function parseClipTextConfig(json: Record<string, unknown>): ClipTextConfig {
  const src = (json.text_config && typeof json.text_config === 'object' ? json.text_config : json) as Record<string, unknown>;
  const num = (key: string, fallback?: number): number => {
    const v = src[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`CLIP config: ${key} must be a number (got ${JSON.stringify(v)})`);
    return v;
  };
  const act = src.hidden_act ?? 'quick_gelu';
  if (typeof act !== 'string' || !(act in ACTIVATIONS)) {
    throw new Error(`CLIP config: hidden_act must be one of ${Object.keys(ACTIVATIONS).join(', ')} (got ${JSON.stringify(act)})`);
  }
  const proj = src.projection_dim ?? json.projection_dim;
  return Object.freeze({
    vocab_size: num('vocab_size'),
    hidden_size: num('hidden_size'),
    intermediate_size: num('intermediate_size'),
    num_hidden_layers: num('num_hidden_layers'),
    num_attention_heads: num('num_attention_heads'),
    max_position_embeddings: num('max_position_embeddings', 77),
    hidden_act: act as ClipTextConfig['hidden_act'],
    layer_norm_eps: num('layer_norm_eps', 1e-5),
    eos_token_id: num('eos_token_id', 49407), // CLIPTextConfig's default
    projection_dim: typeof proj === 'number' ? proj : undefined,
  });
}

/**
 * Position of the pooled token in one row (CLIPTextTransformer.forward): with the legacy
 * eos_token_id 2, the first maximal id (EOS is the largest id); otherwise the first eos_token_id,
 * or 0 when there is none. For FLUX prompts both give min(n_prompt_tokens + 1, 76)
 * (docs/references.md, "Test vectors").
 */
export function pooledIndex(ids: ArrayLike<number>, eosTokenId: number): number {
  let best = 0;
  if (eosTokenId === 2) {
    for (let i = 1; i < ids.length; i++) if (ids[i]! > ids[best]!) best = i;
    return best;
  }
  for (let i = 0; i < ids.length; i++) if (ids[i] === eosTokenId) return i;
  return 0;
}

/** Keys a CLIP text checkpoint may carry that hold no weights (old files saved the position_ids buffer). */
export function isClipBufferKey(key: string): boolean {
  return key.endsWith('embeddings.position_ids');
}

/** nn.LayerNorm(dim) parameters. */
export interface LayerNormParams {
  readonly weight: Tensor;
  readonly bias: Tensor;
}

/** What one encoder layer needs of a config: the text model's, or a CLIPVisionConfig (src/models/safety.ts). */
export interface ClipLayerConfig {
  readonly hidden_size: number;
  readonly intermediate_size: number;
  readonly num_attention_heads: number;
  readonly hidden_act: ClipTextConfig['hidden_act'];
  readonly layer_norm_eps: number;
}

export function layerNormParams(w: Weights, name: string, dim: number): LayerNormParams {
  return { weight: w.get(`${name}.weight`, [dim]), bias: w.get(`${name}.bias`, [dim]) };
}

class CLIPAttention {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;

  constructor(
    readonly cfg: ClipLayerConfig,
    w: Weights,
    /** The text model's causal mask; the vision tower attends to every patch. */
    readonly causal: boolean,
  ) {
    const D = cfg.hidden_size;
    if (D % cfg.num_attention_heads !== 0) throw new Error(`CLIP: hidden_size ${D} not divisible by ${cfg.num_attention_heads} heads`);
    this.q_proj = new Linear(w.pp('q_proj'), D, D);
    this.k_proj = new Linear(w.pp('k_proj'), D, D);
    this.v_proj = new Linear(w.pp('v_proj'), D, D);
    this.out_proj = new Linear(w.pp('out_proj'), D, D);
  }

  forward(x: Tensor): Tensor {
    const H = this.cfg.num_attention_heads;
    const headDim = this.cfg.hidden_size / H;
    const proj = (p: Linear) => splitHeads(p.forward(x), 1, H)[0]!; // [B, H, L, hd]
    // scale head_dim^-0.5 (1/8 for ViT-L/14: a power of two, so exact in bf16 as in HF's q*scale).
    const o = attention(proj(this.q_proj), proj(this.k_proj), proj(this.v_proj), {
      scale: 1 / Math.sqrt(headDim),
      causal: this.causal,
    }); // [B, L, D]
    return this.out_proj.forward(o); // [B, L, D]
  }
}

class CLIPMLP {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(
    readonly cfg: ClipLayerConfig,
    w: Weights,
  ) {
    this.fc1 = new Linear(w.pp('fc1'), cfg.hidden_size, cfg.intermediate_size);
    this.fc2 = new Linear(w.pp('fc2'), cfg.intermediate_size, cfg.hidden_size);
  }

  forward(x: Tensor): Tensor {
    const h = this.fc1.forward(x, ACTIVATIONS[this.cfg.hidden_act]); // [B, L, intermediate]
    return this.fc2.forward(h); // [B, L, D]
  }
}

/** One pre-LN CLIP encoder layer (shared by the text model and the vision tower of the safety checker). */
export class CLIPEncoderLayer {
  readonly self_attn: CLIPAttention;
  readonly layer_norm1: LayerNormParams;
  readonly mlp: CLIPMLP;
  readonly layer_norm2: LayerNormParams;

  constructor(
    readonly cfg: ClipLayerConfig,
    w: Weights,
    causal = true,
  ) {
    this.self_attn = new CLIPAttention(cfg, w.pp('self_attn'), causal);
    this.layer_norm1 = layerNormParams(w, 'layer_norm1', cfg.hidden_size);
    this.mlp = new CLIPMLP(cfg, w.pp('mlp'));
    this.layer_norm2 = layerNormParams(w, 'layer_norm2', cfg.hidden_size);
  }

  forward(h: Tensor): Tensor {
    const eps = this.cfg.layer_norm_eps;
    const n1 = layerNorm(h, { ...this.layer_norm1, eps }); // [B, L, D]
    const h1 = add(h, this.self_attn.forward(n1)); // [B, L, D]
    const n2 = layerNorm(h1, { ...this.layer_norm2, eps }); // [B, L, D]
    return add(h1, this.mlp.forward(n2)); // [B, L, D]
  }
}

class CLIPTextEmbeddings {
  readonly token_embedding: Tensor;
  readonly position_embedding: Tensor;

  constructor(cfg: ClipTextConfig, w: Weights) {
    this.token_embedding = w.get('token_embedding.weight', [cfg.vocab_size, cfg.hidden_size]);
    this.position_embedding = w.get('position_embedding.weight', [cfg.max_position_embeddings, cfg.hidden_size]);
  }
}

class CLIPTextTransformer {
  readonly embeddings: CLIPTextEmbeddings;
  readonly encoder: { readonly layers: readonly CLIPEncoderLayer[] };
  readonly final_layer_norm: LayerNormParams;

  constructor(cfg: ClipTextConfig, w: Weights) {
    this.embeddings = new CLIPTextEmbeddings(cfg, w.pp('embeddings'));
    const layers = w.pp('encoder').pp('layers');
    this.encoder = { layers: Array.from({ length: cfg.num_hidden_layers }, (_, i) => new CLIPEncoderLayer(cfg, layers.pp(i))) };
    this.final_layer_norm = layerNormParams(w, 'final_layer_norm', cfg.hidden_size);
  }
}

export interface ClipTextOutput {
  /** [B, L, hidden_size] after final_layer_norm. */
  readonly last_hidden_state: Tensor;
  /** [B, hidden_size]: last_hidden_state at each row's pooled position (FLUX's `y`). */
  readonly pooled: Tensor;
}

export class CLIPTextModel {
  readonly text_model: CLIPTextTransformer;
  /** Present only when the file is a CLIPTextModelWithProjection; FLUX does not use it. */
  readonly text_projection: Tensor | undefined;
  private readonly owned: readonly Tensor[];

  /** Build from a prefix builder; call `w.finish()` afterwards (or use `CLIPTextModel.load`). */
  constructor(
    readonly config: ClipTextConfig,
    w: Weights,
  ) {
    const before = w.tensors.length;
    this.text_model = new CLIPTextTransformer(config, w.pp('text_model'));
    this.text_projection = w.getOptional('text_projection.weight', [config.projection_dim ?? config.hidden_size, config.hidden_size]);
    this.owned = w.tensors.slice(before);
  }

  /** Load and verify every key; the position_ids buffer of old files is ignored. */
  static load(source: TensorSource, backend: Backend, config: ClipTextConfig, opts: LoadOptions = {}): CLIPTextModel {
    const outer = opts.ignoreUnused;
    const w = Weights.from(source, backend, { ...opts, ignoreUnused: (k) => isClipBufferKey(k) || (outer?.(k) ?? false) });
    const model = new CLIPTextModel(config, w);
    w.finish();
    return model;
  }

  /** Encode token rows of equal length L <= max_position_embeddings (one Int32Array per item). */
  forward(tokens: readonly Int32Array[]): ClipTextOutput {
    const cfg = this.config;
    const { B, L, flat } = packTokens('CLIPTextModel', tokens, cfg.vocab_size);
    if (L > cfg.max_position_embeddings) {
      throw new Error(`CLIPTextModel: ${L} tokens, at most max_position_embeddings=${cfg.max_position_embeddings}`);
    }
    const tm = this.text_model;
    const be = tm.embeddings.token_embedding.backend;
    return tidy(() => {
      const ids = fromArray(be, [B, L], flat, 'i32'); // [B, L]
      const pos = slice(tm.embeddings.position_embedding, 0, 0, L); // [L, D]
      let h = add(embedding(tm.embeddings.token_embedding, ids), pos); // [B, L, D]
      for (const layer of tm.encoder.layers) {
        const next = tidy(() => layer.forward(h)); // [B, L, D]
        h.dispose();
        h = next;
      }
      const last = layerNorm(h, { ...tm.final_layer_norm, eps: cfg.layer_norm_eps }); // [B, L, D]
      const rows = tokens.map((row, b) => b * L + pooledIndex(row, cfg.eos_token_id));
      const pooled = embedding(reshape(last, [B * L, cfg.hidden_size]), fromArray(be, [B], rows, 'i32')); // [B, D]
      return { last_hidden_state: last, pooled };
    });
  }

  /** Free the weights. */
  dispose(): void {
    for (const t of this.owned) t.dispose();
  }
}
