// Convolution kernel over a range of output rows: im2col into a per-thread buffer ([P, K], one
// row per output pixel, K = C·kh·kw) and a gemmNT with the weights [O, K]. 1x1 stride-1
// unpadded convolutions skip im2col and multiply the input planes directly (gemmNN).

import { type F32, gemmNN, gemmNT } from './gemm.js';
import { scratch } from './scratch.js';

export interface ConvTask {
  kind: 'conv';
  x: F32; // [B, C, H, W]
  w: F32; // [O, C, kh, kw]
  out: F32; // [B, O, Ho, Wo]
  B: number; C: number; H: number; W: number;
  O: number; kh: number; kw: number;
  sh: number; sw: number; pt: number; pl: number;
  Ho: number; Wo: number;
}

/** Floats of im2col buffer per chunk (1 MiB: stays in L2 next to the weights). */
const COL_BUDGET = 1 << 18;

/** Compute output rows [u0, u1) of the flattened (batch, output row) range. */
export function convRows(t: ConvTask, u0: number, u1: number): void {
  const { Ho, Wo, O } = t;
  const K = t.C * t.kh * t.kw;
  const pointwise = t.kh === 1 && t.kw === 1 && t.sh === 1 && t.sw === 1 && t.pt === 0 && t.pl === 0 && t.Ho === t.H && t.Wo === t.W;
  let u = u0;
  while (u < u1) {
    const b = Math.floor(u / Ho);
    const oy0 = u - b * Ho;
    const rowsLeft = Math.min(u1 - u, Ho - oy0);
    const cOff = b * O * Ho * Wo + oy0 * Wo;
    if (pointwise) {
      // out[b, o, p] = Σ_c w[o, c] · x[b, c, p] for p over these rows
      const P = rowsLeft * Wo;
      gemmNN(t.w, 0, K, t.x, b * t.C * t.H * t.W + oy0 * Wo, t.H * t.W, t.out, cOff, Ho * Wo, O, P, K);
      u += rowsLeft;
      continue;
    }
    const rows = Math.max(1, Math.min(rowsLeft, Math.floor(COL_BUDGET / Math.max(1, Wo * K))));
    const P = rows * Wo;
    const col = scratch(0, P * K);
    im2col(t, b, oy0, rows, col);
    gemmNT(t.w, 0, K, col, 0, K, t.out, cOff, Ho * Wo, O, P, K);
    u += rows;
  }
}

/** col[p, (c·kh + i)·kw + j] = x[b, c, oy·sh − pt + i, ox·sw − pl + j] (0 outside the image). */
function im2col(t: ConvTask, b: number, oy0: number, rows: number, col: F32): void {
  const { C, H, W, kh, kw, sh, sw, pt, pl, Wo } = t;
  const x = t.x;
  const K = C * kh * kw;
  const xb = b * C * H * W;
  let p = 0;
  for (let r = 0; r < rows; r++) {
    const iy0 = (oy0 + r) * sh - pt;
    for (let ox = 0; ox < Wo; ox++, p++) {
      const ix0 = ox * sw - pl;
      let q = p * K;
      const interior = ix0 >= 0 && ix0 + kw <= W;
      for (let c = 0; c < C; c++) {
        const xc = xb + c * H * W;
        for (let i = 0; i < kh; i++) {
          const iy = iy0 + i;
          if (iy < 0 || iy >= H) {
            for (let j = 0; j < kw; j++) col[q++] = 0;
            continue;
          }
          const xr = xc + iy * W + ix0;
          if (interior) {
            for (let j = 0; j < kw; j++) col[q++] = x[xr + j]!;
          } else {
            for (let j = 0; j < kw; j++) {
              const ix = ix0 + j;
              col[q++] = ix >= 0 && ix < W ? x[xr + j]! : 0;
            }
          }
        }
      }
    }
  }
}
