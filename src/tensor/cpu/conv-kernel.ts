// Convolution kernel over a range of output rows: im2col into a per-thread buffer laid out
// [K, P] (K = C·kh·kw patch entries, P = pixels of a chunk of output rows: each row of the
// buffer is a shifted copy of an input row, so it is built with block copies) and a gemmNN with
// the weights [O, K].

import { type F32, gemmNN } from './gemm.js';
import { scratch } from './scratch.js';

export interface ConvTask {
  kind: 'conv';
  x: F32; // [B, C, H, W]
  w: F32; // [O, C, kh, kw]
  out: F32; // [B, O, Ho, Wo]
  B: number;
  C: number;
  H: number;
  W: number;
  O: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  pt: number;
  pl: number;
  Ho: number;
  Wo: number;
}

/** Floats of im2col buffer per chunk (256 KiB: stays in L2 next to the weights). */
const COL_BUDGET = 1 << 16;

/** Compute output rows [u0, u1) of the flattened (batch, output row) range. */
export function convRows(t: ConvTask, u0: number, u1: number): void {
  const Ho = t.Ho | 0,
    Wo = t.Wo | 0,
    O = t.O | 0;
  const K = (t.C * t.kh * t.kw) | 0;
  // The GEMM's 4-row blocks: pad the output channels to a multiple of 4 with zero weights (the
  // 3-channel conv_out would otherwise run entirely in the slow single-row path).
  const O4 = O % 4 === 0 || O > 32 ? O : O + 4 - (O % 4);
  const w = O4 === O ? t.w : paddedRows(t.w, O, O4, K);
  let u = u0;
  while (u < u1) {
    const b = (u / Ho) | 0;
    const oy0 = u - b * Ho;
    const rowsLeft = Math.min(u1 - u, Ho - oy0);
    const rows = Math.max(1, Math.min(rowsLeft, (COL_BUDGET / Math.max(1, Wo * K)) | 0));
    const P = rows * Wo;
    // Even 1x1 convolutions go through the buffer: multiplying the input planes in place would
    // stride the GEMM's loads by a whole plane (slower by a third at 256x256).
    const col = scratch(0, K * P); // [K, P]
    im2col(t, b, oy0, rows, col);
    const cOff = b * O * Ho * Wo + oy0 * Wo;
    if (O4 === O) {
      gemmNN(w, 0, K, col, 0, P, t.out, cOff, Ho * Wo, O, P, K);
    } else {
      const tmp = scratch(4, O4 * P);
      gemmNN(w, 0, K, col, 0, P, tmp, 0, P, O4, P, K);
      for (let o = 0; o < O; o++) t.out.set(tmp.subarray(o * P, (o + 1) * P), cOff + o * Ho * Wo);
    }
    u += rows;
  }
}

function paddedRows(w: F32, O: number, O4: number, K: number): F32 {
  const p = scratch(5, O4 * K);
  p.set(w.subarray(0, O * K));
  p.fill(0, O * K, O4 * K);
  return p;
}

/**
 * col[(c·kh + i)·kw + j, r·Wo + ox] = x[b, c, (oy0 + r)·sh − pt + i, ox·sw − pl + j], 0 outside.
 */
function im2col(t: ConvTask, b: number, oy0: number, rows: number, col: F32): void {
  const C = t.C | 0,
    H = t.H | 0,
    W = t.W | 0,
    kh = t.kh | 0,
    kw = t.kw | 0;
  const sh = t.sh | 0,
    sw = t.sw | 0,
    pt = t.pt | 0,
    pl = t.pl | 0,
    Wo = t.Wo | 0;
  const x = t.x;
  const P = rows * Wo;
  let k = 0;
  for (let c = 0; c < C; c++) {
    const xc = (b * C + c) * H * W;
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++, k++) {
        // output columns whose input column ox·sw − pl + j lies inside [0, W)
        const lo = Math.min(Wo, Math.max(0, Math.ceil((pl - j) / sw)));
        const hi = Math.max(lo, Math.min(Wo, Math.floor((W - 1 + pl - j) / sw) + 1));
        for (let r = 0; r < rows; r++) {
          const o = k * P + r * Wo;
          const iy = (oy0 + r) * sh - pt + i;
          if (iy < 0 || iy >= H) {
            col.fill(0, o, o + Wo);
            continue;
          }
          if (lo > 0) col.fill(0, o, o + lo);
          const xr = xc + iy * W + j - pl;
          if (sw === 1) {
            col.set(x.subarray(xr + lo, xr + hi), o + lo);
          } else {
            for (let ox = lo; ox < hi; ox++) col[o + ox] = x[xr + ox * sw]!;
          }
          if (hi < Wo) col.fill(0, o + hi, o + Wo);
        }
      }
    }
  }
}
