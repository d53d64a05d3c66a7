// Activation functions on float32 arrays (math in float64, stored as float32).

import type { Activation } from '../backend.js';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const SQRT1_2 = Math.SQRT1_2;
const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

/**
 * erf(x) to ~1e-15: Maclaurin series for |x| < 2.5, else 1 − erfc(|x|) with erfc from its
 * continued fraction (modified Lentz).
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a < 2.5) {
    // erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
    const x2 = a * a;
    let term = a; // (−1)^n x^(2n+1) / n!
    let sum = a;
    for (let n = 1; n < 100; n++) {
      term *= -x2 / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    const r = TWO_OVER_SQRT_PI * sum;
    return x < 0 ? -r : r;
  }
  if (a > 6) return x < 0 ? -1 : 1; // erfc(6) ≈ 2e-17
  const r = 1 - erfcCf(a);
  return x < 0 ? -r : r;
}

/** erfc(x) for x >= 2.5: exp(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))). */
function erfcCf(x: number): number {
  const tiny = 1e-300;
  let f = x;
  let C = x;
  let D = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    D = x + an * D;
    if (D === 0) D = tiny;
    C = x + an / C;
    if (C === 0) C = tiny;
    D = 1 / D;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
}

export function geluErf(x: number): number {
  return 0.5 * x * (1 + erf(x * SQRT1_2));
}

export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

export function quickGelu(x: number): number {
  return x / (1 + Math.exp(-1.702 * x));
}

/** dst[i] = act(src[i]) (dst may be src). */
export function applyActivation(act: Activation, src: Float32Array, dst: Float32Array): void {
  const n = src.length;
  switch (act) {
    case 'none':
      if (dst !== src) dst.set(src);
      return;
    case 'gelu_tanh':
      for (let i = 0; i < n; i++) dst[i] = geluTanh(src[i]!);
      return;
    case 'gelu':
      for (let i = 0; i < n; i++) dst[i] = geluErf(src[i]!);
      return;
    case 'silu':
      for (let i = 0; i < n; i++) dst[i] = silu(src[i]!);
      return;
    case 'quick_gelu':
      for (let i = 0; i < n; i++) dst[i] = quickGelu(src[i]!);
      return;
  }
}
