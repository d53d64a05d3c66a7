// Plain float64 reference definitions for the op tests: nested loops, no blocking, no tricks,
// written independently of src/tensor/cpu (e.g. erf by numerical integration).

import type { Activation } from '../../src/tensor/backend.js';

/** erf(x) = 2/√π ∫₀ˣ e^(−t²) dt by composite Simpson's rule (4000 intervals: error < 1e-14 here). */
export function erfRef(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.min(Math.abs(x), 8);
  const n = 4000;
  const h = a / n;
  let s = 1 + Math.exp(-a * a);
  for (let i = 1; i < n; i++) {
    const t = i * h;
    s += (i % 2 === 1 ? 4 : 2) * Math.exp(-t * t);
  }
  const r = ((s * h) / 3) * (2 / Math.sqrt(Math.PI));
  return x < 0 ? -r : r;
}

export function actRef(act: Activation, x: number): number {
  switch (act) {
    case 'none':
      return x;
    case 'gelu_tanh':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case 'gelu':
      return 0.5 * x * (1 + erfRef(x / Math.SQRT2));
    case 'silu':
      return x / (1 + Math.exp(-x));
    case 'quick_gelu':
      return x * (1 / (1 + Math.exp(-1.702 * x)));
  }
}

export const ACTIVATIONS: readonly Activation[] = ['none', 'gelu_tanh', 'gelu', 'silu', 'quick_gelu'];

/** Row-major strides of a shape. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

/** The multi-index of flat position `i` in `shape`. */
export function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d]!;
    i = Math.floor(i / shape[d]!);
  }
  return idx;
}

/** Flat position of a (right-aligned, broadcast) multi-index in `shape`. */
export function broadcastIndex(idx: readonly number[], shape: readonly number[]): number {
  const off = idx.length - shape.length;
  let p = 0;
  for (let d = 0; d < shape.length; d++) p = p * shape[d]! + (shape[d] === 1 ? 0 : idx[d + off]!);
  return p;
}
