// Layout ops and casts. Layout ops copy raw bits (any dtype, NaN payloads kept); cast decodes to
// float32 and encodes with one rounding.

import type { OutSpec, Storage } from '../backend.js';
import { allocRaw, f32ToRaw } from '../dtype.js';
import { OpError } from '../ops.js';
import { type Tensor, numel } from '../tensor.js';
import { allocBits, type BitsArray, bitsOf, CpuStorage, dimsOf, f32Of, rawOf } from './storage.js';

function bits(t: Tensor): BitsArray {
  return bitsOf(rawOf(t));
}

export function concat(out: OutSpec, xs: readonly Tensor[], axis: number): Storage {
  const os = dimsOf(out);
  axis |= 0;
  const { storage, bits: y } = allocBits(out.dtype, numel(os));
  const outer = numel(os.slice(0, axis));
  const inner = numel(os.slice(axis + 1));
  const rowOut = os[axis]! * inner;
  let off = 0;
  for (const t of xs) {
    const src = bits(t);
    const row = dimsOf(t)[axis]! * inner;
    for (let o = 0; o < outer; o++) y.set(src.subarray(o * row, (o + 1) * row), o * rowOut + off);
    off += row;
  }
  return storage;
}

export function slice(out: OutSpec, x: Tensor, axis: number, start: number): Storage {
  const os = dimsOf(out);
  axis |= 0;
  start |= 0;
  const { storage, bits: y } = allocBits(out.dtype, numel(os));
  const outer = numel(os.slice(0, axis));
  const inner = numel(os.slice(axis + 1));
  const rowIn = dimsOf(x)[axis]! * inner;
  const rowOut = os[axis]! * inner;
  const src = bits(x);
  for (let o = 0; o < outer; o++) {
    const s = o * rowIn + start * inner;
    y.set(src.subarray(s, s + rowOut), o * rowOut);
  }
  return storage;
}

export function permute(out: OutSpec, x: Tensor, perm: readonly number[]): Storage {
  const xs = dimsOf(x);
  const n = numel(dimsOf(out));
  const { storage, bits: y } = allocBits(out.dtype, n);
  if (n === 0) return storage;
  const src = bits(x);
  const r = x.rank;
  const inStrides = new Array<number>(r);
  for (let i = r - 1, s = 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= xs[i]!;
  }
  if (r === 0) {
    y[0] = src[0]!;
    return storage;
  }
  const dims = perm.map((p) => xs[p | 0]!); // out dims
  const st = perm.map((p) => inStrides[p | 0]!); // input stride of each out dim
  const inner = dims[r - 1]!;
  const is = st[r - 1]!;
  const idx = new Array<number>(r).fill(0);
  let p = 0;
  for (let o = 0; o < n; o += inner) {
    for (let i = 0, j = p; i < inner; i++, j += is) y[o + i] = src[j]!;
    for (let d = r - 2; d >= 0; d--) {
      idx[d]!++;
      p += st[d]!;
      if (idx[d]! < dims[d]!) break;
      p -= st[d]! * dims[d]!;
      idx[d] = 0;
    }
  }
  return storage;
}

/** x [B, L, n·H·D] -> n x [B, H, L, D]; part p, head h = columns [(p·H + h)·D, …+D). */
export function splitHeads(outs: readonly OutSpec[], x: Tensor, heads: number): Storage[] {
  const [B, L, F] = dimsOf(x) as [number, number, number];
  heads |= 0;
  const parts = outs.length;
  const D = (F / (parts * heads)) | 0;
  const src = bits(x);
  return outs.map((spec, p) => {
    const { storage, bits: y } = allocBits(spec.dtype, numel(dimsOf(spec)));
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < heads; h++) {
        const col = (p * heads + h) * D;
        for (let l = 0; l < L; l++) {
          const s = (b * L + l) * F + col;
          y.set(src.subarray(s, s + D), ((b * heads + h) * L + l) * D);
        }
      }
    }
    return storage;
  });
}

export function embedding(out: OutSpec, table: Tensor, ids: Tensor): Storage {
  const [V, D] = dimsOf(table) as [number, number];
  const idv = rawOf(ids) as Int32Array;
  const src = bits(table);
  const { storage, bits: y } = allocBits(out.dtype, idv.length * D);
  for (let i = 0; i < idv.length; i++) {
    const id = idv[i]!;
    if (id < 0 || id >= V) {
      throw new OpError(
        'embedding',
        `id ${id} at position ${i} is outside [0, ${V}) (got table [${V}, ${D}] ${table.dtype}, ids [${ids.shape.join(', ')}] i32)`,
      );
    }
    y.set(src.subarray(id * D, (id + 1) * D), i * D);
  }
  return storage;
}

export function cast(out: OutSpec, x: Tensor): Storage {
  if (out.dtype === x.dtype) {
    const { storage, bits: y } = allocBits(out.dtype, x.size);
    y.set(bits(x));
    return storage;
  }
  const raw = allocRaw(out.dtype, x.size);
  f32ToRaw(out.dtype, f32Of(x), raw);
  return new CpuStorage(out.dtype, raw);
}

export function upsampleNearest(out: OutSpec, x: Tensor, factor: number): Storage {
  const [B, C, H, W] = dimsOf(x) as [number, number, number, number];
  factor |= 0;
  const Wo = W * factor;
  const src = bits(x);
  const { storage, bits: y } = allocBits(out.dtype, numel(dimsOf(out)));
  for (let bc = 0; bc < B * C; bc++) {
    for (let iy = 0; iy < H; iy++) {
      const s = (bc * H + iy) * W;
      const o = (bc * H + iy) * factor * Wo;
      for (let ix = 0; ix < W; ix++) {
        const v = src[s + ix]!;
        for (let f = 0; f < factor; f++) y[o + ix * factor + f] = v;
      }
      for (let f = 1; f < factor; f++) y.copyWithin(o + f * Wo, o, o + Wo);
    }
  }
  return storage;
}

export function absMax(x: Tensor): number {
  return maxAbs(f32Of(x));
}

/** max |v[i]|; NaN compares false and is ignored; 0 for an empty array. */
export function maxAbs(v: Float32Array): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) {
    const a = Math.abs(v[i]!);
    if (a > m) m = a;
  }
  return m;
}
