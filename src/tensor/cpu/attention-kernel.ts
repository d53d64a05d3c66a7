// Attention kernel over a range of query rows of the flattened (batch, head, query) range.
// Per block of query rows: scores = q·kᵀ (gemmNT), scale + bias + causal mask, a row-wise
// softmax in float32/float64 (exp(s − max), sum), then (p·v) / sum with v pre-transposed to
// [B, H, Dv, Lk] so the second product is a gemmNT too. Only one block of scores is live.

import { C1, C2, C3, C4, C5, C6, C7, C8, EXP_MIN, LOG2E, POW2 } from './fastexp.js';
import { type F32, gemmNT } from './gemm.js';
import { scratch } from './scratch.js';

export interface AttentionTask {
  kind: 'attention';
  q: F32; // [B, H, Lq, D]
  k: F32; // [B, H, Lk, D]
  vt: F32; // [B, H, Dv, Lk]
  bias: F32 | null; // [B|1, H|1, Lq, Lk]
  out: F32; // [B, Lq, H*Dv]
  B: number;
  H: number;
  Lq: number;
  Lk: number;
  D: number;
  Dv: number;
  scale: number;
  causal: boolean;
  /** Element strides of the bias over batch and head (0 where broadcast). */
  biasStrideB: number;
  biasStrideH: number;
}

/** Query rows per score block. */
const RB = 32;

export function attentionRows(t: AttentionTask, u0: number, u1: number): void {
  const H = t.H | 0,
    Lq = t.Lq | 0;
  let u = u0 | 0;
  while (u < u1) {
    const bh = (u / Lq) | 0;
    const i0 = u - bh * Lq;
    const i1 = Math.min(Lq, i0 + RB, i0 + (u1 - u));
    block(t, (bh / H) | 0, bh % H, i0, i1);
    u += i1 - i0;
  }
}

function block(t: AttentionTask, b: number, h: number, i0: number, i1: number): void {
  const H = t.H | 0,
    Lq = t.Lq | 0,
    Lk = t.Lk | 0,
    D = t.D | 0,
    Dv = t.Dv | 0;
  const { scale, causal, bias } = t;
  const rows = i1 - i0;
  const bh = b * H + h;
  // Causal (Lq == Lk): row i attends to keys 0..i, so this block needs keys [0, i1) only.
  const nk = causal ? i1 : Lk;
  const S = scratch(1, rows * nk); // [rows, nk]
  gemmNT(t.q, (bh * Lq + i0) * D, D, t.k, bh * Lk * D, D, S, 0, nk, rows, nk, D);
  const sums = scratch(2, rows);
  const biasOff = bias ? (b * t.biasStrideB + h * t.biasStrideH) | 0 : 0;
  for (let r = 0; r < rows; r++) {
    const i = i0 + r;
    const s0 = r * nk;
    const lim = causal ? i + 1 : nk;
    let max = -Infinity;
    if (bias) {
      const bo = biasOff + i * Lk;
      for (let j = 0; j < lim; j++) {
        const s = S[s0 + j]! * scale + bias[bo + j]!;
        S[s0 + j] = s;
        if (s > max) max = s;
      }
    } else {
      for (let j = 0; j < lim; j++) {
        const s = S[s0 + j]! * scale;
        S[s0 + j] = s;
        if (s > max) max = s;
      }
    }
    let sum = 0;
    if (max === -Infinity) {
      // Every key masked: the row's output is 0 (PyTorch >= 2.5 `_safe_softmax` semantics).
      S.fill(0, s0, s0 + nk);
    } else {
      for (let j = 0; j < lim; j++) {
        // exp(S − max), inlined expNonPositive (fastexp.ts)
        const x = S[s0 + j]! - max;
        let e = 0;
        if (x >= EXP_MIN) {
          const l2 = x * LOG2E;
          const n = Math.floor(l2 + 0.5);
          const f = l2 - n;
          e = (1 + f * (C1 + f * (C2 + f * (C3 + f * (C4 + f * (C5 + f * (C6 + f * (C7 + f * C8)))))))) * POW2[n + 160]!;
        } else if (x !== x) {
          e = NaN;
        }
        S[s0 + j] = e;
        sum += e;
      }
      if (lim < nk) S.fill(0, s0 + lim, s0 + nk);
    }
    sums[r] = sum;
  }
  const O = scratch(3, rows * Dv); // [rows, Dv]
  gemmNT(S, 0, nk, t.vt, bh * Dv * Lk, Lk, O, 0, Dv, rows, Dv, nk);
  const HD = H * Dv;
  for (let r = 0; r < rows; r++) {
    const sum = sums[r]!;
    const inv = sum === 0 ? 0 : 1 / sum; // NaN scores stay NaN
    const o = (b * Lq + i0 + r) * HD + h * Dv;
    for (let d = 0; d < Dv; d++) t.out[o + d] = O[r * Dv + d]! * inv;
  }
}
