// Composite ops (ops.ts attnPrep, geluConcat, the amax side outputs): their result on every backend against a naive float64
// reference that follows the unfused chain's rounding points, and the backend's fused version (the
// CUDA kernels) against the composition on the same backend.
import assert from 'node:assert/strict';
import { describe } from 'node:test';

import type { DType } from '../../src/tensor/dtype.js';
import { attnPrep, attnPrepComposed, cast, fromArray, geluConcat, geluConcatComposed, linear, modulatedLayerNorm, newAmax } from '../../src/tensor/ops.js';
import { TOL, assertClose, forEachBackend, randomTensor, round1, rounded } from '../helpers/backends.js';
import { actRef } from './naive.js';

function makePe(Bp: number, L: number, Dh: number): Float32Array {
  const pe = new Float32Array(Bp * L * (Dh / 2) * 4);
  for (let b = 0; b < Bp; b++)
    for (let l = 0; l < L; l++)
      for (let k = 0; k < Dh / 2; k++) {
        const a = (l + 1 + b * 0.5) * 10000 ** ((-2 * k) / Dh);
        const o = ((b * L + l) * (Dh / 2) + k) * 4;
        pe.set([Math.cos(a), -Math.sin(a), Math.sin(a), Math.cos(a)], o);
      }
  return pe;
}

interface Seg {
  v: Float32Array;
  L: number;
  C: number;
  col: number;
  qs: Float32Array;
  ks: Float32Array;
}

/** slice -> splitHeads -> rmsNorm (x·rrms rounded, times scale rounded) -> concat -> rope (rounded). */
function naiveAttnPrep(segs: Seg[], B: number, H: number, Dh: number, pe: Float32Array, Bp: number, eps: number, dtype: DType) {
  const Lt = segs.reduce((n, s) => n + s.L, 0);
  const out = [0, 1, 2].map(() => new Float32Array(B * H * Lt * Dh));
  for (let b = 0; b < B; b++) {
    let l0 = 0;
    for (const s of segs) {
      for (let l = 0; l < s.L; l++) {
        for (let h = 0; h < H; h++) {
          const o = ((b * H + h) * Lt + l0 + l) * Dh;
          for (let part = 0; part < 3; part++) {
            const src = (b * s.L + l) * s.C + s.col + part * H * Dh + h * Dh;
            const x = s.v.subarray(src, src + Dh);
            if (part === 2) {
              out[2]!.set(x, o);
              continue;
            }
            let ss = 0;
            for (const t of x) ss += t * t;
            const rrms = 1 / Math.sqrt(ss / Dh + eps);
            const sc = part === 0 ? s.qs : s.ks;
            const n = Array.from(x, (t, d) => round1(dtype, round1(dtype, t * rrms) * sc[d]!));
            for (let k = 0; k < Dh / 2; k++) {
              const p = (((Bp === 1 ? 0 : b) * Lt + l0 + l) * (Dh / 2) + k) * 4;
              out[part]![o + 2 * k] = round1(dtype, pe[p]! * n[2 * k]! + pe[p + 1]! * n[2 * k + 1]!);
              out[part]![o + 2 * k + 1] = round1(dtype, pe[p + 2]! * n[2 * k]! + pe[p + 3]! * n[2 * k + 1]!);
            }
          }
        }
      }
      l0 += s.L;
    }
  }
  return out;
}

function tolFor(dtype: DType) {
  // a chain of roundings (norm, scale, rope): an inner one-ulp flip can move the output by more than one ulp
  return dtype === 'f32' ? { rtol: 1e-4, atol: 1e-5 } : TOL.bf16Chain;
}

describe('attnPrep', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`one and two segments, column offsets, shared and per-batch pe, ${dtype}`, (be) => {
      const H = 3;
      for (const Dh of [8, 128, 6]) {
        for (const [B, Bp] of [
          [2, 1],
          [2, 2],
          [1, 1],
        ] as const) {
          const mk = (
            L: number,
            C: number,
            col: number,
            seed: number,
          ): Seg & { t: ReturnType<typeof randomTensor>['t']; qt: ReturnType<typeof randomTensor>['t']; kt: ReturnType<typeof randomTensor>['t'] } => {
            const x = randomTensor(be, [B, L, C], seed, { dtype, scale: 2 });
            const q = randomTensor(be, [Dh], seed + 1, { dtype, offset: 1, scale: 0.2 });
            const k = randomTensor(be, [Dh], seed + 2, { dtype, offset: 1, scale: 0.2 });
            return { v: x.v, L, C, col, qs: q.v, ks: k.v, t: x.t, qt: q.t, kt: k.t };
          };
          // text stream (exactly the qkv columns) then image stream (qkv inside a wider row, at an offset)
          const s0 = mk(5, 3 * H * Dh, 0, 10 * Dh + B);
          const s1 = mk(7, 3 * H * Dh + 11, 4, 20 * Dh + B);
          for (const segs of [[s0], [s0, s1]]) {
            const Lt = segs.reduce((n, s) => n + s.L, 0);
            const pev = makePe(Bp, Lt, Dh);
            const pe = fromArray(be, [Bp, Lt, Dh / 2, 2, 2], pev);
            const args = segs.map((s) => ({ x: s.t, colOffset: s.col, qScale: s.qt, kScale: s.kt }));
            const got = attnPrep(args, { heads: H, pe, eps: 1e-6 });
            const ref = naiveAttnPrep(segs, B, H, Dh, pev, Bp, 1e-6, dtype);
            got.forEach((t, i) => {
              assert.deepEqual(t.shape, [B, H, Lt, Dh]);
              assertClose(
                t.toFloat32(),
                ref[i]!,
                i === 2 ? TOL.exact : tolFor(dtype),
                `attnPrep ${'qkv'[i]} Dh=${Dh} B=${B} pe batch ${Bp} segs ${segs.length} ${dtype}`,
              );
            });
            // the fused version (when the backend has one) against the composition on the same backend
            const c = attnPrepComposed(args, { heads: H, pe, eps: 1e-6 });
            c.forEach((t, i) => assertClose(got[i]!.toFloat32(), t.toFloat32(), i === 2 ? TOL.exact : tolFor(dtype), `fused vs composed ${'qkv'[i]} ${dtype}`));
          }
        }
      }
    });
  }
});

describe('geluConcat', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`[a | gelu_tanh(h[:, col:col+W])], ${dtype}`, (be) => {
      for (const [B, L, Da, C, col, W] of [
        [2, 3, 4, 10, 3, 5],
        [1, 1, 1, 1, 0, 1],
        [1, 5, 64, 200, 64, 136],
      ] as const) {
        const a = randomTensor(be, [B, L, Da], 7 + C, { dtype });
        const h = randomTensor(be, [B, L, C], 8 + C, { dtype, scale: 3 });
        const y = geluConcat(a.t, h.t, col, W);
        assert.deepEqual(y.shape, [B, L, Da + W]);
        const ref = new Float32Array(B * L * (Da + W));
        for (let r = 0; r < B * L; r++) {
          for (let c = 0; c < Da; c++) ref[r * (Da + W) + c] = a.v[r * Da + c]!;
          for (let c = 0; c < W; c++) ref[r * (Da + W) + Da + c] = actRef('gelu_tanh', h.v[r * C + col + c]!);
        }
        assertClose(
          y.toFloat32(),
          rounded(dtype, ref),
          dtype === 'f32' ? { rtol: 1e-5, atol: 1e-6 } : TOL.bf16,
          `geluConcat ${[B, L, Da, C, col, W]} ${dtype}`,
        );
        assertClose(
          y.toFloat32(),
          geluConcatComposed(a.t, h.t, col, W).toFloat32(),
          dtype === 'f32' ? { rtol: 1e-5, atol: 1e-6 } : TOL.bf16,
          'fused vs composed',
        );
      }
      assert.throws(() => geluConcat(randomTensor(be, [1, 2, 3], 1).t, randomTensor(be, [1, 2, 4], 2).t, 2, 3), /columns \[2, 5\) do not fit C=4/);
    });
  }
});

// go_fast's amax side outputs (ops.ts newAmax): the producer raises an f32 [1] to max|its output| in
// the pass that writes it (CUDA) or by composition (CPU); the fp8 linear that reads it gives the
// same bits as the one that computes the amax itself.
describe('amax side outputs for fp8 inputs', () => {
  for (const dtype of ['bf16', 'f16'] as const) {
    forEachBackend(`modulatedLayerNorm and geluConcat raise amaxOut to max|y|; linear with inputAmax is bit-identical, ${dtype}`, (be) => {
      const maxAbs = (v: Float32Array) => v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      const [B, L, D] = [2, 37, 96];
      const x = randomTensor(be, [B, L, D], 11, { dtype, scale: 3 }).t;
      const shift = randomTensor(be, [B, D], 12, { dtype }).t;
      const scale = randomTensor(be, [B, D], 13, { dtype }).t;
      const amax = newAmax(be);
      const y = modulatedLayerNorm(x, shift, scale, 1e-6, amax);
      const yPlain = modulatedLayerNorm(x, shift, scale, 1e-6);
      assert.deepEqual(y.toRaw(), yPlain.toRaw(), 'the amax output does not change y');
      assert.equal(amax.toFloat32()[0], maxAbs(y.toFloat32()), 'amax = max|y| exactly');

      // the fp8 linear after it: inputAmax or its own pass, same bits
      const w = cast(randomTensor(be, [24, D], 14, { dtype: 'f32', scale: 0.2 }).t, 'f8e4m3');
      const bias = randomTensor(be, [24], 15, { dtype }).t;
      const own = linear(y, w, { bias, weightScale: 0.5, quantizeInput: 'f8e4m3' });
      const given = linear(y, w, { bias, weightScale: 0.5, quantizeInput: 'f8e4m3', inputAmax: amax });
      assert.deepEqual(given.toRaw(), own.toRaw());

      // geluConcat; an amax already above the data stays where it is (a running max)
      const a = randomTensor(be, [B, L, 16], 16, { dtype, scale: 0.5 }).t;
      const h = randomTensor(be, [B, L, 40], 17, { dtype, scale: 4 }).t;
      const g = newAmax(be);
      const gy = geluConcat(a, h, 8, 24, g);
      assert.deepEqual(gy.toRaw(), geluConcat(a, h, 8, 24).toRaw());
      assert.equal(g.toFloat32()[0], maxAbs(gy.toFloat32()));
      const high = fromArray(be, [1], [1e6]);
      geluConcat(a, h, 8, 24, high).dispose();
      assert.equal(high.toFloat32()[0], 1e6);

      assert.throws(() => modulatedLayerNorm(x, shift, scale, 1e-6, fromArray(be, [2], [0, 0])), /amax must be an f32 \[1\] tensor/);
      assert.throws(() => linear(y, w, { inputAmax: amax }), /inputAmax is only for quantizeInput/);
    });
  }
});
