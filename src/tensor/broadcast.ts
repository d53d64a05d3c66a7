// Index arithmetic for broadcasting binary ops, shared by the backends (shape logic only, no math).

import type { Shape } from './tensor.js';

/** Strides of `shape` broadcast to `outShape` (0 along broadcast dims), right-aligned. */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const r = outShape.length;
  const st = new Array<number>(r).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i]!;
    st[i + r - shape.length] = d === 1 ? 0 : s;
    s *= d;
  }
  return st;
}

/**
 * Merge adjacent dims that both operands walk contiguously and drop size-1 dims, so a broadcast
 * walk has as few (and as long) loops as possible. Never returns an empty shape.
 */
export function collapseBroadcast(shape: Shape, sa: number[], sb: number[]): { dims: number[]; sa: number[]; sb: number[] } {
  const dims: number[] = [];
  const oa: number[] = [];
  const ob: number[] = [];
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i]!;
    if (d === 1) continue;
    const k = dims.length - 1;
    if (k >= 0 && oa[k] === sa[i]! * d && ob[k] === sb[i]! * d) {
      dims[k] = dims[k]! * d;
      oa[k] = sa[i]!;
      ob[k] = sb[i]!;
    } else {
      dims.push(d);
      oa.push(sa[i]!);
      ob.push(sb[i]!);
    }
  }
  if (dims.length === 0) return { dims: [1], sa: [0], sb: [0] };
  return { dims, sa: oa, sb: ob };
}
