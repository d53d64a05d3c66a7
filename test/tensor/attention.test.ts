// attention against a naive float64 softmax(q·kᵀ·scale + bias)·v per (batch, head, query).

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import type { DType } from '../../src/tensor/dtype.js';
import { attention, fromArray } from '../../src/tensor/ops.js';
import { assertClose, forEachBackend, randomTensor, rounded, tolFor } from '../helpers/backends.js';

interface Dims {
  B: number;
  H: number;
  Lq: number;
  Lk: number;
  D: number;
  Dv: number;
}

function naiveAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  { B, H, Lq, Lk, D, Dv }: Dims,
  scale: number,
  bias: { v: Float32Array; bb: number; bh: number } | undefined,
  causal: boolean,
  dtype: DType,
): Float32Array {
  const out = new Float64Array(B * Lq * H * Dv); // [B, Lq, H*Dv]
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < Lq; i++) {
        const s = new Float64Array(Lk);
        for (let j = 0; j < Lk; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[((b * H + h) * Lq + i) * D + d]! * k[((b * H + h) * Lk + j) * D + d]!;
          let val = dot * scale;
          if (bias) val += bias.v[(((bias.bb === 1 ? 0 : b) * bias.bh + (bias.bh === 1 ? 0 : h)) * Lq + i) * Lk + j]!;
          if (causal && j > i) val = -Infinity;
          s[j] = val;
        }
        const max = Math.max(...s);
        let sum = 0;
        for (let j = 0; j < Lk; j++) sum += Math.exp(s[j]! - max);
        for (let d = 0; d < Dv; d++) {
          let acc = 0;
          for (let j = 0; j < Lk; j++) acc += (Math.exp(s[j]! - max) / sum) * v[((b * H + h) * Lk + j) * Dv + d]!;
          out[(b * Lq + i) * H * Dv + h * Dv + d] = acc;
        }
      }
    }
  }
  return rounded(dtype, out);
}

function inputs(be: Parameters<Parameters<typeof forEachBackend>[1]>[0], d: Dims, dtype: DType, seed: number) {
  const q = randomTensor(be, [d.B, d.H, d.Lq, d.D], seed, { dtype });
  const k = randomTensor(be, [d.B, d.H, d.Lk, d.D], seed + 1, { dtype });
  const v = randomTensor(be, [d.B, d.H, d.Lk, d.Dv], seed + 2, { dtype });
  return { q, k, v };
}

describe('attention', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`attention shapes incl. Lq != Lk and Dv != D, ${dtype}`, (be) => {
      const cases: Dims[] = [
        { B: 2, H: 3, Lq: 5, Lk: 7, D: 4, Dv: 6 },
        { B: 1, H: 1, Lq: 1, Lk: 1, D: 1, Dv: 1 },
        { B: 1, H: 2, Lq: 70, Lk: 45, D: 8, Dv: 8 }, // several 32-row score blocks
        { B: 2, H: 1, Lq: 3, Lk: 33, D: 16, Dv: 5 },
      ];
      let seed = 1;
      for (const d of cases) {
        const { q, k, v } = inputs(be, d, dtype, (seed += 3));
        const y = attention(q.t, k.t, v.t);
        assert.deepEqual(y.shape, [d.B, d.Lq, d.H * d.Dv]);
        const ref = naiveAttention(q.v, k.v, v.v, d, 1 / Math.sqrt(d.D), undefined, false, dtype);
        assertClose(y.toFloat32(), ref, tolFor(dtype, be), `attention ${JSON.stringify(d)} ${dtype}`);
      }
    });

    forEachBackend(`attention with scale and broadcast bias, ${dtype}`, (be) => {
      const d: Dims = { B: 2, H: 3, Lq: 6, Lk: 9, D: 5, Dv: 4 };
      const { q, k, v } = inputs(be, d, dtype, 50);
      for (const [bb, bh] of [
        [1, 3],
        [2, 1],
        [2, 3],
        [1, 1],
      ] as const) {
        const bias = randomTensor(be, [bb, bh, d.Lq, d.Lk], 60 + bb * 10 + bh, { dtype, scale: 3 });
        const y = attention(q.t, k.t, v.t, { scale: 0.3, bias: bias.t });
        const ref = naiveAttention(q.v, k.v, v.v, d, 0.3, { v: bias.v, bb, bh }, false, dtype);
        assertClose(y.toFloat32(), ref, tolFor(dtype, be), `attention bias [${bb}, ${bh}, Lq, Lk] ${dtype}`);
      }
    });

    forEachBackend(`causal attention, ${dtype}`, (be) => {
      for (const d of [
        { B: 2, H: 2, Lq: 9, Lk: 9, D: 4, Dv: 3 },
        { B: 1, H: 1, Lq: 70, Lk: 70, D: 6, Dv: 6 }, // causal across 32-row blocks
      ]) {
        const { q, k, v } = inputs(be, d, dtype, 80);
        const bias = randomTensor(be, [1, d.H, d.Lq, d.Lk], 90, { dtype });
        const y = attention(q.t, k.t, v.t, { causal: true, bias: bias.t });
        const ref = naiveAttention(q.v, k.v, v.v, d, 1 / Math.sqrt(d.D), { v: bias.v, bb: 1, bh: d.H }, true, dtype);
        assertClose(y.toFloat32(), ref, tolFor(dtype, be), `causal attention ${JSON.stringify(d)} ${dtype}`);
      }
    });
  }

  // Head sizes 64 and 128 in bf16/f16 take the CUDA backend's tensor-core kernels (native/attention.cu:
  // flash_attn_kernel with 128-row query blocks and 64-key tiles; on sm_90 flash_attn_wgmma_kernel for
  // D = 128 without bias or mask), so these lengths cut tiles in awkward places.
  for (const dtype of ['bf16', 'f16'] as const) {
    forEachBackend(`attention at head size 64 and 128 (tensor-core tiles), ${dtype}`, (be) => {
      const cases: { d: Dims; causal: boolean; bias: boolean; scale?: number }[] = [
        { d: { B: 2, H: 3, Lq: 77, Lk: 130, D: 64, Dv: 64 }, causal: false, bias: false },
        { d: { B: 1, H: 2, Lq: 130, Lk: 64, D: 128, Dv: 128 }, causal: false, bias: false, scale: 0.2 },
        { d: { B: 1, H: 2, Lq: 100, Lk: 100, D: 64, Dv: 64 }, causal: true, bias: true },
        { d: { B: 2, H: 1, Lq: 1, Lk: 200, D: 128, Dv: 128 }, causal: false, bias: true },
        // no bias, no mask at D = 128: the Hopper kernel where it runs (128-row query blocks, 128-key
        // tiles: three query blocks and three key tiles here, the last ones partial)
        { d: { B: 1, H: 2, Lq: 260, Lk: 300, D: 128, Dv: 128 }, causal: false, bias: false },
      ];
      let seed = 300;
      for (const c of cases) {
        const { q, k, v } = inputs(be, c.d, dtype, (seed += 7));
        const bias = c.bias ? randomTensor(be, [1, c.d.H, c.d.Lq, c.d.Lk], seed + 5, { dtype, scale: 2 }) : undefined;
        const scale = c.scale ?? 1 / Math.sqrt(c.d.D);
        const y = attention(q.t, k.t, v.t, { scale, causal: c.causal, ...(bias ? { bias: bias.t } : {}) });
        const ref = naiveAttention(q.v, k.v, v.v, c.d, scale, bias ? { v: bias.v, bb: 1, bh: c.d.H } : undefined, c.causal, dtype);
        // tolerance: one ulp of the dtype, plus an absolute 2^-9 for outputs near 0: the tensor-core
        // kernel rounds the softmax weights to the input dtype before P·V (like FlashAttention), an
        // error of up to 2^-9 relative per weight on values of size ~1
        assertClose(y.toFloat32(), ref, { rtol: dtype === 'f16' ? 2 ** -9 : 2 ** -7, atol: 2 ** -9 }, `attention ${JSON.stringify(c)} ${dtype}`);
      }
    });
  }

  forEachBackend('attention: -inf bias masks keys; a fully masked row gives 0', (be) => {
    const d: Dims = { B: 1, H: 1, Lq: 2, Lk: 3, D: 2, Dv: 2 };
    const { q, k, v } = inputs(be, d, 'f32', 7);
    const mask = fromArray(be, [1, 1, 2, 3], [0, -Infinity, 0, -Infinity, -Infinity, -Infinity]);
    const y = attention(q.t, k.t, v.t, { bias: mask }).toFloat32();
    const ref = naiveAttention(q.v, k.v, v.v, d, 1 / Math.sqrt(2), { v: new Float32Array([0, -Infinity, 0, 0, 0, 0]), bb: 1, bh: 1 }, false, 'f32');
    // tolerance: f32 for the unmasked row; the fully masked row is exactly 0
    assertClose(y.subarray(0, 2), ref.subarray(0, 2), { rtol: 1e-5, atol: 1e-6 }, 'row with masked keys');
    assert.deepEqual([...y.subarray(2)], [0, 0]);
  });
});
