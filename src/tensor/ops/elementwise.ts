// Elementwise ops: broadcasting binary ops, scalar affine, activations, softmax and RoPE.

import type { Activation, BinaryOp } from '../backend.js';
import type { Shape, Tensor } from '../tensor.js';
import { OpError, fail, requireFloat, sameBackend, wrap } from './guards.js';

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

/** Unary activation: gelu_tanh (BFL's MLPs, nn.GELU(approximate="tanh")), gelu (erf), silu, quick_gelu (x·σ(1.702x)). */
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
 * FLUX RoPE (black-forest-labs/flux src/flux/math.py apply_rope): adjacent pairs (2k, 2k+1) of the
 * head dim rotated by the fp32 2x2 matrices pe[b, l, k] = [[cos, -sin], [sin, cos]].
 * x [B, H, L, D], pe f32 [B|1, L, D/2, 2, 2].
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
