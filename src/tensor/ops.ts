// The closed op list. Every op FLUX, its VAE, T5, CLIP and the safety checkers use is here, once:
// its shape/dtype guards, its output shape, and its semantics in the doc comment. The backends
// (cpu/, cuda/) implement exactly these. Model code calls only these functions.
//
// Layout conventions: tensors are contiguous row-major. Linear weights are [out, in] (PyTorch).
// Attention takes q/k/v as [B, H, L, D] and returns merged heads [B, Lq, H*D]. Conv2d is NCHW with
// weights [O, C, kh, kw]. RoPE tables are fp32 [B|1, L, D/2, 2, 2] (BFL EmbedND layout, flux-spec §1.4).

import type { Activation, AttnPrepSegment, Backend, BinaryOp, OutSpec, Storage } from './backend.js';
import { type DType, isFloat } from './dtype.js';
import { type Shape, StorageRef, Tensor, numel, shapeStr } from './tensor.js';

export class OpError extends Error {
  constructor(op: string, msg: string) {
    super(`${op}: ${msg}`);
    this.name = 'OpError';
  }
}

function describe(named: Record<string, Tensor | undefined>): string {
  return Object.entries(named)
    .filter(([, t]) => t !== undefined)
    .map(([k, t]) => `${k} ${shapeStr(t!.shape)} ${t!.dtype}`)
    .join(', ');
}

function fail(op: string, why: string, named: Record<string, Tensor | undefined>): never {
  throw new OpError(op, `${why} (got ${describe(named)})`);
}

function sameBackend(op: string, named: Record<string, Tensor | undefined>): Backend {
  let be: Backend | undefined;
  for (const t of Object.values(named)) {
    if (!t) continue;
    if (t.disposed) fail(op, `input used after dispose`, named);
    if (be && t.backend !== be) fail(op, `inputs live on different backends`, named);
    be = t.backend;
  }
  if (!be) throw new OpError(op, 'no tensor inputs');
  return be;
}

function wrap(be: Backend, out: OutSpec, s: Storage): Tensor {
  return new Tensor(be, new StorageRef(s), out.shape, out.dtype);
}

function requireFloat(op: string, named: Record<string, Tensor | undefined>): void {
  for (const [k, t] of Object.entries(named)) {
    if (t && !isFloat(t.dtype)) fail(op, `${k} must be a float tensor`, named);
  }
}

function last(shape: Shape): number {
  return shape[shape.length - 1] ?? 1;
}

// ---------------------------------------------------------------------------------------------
// Creation

/** A tensor holding a copy of host values (float32 values are rounded to `dtype`). */
export function fromArray(be: Backend, shape: Shape, data: ArrayLike<number>, dtype: DType = 'f32'): Tensor {
  const n = numel(shape);
  if (data.length !== n) throw new OpError('fromArray', `${data.length} values for shape ${shapeStr(shape)} (needs ${n})`);
  if (dtype === 'i32') {
    const raw = data instanceof Int32Array ? data : Int32Array.from(data);
    return new Tensor(be, new StorageRef(be.upload('i32', raw)), [...shape], 'i32');
  }
  const f = data instanceof Float32Array ? data : Float32Array.from(data);
  const t = new Tensor(be, new StorageRef(be.upload('f32', f)), [...shape], 'f32');
  if (dtype === 'f32') return t;
  try {
    return cast(t, dtype);
  } finally {
    t.dispose();
  }
}

/** A tensor over raw elements already encoded in `dtype` (bf16 bit patterns etc.). */
export function fromRaw(be: Backend, shape: Shape, dtype: DType, raw: import('./dtype.js').RawArray): Tensor {
  if (raw.length !== numel(shape)) {
    throw new OpError('fromRaw', `${raw.length} elements for shape ${shapeStr(shape)} (needs ${numel(shape)})`);
  }
  return new Tensor(be, new StorageRef(be.upload(dtype, raw)), [...shape], dtype);
}

export function zeros(be: Backend, shape: Shape, dtype: DType = 'f32'): Tensor {
  return new Tensor(be, new StorageRef(be.zeros(dtype, numel(shape))), [...shape], dtype);
}

// ---------------------------------------------------------------------------------------------
// GEMM family

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
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: { scale?: number; bias?: Tensor | undefined; causal?: boolean } = {},
): Tensor {
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

// ---------------------------------------------------------------------------------------------
// Norms

/** LayerNorm over the last dim (biased variance, fp32 statistics), optional affine weight/bias. */
export function layerNorm(x: Tensor, opts: { weight?: Tensor | undefined; bias?: Tensor | undefined; eps: number }): Tensor {
  const op = 'layerNorm';
  const named = { x, weight: opts.weight, bias: opts.bias };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  const D = last(x.shape);
  for (const [k, t] of [['weight', opts.weight], ['bias', opts.bias]] as const) {
    if (t && (t.rank !== 1 || t.shape[0] !== D)) fail(op, `${k} must be [${D}]`, named);
  }
  const out = { shape: x.shape, dtype: x.dtype };
  return wrap(be, out, be.layerNorm(out, x, opts.weight, opts.bias, opts.eps));
}

/**
 * RMSNorm over the last dim: y = dtype(x · rsqrt(mean(x²) + eps)) · weight (the multiply by the
 * weight is a second rounding, as in BFL's RMSNorm and HF's T5LayerNorm).
 */
export function rmsNorm(x: Tensor, weight: Tensor | undefined, eps: number): Tensor {
  const op = 'rmsNorm';
  const named = { x, weight };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  const D = last(x.shape);
  if (weight && (weight.rank !== 1 || weight.shape[0] !== D)) fail(op, `weight must be [${D}]`, named);
  const out = { shape: x.shape, dtype: x.dtype };
  return wrap(be, out, be.rmsNorm(out, x, weight, eps));
}

/**
 * GroupNorm on [B, C, ...spatial] with affine weight/bias [C], fp32 statistics, optional fused SiLU
 * (two roundings with SiLU: the norm's output, then the activation's, as two PyTorch ops).
 */
export function groupNorm(
  x: Tensor,
  opts: { groups: number; weight: Tensor; bias: Tensor; eps: number; act?: 'none' | 'silu' },
): Tensor {
  const op = 'groupNorm';
  const named = { x, weight: opts.weight, bias: opts.bias };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  if (x.rank < 2) fail(op, 'x must be [B, C, ...]', named);
  const C = x.shape[1]!;
  if (!Number.isInteger(opts.groups) || opts.groups < 1 || C % opts.groups !== 0) {
    fail(op, `groups=${opts.groups} must divide C=${C}`, named);
  }
  if (opts.weight.rank !== 1 || opts.weight.shape[0] !== C || opts.bias.rank !== 1 || opts.bias.shape[0] !== C) {
    fail(op, `weight and bias must be [${C}]`, named);
  }
  const out = { shape: x.shape, dtype: x.dtype };
  return wrap(be, out, be.groupNorm(out, x, opts.groups, opts.weight, opts.bias, opts.eps, opts.act ?? 'none'));
}

function checkModulation(op: string, x: Tensor, named: Record<string, Tensor | undefined>, ...mods: Tensor[]): void {
  if (x.rank !== 3) fail(op, 'x must be [B, L, D]', named);
  const [B, , D] = x.shape as [number, number, number];
  for (const m of mods) {
    const ok = (m.rank === 2 && m.shape[0] === B && m.shape[1] === D) || (m.rank === 3 && m.shape[0] === B && m.shape[1] === 1 && m.shape[2] === D);
    if (!ok) fail(op, `modulation vectors must be [${B}, ${D}] or [${B}, 1, ${D}]`, named);
  }
}

/**
 * Fused adaLN: (1 + scale) · LayerNorm(x) + shift, LN without affine, per batch item vectors.
 * x [B, L, D], shift/scale [B, D]. Rounds like the PyTorch chain: LN, 1+scale, product, sum.
 * `amaxOut` (see newAmax) is raised to max|output| (the next fp8 linear's inputAmax).
 */
export function modulatedLayerNorm(x: Tensor, shift: Tensor, scale: Tensor, eps = 1e-6, amaxOut?: Tensor): Tensor {
  const op = 'modulatedLayerNorm';
  const named = { x, shift, scale };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  checkModulation(op, x, named, shift, scale);
  if (amaxOut) checkAmax(op, amaxOut, be);
  const out = { shape: x.shape, dtype: x.dtype };
  const y = wrap(be, out, be.modulatedLayerNorm(out, x, shift, scale, eps, be.fusedAmax ? amaxOut : undefined));
  if (amaxOut && !be.fusedAmax) raiseAmax(amaxOut, y);
  return y;
}

/**
 * A running max|·| for go_fast's fp8 inputs: an f32 [1] tensor holding 0, which producers
 * (modulatedLayerNorm, geluConcat with `amaxOut`) raise to the max |value| they write, in the same
 * pass on backends with `fusedAmax`. linear(..., { quantizeInput, inputAmax }) then skips its own
 * pass over x. A max is order-free, so the result is deterministic and equal to absMax(x).
 */
export function newAmax(be: Backend): Tensor {
  return zeros(be, [1], 'f32');
}

function checkAmax(op: string, amax: Tensor, be: Backend): void {
  if (amax.backend !== be || amax.dtype !== 'f32' || amax.size !== 1) {
    throw new OpError(op, `an amax must be an f32 [1] tensor on the ${be.name} backend (newAmax); got ${amax.dtype} [${amax.shape.join(', ')}] on ${amax.backend.name}`);
  }
}

/** amax = max(amax, max|y|) composed on the host, for backends without fusedAmax. */
function raiseAmax(amax: Tensor, y: Tensor): void {
  const m = Math.max(amax.toFloat32()[0]!, absMax(y));
  amax.backend.write(amax.storage, 'f32', Float32Array.of(m), 0);
}

/** x + gate · y with x, y [B, L, D] and gate [B, D] (two roundings: the product, then the sum). */
export function gatedResidual(x: Tensor, gate: Tensor, y: Tensor): Tensor {
  const op = 'gatedResidual';
  const named = { x, gate, y };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  checkModulation(op, x, named, gate);
  if (shapeStr(y.shape) !== shapeStr(x.shape)) fail(op, 'x and y shapes differ', named);
  const out = { shape: x.shape, dtype: x.dtype };
  return wrap(be, out, be.gatedResidual(out, x, gate, y));
}

// ---------------------------------------------------------------------------------------------
// Elementwise

/** NumPy broadcasting of two shapes, or undefined when they do not broadcast. */
export function broadcastShapes(a: Shape, b: Shape): number[] | undefined {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return undefined;
    out.push(da === 1 ? db : da);
  }
  return out;
}

function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const named = { a, b };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  const shape = broadcastShapes(a.shape, b.shape);
  if (!shape) fail(op, 'shapes do not broadcast', named);
  const out = { shape, dtype: a.dtype };
  return wrap(be, out, be.binary(out, op, a, b));
}

/** a + b with NumPy broadcasting; result in a's dtype. */
export const add = (a: Tensor, b: Tensor): Tensor => binary('add', a, b);
/** a - b with NumPy broadcasting; result in a's dtype. */
export const sub = (a: Tensor, b: Tensor): Tensor => binary('sub', a, b);
/** a · b with NumPy broadcasting; result in a's dtype. */
export const mul = (a: Tensor, b: Tensor): Tensor => binary('mul', a, b);

/** x · mul + add with scalars (two roundings when add != 0 and mul != 1, as two PyTorch ops). */
export function affine(x: Tensor, mulBy: number, addTo = 0): Tensor {
  const op = 'affine';
  const named = { x };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  if (!Number.isFinite(mulBy) || !Number.isFinite(addTo)) throw new OpError(op, `scalars must be finite (got ${mulBy}, ${addTo})`);
  const out = { shape: x.shape, dtype: x.dtype };
  return wrap(be, out, be.affine(out, x, mulBy, addTo));
}

/** Unary activation: gelu_tanh (flux-spec §1.7), gelu (erf), silu, quick_gelu (x·σ(1.702x)). */
export function activation(x: Tensor, act: Activation): Tensor {
  const op = 'activation';
  const named = { x };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  const out = { shape: x.shape, dtype: x.dtype };
  return wrap(be, out, be.activation(out, x, act));
}

export const gelu = (x: Tensor): Tensor => activation(x, 'gelu');
export const geluTanh = (x: Tensor): Tensor => activation(x, 'gelu_tanh');
export const silu = (x: Tensor): Tensor => activation(x, 'silu');
export const quickGelu = (x: Tensor): Tensor => activation(x, 'quick_gelu');

/** Softmax over the last dim (fp32 inside). */
export function softmax(x: Tensor): Tensor {
  const op = 'softmax';
  const named = { x };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  const out = { shape: x.shape, dtype: x.dtype };
  return wrap(be, out, be.softmax(out, x));
}

/**
 * FLUX RoPE (flux-spec §1.4): adjacent pairs (2k, 2k+1) of the head dim rotated by the fp32 2x2
 * matrices pe[b, l, k] = [[cos, -sin], [sin, cos]]. x [B, H, L, D], pe f32 [B|1, L, D/2, 2, 2].
 * Math in fp32, one rounding to x's dtype.
 */
export function rope(x: Tensor, pe: Tensor): Tensor {
  const op = 'rope';
  const named = { x, pe };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  if (x.rank !== 4) fail(op, 'x must be [B, H, L, D]', named);
  const [B, , L, D] = x.shape as [number, number, number, number];
  if (D % 2 !== 0) fail(op, 'head dim must be even', named);
  const p = pe.shape;
  if (pe.dtype !== 'f32' || pe.rank !== 5 || (p[0] !== 1 && p[0] !== B) || p[1] !== L || p[2] !== D / 2 || p[3] !== 2 || p[4] !== 2) {
    fail(op, `pe must be f32 [${B}|1, ${L}, ${D / 2}, 2, 2]`, named);
  }
  const out = { shape: x.shape, dtype: x.dtype };
  return wrap(be, out, be.rope(out, x, pe));
}

// ---------------------------------------------------------------------------------------------
// Convolution and resampling

function pair(v: number | readonly [number, number]): [number, number] {
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

/**
 * 2-D convolution, NCHW. w [O, C, kh, kw], bias [O]. padding: one number, [ph, pw], or the
 * asymmetric [top, bottom, left, right] (the VAE's downsample pads (0,1,0,1)).
 */
export function conv2d(
  x: Tensor,
  w: Tensor,
  opts: {
    bias?: Tensor | undefined;
    stride?: number | readonly [number, number];
    padding?: number | readonly [number, number] | readonly [number, number, number, number];
  } = {},
): Tensor {
  const op = 'conv2d';
  const named = { x, w, bias: opts.bias };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  if (x.rank !== 4 || w.rank !== 4) fail(op, 'x must be [B, C, H, W] and w [O, C, kh, kw]', named);
  const [B, C, H, W] = x.shape as [number, number, number, number];
  const [O, Cw, kh, kw] = w.shape as [number, number, number, number];
  if (C !== Cw) fail(op, `input channels differ (${C} vs ${Cw})`, named);
  if (opts.bias && (opts.bias.rank !== 1 || opts.bias.shape[0] !== O)) fail(op, `bias must be [${O}]`, named);
  const stride = pair(opts.stride ?? 1);
  const pad = opts.padding ?? 0;
  let padding: [number, number, number, number];
  if (typeof pad === 'number') padding = [pad, pad, pad, pad];
  else if (pad.length === 2) padding = [pad[0], pad[0], pad[1], pad[1]];
  else padding = [pad[0], pad[1], pad[2], pad[3]];
  if (stride.some((s) => !Number.isInteger(s) || s < 1) || padding.some((p) => !Number.isInteger(p) || p < 0)) {
    fail(op, `stride must be >= 1 and padding >= 0 (stride ${stride}, padding ${padding})`, named);
  }
  const Ho = Math.floor((H + padding[0] + padding[1] - kh) / stride[0]) + 1;
  const Wo = Math.floor((W + padding[2] + padding[3] - kw) / stride[1]) + 1;
  if (Ho < 1 || Wo < 1) fail(op, `kernel ${kh}x${kw} larger than the padded input`, named);
  const out = { shape: [B, O, Ho, Wo], dtype: x.dtype };
  return wrap(be, out, be.conv2d(out, x, w, { bias: opts.bias, stride, padding }));
}

/** Nearest-neighbour upsampling of [B, C, H, W] by an integer factor. */
export function upsampleNearest(x: Tensor, factor = 2): Tensor {
  const op = 'upsampleNearest';
  const named = { x };
  const be = sameBackend(op, named);
  if (x.rank !== 4) fail(op, 'x must be [B, C, H, W]', named);
  if (!Number.isInteger(factor) || factor < 1) fail(op, `factor must be a positive integer (got ${factor})`, named);
  const [B, C, H, W] = x.shape as [number, number, number, number];
  const out = { shape: [B, C, H * factor, W * factor], dtype: x.dtype };
  return wrap(be, out, be.upsampleNearest(out, x, factor));
}

// ---------------------------------------------------------------------------------------------
// Layout

function normAxis(op: string, axis: number, rank: number, named: Record<string, Tensor | undefined>): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) fail(op, `axis ${axis} out of range for rank ${rank}`, named);
  return a;
}

/** Concatenate along an axis; all other dims and the dtype must agree. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  const op = 'concat';
  if (xs.length === 0) throw new OpError(op, 'needs at least one tensor');
  const named = Object.fromEntries(xs.map((t, i) => [`x${i}`, t]));
  const be = sameBackend(op, named);
  const first = xs[0]!;
  const a = normAxis(op, axis, first.rank, named);
  let total = 0;
  for (const t of xs) {
    if (t.rank !== first.rank || t.dtype !== first.dtype) fail(op, 'ranks or dtypes differ', named);
    for (let d = 0; d < t.rank; d++) if (d !== a && t.shape[d] !== first.shape[d]) fail(op, `dim ${d} differs`, named);
    total += t.shape[a]!;
  }
  const shape = [...first.shape];
  shape[a] = total;
  const out = { shape, dtype: first.dtype };
  return wrap(be, out, be.concat(out, xs, a));
}

/** x[..., start:end, ...] along one axis (copy). */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const op = 'slice';
  const named = { x };
  const be = sameBackend(op, named);
  const a = normAxis(op, axis, x.rank, named);
  const n = x.shape[a]!;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > n || start > end) {
    fail(op, `range [${start}, ${end}) outside 0..${n} on axis ${a}`, named);
  }
  const shape = [...x.shape];
  shape[a] = end - start;
  const out = { shape, dtype: x.dtype };
  return wrap(be, out, be.slice(out, x, a, start));
}

/** A view with a new shape (same storage); one dim may be -1. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const op = 'reshape';
  const named = { x };
  sameBackend(op, named);
  const s = [...shape];
  const inferred = s.indexOf(-1);
  if (inferred !== s.lastIndexOf(-1)) fail(op, `at most one -1 in ${shapeStr(shape)}`, named);
  if (inferred >= 0) {
    const rest = numel(s.filter((_, i) => i !== inferred));
    if (rest === 0 || x.size % rest !== 0) fail(op, `cannot infer -1 in ${shapeStr(shape)}`, named);
    s[inferred] = x.size / rest;
  }
  if (s.some((d) => !Number.isInteger(d) || d < 0) || numel(s) !== x.size) {
    fail(op, `cannot view ${x.size} elements as ${shapeStr(shape)}`, named);
  }
  return x.view(s);
}

/** Transpose dims: out.shape[i] = x.shape[perm[i]] (copy). */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const op = 'permute';
  const named = { x };
  const be = sameBackend(op, named);
  const sorted = [...perm].sort((p, q) => p - q);
  if (perm.length !== x.rank || sorted.some((p, i) => p !== i)) fail(op, `perm [${perm}] is not a permutation of rank ${x.rank}`, named);
  const out = { shape: perm.map((p) => x.shape[p]!), dtype: x.dtype };
  return wrap(be, out, be.permute(out, x, perm));
}

/**
 * Split a packed projection x [B, L, n·H·D] into n tensors [B, H, L, D]
 * (einops "B L (K H D) -> K B H L D", flux-spec §1.7): part p, head h is columns
 * [(p·H + h)·D, (p·H + h + 1)·D).
 */
export function splitHeads(x: Tensor, parts: number, heads: number): Tensor[] {
  const op = 'splitHeads';
  const named = { x };
  const be = sameBackend(op, named);
  if (x.rank !== 3) fail(op, 'x must be [B, L, n*H*D]', named);
  const [B, L, F] = x.shape as [number, number, number];
  if (!Number.isInteger(parts) || parts < 1 || !Number.isInteger(heads) || heads < 1 || F % (parts * heads) !== 0) {
    fail(op, `last dim ${F} is not ${parts} parts x ${heads} heads`, named);
  }
  const D = F / (parts * heads);
  const outs: OutSpec[] = Array.from({ length: parts }, () => ({ shape: [B, heads, L, D], dtype: x.dtype }));
  const storages = be.splitHeads(outs, x, heads);
  return storages.map((s, i) => wrap(be, outs[i]!, s));
}

/** Gather rows of table [V, D] by integer ids [...] -> [..., D]. Ids out of range throw. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  const op = 'embedding';
  const named = { table, ids };
  const be = sameBackend(op, named);
  if (table.rank !== 2) fail(op, 'table must be [V, D]', named);
  if (ids.dtype !== 'i32') fail(op, 'ids must be i32', named);
  const out = { shape: [...ids.shape, table.shape[1]!], dtype: table.dtype };
  return wrap(be, out, be.embedding(out, table, ids));
}

/** Convert to another dtype (round to nearest even for bf16/f16/f8, NaN/inf kept; floats -> i32 truncate). */
export function cast(x: Tensor, dtype: DType): Tensor {
  const op = 'cast';
  const be = sameBackend(op, { x });
  const out = { shape: x.shape, dtype };
  return wrap(be, out, be.cast(out, x));
}

/**
 * max |x| over all elements as a host number (a reduction that waits for the backend; used when
 * quantising weights, not inside a denoising step). NaN elements are ignored; 0 for an empty tensor.
 */
export function absMax(x: Tensor): number {
  const op = 'absMax';
  const be = sameBackend(op, { x });
  requireFloat(op, { x });
  return x.size === 0 ? 0 : be.absMax(x);
}

// ---- composite ops: defined by their composition; a backend may run them fused ------------------

/**
 * Attention inputs of FLUX's blocks in one op (flux-spec §1.4, §1.6): for each segment, the q, k, v
 * columns [colOffset, colOffset + 3·H·Dh) of x [B, L_s, C] split into heads
 * ("B L (K H D) -> K B H L D"), q and k RMS-normalised with their scales (BFL RMSNorm: two
 * roundings), the segments concatenated along L (text first in the double blocks), then RoPE on q
 * and k with pe f32 [B|1, ΣL_s, Dh/2, 2, 2]. Returns [q, k, v], each [B, H, ΣL_s, Dh]. Equal to
 * slice -> splitHeads -> rmsNorm -> concat -> rope; the CUDA backend does it in one pass over x
 * (instead of five passes and four intermediates).
 */
export function attnPrep(segments: readonly AttnPrepSegment[], opts: { heads: number; pe: Tensor; eps: number }): [Tensor, Tensor, Tensor] {
  const op = 'attnPrep';
  if (segments.length < 1) throw new OpError(op, 'needs at least one segment');
  const first = segments[0]!;
  const named: Record<string, Tensor | undefined> = { pe: opts.pe };
  segments.forEach((s, i) => Object.assign(named, { [`x${i}`]: s.x, [`qScale${i}`]: s.qScale, [`kScale${i}`]: s.kScale }));
  const be = sameBackend(op, named);
  const H = opts.heads;
  const Dh = first.qScale.shape[0]!;
  const B = first.x.shape[0]!;
  let Ltot = 0;
  for (const [i, s] of segments.entries()) {
    if (s.x.rank !== 3) fail(op, `segment ${i}: x must be [B, L, C]`, named);
    if (s.x.shape[0] !== B || s.x.dtype !== first.x.dtype) fail(op, `segment ${i}: batch and dtype must match segment 0`, named);
    if (s.qScale.rank !== 1 || s.kScale.rank !== 1 || s.qScale.shape[0] !== Dh || s.kScale.shape[0] !== Dh) fail(op, `segment ${i}: scales must be [${Dh}]`, named);
    if (!Number.isInteger(s.colOffset) || s.colOffset < 0 || s.colOffset + 3 * H * Dh > s.x.shape[2]!) {
      fail(op, `segment ${i}: columns [${s.colOffset}, ${s.colOffset + 3 * H * Dh}) do not fit C=${s.x.shape[2]}`, named);
    }
    Ltot += s.x.shape[1]!;
  }
  if (!Number.isInteger(H) || H < 1 || Dh % 2 !== 0) fail(op, `heads must be a positive integer and Dh (${Dh}) even`, named);
  const outs: OutSpec[] = Array.from({ length: 3 }, () => ({ shape: [B, H, Ltot, Dh], dtype: first.x.dtype }));
  if (be.attnPrep && segments.length <= 2 && Dh <= 256) {
    const p = opts.pe.shape;
    if (opts.pe.dtype !== 'f32' || opts.pe.rank !== 5 || (p[0] !== 1 && p[0] !== B) || p[1] !== Ltot || p[2] !== Dh / 2) {
      fail(op, `pe must be f32 [${B}|1, ${Ltot}, ${Dh / 2}, 2, 2]`, named);
    }
    const st = be.attnPrep(outs, segments, H, opts.pe, opts.eps);
    return st.map((s, i) => wrap(be, outs[i]!, s)) as [Tensor, Tensor, Tensor];
  }
  return attnPrepComposed(segments, opts);
}

/** attnPrep by its definition (slice -> splitHeads -> rmsNorm -> concat -> rope), whatever the backend has. */
export function attnPrepComposed(segments: readonly AttnPrepSegment[], opts: { heads: number; pe: Tensor; eps: number }): [Tensor, Tensor, Tensor] {
  const H = opts.heads;
  const Dh = segments[0]!.qScale.shape[0]!;
  const parts: [Tensor, Tensor, Tensor][] = segments.map((s) => {
    const C = s.x.shape[2]!;
    const cols = s.colOffset === 0 && C === 3 * H * Dh ? s.x : slice(s.x, 2, s.colOffset, s.colOffset + 3 * H * Dh);
    const [q, k, v] = splitHeads(cols, 3, H) as [Tensor, Tensor, Tensor];
    if (cols !== s.x) cols.dispose();
    const qn = rmsNorm(q, s.qScale, opts.eps);
    const kn = rmsNorm(k, s.kScale, opts.eps);
    q.dispose();
    k.dispose();
    return [qn, kn, v];
  });
  const cat = (i: 0 | 1 | 2): Tensor => {
    if (parts.length === 1) return parts[0]![i];
    const t = concat(parts.map((p) => p[i]), 2);
    for (const p of parts) p[i].dispose();
    return t;
  };
  const [q, k, v] = [cat(0), cat(1), cat(2)];
  const qr = rope(q, opts.pe);
  const kr = rope(k, opts.pe);
  q.dispose();
  k.dispose();
  return [qr, kr, v];
}

/**
 * concat([a, gelu_tanh(h[..., colOffset : colOffset + width])], -1) for FLUX's single blocks
 * (the input of linear2: attention output first, then the activated MLP half of linear1's output).
 * a [B, L, Da], h [B, L, C] -> [B, L, Da + width]; the GELU is rounded once (the activation op).
 * `amaxOut` (see newAmax) is raised to max|output| (linear2's inputAmax under go_fast).
 */
export function geluConcat(a: Tensor, h: Tensor, colOffset: number, width: number, amaxOut?: Tensor): Tensor {
  const op = 'geluConcat';
  const named = { a, h };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  if (amaxOut) checkAmax(op, amaxOut, be);
  if (a.rank !== 3 || h.rank !== 3 || a.shape[0] !== h.shape[0] || a.shape[1] !== h.shape[1] || a.dtype !== h.dtype) {
    fail(op, 'a [B, L, Da] and h [B, L, C] must share B, L and dtype', named);
  }
  if (!Number.isInteger(colOffset) || !Number.isInteger(width) || colOffset < 0 || width < 1 || colOffset + width > h.shape[2]!) {
    fail(op, `columns [${colOffset}, ${colOffset + width}) do not fit C=${h.shape[2]}`, named);
  }
  const out = { shape: [a.shape[0]!, a.shape[1]!, a.shape[2]! + width], dtype: a.dtype };
  const fused = be.geluConcat && be.fusedAmax;
  const y = be.geluConcat ? wrap(be, out, be.geluConcat(out, a, h, colOffset, width, fused ? amaxOut : undefined)) : geluConcatComposed(a, h, colOffset, width);
  if (amaxOut && !fused) raiseAmax(amaxOut, y);
  return y;
}

/** geluConcat by its definition (slice -> activation -> concat), whatever the backend has. */
export function geluConcatComposed(a: Tensor, h: Tensor, colOffset: number, width: number): Tensor {
  const part = slice(h, 2, colOffset, colOffset + width);
  const act = activation(part, 'gelu_tanh');
  part.dispose();
  const y = concat([a, act], 2);
  act.dispose();
  return y;
}

/** The names of every op, for backends' completeness checks and docs. */
export const OP_NAMES = [
  'linear', 'matmul', 'attention', 'layerNorm', 'rmsNorm', 'groupNorm', 'modulatedLayerNorm', 'gatedResidual',
  'binary', 'affine', 'activation', 'softmax', 'rope', 'conv2d', 'upsampleNearest', 'concat', 'slice',
  'permute', 'splitHeads', 'embedding', 'cast', 'absMax',
] as const;
