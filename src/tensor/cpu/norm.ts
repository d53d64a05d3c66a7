// Normalisations and the adaLN helpers. Statistics in float64 (two passes: mean, then biased
// variance); the rounding points follow the PyTorch op chains documented in ops.ts.

import type { Activation, OutSpec, Storage } from '../backend.js';
import { type DType, roundToDtypeInPlace } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import type { F32 } from './gemm.js';
import type { GroupNormTask } from './groupnorm-kernel.js';
import { parallelFor } from './pool.js';
import { dimsOf, encodeOut, f32Of, newF32, optParamF32, paramF32 } from './storage.js';

/** mean and 1/sqrt(var + eps) of x[off, off + n). */
function stats(x: F32, off: number, n: number, eps: number): [number, number] {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[off + i]!;
  const mean = n > 0 ? s / n : 0;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const d = x[off + i]! - mean;
    v += d * d;
  }
  return [mean, 1 / Math.sqrt((n > 0 ? v / n : 0) + eps)];
}

/** y = (x − mean)·rstd over rows of D (no affine). */
function normalizeRows(x: F32, y: F32, D: number, eps: number): void {
  const rows = D > 0 ? x.length / D : 0;
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    const [mean, rstd] = stats(x, o, D, eps);
    for (let i = 0; i < D; i++) y[o + i] = (x[o + i]! - mean) * rstd;
  }
}

export function layerNorm(out: OutSpec, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Storage {
  const D = dimsOf(x).pop() ?? 1;
  const xf = f32Of(x); // [..., D]
  const w = optParamF32(weight); // [D]
  const b = optParamF32(bias); // [D]
  const y = newF32(xf.length);
  const rows = D > 0 ? xf.length / D : 0;
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    const [mean, rstd] = stats(xf, o, D, eps);
    for (let i = 0; i < D; i++) {
      let v = (xf[o + i]! - mean) * rstd;
      if (w) v *= w[i]!;
      if (b) v += b[i]!;
      y[o + i] = v;
    }
  }
  return encodeOut(out, y);
}

export function rmsNorm(out: OutSpec, x: Tensor, weight: Tensor | undefined, eps: number): Storage {
  const D = dimsOf(x).pop() ?? 1;
  const xf = f32Of(x); // [..., D]
  const y = newF32(xf.length);
  const rows = D > 0 ? xf.length / D : 0;
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    let s = 0;
    for (let i = 0; i < D; i++) s += xf[o + i]! * xf[o + i]!;
    const rrms = 1 / Math.sqrt(s / D + eps);
    for (let i = 0; i < D; i++) y[o + i] = xf[o + i]! * rrms;
  }
  if (weight) {
    roundToDtypeInPlace(out.dtype, y); // BFL: (x·rrms).to(dtype) * scale
    const w = paramF32(weight); // [D]
    for (let r = 0; r < rows; r++) {
      const o = r * D;
      for (let i = 0; i < D; i++) y[o + i] = y[o + i]! * w[i]!;
    }
  }
  return encodeOut(out, y);
}

export function groupNorm(out: OutSpec, x: Tensor, groups: number, weight: Tensor, bias: Tensor, eps: number, act: Activation): Storage {
  const xs = dimsOf(x);
  const [B, C] = xs as [number, number];
  const S = xs.slice(2).reduce((p, d) => p * d, 1);
  const task: GroupNormTask = {
    kind: 'groupNorm',
    x: f32Of(x), // [B, C, S]
    w: paramF32(weight), // [C]
    b: paramF32(bias), // [C]
    out: newF32(B * C * S), // [B, C, S]
    C,
    S,
    groups: groups | 0,
    eps,
    act,
    dtype: out.dtype,
  };
  // ~10 flops per element, ~30 with the activation's exp
  parallelFor(task, B * task.groups, B * C * S * (act === 'none' ? 10 : 30));
  return encodeOut(out, task.out);
}

/** y[b, l, d] = f(y[b, l, d], m[b, d]) in place, for [B, L, D] and per-batch vectors [B, D]. */
function perBatch(y: F32, m: F32, B: number, L: number, D: number, f: (v: number, mv: number) => number): void {
  for (let b = 0; b < B; b++) {
    for (let l = 0; l < L; l++) {
      const o = (b * L + l) * D;
      for (let d = 0; d < D; d++) y[o + d] = f(y[o + d]!, m[b * D + d]!);
    }
  }
}

function onePlus(dtype: DType, scale: F32): F32 {
  const s = new Float32Array(scale.length);
  for (let i = 0; i < s.length; i++) s[i] = 1 + scale[i]!;
  roundToDtypeInPlace(dtype, s); // `1 + scale` is its own op
  return s;
}

export function modulatedLayerNorm(out: OutSpec, x: Tensor, shift: Tensor, scale: Tensor, eps: number): Storage {
  const [B, L, D] = dimsOf(x) as [number, number, number];
  const dt = out.dtype;
  const xf = f32Of(x); // [B, L, D]
  const sh = f32Of(shift); // [B, D] (or [B, 1, D]: same layout)
  const sc = onePlus(dt, f32Of(scale)); // [B, D]
  const y = newF32(xf.length);
  normalizeRows(xf, y, D, eps);
  roundToDtypeInPlace(dt, y); // LN(x)
  perBatch(y, sc, B, L, D, (v, s) => v * s);
  roundToDtypeInPlace(dt, y); // (1 + scale)·LN(x)
  perBatch(y, sh, B, L, D, (v, s) => v + s);
  return encodeOut(out, y); // … + shift
}

export function gatedResidual(out: OutSpec, x: Tensor, gate: Tensor, yIn: Tensor): Storage {
  const [B, L, D] = dimsOf(x) as [number, number, number];
  const xf = f32Of(x); // [B, L, D]
  const g = f32Of(gate); // [B, D]
  const yf = f32Of(yIn); // [B, L, D]
  const t = newF32(xf.length);
  t.set(yf);
  perBatch(t, g, B, L, D, (v, s) => v * s);
  roundToDtypeInPlace(out.dtype, t); // gate·y
  for (let i = 0; i < t.length; i++) t[i] = xf[i]! + t[i]!;
  return encodeOut(out, t); // x + gate·y
}
