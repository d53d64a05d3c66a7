// Host-side LoRA delta math: the reference for what a delta means (the fused GPU applier must
// agree with applyDeltaTo). Plain loops, float64 accumulation, no tensor ops.

import type { LoraDelta } from './types.js';

/** Rows of the BFL parameter the delta touches. */
export function deltaRows(d: LoraDelta): number {
  return d.rowEnd - d.rowStart;
}

/** C [m, n] = A [m, k] · B [k, n] (row-major, float64 accumulation). */
export function matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  if (a.length !== m * k || b.length !== k * n) {
    throw new Error(`matmul: [${m}, ${k}] x [${k}, ${n}] needs ${m * k} and ${k * n} elements, got ${a.length} and ${b.length}`);
  }
  const out = new Float32Array(m * n);
  const row = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    row.fill(0);
    for (let p = 0; p < k; p++) {
      const c = a[i * k + p]!;
      if (c === 0) continue;
      const off = p * n;
      for (let j = 0; j < n; j++) row[j]! += c * b[off + j]!;
    }
    for (let j = 0; j < n; j++) out[i * n + j] = row[j]!;
  }
  return out;
}

/** kron(A [a, b], B [c, d]) = [a·c, b·d], element (i·c + k, j·d + l) = A[i, j]·B[k, l]. */
export function kron(x: Float32Array, [a, b]: readonly [number, number], y: Float32Array, [c, d]: readonly [number, number]): Float32Array {
  if (x.length !== a * b || y.length !== c * d) throw new Error(`kron: factor sizes do not match [${a}, ${b}] and [${c}, ${d}]`);
  const cols = b * d;
  const out = new Float32Array(a * c * cols);
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < b; j++) {
      const v = x[i * b + j]!;
      if (v === 0) continue;
      for (let k = 0; k < c; k++) {
        const o = (i * c + k) * cols + j * d;
        const yo = k * d;
        for (let l = 0; l < d; l++) out[o + l] = v * y[yo + l]!;
      }
    }
  }
  return out;
}

/** Swaps the two row halves of a [rows, cols] matrix (rows even) in a new array. */
export function swapRowHalves(m: Float32Array, rows: number, cols: number): Float32Array {
  if (rows % 2 !== 0 || m.length !== rows * cols) throw new Error(`swapRowHalves: [${rows}, ${cols}] cannot be halved`);
  const half = (rows / 2) * cols;
  const out = new Float32Array(m.length);
  out.set(m.subarray(half), 0);
  out.set(m.subarray(0, half), half);
  return out;
}

/** ΔW of a delta as a dense [rowEnd - rowStart, cols] matrix, WITHOUT its scale. */
export function denseDelta(d: LoraDelta): Float32Array {
  const rows = deltaRows(d);
  switch (d.kind) {
    case 'full':
      return d.delta.slice();
    case 'lowrank':
      return matmul(d.up, d.down, rows, d.rank, d.cols);
    case 'lokr':
      return kron(d.w1, d.w1Shape, d.w2, d.w2Shape);
    case 'loha': {
      const p = matmul(d.w1a, d.w1b, rows, d.rank, d.cols);
      const q = matmul(d.w2a, d.w2b, rows, d.rank2, d.cols);
      for (let i = 0; i < p.length; i++) p[i] = p[i]! * q[i]!;
      return p;
    }
  }
}

/**
 * weight[rowStart:rowEnd, :] += userScale · delta.scale · ΔW, in place. `shape` is the whole BFL
 * parameter's shape ([rows, cols]; a 1-D parameter such as a bias may be given as [rows] or
 * [rows, 1]). Throws when the delta does not fit.
 */
export function applyDeltaTo(weight: Float32Array, shape: readonly number[], delta: LoraDelta, userScale: number): void {
  const rows = shape[0] ?? 0;
  const cols = shape.length === 1 ? 1 : shape.length === 2 ? shape[1]! : -1;
  if (cols < 0) throw new Error(`applyDeltaTo(${delta.module}): parameter shape [${shape.join(', ')}] is not 1-D or 2-D`);
  if (weight.length !== rows * cols) {
    throw new Error(`applyDeltaTo(${delta.module}): ${weight.length} elements do not match shape [${shape.join(', ')}]`);
  }
  if (cols !== delta.cols || delta.rowStart < 0 || delta.rowEnd > rows || delta.rowStart > delta.rowEnd) {
    throw new Error(
      `applyDeltaTo(${delta.module}): delta rows [${delta.rowStart}, ${delta.rowEnd}) x ${delta.cols} columns does not fit a [${rows}, ${cols}] parameter`,
    );
  }
  const s = userScale * delta.scale;
  if (s === 0) return;
  const base = delta.rowStart * cols;
  if (delta.kind === 'lowrank') {
    // row by row, so no [rows, cols] temporary is needed
    const r = delta.rank;
    const acc = new Float64Array(cols);
    const n = deltaRows(delta);
    for (let i = 0; i < n; i++) {
      acc.fill(0);
      for (let p = 0; p < r; p++) {
        const c = delta.up[i * r + p]!;
        if (c === 0) continue;
        const off = p * cols;
        for (let j = 0; j < cols; j++) acc[j]! += c * delta.down[off + j]!;
      }
      const o = base + i * cols;
      for (let j = 0; j < cols; j++) weight[o + j] = weight[o + j]! + s * acc[j]!;
    }
    return;
  }
  const dense = delta.kind === 'full' ? delta.delta : denseDelta(delta);
  for (let i = 0; i < dense.length; i++) weight[base + i] = weight[base + i]! + s * dense[i]!;
}
