// A (batched) GEMM as a splittable task: the pool hands each thread a range of output rows
// (or of output columns when there are too few rows to go round).

import { type F32, gemmNN, gemmNT } from './gemm.js';

export interface GemmTask {
  kind: 'gemm';
  /** B laid out [K, N] (gemmNN) instead of [N, K] (gemmNT). */
  nn: boolean;
  A: F32;
  aOff: number;
  lda: number;
  strideA: number;
  B: F32;
  bOff: number;
  ldb: number;
  strideB: number;
  C: F32;
  cOff: number;
  ldc: number;
  strideC: number;
  batch: number;
  M: number;
  N: number;
  K: number;
  /** Which output dim the unit range runs over: units = batch·M rows, or batch·N columns. */
  split: 'rows' | 'cols';
}

export function gemmRange(t: GemmTask, u0: number, u1: number): void {
  const per = (t.split === 'rows' ? t.M : t.N) | 0;
  const kernel = t.nn ? gemmNN : gemmNT;
  let u = u0;
  while (u < u1) {
    const b = (u / per) | 0;
    const s = u - b * per;
    const e = Math.min(per, s + (u1 - u));
    const a = t.aOff + b * t.strideA;
    const bo = t.bOff + b * t.strideB;
    const c = t.cOff + b * t.strideC;
    if (t.split === 'rows') {
      kernel(t.A, a + s * t.lda, t.lda, t.B, bo, t.ldb, t.C, c + s * t.ldc, t.ldc, e - s, t.N, t.K);
    } else {
      const bs = t.nn ? bo + s : bo + s * t.ldb;
      kernel(t.A, a, t.lda, t.B, bs, t.ldb, t.C, c + s, t.ldc, t.M, e - s, t.K);
    }
    u += e - s;
  }
}
