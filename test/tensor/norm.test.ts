// Norms and the adaLN helpers against naive float64 definitions with the documented rounding points.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import type { DType } from '../../src/tensor/dtype.js';
import { gatedResidual, groupNorm, layerNorm, modulatedLayerNorm, rmsNorm } from '../../src/tensor/ops.js';
import { TOL, assertClose, assertMostlyExact, forEachBackend, fractionDifferent, randomTensor, round1, rounded, tolFor } from '../helpers/backends.js';
import { actRef } from './naive.js';

function meanVar(x: ArrayLike<number>, off: number, n: number): [number, number] {
  let m = 0;
  for (let i = 0; i < n; i++) m += x[off + i]!;
  m /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[off + i]! - m) ** 2;
  return [m, v / n];
}

/** LayerNorm rows of D, biased variance; `round` = dtype of the (single) rounding. */
function naiveLayerNorm(x: Float32Array, D: number, eps: number, w?: Float32Array, b?: Float32Array): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / D; r++) {
    const [m, v] = meanVar(x, r * D, D);
    for (let i = 0; i < D; i++) {
      y[r * D + i] = ((x[r * D + i]! - m) / Math.sqrt(v + eps)) * (w ? w[i]! : 1) + (b ? b[i]! : 0);
    }
  }
  return y;
}

describe('layerNorm', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`layerNorm with and without affine, ${dtype}`, (be) => {
      let seed = 1;
      for (const shape of [
        [3, 7],
        [2, 1, 33],
        [5, 1],
        [1, 64],
      ]) {
        const D = shape[shape.length - 1]!;
        const x = randomTensor(be, shape, seed++, { dtype, scale: 3, offset: 1 });
        const w = randomTensor(be, [D], seed++, { dtype });
        const b = randomTensor(be, [D], seed++, { dtype });
        for (const [useW, useB] of [
          [false, false],
          [true, true],
          [true, false],
          [false, true],
        ] as const) {
          const y = layerNorm(x.t, { weight: useW ? w.t : undefined, bias: useB ? b.t : undefined, eps: 1e-5 });
          const ref = rounded(dtype, naiveLayerNorm(x.v, D, 1e-5, useW ? w.v : undefined, useB ? b.v : undefined));
          assertClose(y.toFloat32(), ref, tolFor(dtype, be), `layerNorm [${shape}] w=${useW} b=${useB} ${dtype}`);
        }
      }
    });
  }
});

describe('rmsNorm', () => {
  function naiveRms(x: Float32Array, D: number, eps: number, w: Float32Array | undefined, dtype: DType): Float32Array {
    const y = new Float64Array(x.length);
    for (let r = 0; r < x.length / D; r++) {
      let ss = 0;
      for (let i = 0; i < D; i++) ss += x[r * D + i]! ** 2;
      const rrms = 1 / Math.sqrt(ss / D + eps);
      for (let i = 0; i < D; i++) y[r * D + i] = x[r * D + i]! * rrms;
    }
    if (!w) return rounded(dtype, y);
    const t = rounded(dtype, y); // dtype(x·rrms) ...
    return rounded(
      dtype,
      t.map((v, i) => v * w[i % D]!),
    ); // ... · weight
  }

  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`rmsNorm with and without weight, ${dtype}`, (be) => {
      let seed = 10;
      for (const shape of [
        [4, 9],
        [2, 3, 1, 16],
        [1, 1],
      ]) {
        const D = shape[shape.length - 1]!;
        const x = randomTensor(be, shape, seed++, { dtype, scale: 2 });
        const w = randomTensor(be, [D], seed++, { dtype, offset: 1 });
        for (const useW of [false, true]) {
          const y = rmsNorm(x.t, useW ? w.t : undefined, 1e-6);
          const ref = naiveRms(x.v, D, 1e-6, useW ? w.v : undefined, dtype);
          assertClose(y.toFloat32(), ref, tolFor(dtype, be), `rmsNorm [${shape}] weight=${useW} ${dtype}`);
        }
      }
    });
  }

  forEachBackend('rmsNorm rounds x·rrms to bf16 before the weight (BFL QK norm)', (be) => {
    const x = randomTensor(be, [32, 32], 20, { dtype: 'bf16' });
    const w = randomTensor(be, [32], 21, { dtype: 'bf16', offset: 1 });
    const y = rmsNorm(x.t, w.t, 1e-6).toFloat32();
    const ref = naiveRms(x.v, 32, 1e-6, w.v, 'bf16');
    // tolerance: >= 99% bit-exact, rest within one bf16 ulp
    assertMostlyExact(y, ref, 0.99, TOL.bf16, 'rmsNorm bf16');
    const oneRounding = naiveRms(x.v, 32, 1e-6, undefined, 'f32').map((v, i) => v * w.v[i % 32]!);
    assert.ok(fractionDifferent(rounded('bf16', oneRounding), ref) > 0.05, 'the test must tell one rounding from two');
  });
});

describe('groupNorm', () => {
  function naiveGroupNorm(
    x: Float32Array,
    shape: number[],
    G: number,
    w: Float32Array,
    b: Float32Array,
    eps: number,
    silu: boolean,
    dtype: DType,
  ): Float32Array {
    const [B, C] = shape as [number, number];
    const S = shape.slice(2).reduce((p, d) => p * d, 1);
    const Cg = C / G;
    const y = new Float64Array(x.length);
    for (let n = 0; n < B; n++) {
      for (let g = 0; g < G; g++) {
        const off = (n * C + g * Cg) * S;
        const [m, v] = meanVar(x, off, Cg * S);
        for (let c = 0; c < Cg; c++) {
          for (let s = 0; s < S; s++) {
            const i = off + c * S + s;
            y[i] = ((x[i]! - m) / Math.sqrt(v + eps)) * w[g * Cg + c]! + b[g * Cg + c]!;
          }
        }
      }
    }
    const r = rounded(dtype, y);
    return silu
      ? rounded(
          dtype,
          r.map((v) => actRef('silu', v)),
        )
      : r;
  }

  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`groupNorm with and without SiLU, ${dtype}`, (be) => {
      let seed = 30;
      for (const [shape, G] of [
        [[2, 6, 5, 3], 3],
        [[1, 4, 7, 1], 4],
        [[3, 4], 2],
        [[1, 8, 2, 2], 1],
      ] as [number[], number][]) {
        const C = shape[1]!;
        const x = randomTensor(be, shape, seed++, { dtype, scale: 2, offset: -1 });
        const w = randomTensor(be, [C], seed++, { dtype });
        const b = randomTensor(be, [C], seed++, { dtype });
        for (const silu of [false, true]) {
          const y = groupNorm(x.t, { groups: G, weight: w.t, bias: b.t, eps: 1e-6, act: silu ? 'silu' : 'none' });
          const ref = naiveGroupNorm(x.v, shape, G, w.v, b.v, 1e-6, silu, dtype);
          assertClose(y.toFloat32(), ref, silu && dtype !== 'f32' ? TOL.bf16Chain : tolFor(dtype, be), `groupNorm [${shape}] G=${G} silu=${silu} ${dtype}`);
        }
      }
    });
  }
});

/** (1 + scale)·LN(x) + shift with the PyTorch chain's roundings: LN, 1+scale, product, sum. */
function naiveModLN(x: Float32Array, B: number, L: number, D: number, shift: Float32Array, scale: Float32Array, eps: number, dtype: DType): Float32Array {
  const ln = rounded(dtype, naiveLayerNorm(x, D, eps));
  const y = new Float32Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let l = 0; l < L; l++) {
      for (let d = 0; d < D; d++) {
        const i = (b * L + l) * D + d;
        const onePlus = round1(dtype, 1 + scale[b * D + d]!);
        const prod = round1(dtype, ln[i]! * onePlus);
        y[i] = round1(dtype, prod + shift[b * D + d]!);
      }
    }
  }
  return y;
}

describe('modulatedLayerNorm', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`modulatedLayerNorm with [B, D] and [B, 1, D] vectors, ${dtype}`, (be) => {
      for (const [B, L, D] of [
        [2, 5, 7],
        [1, 1, 1],
        [3, 4, 16],
      ]) {
        const x = randomTensor(be, [B!, L!, D!], 40 + B! * L!, { dtype, scale: 2 });
        for (const vecShape of [
          [B!, D!],
          [B!, 1, D!],
        ]) {
          const shift = randomTensor(be, vecShape, 41, { dtype });
          const scale = randomTensor(be, vecShape, 42, { dtype, scale: 0.5 });
          const y = modulatedLayerNorm(x.t, shift.t, scale.t, 1e-6);
          assert.deepEqual(y.shape, [B, L, D]);
          const ref = naiveModLN(x.v, B!, L!, D!, shift.v, scale.v, 1e-6, dtype);
          assertClose(y.toFloat32(), ref, dtype === 'f32' ? TOL.f32 : TOL.bf16Chain, `modulatedLayerNorm [${B}, ${L}, ${D}] vec [${vecShape}] ${dtype}`);
        }
      }
    });
  }

  forEachBackend('modulatedLayerNorm rounds at each step of the chain (bf16)', (be) => {
    const [B, L, D] = [2, 16, 32];
    const x = randomTensor(be, [B, L, D], 50, { dtype: 'bf16', scale: 2 });
    const shift = randomTensor(be, [B, D], 51, { dtype: 'bf16' });
    const scale = randomTensor(be, [B, D], 52, { dtype: 'bf16', scale: 0.5 });
    const y = modulatedLayerNorm(x.t, shift.t, scale.t, 1e-6).toFloat32();
    const ref = naiveModLN(x.v, B, L, D, shift.v, scale.v, 1e-6, 'bf16');
    // tolerance: >= 99% bit-exact, rest within bf16Chain
    assertMostlyExact(y, ref, 0.99, TOL.bf16Chain, 'modulatedLayerNorm bf16');
    const fused = rounded('bf16', naiveModLN(x.v, B, L, D, shift.v, scale.v, 1e-6, 'f32'));
    assert.ok(fractionDifferent(fused, ref) > 0.05, 'the test must tell one rounding from four');
  });
});

describe('gatedResidual', () => {
  function naiveGated(x: Float32Array, gate: Float32Array, y: Float32Array, B: number, L: number, D: number, dtype: DType): Float32Array {
    const out = new Float32Array(x.length);
    for (let b = 0; b < B; b++) {
      for (let l = 0; l < L; l++) {
        for (let d = 0; d < D; d++) {
          const i = (b * L + l) * D + d;
          out[i] = round1(dtype, x[i]! + round1(dtype, gate[b * D + d]! * y[i]!));
        }
      }
    }
    return out;
  }

  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`gatedResidual with [B, D] and [B, 1, D] gates, ${dtype}`, (be) => {
      for (const [B, L, D] of [
        [2, 3, 5],
        [1, 1, 1],
        [2, 8, 32],
      ]) {
        const x = randomTensor(be, [B!, L!, D!], 60, { dtype });
        const y = randomTensor(be, [B!, L!, D!], 61, { dtype });
        for (const gShape of [
          [B!, D!],
          [B!, 1, D!],
        ]) {
          const gate = randomTensor(be, gShape, 62, { dtype });
          const out = gatedResidual(x.t, gate.t, y.t);
          const ref = naiveGated(x.v, gate.v, y.v, B!, L!, D!, dtype);
          // tolerance: two roundings; atol for cancellation in x + gate·y (inputs are O(1))
          assertMostlyExact(
            out.toFloat32(),
            ref,
            0.99,
            dtype === 'f32' ? TOL.f32 : { rtol: 2 ** -6, atol: 2 ** -8 },
            `gatedResidual [${B}, ${L}, ${D}] gate [${gShape}] ${dtype}`,
          );
        }
      }
    });
  }
});
