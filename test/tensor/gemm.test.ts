// linear and matmul against naive float64 triple loops.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import type { Activation } from '../../src/tensor/backend.js';
import type { DType } from '../../src/tensor/dtype.js';
import { linear, matmul } from '../../src/tensor/ops.js';
import { TOL, assertClose, assertMostlyExact, forEachBackend, fractionDifferent, randomTensor, rounded, tolFor } from '../helpers/backends.js';
import { ACTIVATIONS, actRef } from './naive.js';

/** y[m, n] = act(round(Σ_k x[m, k]·w[n, k]·scale + b[n])), rounded again when act != none. */
function naiveLinear(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array | undefined,
  M: number,
  N: number,
  K: number,
  scale: number,
  act: Activation,
  dtype: DType,
): Float32Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
      y[m * N + n] = s * scale + (b ? b[n]! : 0);
    }
  }
  const r = rounded(dtype, y);
  if (act === 'none') return r;
  return rounded(
    dtype,
    r.map((v) => actRef(act, v)),
  );
}

const LINEAR_SHAPES: { x: number[]; n: number }[] = [
  { x: [1, 1], n: 1 },
  { x: [3, 5, 7], n: 9 },
  { x: [17, 33], n: 19 }, // 4x4 blocks plus row and column remainders
  { x: [2, 1, 8], n: 4 },
  { x: [1, 13], n: 6 }, // one row: the column split path of the pool
  { x: [5, 1100], n: 6 }, // K > 1024: blocked reduction
  { x: [4, 0], n: 3 }, // K = 0: y = bias
];

describe('linear', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`linear shapes, with and without bias, ${dtype}`, (be) => {
      let seed = 1;
      for (const { x: xs, n: N } of LINEAR_SHAPES) {
        const K = xs[xs.length - 1]!;
        const M = xs.slice(0, -1).reduce((p, d) => p * d, 1);
        const x = randomTensor(be, xs, seed++, { dtype });
        const w = randomTensor(be, [N, K], seed++, { dtype, scale: 1 / Math.sqrt(Math.max(K, 1)) });
        const b = randomTensor(be, [N], seed++, { dtype });
        for (const withBias of [false, true]) {
          const y = linear(x.t, w.t, { bias: withBias ? b.t : undefined });
          assert.deepEqual(y.shape, [...xs.slice(0, -1), N]);
          assert.equal(y.dtype, dtype);
          const ref = naiveLinear(x.v, w.v, withBias ? b.v : undefined, M, N, K, 1, 'none', dtype);
          assertClose(y.toFloat32(), ref, tolFor(dtype, be), `linear x [${xs}] w [${N}, ${K}] bias=${withBias} ${dtype}`);
          y.dispose();
        }
        for (const t of [x.t, w.t, b.t]) t.dispose();
      }
    });

    forEachBackend(`linear with each activation, ${dtype}`, (be) => {
      const [M, K, N] = [7, 24, 10];
      const x = randomTensor(be, [M, K], 11, { dtype, scale: 2 });
      const w = randomTensor(be, [N, K], 12, { dtype, scale: 1 / Math.sqrt(K) });
      const b = randomTensor(be, [N], 13, { dtype });
      for (const act of ACTIVATIONS) {
        const y = linear(x.t, w.t, { bias: b.t, act });
        const ref = naiveLinear(x.v, w.v, b.v, M, N, K, 1, act, dtype);
        // tolerance: bf16Chain for bf16 (two rounding points), f32 otherwise
        assertClose(y.toFloat32(), ref, dtype === 'f32' ? TOL.f32 : TOL.bf16Chain, `linear act=${act} ${dtype}`);
        y.dispose();
      }
    });
  }

  forEachBackend('linear + activation rounds the GEMM output before the activation (bf16)', (be) => {
    const [M, K, N] = [16, 32, 32];
    const x = randomTensor(be, [M, K], 21, { dtype: 'bf16', scale: 2 });
    const w = randomTensor(be, [N, K], 22, { dtype: 'bf16', scale: 1 / Math.sqrt(K) });
    const y = linear(x.t, w.t, { act: 'gelu_tanh' }).toFloat32();
    const ref = naiveLinear(x.v, w.v, undefined, M, N, K, 1, 'gelu_tanh', 'bf16');
    // tolerance: >= 99% bit-exact, rest within bf16Chain
    assertMostlyExact(y, ref, 0.99, TOL.bf16Chain, 'linear gelu_tanh bf16');
    const oneRounding = naiveLinear(x.v, w.v, undefined, M, N, K, 1, 'none', 'f32').map((v) => actRef('gelu_tanh', v));
    assert.ok(fractionDifferent(rounded('bf16', oneRounding), ref) > 0.05, 'the test must tell one rounding from two');
  });

  // go_fast: fp8 weight and a dynamically quantised fp8 input (LinearArgs.quantizeInput); on the
  // CUDA backend cuBLASLt's fp8 GEMM with the input scale read on the device (native/gemm.cu).
  forEachBackend('linear with an fp8 weight and a dynamically quantised fp8 input', (be) => {
    const [M, K, N] = [37, 64, 24];
    for (const xd of ['bf16', 'f16', 'f32'] as const) {
      const x = randomTensor(be, [M, K], 41, { dtype: xd, scale: 3 });
      const w = randomTensor(be, [N, K], 42, { dtype: 'f8e4m3', scale: 20 });
      const b = randomTensor(be, [N], 43, { dtype: xd });
      // the reference quantisation: s = fp32(max|x| / 448), x_q = e4m3(fp32(x / s))
      const amax = x.v.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const s = Math.fround(amax / 448);
      const xq = rounded(
        'f8e4m3',
        Float32Array.from(x.v, (v) => v / s),
      );
      for (const act of ['none', 'gelu_tanh'] as const) {
        const y = linear(x.t, w.t, { bias: b.t, weightScale: 0.05, quantizeInput: 'f8e4m3', act });
        const ref = naiveLinear(xq, w.v, b.v, M, N, K, 0.05 * s, act, xd);
        // tolerance: the dtype's (one rounding of an fp32-accumulated product), a chain for the activation
        assertClose(y.toFloat32(), ref, act === 'none' ? tolFor(xd, be) : xd === 'f32' ? tolFor(xd, be) : TOL.bf16Chain, `fp8 input ${xd} ${act}`);
        const again = linear(x.t, w.t, { bias: b.t, weightScale: 0.05, quantizeInput: 'f8e4m3', act }).toFloat32();
        assert.deepEqual(again, y.toFloat32(), 'deterministic: the same inputs give the same bits');
      }
      const unquantised = linear(x.t, w.t, { bias: b.t, weightScale: 0.05 }).toFloat32();
      const quantised = linear(x.t, w.t, { bias: b.t, weightScale: 0.05, quantizeInput: 'f8e4m3' }).toFloat32();
      assert.ok(fractionDifferent(quantised, unquantised) > 0.3, 'the input really is quantised');
    }
    // an all-zero input: scale 1, the output is the bias
    const z = randomTensor(be, [3, K], 44, { dtype: 'bf16', scale: 0 });
    const w = randomTensor(be, [N, K], 42, { dtype: 'f8e4m3', scale: 20 });
    const b = randomTensor(be, [N], 45, { dtype: 'bf16' });
    const y = linear(z.t, w.t, { bias: b.t, quantizeInput: 'f8e4m3' }).toFloat32();
    assertClose(y, [...b.v, ...b.v, ...b.v], TOL.exact, 'zero input');
    const wb = randomTensor(be, [N, K], 46, { dtype: 'bf16' });
    assert.throws(() => linear(z.t, wb.t, { quantizeInput: 'f8e4m3' }), /quantizeInput 'f8e4m3' needs an fp8 weight \(w is bf16\)/);
  });

  forEachBackend('linear with an fp8 weight and a weight scale', (be) => {
    const [M, K, N] = [6, 20, 9];
    for (const xd of ['f32', 'bf16'] as const) {
      const x = randomTensor(be, [M, K], 31, { dtype: xd });
      const w = randomTensor(be, [N, K], 32, { dtype: 'f8e4m3', scale: 20 });
      const b = randomTensor(be, [N], 33, { dtype: xd });
      for (const scale of [1, 0.0625, 3]) {
        const y = linear(x.t, w.t, { bias: b.t, weightScale: scale });
        assert.equal(y.dtype, xd);
        const ref = naiveLinear(x.v, w.v, b.v, M, N, K, scale, 'none', xd);
        assertClose(y.toFloat32(), ref, tolFor(xd, be), `linear fp8 weight, scale ${scale}, x ${xd}`);
        y.dispose();
      }
      // the decoded fp8 weight is cached: a second call gives the same result
      const again = linear(x.t, w.t, { bias: b.t, weightScale: 0.5 }).toFloat32();
      assertClose(again, naiveLinear(x.v, w.v, b.v, M, N, K, 0.5, 'none', xd), tolFor(xd, be), 'cached fp8 weight');
    }
  });

  forEachBackend('linear with mixed dtypes: bf16 weight and f32 bias on f32 activations', (be) => {
    const x = randomTensor(be, [5, 11], 41);
    const w = randomTensor(be, [3, 11], 42, { dtype: 'bf16' });
    const b = randomTensor(be, [3], 43);
    const y = linear(x.t, w.t, { bias: b.t });
    assert.equal(y.dtype, 'f32');
    assertClose(y.toFloat32(), naiveLinear(x.v, w.v, b.v, 5, 3, 11, 1, 'none', 'f32'), TOL.f32, 'mixed linear');
  });
});

/** c[batch, m, n] = Σ_k a[batch, m, k]·b[batch|-, k, n] (or b[batch|-, n, k] with transB). */
function naiveMatmul(
  a: Float32Array,
  b: Float32Array,
  batch: number,
  M: number,
  K: number,
  N: number,
  transB: boolean,
  bBatched: boolean,
  dtype: DType,
): Float32Array {
  const c = new Float64Array(batch * M * N);
  for (let t = 0; t < batch; t++) {
    const bo = bBatched ? t * K * N : 0;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[(t * M + m) * K + k]! * b[bo + (transB ? n * K + k : k * N + n)]!;
        c[(t * M + m) * N + n] = s;
      }
    }
  }
  return rounded(dtype, c);
}

describe('matmul', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`matmul, transB and broadcast b, ${dtype}`, (be) => {
      const cases: { batch: number[]; M: number; K: number; N: number }[] = [
        { batch: [2, 3], M: 5, K: 7, N: 4 },
        { batch: [], M: 1, K: 1, N: 1 },
        { batch: [1], M: 9, K: 3, N: 13 },
        { batch: [4], M: 1, K: 17, N: 2 },
      ];
      let seed = 100;
      for (const { batch, M, K, N } of cases) {
        const nb = batch.reduce((p, d) => p * d, 1);
        for (const transB of [false, true]) {
          for (const bBatched of [true, false]) {
            const a = randomTensor(be, [...batch, M, K], seed++, { dtype });
            const bShape = transB ? [N, K] : [K, N];
            const b = randomTensor(be, bBatched ? [...batch, ...bShape] : bShape, seed++, { dtype });
            const c = matmul(a.t, b.t, { transB });
            assert.deepEqual(c.shape, [...batch, M, N]);
            const ref = naiveMatmul(a.v, b.v, nb, M, K, N, transB, bBatched && batch.length > 0, dtype);
            assertClose(
              c.toFloat32(),
              ref,
              tolFor(dtype, be),
              `matmul [${batch}, ${M}, ${K}] x ${bBatched ? 'batched' : 'broadcast'} b transB=${transB} ${dtype}`,
            );
          }
        }
      }
    });
  }
});
