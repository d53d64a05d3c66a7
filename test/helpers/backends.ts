// Test helpers: run a test body on every available backend, seeded random tensors, and
// closeness checks with the tolerance in the failure message.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { Backend } from '../../src/tensor/backend.js';
import { type DType, roundToDtypeInPlace } from '../../src/tensor/dtype.js';
import { fromArray } from '../../src/tensor/ops.js';
import { availableBackends } from '../../src/tensor/registry.js';
import { type Shape, type Tensor, numel } from '../../src/tensor/tensor.js';

/** Register one node:test `test()` per available backend, named `name [backend]`. */
export function forEachBackend(name: string, body: (be: Backend) => void | Promise<void>): void {
  for (const be of availableBackends()) test(`${name} [${be.name}]`, () => body(be));
}

/** A tiny seeded PRNG (mulberry32) with uniform and normal draws. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  int(lo: number, hiExclusive: number): number {
    return lo + Math.floor(this.next() * (hiExclusive - lo));
  }
}

/** `n` seeded normal values times `scale`, rounded to `dtype`. */
export function randomValues(n: number, seed: number, opts: { dtype?: DType; scale?: number; offset?: number } = {}): Float32Array {
  const rng = new Rng(seed);
  const a = new Float32Array(n);
  const scale = opts.scale ?? 1;
  const offset = opts.offset ?? 0;
  for (let i = 0; i < n; i++) a[i] = offset + scale * rng.normal();
  roundToDtypeInPlace(opts.dtype ?? 'f32', a);
  return a;
}

/** A seeded random tensor and its exact values (already rounded to its dtype). */
export function randomTensor(
  be: Backend,
  shape: Shape,
  seed: number,
  opts: { dtype?: DType; scale?: number; offset?: number } = {},
): { t: Tensor; v: Float32Array } {
  const dtype = opts.dtype ?? 'f32';
  const v = randomValues(numel(shape), seed, opts);
  return { t: fromArray(be, shape, v, dtype), v };
}

export interface Tolerance {
  /** Relative tolerance per element: |a − e| <= atol + rtol·|e|. */
  rtol: number;
  atol: number;
}

/** Tolerances used across the op tests. */
export const TOL = {
  /** float32 output vs a float64 reference: a few f32 ulps, plus reduction-order noise. */
  f32: { rtol: 1e-5, atol: 1e-6 },
  /** float32 output of fp32-accumulating device kernels vs a float64 reference (tolFor). */
  f32Device: { rtol: 1e-4, atol: 1e-5 },
  /** bf16 output vs a reference rounded at the same points: one bf16 ulp (2^-8 relative), as
   *  the float32 vs float64 accumulation can tip a value just past a rounding boundary. */
  bf16: { rtol: 2 ** -7, atol: 1e-6 },
  /** bf16 output of a chain of rounding points (fused ops, Linear + activation): about
   *  torch.testing's default for bf16 (rtol 1.6e-2), since a one-ulp flip at an inner rounding
   *  point can move the final value by more than one ulp. */
  bf16Chain: { rtol: 2 ** -6, atol: 1e-5 },
  /** exact. */
  exact: { rtol: 0, atol: 0 },
} satisfies Record<string, Tolerance>;

/**
 * The tolerance for an op's output in `dtype` on backend `be`. Off the CPU reference, f32 gets
 * rtol 1e-4 / atol 1e-5: GPU kernels and cuBLASLt accumulate in fp32 in their own order (tiles,
 * split K, warp trees) where the CPU reference accumulates dot products in f64, so a sum whose
 * partial sums are much larger than its result (cancellation) keeps an absolute error of a few
 * fp32 ulps of the partial sums. bf16 keeps one bf16 ulp: fp32 accumulation is far below it.
 */
export function tolFor(dtype: DType, be?: Backend): Tolerance {
  if (dtype === 'f32') return be && be.name !== 'cpu' ? TOL.f32Device : TOL.f32;
  return TOL.bf16;
}

/** max |a − e| and ‖a − e‖ / ‖e‖. */
export function errors(actual: ArrayLike<number>, expected: ArrayLike<number>): { maxAbs: number; rel: number } {
  let maxAbs = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = actual[i]! - expected[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(d));
    num += d * d;
    den += expected[i]! * expected[i]!;
  }
  return { maxAbs, rel: den > 0 ? Math.sqrt(num / den) : Math.sqrt(num) };
}

/**
 * Assert every element satisfies |a − e| <= atol + rtol·|e| (NaN must match NaN, ±inf must match
 * exactly). The message names the worst element, both values and the tolerance.
 */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, what = 'values'): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length}, expected ${expected.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(e) || Number.isNaN(a)) {
      if (Number.isNaN(e) !== Number.isNaN(a)) {
        worst = i;
        worstExcess = Infinity;
        break;
      }
      continue;
    }
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      if (a !== e) {
        worst = i;
        worstExcess = Infinity;
        break;
      }
      continue;
    }
    const excess = Math.abs(a - e) - (tol.atol + tol.rtol * Math.abs(e));
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worst >= 0) {
    const { maxAbs, rel } = errors(actual, expected);
    assert.fail(
      `${what}: element ${worst} is ${actual[worst]} but expected ${expected[worst]} ` +
        `(tolerance rtol ${tol.rtol}, atol ${tol.atol}; max abs error ${maxAbs.toExponential(3)}, relative error ${rel.toExponential(3)}, n=${expected.length})`,
    );
  }
}

/** Assert ‖a − e‖ / ‖e‖ <= maxRel. */
export function assertRelError(actual: ArrayLike<number>, expected: ArrayLike<number>, maxRel: number, what = 'values'): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length}, expected ${expected.length}`);
  const { maxAbs, rel } = errors(actual, expected);
  assert.ok(rel <= maxRel, `${what}: relative error ${rel.toExponential(3)} > ${maxRel} (max abs error ${maxAbs.toExponential(3)}, n=${expected.length})`);
}

/** Round float64 values to `dtype` (the reference side of a rounding point). */
export function rounded(dtype: DType, values: ArrayLike<number>): Float32Array {
  const a = Float32Array.from(values);
  roundToDtypeInPlace(dtype, a);
  return a;
}

/** Round one value to `dtype`. */
export function round1(dtype: DType, v: number): number {
  return rounded(dtype, [v])[0]!;
}

/**
 * Assert that at least `minFraction` of the elements equal the reference exactly (the rounding
 * points are the same) and all are within `tol`. Used to check a fused op's rounding points: a
 * kernel that skipped one would miss on a large fraction of elements.
 */
export function assertMostlyExact(actual: ArrayLike<number>, expected: ArrayLike<number>, minFraction: number, tol: Tolerance, what = 'values'): void {
  assertClose(actual, expected, tol, what);
  let same = 0;
  for (let i = 0; i < expected.length; i++) if (actual[i] === expected[i] || (Number.isNaN(actual[i]!) && Number.isNaN(expected[i]!))) same++;
  const frac = expected.length > 0 ? same / expected.length : 1;
  assert.ok(
    frac >= minFraction,
    `${what}: only ${(frac * 100).toFixed(2)}% of ${expected.length} elements equal the reference exactly (need ${minFraction * 100}%)`,
  );
}

/** Fraction of elements that differ (for checking that a test can tell two roundings apart). */
export function fractionDifferent(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) d++;
  return a.length > 0 ? d / a.length : 0;
}
