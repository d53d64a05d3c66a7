// attention: q·kᵀ·scale + bias (+ causal mask), softmax, ·v, heads merged; float32 inside,
// one rounding of the output. The rows are split across the pool (attention-kernel.ts).

import type { AttentionArgs, OutSpec, Storage } from '../backend.js';
import type { Tensor } from '../tensor.js';
import type { AttentionTask } from './attention-kernel.js';
import { parallelFor } from './pool.js';
import { dimsOf, encodeOut, f32Of, newF32 } from './storage.js';

export function attention(out: OutSpec, q: Tensor, k: Tensor, v: Tensor, args: AttentionArgs): Storage {
  const [B, H, Lq, D] = dimsOf(q) as [number, number, number, number];
  const Lk = dimsOf(k)[2]!;
  const Dv = dimsOf(v)[3]!;
  const vf = f32Of(v); // [B, H, Lk, Dv]
  const vt = newF32(B * H * Dv * Lk); // [B, H, Dv, Lk]
  for (let bh = 0; bh < B * H; bh++) {
    const src = bh * Lk * Dv;
    const dst = bh * Dv * Lk;
    for (let j = 0; j < Lk; j++) for (let d = 0; d < Dv; d++) vt[dst + d * Lk + j] = vf[src + j * Dv + d]!;
  }
  const bias = args.bias;
  const bs = bias ? dimsOf(bias) : undefined; // [B|1, H|1, Lq, Lk]
  const task: AttentionTask = {
    kind: 'attention',
    q: f32Of(q), // [B, H, Lq, D]
    k: f32Of(k), // [B, H, Lk, D]
    vt,
    bias: bias ? f32Of(bias) : null, // [B|1, H|1, Lq, Lk]
    out: newF32(B * Lq * H * Dv), // [B, Lq, H*Dv]
    B,
    H,
    Lq,
    Lk,
    D,
    Dv,
    scale: args.scale,
    causal: args.causal,
    biasStrideB: bs && bs[0] !== 1 ? bs[1]! * Lq * Lk : 0,
    biasStrideH: bs && bs[1] !== 1 ? Lq * Lk : 0,
  };
  const flops = 2 * B * H * Lq * Lk * (D + Dv) * (args.causal ? 0.5 : 1);
  parallelFor(task, B * H * Lq, flops, 32);
  return encodeOut(out, task.out);
}
