// The FLUX.1 flow transformer, read line for line against black-forest-labs/flux@802fb47
// src/flux/model.py `Flux.forward`. Fields are the checkpoint's top-level names.
//
// Precision (docs/references.md, "Precision of the references"): activations run in the model dtype
// — bf16 for bf16 (or fp8) weights, f32 for f32 weights — with the ops' fp32-inside /
// round-once-per-op numerics; the timestep table, RoPE table and position ids are fp32.

import type { TensorSource } from '../../io/source.js';
import type { Backend } from '../../tensor/backend.js';
import type { DType } from '../../tensor/dtype.js';
import { add, cast, concat, silu, slice } from '../../tensor/ops.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { Linear } from '../nn.js';
import { type LoadOptions, Weights } from '../weights.js';
import { type FluxParams, headDim, mlpHiddenDim, validateFluxParams } from './config.js';
import { DoubleStreamBlock, type DoubleMods, LastLayer, MLPEmbedder, type ModulationOut, SingleStreamBlock, type Tap } from './layers.js';
import { embedND, timestepEmbedding } from './math.js';

/** Position ids: an f32 tensor [B, L, 3], or host values laid out [B, L, 3] or [L, 3] (shared by the batch). */
export type Ids = Tensor | Float32Array;

export interface FluxForwardOptions {
  /** Named intermediates (`double_blocks.{i}.img`, `single_blocks.{i}`, ...); read synchronously. */
  taps?: Tap | undefined;
  /** A RoPE table from `positionEmbedding` to reuse across steps (ids are then ignored). */
  pe?: Tensor | undefined;
  /**
   * The timestep (and guidance) embeddings as f32 device tensors [B, 256] holding
   * `timestepEmbeddingF32` values (timesteps/guidance are then ignored): what a captured CUDA
   * graph reads, so that a step needs no upload inside the recorded work.
   */
  embeddings?: { t: Tensor; guidance?: Tensor | undefined } | undefined;
}

/** Host ids [B, L, n] from a tensor or a [B, L, n] / [L, n] array. */
function hostIds(ids: Ids, B: number, L: number, n: number, what: string): Float32Array {
  const a = ids instanceof Float32Array ? ids : ids.toFloat32();
  if (a.length === B * L * n) return a;
  if (a.length === L * n) {
    const out = new Float32Array(B * L * n);
    for (let b = 0; b < B; b++) out.set(a, b * L * n);
    return out;
  }
  throw new Error(`Flux: ${what} has ${a.length} values; expected [${B}, ${L}, ${n}] or [${L}, ${n}]`);
}

export class Flux {
  readonly params: FluxParams;
  readonly img_in: Linear;
  readonly time_in: MLPEmbedder;
  readonly vector_in: MLPEmbedder;
  readonly guidance_in: MLPEmbedder | undefined; // nn.Identity in schnell
  readonly txt_in: Linear;
  readonly double_blocks: DoubleStreamBlock[];
  readonly single_blocks: SingleStreamBlock[];
  readonly final_layer: LastLayer;
  /** The activation dtype: bf16 for fp8/bf16 weights, otherwise the weights' dtype. */
  readonly dtype: DType;
  readonly backend: Backend;
  private readonly owned: Tensor[];
  private readonly paramListeners = new Set<(key: string) => void>();

  /** Builds the model from `w` (a builder at the transformer's prefix); call `w.finish()` after. */
  constructor(params: FluxParams, w: Weights) {
    const p = validateFluxParams(params);
    this.params = p;
    this.backend = w.backend;
    const first = w.tensors.length;
    const D = p.hidden_size;
    const mlp = mlpHiddenDim(p);
    this.img_in = new Linear(w.pp('img_in'), p.in_channels, D);
    this.time_in = new MLPEmbedder(w.pp('time_in'), 256, D);
    this.vector_in = new MLPEmbedder(w.pp('vector_in'), p.vec_in_dim, D);
    this.guidance_in = p.guidance_embed ? new MLPEmbedder(w.pp('guidance_in'), 256, D) : undefined;
    this.txt_in = new Linear(w.pp('txt_in'), p.context_in_dim, D);
    const db = w.pp('double_blocks');
    this.double_blocks = Array.from({ length: p.depth }, (_, i) => new DoubleStreamBlock(db.pp(i), D, p.num_heads, mlp, p.qkv_bias));
    const sb = w.pp('single_blocks');
    this.single_blocks = Array.from({ length: p.depth_single_blocks }, (_, i) => new SingleStreamBlock(sb.pp(i), D, p.num_heads, mlp));
    this.final_layer = new LastLayer(w.pp('final_layer'), D, p.out_channels);
    this.owned = w.tensors.slice(first);
    const wd = this.img_in.weight.dtype;
    this.dtype = wd === 'f8e4m3' || wd === 'i32' ? 'bf16' : wd;
  }

  /**
   * Whoever rewrites a parameter in place (the LoRA manager) calls this with its BFL key
   * ('double_blocks.0.img_attn.qkv.weight'), so that copies derived from it (go_fast's fp8
   * weights) are rebuilt. Returns the unsubscribe function of `onParamWritten`.
   */
  paramWritten(key: string): void {
    for (const fn of this.paramListeners) fn(key);
  }
  onParamWritten(fn: (key: string) => void): () => void {
    this.paramListeners.add(fn);
    return () => this.paramListeners.delete(fn);
  }

  /** Loads a whole transformer checkpoint (BFL names) and fails on missing/unexpected/mis-shaped keys. */
  static load(params: FluxParams, source: TensorSource, backend: Backend, opts: LoadOptions = {}): Flux {
    const w = Weights.from(source, backend, opts);
    const model = new Flux(params, w);
    w.finish();
    return model;
  }

  /** EmbedND over cat(txt_ids, img_ids): the f32 RoPE table [B|1, Lt+Li, Dh/2, 2, 2]. */
  positionEmbedding(txt_ids: Ids, img_ids: Ids, B: number, Lt: number, Li: number): Tensor {
    const n = this.params.axes_dim.length;
    const t = hostIds(txt_ids, B, Lt, n, 'txt_ids');
    const im = hostIds(img_ids, B, Li, n, 'img_ids');
    const L = Lt + Li;
    const ids = new Float32Array(B * L * n); // [B, L, n]; text first
    for (let b = 0; b < B; b++) {
      ids.set(t.subarray(b * Lt * n, (b + 1) * Lt * n), b * L * n);
      ids.set(im.subarray(b * Li * n, (b + 1) * Li * n), b * L * n + Lt * n);
    }
    return embedND(this.backend, ids, B, L, this.params.axes_dim, this.params.theta);
  }

  /**
   * img [B, Li, in], txt [B, Lt, ctx], timesteps [B] (σ in [0, 1]), y [B, vec_in_dim],
   * guidance [B] (guidance-distilled models only) -> [B, Li, out] in the model dtype.
   */
  forward(
    img: Tensor,
    img_ids: Ids,
    txt: Tensor,
    txt_ids: Ids,
    timesteps: ArrayLike<number>,
    y: Tensor,
    guidance: ArrayLike<number> | undefined,
    opts: FluxForwardOptions = {},
  ): Tensor {
    if (img.rank !== 3 || txt.rank !== 3) throw new Error('Flux: input img and txt tensors must have 3 dimensions');
    const [B, Li] = img.shape as [number, number, number];
    const Lt = txt.shape[1]!;
    if (txt.shape[0] !== B || y.shape[0] !== B || timesteps.length !== B) {
      throw new Error(`Flux: batch sizes differ (img ${B}, txt ${txt.shape[0]}, y ${y.shape[0]}, timesteps ${timesteps.length})`);
    }
    if (opts.embeddings && (opts.embeddings.t.shape[0] !== B || (this.guidance_in && opts.embeddings.guidance?.shape[0] !== B))) {
      throw new Error(`Flux: embeddings must be f32 [${B}, 256] for t${this.guidance_in ? ' and guidance' : ''}`);
    }
    if (this.guidance_in && (guidance === undefined || guidance.length !== B)) {
      throw new Error(`Flux: this guidance-distilled model needs guidance [${B}]`);
    }
    const taps = opts.taps;
    const dt = this.dtype;
    return tidy(() => {
      const x_img = img.dtype === dt ? img : cast(img, dt);
      const x_txt = txt.dtype === dt ? txt : cast(txt, dt);
      const x_y = y.dtype === dt ? y : cast(y, dt);

      let h_img = this.img_in.forward(x_img); // [B, Li, D]
      const emb = opts.embeddings;
      const embed = (host: ArrayLike<number>, dev: Tensor | undefined) =>
        dev ? (dev.dtype === dt ? dev : cast(dev, dt)) : timestepEmbedding(this.backend, host, dt); // [B, 256]
      let vec = this.time_in.forward(embed(timesteps, emb?.t)); // [B, D]
      if (this.guidance_in) vec = add(vec, this.guidance_in.forward(embed(guidance!, emb?.guidance))); // [B, D]
      vec = add(vec, this.vector_in.forward(x_y)); // [B, D]
      let h_txt = this.txt_in.forward(x_txt); // [B, Lt, D]
      taps?.('img_in', h_img);
      taps?.('txt_in', h_txt);
      taps?.('vec', vec);

      const pe = opts.pe ?? this.positionEmbedding(txt_ids, img_ids, B, Lt, Li); // [B|1, L, Dh/2, 2, 2]
      const pairs = headDim(this.params) / 2;
      if (pe.rank !== 5 || pe.shape[1] !== Lt + Li || pe.shape[2] !== pairs) {
        throw new Error(`Flux: pe must be [B|1, ${Lt + Li}, ${pairs}, 2, 2] (got [${pe.shape.join(', ')}])`);
      }

      // Every block's modulation vectors, once per forward, from one SiLU(vec).
      const silu_vec = silu(vec); // [B, D]
      const doubleMods: DoubleMods[] = this.double_blocks.map((b) => b.modulations(silu_vec));
      const singleMods: ModulationOut[] = this.single_blocks.map((b) => b.modulation.forward(silu_vec)[0]!);

      for (let i = 0; i < this.double_blocks.length; i++) {
        const name = `double_blocks.${i}`;
        const tap: Tap | undefined = taps && ((n, t) => taps(`${name}.${n}`, t));
        const [ni, nt] = tidy(() => this.double_blocks[i]!.forward(h_img, h_txt, doubleMods[i]!, pe, tap));
        h_img.dispose();
        h_txt.dispose();
        h_img = ni;
        h_txt = nt;
        taps?.(`${name}.img`, h_img);
        taps?.(`${name}.txt`, h_txt);
      }

      let x = concat([h_txt, h_img], 1); // [B, L, D]; text first
      h_img.dispose();
      h_txt.dispose();
      for (let i = 0; i < this.single_blocks.length; i++) {
        const name = `single_blocks.${i}`;
        const tap: Tap | undefined = taps && ((n, t) => taps(`${name}.${n}`, t));
        const nx = tidy(() => this.single_blocks[i]!.forward(x, singleMods[i]!, pe, tap));
        x.dispose();
        x = nx;
        taps?.(name, x);
      }

      const out_img = slice(x, 1, Lt, Lt + Li); // [B, Li, D]
      x.dispose();
      const out = this.final_layer.forward(out_img, silu_vec); // [B, Li, out]
      taps?.('final_layer', out);
      return out;
    });
  }

  /** Frees the weights this model loaded. */
  dispose(): void {
    for (const t of this.owned) t.dispose();
  }
}
