// Shared by the T5 and CLIP tests: a seeded PRNG, random f32 weights in a MapSource, plain float64
// math for the naive reference implementations, and the error measure.

import { MapSource } from '../../src/io/source.js';

/** mulberry32: a tiny deterministic 32-bit PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box-Muller over mulberry32). */
export function normals(rand: () => number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rand(), 1e-12);
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  }
  return out;
}

export interface WeightSpec {
  readonly shape: readonly number[];
  /** value = offset + scale * N(0, 1) */
  readonly scale: number;
  readonly offset?: number;
}

/** A MapSource of f32 tensors drawn in key order from one seeded stream. */
export function randomSource(specs: ReadonlyMap<string, WeightSpec>, seed: number): MapSource {
  const rand = mulberry32(seed);
  const src = new MapSource(`random(seed=${seed})`);
  for (const [key, spec] of specs) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = normals(rand, n);
    for (let i = 0; i < n; i++) data[i] = (spec.offset ?? 0) + spec.scale * data[i]!;
    src.set(key, 'f32', spec.shape, data);
  }
  return src;
}

/** The weights of a source as float64 arrays (for the reference implementations). */
export function asF64(src: MapSource): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const [k, e] of src.entries) out.set(k, Float64Array.from(e.data as Float32Array));
  return out;
}

/** x [L, K] · Wᵀ with W [N, K] (+ b [N]) -> [L, N]. */
export function matmulT(x: Float64Array, L: number, K: number, W: Float64Array, N: number, b?: Float64Array): Float64Array {
  const y = new Float64Array(L * N);
  for (let i = 0; i < L; i++) {
    for (let n = 0; n < N; n++) {
      let s = b ? b[n]! : 0;
      for (let k = 0; k < K; k++) s += x[i * K + k]! * W[n * K + k]!;
      y[i * N + n] = s;
    }
  }
  return y;
}

/** Softmax of one row in place. */
export function softmaxRow(row: Float64Array): void {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  for (let j = 0; j < row.length; j++) {
    row[j] = Math.exp(row[j]! - m);
    s += row[j]!;
  }
  for (let j = 0; j < row.length; j++) row[j] = row[j]! / s;
}

/** max |a - b| / max |b|. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relErr: lengths ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

/** Random token rows of length L with ids in [lo, hi). */
export function randomTokens(seed: number, B: number, L: number, lo: number, hi: number): Int32Array[] {
  const rand = mulberry32(seed);
  return Array.from({ length: B }, () => Int32Array.from({ length: L }, () => lo + Math.floor(rand() * (hi - lo))));
}
