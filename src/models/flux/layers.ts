// The FLUX transformer's blocks, read line for line against black-forest-labs/flux@802fb47
// src/flux/modules/layers.py. Fields keep the checkpoint's spelling
// (`img_mod.lin`, `img_attn.norm.query_norm.scale`, `img_mlp.0`, `linear1`,
// `adaLN_modulation.1`), nn.Sequential indices included.
//
// Shapes: B batch, L tokens, D = hidden_size, H heads, Dh = D / H, M = mlp hidden dim.
// Every LayerNorm here is LayerNorm(D, elementwise_affine=False, eps=1e-6) fused with its adaLN
// modulation (modulatedLayerNorm); the norms have no parameters, so they are not fields.

import type { AttnPrepSegment } from '../../tensor/backend.js';
import { attention, attnPrep, gatedResidual, geluConcat, modulatedLayerNorm, rmsNorm, slice } from '../../tensor/ops.js';
import type { Tensor } from '../../tensor/tensor.js';
import { Linear } from '../nn.js';
import type { Weights } from '../weights.js';

/** Receives named intermediates; must read the tensor synchronously (it is freed afterwards). */
export type Tap = (name: string, t: Tensor) => void;

const LN_EPS = 1e-6; // nn.LayerNorm(..., eps=1e-6) in every FLUX block
const RMS_EPS = 1e-6; // BFL RMSNorm: rsqrt(mean(x²) + 1e-6)

/** MLPEmbedder: out_layer(SiLU(in_layer(x))). */
export class MLPEmbedder {
  readonly in_layer: Linear;
  readonly out_layer: Linear;

  constructor(w: Weights, inDim: number, hiddenDim: number) {
    this.in_layer = new Linear(w.pp('in_layer'), inDim, hiddenDim);
    this.out_layer = new Linear(w.pp('out_layer'), hiddenDim, hiddenDim);
  }

  /** [B, in] -> [B, D] */
  forward(x: Tensor): Tensor {
    const h = this.in_layer.forward(x, 'silu'); // [B, D]
    return this.out_layer.forward(h); // [B, D]
  }
}

/** One (shift, scale, gate) triple, each [B, D]. */
export interface ModulationOut {
  readonly shift: Tensor;
  readonly scale: Tensor;
  readonly gate: Tensor;
}

/** Modulation: lin(SiLU(vec)) chunked into 6 (double) or 3 (single) [B, D] vectors */
export class Modulation {
  readonly lin: Linear;
  readonly multiplier: number;

  constructor(
    w: Weights,
    readonly dim: number,
    readonly is_double: boolean,
  ) {
    this.multiplier = is_double ? 6 : 3;
    this.lin = new Linear(w.pp('lin'), dim, this.multiplier * dim);
  }

  /**
   * Takes SiLU(vec) [B, D] (computed once per forward for every block) and returns the chunks in
   * BFL order: shift, scale, gate (then shift2, scale2, gate2).
   */
  forward(siluVec: Tensor): ModulationOut[] {
    const D = this.dim;
    const out = this.lin.forward(siluVec); // [B, m*D]
    const chunk = (i: number) => slice(out, 1, i * D, (i + 1) * D); // [B, D]
    const mods: ModulationOut[] = [];
    for (let i = 0; i < this.multiplier; i += 3) mods.push({ shift: chunk(i), scale: chunk(i + 1), gate: chunk(i + 2) });
    out.dispose();
    return mods;
  }
}

/** BFL RMSNorm: dtype(x·rsqrt(mean(x²)+1e-6)) · scale over the head dim. */
export class RMSNorm {
  readonly scale: Tensor;

  constructor(w: Weights, dim: number) {
    this.scale = w.get('scale', [dim]);
  }

  /** [B, H, L, Dh] -> same */
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.scale, RMS_EPS);
  }
}

/** QKNorm: RMSNorm on q and on k. */
export class QKNorm {
  readonly query_norm: RMSNorm;
  readonly key_norm: RMSNorm;

  constructor(w: Weights, dim: number) {
    this.query_norm = new RMSNorm(w.pp('query_norm'), dim);
    this.key_norm = new RMSNorm(w.pp('key_norm'), dim);
  }
}

/** SelfAttention's parameters: qkv, norm (QKNorm), proj. The blocks drive them step by step. */
export class SelfAttention {
  readonly qkv: Linear;
  readonly norm: QKNorm;
  readonly proj: Linear;

  constructor(
    w: Weights,
    dim: number,
    readonly num_heads: number,
    qkvBias: boolean,
  ) {
    this.qkv = new Linear(w.pp('qkv'), dim, 3 * dim, qkvBias);
    this.norm = new QKNorm(w.pp('norm'), dim / num_heads);
    this.proj = new Linear(w.pp('proj'), dim, dim);
  }

  /** This stream's part of ops.attnPrep: q, k, v at `colOffset` of its projection, with the QK-norm scales. */
  prepSegment(qkv: Tensor, colOffset: number): AttnPrepSegment {
    return { x: qkv, colOffset, qScale: this.norm.query_norm.scale, kScale: this.norm.key_norm.scale };
  }
}

/** nn.Sequential(Linear(D, M), GELU(tanh), Linear(M, D)): fields `0` and `2` as in the checkpoint. */
export class GeluMlp {
  readonly 0: Linear;
  readonly 2: Linear;

  constructor(w: Weights, dim: number, hidden: number) {
    this[0] = new Linear(w.pp(0), dim, hidden);
    this[2] = new Linear(w.pp(2), hidden, dim);
  }

  /** [B, L, D] -> [B, L, D]; inputAmax: max|x| from x's producer (go_fast, see Linear.forward). */
  forward(x: Tensor, inputAmax?: Tensor): Tensor {
    const h = this[0].forward(x, 'gelu_tanh', inputAmax); // [B, L, M]
    const out = this[2].forward(h); // [B, L, D]
    h.dispose();
    return out;
  }
}

/**
 * next(modulatedLayerNorm(x, mod.shift, mod.scale)) where `next` is a Linear or a GeluMlp: when its
 * first linear runs in fp8 (go_fast), the LN pass also computes max|LN output| for it (ops.ts
 * newAmax), so the linear does not read its input once more for the scale.
 */
function modLnInto(next: Linear | GeluMlp, x: Tensor, mod: ModulationOut): Tensor {
  const first = next instanceof Linear ? next : next[0];
  const amax = first.inputAmaxSlot();
  const xm = modulatedLayerNorm(x, mod.shift, mod.scale, LN_EPS, amax); // [B, L, D]
  return next instanceof Linear ? next.forward(xm, 'none', amax) : next.forward(xm, amax);
}

/** Modulation vectors of one double block: (mod1, mod2) per stream. */
export interface DoubleMods {
  readonly img: readonly ModulationOut[];
  readonly txt: readonly ModulationOut[];
}

/** DoubleStreamBlock: separate weights per stream, joint attention (text first). */
export class DoubleStreamBlock {
  readonly img_mod: Modulation;
  readonly img_attn: SelfAttention;
  readonly img_mlp: GeluMlp;
  readonly txt_mod: Modulation;
  readonly txt_attn: SelfAttention;
  readonly txt_mlp: GeluMlp;

  constructor(w: Weights, hidden: number, heads: number, mlpHidden: number, qkvBias: boolean) {
    this.img_mod = new Modulation(w.pp('img_mod'), hidden, true);
    this.img_attn = new SelfAttention(w.pp('img_attn'), hidden, heads, qkvBias);
    this.img_mlp = new GeluMlp(w.pp('img_mlp'), hidden, mlpHidden);
    this.txt_mod = new Modulation(w.pp('txt_mod'), hidden, true);
    this.txt_attn = new SelfAttention(w.pp('txt_attn'), hidden, heads, qkvBias);
    this.txt_mlp = new GeluMlp(w.pp('txt_mlp'), hidden, mlpHidden);
  }

  /** Both streams' modulations from SiLU(vec) [B, D]. */
  modulations(siluVec: Tensor): DoubleMods {
    return { img: this.img_mod.forward(siluVec), txt: this.txt_mod.forward(siluVec) };
  }

  /** img [B, Li, D], txt [B, Lt, D], pe [B|1, Lt+Li, Dh/2, 2, 2] -> [img, txt]. */
  forward(img: Tensor, txt: Tensor, mods: DoubleMods, pe: Tensor, tap?: Tap): [Tensor, Tensor] {
    const [img1, img2] = mods.img as [ModulationOut, ModulationOut];
    const [txt1, txt2] = mods.txt as [ModulationOut, ModulationOut];
    const Lt = txt.shape[1]!;
    const Lall = Lt + img.shape[1]!;

    // prepare image and text for attention (go_fast: each LN also yields its output's amax for the
    // fp8 linear after it, modLnInto)
    const img_qkv = modLnInto(this.img_attn.qkv, img, img1); // [B, Li, 3*H*Dh]
    const txt_qkv = modLnInto(this.txt_attn.qkv, txt, txt1); // [B, Lt, 3*H*Dh]

    // joint attention, text first: heads split, QK-normed per stream, concatenated, RoPE'd (one op)
    const [q, k, v] = attnPrep([this.txt_attn.prepSegment(txt_qkv, 0), this.img_attn.prepSegment(img_qkv, 0)], {
      heads: this.img_attn.num_heads,
      pe,
      eps: RMS_EPS,
    }); // 3 x [B, H, L, Dh]
    const attn = attention(q, k, v); // [B, L, D]
    tap?.('attn', attn);
    const txt_a = slice(attn, 1, 0, Lt); // [B, Lt, D]
    const img_a = slice(attn, 1, Lt, Lall); // [B, Li, D]

    // image stream
    const img_attn_out = this.img_attn.proj.forward(img_a); // [B, Li, D]
    tap?.('img_attn', img_attn_out);
    const img_r = gatedResidual(img, img1.gate, img_attn_out); // [B, Li, D]
    const img_mlp_out = modLnInto(this.img_mlp, img_r, img2); // [B, Li, D]
    tap?.('img_mlp', img_mlp_out);
    const img_out = gatedResidual(img_r, img2.gate, img_mlp_out); // [B, Li, D]

    // text stream
    const txt_attn_out = this.txt_attn.proj.forward(txt_a); // [B, Lt, D]
    tap?.('txt_attn', txt_attn_out);
    const txt_r = gatedResidual(txt, txt1.gate, txt_attn_out); // [B, Lt, D]
    const txt_mlp_out = modLnInto(this.txt_mlp, txt_r, txt2); // [B, Lt, D]
    tap?.('txt_mlp', txt_mlp_out);
    const txt_out = gatedResidual(txt_r, txt2.gate, txt_mlp_out); // [B, Lt, D]
    return [img_out, txt_out];
  }
}

/** SingleStreamBlock: parallel attention and MLP over the joint sequence. */
export class SingleStreamBlock {
  readonly linear1: Linear;
  readonly linear2: Linear;
  readonly norm: QKNorm;
  readonly modulation: Modulation;

  constructor(
    w: Weights,
    readonly hidden_size: number,
    readonly num_heads: number,
    readonly mlp_hidden_dim: number,
  ) {
    this.linear1 = new Linear(w.pp('linear1'), hidden_size, 3 * hidden_size + mlp_hidden_dim); // qkv ‖ mlp_in
    this.linear2 = new Linear(w.pp('linear2'), hidden_size + mlp_hidden_dim, hidden_size); // proj ‖ mlp_out
    this.norm = new QKNorm(w.pp('norm'), hidden_size / num_heads);
    this.modulation = new Modulation(w.pp('modulation'), hidden_size, false);
  }

  /** x [B, L, D] -> [B, L, D]; mod from modulation.forward(SiLU(vec)). */
  forward(x: Tensor, mod: ModulationOut, pe: Tensor, tap?: Tap): Tensor {
    const D = this.hidden_size;
    const h = modLnInto(this.linear1, x, mod); // [B, L, 3*D + M]: qkv ‖ mlp
    const [q, k, v] = attnPrep([{ x: h, colOffset: 0, qScale: this.norm.query_norm.scale, kScale: this.norm.key_norm.scale }], {
      heads: this.num_heads,
      pe,
      eps: RMS_EPS,
    }); // 3 x [B, H, L, Dh], q and k normed and RoPE'd
    const attn = attention(q, k, v); // [B, L, D]
    tap?.('attn', attn);
    // linear2's input: cat(attn, GELU_tanh(mlp)), attention first (and its amax under go_fast)
    const amax = this.linear2.inputAmaxSlot();
    const output = this.linear2.forward(geluConcat(attn, h, 3 * D, this.mlp_hidden_dim, amax), 'none', amax); // [B, L, D]
    h.dispose();
    tap?.('linear2', output);
    return gatedResidual(x, mod.gate, output); // [B, L, D]
  }
}

/** LastLayer: adaLN with SHIFT first, then Linear(D -> out). */
export class LastLayer {
  readonly linear: Linear;
  readonly adaLN_modulation: { readonly 1: Linear };

  constructor(
    w: Weights,
    readonly hidden_size: number,
    outChannels: number,
  ) {
    this.linear = new Linear(w.pp('linear'), hidden_size, outChannels);
    this.adaLN_modulation = { 1: new Linear(w.pp('adaLN_modulation').pp(1), hidden_size, 2 * hidden_size) }; // [0] is SiLU
  }

  /** x [B, L, D], SiLU(vec) [B, D] -> [B, L, out] */
  forward(x: Tensor, siluVec: Tensor): Tensor {
    const D = this.hidden_size;
    const m = this.adaLN_modulation[1].forward(siluVec); // [B, 2*D]
    const shift = slice(m, 1, 0, D); // [B, D]
    const scale = slice(m, 1, D, 2 * D); // [B, D]
    const xm = modulatedLayerNorm(x, shift, scale, LN_EPS); // [B, L, D]
    return this.linear.forward(xm); // [B, L, out]
  }
}
