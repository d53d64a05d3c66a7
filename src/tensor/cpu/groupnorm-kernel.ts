// GroupNorm over a range of (batch, group) units: float64 statistics (mean, then biased
// variance), the affine per channel, and the optional activation after rounding the norm's output
// to the tensor's dtype (GroupNorm and SiLU are two PyTorch ops).

import type { Activation } from '../backend.js';
import { type DType, roundToDtypeInPlace } from '../dtype.js';
import { applyActivation } from './activations.js';
import type { F32 } from './gemm.js';

export interface GroupNormTask {
  kind: 'groupNorm';
  x: F32; // [B, C, S]
  w: F32; // [C]
  b: F32; // [C]
  out: F32; // [B, C, S]
  C: number;
  S: number;
  groups: number;
  eps: number;
  act: Activation;
  dtype: DType;
}

export function groupNormRange(t: GroupNormTask, u0: number, u1: number): void {
  const C = t.C | 0,
    S = t.S | 0,
    G = t.groups | 0;
  const Cg = (C / G) | 0;
  const { x, w, b, out: y } = t;
  for (let u = u0; u < u1; u++) {
    const n = (u / G) | 0;
    const g = u - n * G;
    const off = (n * C + g * Cg) * S;
    const len = Cg * S;
    let s = 0;
    for (let i = 0; i < len; i++) s += x[off + i]!;
    const mean = len > 0 ? s / len : 0;
    let v = 0;
    for (let i = 0; i < len; i++) {
      const d = x[off + i]! - mean;
      v += d * d;
    }
    const rstd = 1 / Math.sqrt((len > 0 ? v / len : 0) + t.eps);
    for (let c = 0; c < Cg; c++) {
      const ch = g * Cg + c;
      const scale = rstd * w[ch]!;
      const shift = b[ch]! - mean * scale;
      const o = off + c * S;
      for (let i = 0; i < S; i++) y[o + i] = x[o + i]! * scale + shift;
    }
    if (t.act !== 'none') {
      const part = y.subarray(off, off + len);
      roundToDtypeInPlace(t.dtype, part);
      applyActivation(t.act, part, part);
    }
  }
}
