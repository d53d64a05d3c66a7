// The GEMM family: linear (with go_fast's fp8 input quantisation), batched matmul and attention.

import type { Activation } from '../backend.js';
import { type Tensor, shapeStr } from '../tensor.js';
import { checkAmax } from './amax.js';
import { fail, last, requireFloat, sameBackend, wrap } from './guards.js';

/**
 * y = act((x · Wᵀ) * weightScale + b). x [..., K], w [N, K], bias [N] -> [..., N] in x's dtype.
 * Rounding: one rounding of the GEMM+bias result, then the activation rounds again when present
 * (PyTorch: Linear then GELU are two ops).
 */
export function linear(
  x: Tensor,
  w: Tensor,
  opts: {
    bias?: Tensor | undefined;
    act?: Activation;
    weightScale?: number;
    quantizeInput?: 'f8e4m3' | undefined;
    /** With quantizeInput: max|x| already computed by x's producer (an amaxOut of modulatedLayerNorm / geluConcat). */
    inputAmax?: Tensor | undefined;
  } = {},
): Tensor {
  const op = 'linear';
  const named = { x, w, bias: opts.bias };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  if (x.rank < 1 || w.rank !== 2) fail(op, 'x must be [..., K] and w [N, K]', named);
  const K = last(x.shape);
  const [N, Kw] = w.shape as [number, number];
  if (K !== Kw) fail(op, `inner dims differ: x has K=${K}, w has K=${Kw}`, named);
  if (opts.bias && (opts.bias.rank !== 1 || opts.bias.shape[0] !== N)) fail(op, `bias must be [${N}]`, named);
  if (x.dtype === 'f8e4m3') fail(op, 'x may not be fp8 (activations are quantised inside the op)', named);
  if (opts.quantizeInput !== undefined) {
    if (opts.quantizeInput !== 'f8e4m3') fail(op, `quantizeInput must be 'f8e4m3' (got '${String(opts.quantizeInput)}')`, named);
    if (w.dtype !== 'f8e4m3') fail(op, `quantizeInput 'f8e4m3' needs an fp8 weight (w is ${w.dtype})`, named);
  }
  if (opts.inputAmax) {
    if (!opts.quantizeInput) fail(op, 'inputAmax is only for quantizeInput', named);
    checkAmax(op, opts.inputAmax, be);
  }
  const out = { shape: [...x.shape.slice(0, -1), N], dtype: x.dtype };
  const args = {
    bias: opts.bias,
    act: opts.act ?? 'none',
    weightScale: opts.weightScale ?? 1,
    quantizeInput: opts.quantizeInput,
    inputAmax: be.fusedAmax ? opts.inputAmax : undefined,
  };
  return wrap(be, out, be.linear(out, x, w, args));
}

/**
 * Batched matmul: a [...batch, M, K] · b [...batch, K, N] (or b [...batch, N, K] with transB).
 * b may also have no batch dims (broadcast). Output dtype = a's dtype.
 */
export function matmul(a: Tensor, b: Tensor, opts: { transB?: boolean } = {}): Tensor {
  const op = 'matmul';
  const named = { a, b };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  if (a.rank < 2 || b.rank < 2) fail(op, 'both inputs need rank >= 2', named);
  const transB = opts.transB ?? false;
  const [M, K] = a.shape.slice(-2) as [number, number];
  const [b0, b1] = b.shape.slice(-2) as [number, number];
  const Kb = transB ? b1 : b0;
  const N = transB ? b0 : b1;
  if (K !== Kb) fail(op, `inner dims differ (${K} vs ${Kb}${transB ? ', b transposed' : ''})`, named);
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  if (batchB.length > 0 && shapeStr(batchA) !== shapeStr(batchB)) fail(op, 'batch dims differ', named);
  const out = { shape: [...batchA, M, N], dtype: a.dtype };
  return wrap(be, out, be.matmul(out, a, b, transB));
}

/**
 * softmax(q·kᵀ·scale + bias [+ causal mask]) · v. q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv];
 * bias broadcastable [B|1, H|1, Lq, Lk]. Scores and softmax in fp32; output rounded once, returned
 * with heads merged: [B, Lq, H*Dv]. A query row whose keys are all masked (-inf) gets 0, not NaN.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: { scale?: number; bias?: Tensor | undefined; causal?: boolean } = {}): Tensor {
  const op = 'attention';
  const named = { q, k, v, bias: opts.bias };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) fail(op, 'q, k, v must be [B, H, L, D]', named);
  const [B, H, Lq, D] = q.shape as [number, number, number, number];
  const [Bk, Hk, Lk, Dk] = k.shape as [number, number, number, number];
  const [Bv, Hv, Lv, Dv] = v.shape as [number, number, number, number];
  if (Bk !== B || Bv !== B || Hk !== H || Hv !== H) fail(op, 'batch/head dims of q, k, v differ', named);
  if (Dk !== D) fail(op, 'q and k head dims differ', named);
  if (Lv !== Lk) fail(op, 'k and v lengths differ', named);
  if (k.dtype !== q.dtype || v.dtype !== q.dtype) fail(op, 'q, k, v dtypes differ', named);
  const bias = opts.bias;
  if (bias) {
    const [bb, bh, bq, bk] = bias.shape as [number, number, number, number];
    if (bias.rank !== 4 || (bb !== 1 && bb !== B) || (bh !== 1 && bh !== H) || bq !== Lq || bk !== Lk) {
      fail(op, `bias must be [${B}|1, ${H}|1, ${Lq}, ${Lk}]`, named);
    }
  }
  const causal = opts.causal ?? false;
  if (causal && Lq !== Lk) fail(op, 'causal attention needs Lq == Lk', named);
  const out = { shape: [B, Lq, H * Dv], dtype: q.dtype };
  return wrap(be, out, be.attention(out, q, k, v, { scale: opts.scale ?? 1 / Math.sqrt(D), bias, causal }));
}
