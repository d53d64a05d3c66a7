// Norms: LayerNorm, RMSNorm, GroupNorm, and the adaLN pair of FLUX's blocks (modulated LayerNorm in,
// gated residual out).

import { type Tensor, shapeStr } from '../tensor.js';
import { checkAmax, raiseAmax } from './amax.js';
import { fail, last, requireFloat, sameBackend, wrap } from './guards.js';

/** LayerNorm over the last dim (biased variance, fp32 statistics), optional affine weight/bias. */
export function layerNorm(x: Tensor, opts: { weight?: Tensor | undefined; bias?: Tensor | undefined; eps: number }): Tensor {
  const op = 'layerNorm';
  const named = { x, weight: opts.weight, bias: opts.bias };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  const D = last(x.shape);
  for (const [k, t] of [
    ['weight', opts.weight],
    ['bias', opts.bias],
  ] as const) {
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
export function groupNorm(x: Tensor, opts: { groups: number; weight: Tensor; bias: Tensor; eps: number; act?: 'none' | 'silu' }): Tensor {
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
