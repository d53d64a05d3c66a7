// conv2d (NCHW): im2col + GEMM per chunk of output rows (conv-kernel.ts), rows split across the
// pool; bias added on the calling thread, one rounding of the output.

import type { Conv2dArgs, OutSpec, Storage } from '../backend.js';
import type { Tensor } from '../tensor.js';
import type { ConvTask } from './conv-kernel.js';
import { parallelFor } from './pool.js';
import { dimsOf, encodeOut, f32Of, newF32, optParamF32, paramF32 } from './storage.js';

export function conv2d(out: OutSpec, x: Tensor, w: Tensor, args: Conv2dArgs): Storage {
  const [B, C, H, W] = dimsOf(x) as [number, number, number, number];
  const [O, , kh, kw] = dimsOf(w) as [number, number, number, number];
  const [, , Ho, Wo] = dimsOf(out) as [number, number, number, number];
  const task: ConvTask = {
    kind: 'conv',
    x: f32Of(x), // [B, C, H, W]
    w: paramF32(w), // [O, C·kh·kw]
    out: newF32(B * O * Ho * Wo), // [B, O, Ho, Wo]
    B,
    C,
    H,
    W,
    O,
    kh,
    kw,
    sh: args.stride[0] | 0,
    sw: args.stride[1] | 0,
    pt: args.padding[0] | 0,
    pl: args.padding[2] | 0,
    Ho,
    Wo,
  };
  parallelFor(task, B * Ho, 2 * B * O * Ho * Wo * C * kh * kw);
  const bias = optParamF32(args.bias); // [O]
  if (bias) {
    const y = task.out;
    const P = Ho * Wo;
    for (let b = 0; b < B; b++) {
      for (let o = 0; o < O; o++) {
        const off = (b * O + o) * P;
        const v = bias[o]!;
        for (let p = 0; p < P; p++) y[off + p] = y[off + p]! + v;
      }
    }
  }
  return encodeOut(out, task.out);
}
