// Elementwise ops, softmax and RoPE: float32 math, one rounding of the output (affine: two, as
// two PyTorch ops).

import type { Activation, BinaryOp, OutSpec, Storage } from '../backend.js';
import { roundToDtypeInPlace } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import { applyActivation } from './activations.js';
import type { F32 } from './gemm.js';
import { dimsOf, encodeOut, f32Of, newF32 } from './storage.js';
import { broadcastStrides, collapseBroadcast as collapse } from '../broadcast.js';

const OPS: Record<BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
};

export function binary(out: OutSpec, op: BinaryOp, a: Tensor, b: Tensor): Storage {
  const af = f32Of(a);
  const bf = f32Of(b);
  const os = dimsOf(out);
  const y = newF32(os.reduce((p, d) => p * d, 1));
  if (y.length === 0) return encodeOut(out, y);
  const { dims, sa, sb } = collapse(os, broadcastStrides(dimsOf(a), os), broadcastStrides(dimsOf(b), os));
  const f = OPS[op];
  const r = dims.length;
  const n = dims[r - 1]!;
  const ia = sa[r - 1]!;
  const ib = sb[r - 1]!;
  const outer = y.length / n;
  const idx = new Array<number>(r).fill(0);
  let pa = 0;
  let pb = 0;
  let o = 0;
  for (let row = 0; row < outer; row++) {
    if (ia === 1 && ib === 1) {
      if (op === 'add') for (let i = 0; i < n; i++) y[o + i] = af[pa + i]! + bf[pb + i]!;
      else if (op === 'mul') for (let i = 0; i < n; i++) y[o + i] = af[pa + i]! * bf[pb + i]!;
      else for (let i = 0; i < n; i++) y[o + i] = af[pa + i]! - bf[pb + i]!;
    } else {
      for (let i = 0, ja = pa, jb = pb; i < n; i++, ja += ia, jb += ib) y[o + i] = f(af[ja]!, bf[jb]!);
    }
    o += n;
    // advance the outer index (dims 0..r-2)
    for (let d = r - 2; d >= 0; d--) {
      idx[d]!++;
      pa += sa[d]!;
      pb += sb[d]!;
      if (idx[d]! < dims[d]!) break;
      pa -= sa[d]! * dims[d]!;
      pb -= sb[d]! * dims[d]!;
      idx[d] = 0;
    }
  }
  return encodeOut(out, y);
}

export function affine(out: OutSpec, x: Tensor, mul: number, add: number): Storage {
  const xf = f32Of(x);
  const y = newF32(xf.length);
  y.set(xf);
  if (mul !== 1) {
    for (let i = 0; i < y.length; i++) y[i] = y[i]! * mul;
    if (add !== 0) roundToDtypeInPlace(out.dtype, y); // x·mul, then + add is a second op
  }
  if (add !== 0) for (let i = 0; i < y.length; i++) y[i] = y[i]! + add;
  return encodeOut(out, y);
}

export function activation(out: OutSpec, x: Tensor, act: Activation): Storage {
  const xf = f32Of(x);
  const y = newF32(xf.length);
  applyActivation(act, xf, y);
  return encodeOut(out, y);
}

export function softmax(out: OutSpec, x: Tensor): Storage {
  const D = dimsOf(x).pop() ?? 1;
  const xf = f32Of(x);
  const y = newF32(xf.length);
  const rows = D > 0 ? xf.length / D : 0;
  for (let r = 0; r < rows; r++) softmaxRow(xf, y, r * D, D);
  return encodeOut(out, y);
}

function softmaxRow(x: F32, y: F32, o: number, D: number): void {
  let max = -Infinity;
  for (let i = 0; i < D; i++) if (x[o + i]! > max) max = x[o + i]!;
  let sum = 0;
  for (let i = 0; i < D; i++) {
    const e = Math.exp(x[o + i]! - max); // a row of -inf gives NaN, like torch.softmax
    y[o + i] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let i = 0; i < D; i++) y[o + i] = y[o + i]! * inv;
}

export function rope(out: OutSpec, x: Tensor, pe: Tensor): Storage {
  const [B, H, L, D] = dimsOf(x) as [number, number, number, number];
  const xf = f32Of(x); // [B, H, L, D]
  const p = f32Of(pe); // [B|1, L, D/2, 2, 2]
  const peBatch = dimsOf(pe)[0] === 1 ? 0 : L * D * 2;
  const y = newF32(xf.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let l = 0; l < L; l++) {
        const o = ((b * H + h) * L + l) * D;
        let q = b * peBatch + l * D * 2; // D/2 pairs x 4 entries
        for (let k = 0; k < D; k += 2, q += 4) {
          const x0 = xf[o + k]!;
          const x1 = xf[o + k + 1]!;
          y[o + k] = p[q]! * x0 + p[q + 1]! * x1;
          y[o + k + 1] = p[q + 2]! * x0 + p[q + 3]! * x1;
        }
      }
    }
  }
  return encodeOut(out, y);
}
