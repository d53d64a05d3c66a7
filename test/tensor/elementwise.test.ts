// Broadcasting binary ops, affine, activations, softmax and RoPE against naive float64 loops.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import type { BinaryOp } from '../../src/tensor/backend.js';
import type { DType } from '../../src/tensor/dtype.js';
import { absMax, activation, add, affine, broadcastShapes, fromArray, mul, rope, softmax, sub } from '../../src/tensor/ops.js';
import { numel } from '../../src/tensor/tensor.js';
import { TOL, assertClose, assertMostlyExact, forEachBackend, fractionDifferent, randomTensor, round1, rounded, tolFor } from '../helpers/backends.js';
import { ACTIVATIONS, actRef, broadcastIndex, unravel } from './naive.js';

const FNS = { add, sub, mul };

function naiveBinary(op: BinaryOp, a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], outShape: number[], dtype: DType): Float32Array {
  const out = new Float64Array(numel(outShape));
  for (let i = 0; i < out.length; i++) {
    const idx = unravel(i, outShape);
    const x = a[broadcastIndex(idx, aShape)]!;
    const y = b[broadcastIndex(idx, bShape)]!;
    out[i] = op === 'add' ? x + y : op === 'sub' ? x - y : x * y;
  }
  return rounded(dtype, out);
}

describe('binary ops', () => {
  const SHAPES: [number[], number[]][] = [
    [[2, 3, 4], [4]],
    [
      [2, 1, 4],
      [3, 1],
    ],
    [[1], [2, 3]],
    [
      [2, 3],
      [2, 3],
    ],
    [
      [5, 1, 1, 3],
      [1, 4, 2, 1],
    ],
    [
      [3, 1, 5],
      [3, 7, 1],
    ],
    [[1, 1], [1]],
    [
      [4, 6, 2],
      [1, 6, 1],
    ],
  ];
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`add/sub/mul with broadcasting, ${dtype}`, (be) => {
      let seed = 1;
      for (const [sa, sb] of SHAPES) {
        const a = randomTensor(be, sa, seed++, { dtype });
        const b = randomTensor(be, sb, seed++, { dtype });
        const outShape = broadcastShapes(sa, sb)!;
        for (const op of ['add', 'sub', 'mul'] as const) {
          const y = FNS[op](a.t, b.t);
          assert.deepEqual(y.shape, outShape);
          assertClose(y.toFloat32(), naiveBinary(op, a.v, sa, b.v, sb, outShape, dtype), tolFor(dtype, be), `${op} [${sa}] [${sb}] ${dtype}`);
        }
      }
    });
  }

  forEachBackend("binary result takes a's dtype (bf16 a, f32 b: one rounding to bf16)", (be) => {
    const a = randomTensor(be, [3, 4], 20, { dtype: 'bf16' });
    const b = randomTensor(be, [4], 21, { dtype: 'f32' });
    const y = add(a.t, b.t);
    assert.equal(y.dtype, 'bf16');
    // tolerance: exact up to one bf16 rounding flip
    assertClose(y.toFloat32(), naiveBinary('add', a.v, [3, 4], b.v, [4], [3, 4], 'bf16'), TOL.bf16, 'bf16 + f32');
  });
});

describe('affine', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`affine x·mul + add, ${dtype}`, (be) => {
      const x = randomTensor(be, [7, 9], 30, { dtype, scale: 3 });
      for (const [m, c] of [
        [1, 0],
        [0.37, 0],
        [1, -1.3],
        [2.5, 0.71],
        [-1, 0],
      ] as const) {
        const y = affine(x.t, m, c).toFloat32();
        // two roundings when both parts are non-trivial (x·mul, then + add)
        const ref = Float32Array.from(x.v, (v) => {
          const p = m !== 1 ? round1(dtype, v * m) : v;
          return c !== 0 ? round1(dtype, p + c) : p;
        });
        assertClose(y, ref, dtype === 'f32' ? TOL.f32 : { rtol: 2 ** -7, atol: 2 ** -8 }, `affine(${m}, ${c}) ${dtype}`);
      }
    });
  }

  forEachBackend('affine rounds the product before the sum (bf16)', (be) => {
    const x = randomTensor(be, [64, 16], 31, { dtype: 'bf16', scale: 3 });
    const ref = Float32Array.from(x.v, (v) => round1('bf16', round1('bf16', v * 0.37) + 0.71));
    // tolerance: >= 99% bit-exact
    assertMostlyExact(affine(x.t, 0.37, 0.71).toFloat32(), ref, 0.99, { rtol: 2 ** -7, atol: 2 ** -8 }, 'affine bf16');
    const once = Float32Array.from(x.v, (v) => round1('bf16', v * 0.37 + 0.71));
    assert.ok(fractionDifferent(once, ref) > 0.02, 'the test must tell one rounding from two');
  });
});

describe('activation', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`each activation, ${dtype}`, (be) => {
      const special = [0, -0, 1, -1, 3, -3, 8, -8, 20, -20, 1e-3, -1e-3, 0.5];
      const r = randomTensor(be, [5, 11], 40, { dtype, scale: 3 });
      const vals = rounded(dtype, [...special, ...r.v]);
      const x = fromArray(be, [vals.length], vals, dtype);
      for (const act of ACTIVATIONS) {
        const y = activation(x, act);
        assertClose(
          y.toFloat32(),
          rounded(
            dtype,
            Array.from(vals, (v) => actRef(act, v)),
          ),
          tolFor(dtype, be),
          `${act} ${dtype}`,
        );
      }
    });
  }

  forEachBackend('activations: NaN stays NaN, +inf -> inf, -inf -> NaN (as torch 1.13: -inf·0)', (be) => {
    const x = fromArray(be, [3], [NaN, Infinity, -Infinity]);
    for (const act of ACTIVATIONS) {
      if (act === 'none') continue;
      const y = [...activation(x, act).toFloat32()];
      assert.ok(Number.isNaN(y[0]!) && y[1] === Infinity && Number.isNaN(y[2]!), `${act}: got ${y}`);
    }
  });
});

describe('softmax', () => {
  function naiveSoftmax(x: Float32Array, D: number, dtype: DType): Float32Array {
    const y = new Float64Array(x.length);
    for (let r = 0; r < x.length / D; r++) {
      let max = -Infinity;
      for (let i = 0; i < D; i++) max = Math.max(max, x[r * D + i]!);
      let s = 0;
      for (let i = 0; i < D; i++) s += Math.exp(x[r * D + i]! - max);
      for (let i = 0; i < D; i++) y[r * D + i] = Math.exp(x[r * D + i]! - max) / s;
    }
    return rounded(dtype, y);
  }

  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`softmax over the last dim, ${dtype}`, (be) => {
      for (const [shape, scale] of [
        [[3, 7], 1],
        [[2, 2, 33], 30],
        [[4, 1], 1],
        [[1, 100], 100],
      ] as [number[], number][]) {
        const x = randomTensor(be, shape, 50, { dtype, scale });
        const D = shape[shape.length - 1]!;
        assertClose(softmax(x.t).toFloat32(), naiveSoftmax(x.v, D, dtype), tolFor(dtype, be), `softmax [${shape}] scale ${scale} ${dtype}`);
      }
    });
  }

  forEachBackend('softmax with -inf entries', (be) => {
    const x = fromArray(be, [2, 3], [0, -Infinity, 1, 1000, 1000, -Infinity]);
    const y = softmax(x).toFloat32();
    assertClose(y, [1 / (1 + Math.E), 0, Math.E / (1 + Math.E), 0.5, 0.5, 0], TOL.f32, 'softmax -inf');
  });
});

describe('rope', () => {
  function makePe(Bp: number, L: number, D: number): Float32Array {
    const pe = new Float32Array(Bp * L * (D / 2) * 4);
    for (let b = 0; b < Bp; b++) {
      for (let l = 0; l < L; l++) {
        for (let k = 0; k < D / 2; k++) {
          const phi = (l + 1 + 3 * b) * 10000 ** (-(2 * k) / D);
          const o = ((b * L + l) * (D / 2) + k) * 4;
          pe.set([Math.cos(phi), -Math.sin(phi), Math.sin(phi), Math.cos(phi)], o);
        }
      }
    }
    return pe;
  }

  function naiveRope(x: Float32Array, pe: Float32Array, B: number, H: number, L: number, D: number, Bp: number, dtype: DType): Float32Array {
    const y = new Float64Array(x.length);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let l = 0; l < L; l++) {
          for (let k = 0; k < D / 2; k++) {
            const i = ((b * H + h) * L + l) * D + 2 * k;
            const p = (((Bp === 1 ? 0 : b) * L + l) * (D / 2) + k) * 4;
            // out[r] = pe[k, r, 0]·x0 + pe[k, r, 1]·x1
            y[i] = pe[p]! * x[i]! + pe[p + 1]! * x[i + 1]!;
            y[i + 1] = pe[p + 2]! * x[i]! + pe[p + 3]! * x[i + 1]!;
          }
        }
      }
    }
    return rounded(dtype, y);
  }

  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`rope with shared and per-batch tables, ${dtype}`, (be) => {
      for (const [B, H, L, D] of [
        [2, 3, 5, 8],
        [1, 1, 1, 2],
        [2, 1, 7, 6],
      ]) {
        for (const Bp of [1, B!]) {
          const x = randomTensor(be, [B!, H!, L!, D!], 60, { dtype });
          const pev = makePe(Bp, L!, D!);
          const pe = fromArray(be, [Bp, L!, D! / 2, 2, 2], pev);
          const y = rope(x.t, pe);
          assertClose(
            y.toFloat32(),
            naiveRope(x.v, pev, B!, H!, L!, D!, Bp, dtype),
            tolFor(dtype, be),
            `rope [${B}, ${H}, ${L}, ${D}] pe batch ${Bp} ${dtype}`,
          );
        }
      }
    });
  }
});

describe('absMax', () => {
  forEachBackend('absMax is the exact max |x| over awkward sizes and dtypes; NaN ignored', (be) => {
    for (const dtype of ['f32', 'bf16', 'f16', 'f8e4m3'] as const) {
      for (const n of [1, 7, 256, 1000, 70001]) {
        const x = randomTensor(be, [n], 500 + n, { dtype, scale: dtype === 'f8e4m3' ? 30 : 3 });
        const want = x.v.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        assert.equal(absMax(x.t), want, `absMax ${dtype} n=${n}`);
      }
    }
    const withNaN = fromArray(be, [4], [1, Number.NaN, -5, 2]);
    assert.equal(absMax(withNaN), 5);
    assert.equal(absMax(fromArray(be, [3], [0, -0, 0])), 0);
  });
});
