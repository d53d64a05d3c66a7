// conv2d and upsampleNearest against naive loops.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import type { DType } from '../../src/tensor/dtype.js';
import { conv2d, upsampleNearest } from '../../src/tensor/ops.js';
import { assertClose, forEachBackend, randomTensor, rounded, tolFor } from '../helpers/backends.js';

type Pad4 = [number, number, number, number];

function naiveConv(
  x: Float32Array,
  [B, C, H, W]: number[],
  w: Float32Array,
  [O, , kh, kw]: number[],
  bias: Float32Array | undefined,
  [sh, sw]: [number, number],
  [pt, pb, pl, pr]: Pad4,
  dtype: DType,
): { y: Float32Array; shape: number[] } {
  const Ho = Math.floor((H! + pt + pb - kh!) / sh) + 1;
  const Wo = Math.floor((W! + pl + pr - kw!) / sw) + 1;
  const y = new Float64Array(B! * O! * Ho * Wo);
  for (let b = 0; b < B!; b++) {
    for (let o = 0; o < O!; o++) {
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          let s = bias ? bias[o]! : 0;
          for (let c = 0; c < C!; c++) {
            for (let i = 0; i < kh!; i++) {
              for (let j = 0; j < kw!; j++) {
                const iy = oy * sh - pt + i;
                const ix = ox * sw - pl + j;
                if (iy < 0 || iy >= H! || ix < 0 || ix >= W!) continue;
                s += x[((b * C! + c) * H! + iy) * W! + ix]! * w[((o * C! + c) * kh! + i) * kw! + j]!;
              }
            }
          }
          y[((b * O! + o) * Ho + oy) * Wo + ox] = s;
        }
      }
    }
  }
  return { y: rounded(dtype, y), shape: [B!, O!, Ho, Wo] };
}

interface Case {
  x: number[];
  w: number[];
  stride: [number, number];
  pad: Pad4;
  /** how the op is called: one number, [ph, pw] or the 4-tuple */
  padArg: number | [number, number] | Pad4;
  bias: boolean;
}

const CASES: Case[] = [
  { x: [2, 3, 8, 9], w: [5, 3, 3, 3], stride: [1, 1], pad: [1, 1, 1, 1], padArg: 1, bias: true }, // 3x3 same
  { x: [1, 4, 9, 7], w: [6, 4, 3, 3], stride: [2, 2], pad: [0, 1, 0, 1], padArg: [0, 1, 0, 1], bias: true }, // VAE downsample
  { x: [1, 5, 6, 6], w: [3, 5, 3, 3], stride: [2, 2], pad: [1, 1, 1, 1], padArg: 1, bias: false }, // stride 2 symmetric
  { x: [2, 6, 5, 7], w: [4, 6, 1, 1], stride: [1, 1], pad: [0, 0, 0, 0], padArg: 0, bias: true }, // 1x1
  { x: [1, 3, 7, 7], w: [2, 3, 1, 1], stride: [2, 2], pad: [0, 0, 0, 0], padArg: 0, bias: true }, // 1x1 stride 2
  { x: [1, 2, 5, 6], w: [3, 2, 2, 3], stride: [1, 2], pad: [1, 1, 2, 2], padArg: [1, 2], bias: true }, // non-square kernel
  { x: [1, 1, 1, 1], w: [1, 1, 1, 1], stride: [1, 1], pad: [0, 0, 0, 0], padArg: 0, bias: false },
  { x: [1, 3, 2, 2], w: [2, 3, 3, 3], stride: [1, 1], pad: [2, 0, 0, 2], padArg: [2, 0, 0, 2], bias: true }, // pads larger than the image on one side
  { x: [1, 1, 4, 4], w: [1, 1, 1, 1], stride: [1, 1], pad: [0, 1, 0, 1], padArg: [0, 1, 0, 1], bias: false }, // 1x1 with padding
];

describe('conv2d', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`conv2d stride/padding/kernel variants, ${dtype}`, (be) => {
      let seed = 1;
      for (const c of CASES) {
        const x = randomTensor(be, c.x, seed++, { dtype });
        const w = randomTensor(be, c.w, seed++, { dtype, scale: 0.3 });
        const b = randomTensor(be, [c.w[0]!], seed++, { dtype });
        const y = conv2d(x.t, w.t, { bias: c.bias ? b.t : undefined, stride: c.stride, padding: c.padArg });
        const ref = naiveConv(x.v, c.x, w.v, c.w, c.bias ? b.v : undefined, c.stride, c.pad, dtype);
        assert.deepEqual(y.shape, ref.shape, `conv2d output shape for ${JSON.stringify(c)}`);
        assertClose(y.toFloat32(), ref.y, tolFor(dtype, be), `conv2d ${JSON.stringify(c)} ${dtype}`);
      }
    });
  }

  forEachBackend('conv2d large enough for several im2col chunks (32 channels, 3x3)', (be) => {
    const xs = [1, 32, 50, 40];
    const ws = [8, 32, 3, 3];
    const x = randomTensor(be, xs, 90);
    const w = randomTensor(be, ws, 91, { scale: 0.1 });
    const b = randomTensor(be, [8], 92);
    const y = conv2d(x.t, w.t, { bias: b.t, padding: 1 });
    const ref = naiveConv(x.v, xs, w.v, ws, b.v, [1, 1], [1, 1, 1, 1], 'f32');
    assertClose(y.toFloat32(), ref.y, tolFor('f32', be), 'conv2d 32x50x40');
  });
});

describe('upsampleNearest', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    forEachBackend(`upsampleNearest factors 1, 2, 3, ${dtype}`, (be) => {
      for (const shape of [
        [2, 3, 4, 5],
        [1, 1, 1, 1],
        [1, 2, 3, 1],
      ]) {
        const [B, C, H, W] = shape as [number, number, number, number];
        const x = randomTensor(be, shape, 7, { dtype });
        for (const f of [1, 2, 3]) {
          const y = upsampleNearest(x.t, f);
          assert.deepEqual(y.shape, [B, C, H * f, W * f]);
          const ref = new Float32Array(B * C * H * f * W * f);
          for (let bc = 0; bc < B * C; bc++) {
            for (let oy = 0; oy < H * f; oy++) {
              for (let ox = 0; ox < W * f; ox++) {
                ref[(bc * H * f + oy) * W * f + ox] = x.v[(bc * H + Math.floor(oy / f)) * W + Math.floor(ox / f)]!;
              }
            }
          }
          // tolerance: exact (a copy)
          assert.deepEqual([...y.toFloat32()], [...ref], `upsample [${shape}] x${f} ${dtype}`);
        }
      }
    });
  }
});
