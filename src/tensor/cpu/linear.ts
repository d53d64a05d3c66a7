// linear and matmul: a blocked float32 GEMM (gemm.ts), split across the pool by rows or columns,
// then the epilogue (weight scale, bias, rounding, activation) on the calling thread.

import type { LinearArgs, OutSpec, Storage } from '../backend.js';
import { roundToDtypeInPlace } from '../dtype.js';
import { type Tensor, numel } from '../tensor.js';
import { applyActivation } from './activations.js';
import { maxAbs } from './layout.js';
import type { F32 } from './gemm.js';
import type { GemmTask } from './gemm-task.js';
import { parallelFor, poolInfo } from './pool.js';
import { dimsOf, encodeOut, f32Of, newF32, optParamF32, paramF32 } from './storage.js';

/** Run a batched GEMM task over the pool, by rows unless there are too few rows to share. */
export function runGemm(t: Omit<GemmTask, 'kind' | 'split'>): void {
  const threads = poolInfo().threads;
  const split = t.M >= 8 * threads || t.N < 4 * threads ? 'rows' : 'cols';
  const task: GemmTask = { kind: 'gemm', split, ...t };
  const units = t.batch * (split === 'rows' ? t.M : t.N);
  parallelFor(task, units, 2 * t.batch * t.M * t.N * t.K, 4);
}

export function linear(out: OutSpec, x: Tensor, w: Tensor, args: LinearArgs): Storage {
  const xs = dimsOf(x);
  const K = xs[xs.length - 1]!;
  const M = numel(xs.slice(0, -1));
  const N = dimsOf(w)[0]!;
  let xf = f32Of(x); // [M, K]
  let scale = args.weightScale;
  if (args.quantizeInput === 'f8e4m3') {
    const q = quantizeE4m3PerTensor(xf);
    xf = q.values;
    scale *= q.scale;
  }
  const wf = paramF32(w); // [N, K]
  const y = newF32(M * N); // [M, N]
  runGemm({ nn: false, A: xf, aOff: 0, lda: K, strideA: 0, B: wf, bOff: 0, ldb: K, strideB: 0, C: y, cOff: 0, ldc: N, strideC: 0, batch: 1, M, N, K });
  const bias = optParamF32(args.bias); // [N]
  epilogue(y, M, N, scale, bias);
  if (args.act !== 'none') {
    roundToDtypeInPlace(out.dtype, y); // Linear's output, then the activation is a second op
    applyActivation(args.act, y, y);
  }
  return encodeOut(out, y);
}

/**
 * Dynamic per-tensor e4m3 quantisation (LinearArgs.quantizeInput): s = fp32(max|x| / 448), 1 for
 * an all-zero x; values e4m3(fp32(x / s)), as the CUDA kernels compute them (native/gemm.cu).
 */
export function quantizeE4m3PerTensor(x: F32): { values: F32; scale: number } {
  const amax = maxAbs(x);
  const scale = amax > 0 ? Math.fround(amax / 448) : 1;
  const values = newF32(x.length);
  for (let i = 0; i < x.length; i++) values[i] = x[i]! / scale;
  roundToDtypeInPlace('f8e4m3', values);
  return { values, scale };
}

function epilogue(y: F32, M: number, N: number, scale: number, bias: F32 | undefined): void {
  if (scale === 1 && !bias) return;
  for (let m = 0; m < M; m++) {
    const o = m * N;
    if (bias) for (let n = 0; n < N; n++) y[o + n] = y[o + n]! * scale + bias[n]!;
    else for (let n = 0; n < N; n++) y[o + n] = y[o + n]! * scale;
  }
}

export function matmul(out: OutSpec, a: Tensor, b: Tensor, transB: boolean): Storage {
  const as = dimsOf(a);
  const bs = dimsOf(b);
  const [M, K] = as.slice(-2) as [number, number];
  const N = transB ? bs[bs.length - 2]! : bs[bs.length - 1]!;
  const batch = numel(as.slice(0, -2));
  const af = f32Of(a); // [batch, M, K]
  const bf = f32Of(b); // [batch|-, K, N] or [batch|-, N, K]
  const y = newF32(batch * M * N); // [batch, M, N]
  runGemm({
    nn: !transB,
    A: af,
    aOff: 0,
    lda: K,
    strideA: M * K,
    B: bf,
    bOff: 0,
    ldb: transB ? K : N,
    strideB: b.rank > 2 ? K * N : 0,
    C: y,
    cOff: 0,
    ldc: N,
    strideC: M * N,
    batch,
    M,
    N,
    K,
  });
  return encodeOut(out, y);
}
