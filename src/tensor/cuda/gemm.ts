// The CUDA backend's GEMM family: linear (bf16/f16/f32 weights, or fp8 weights with the input
// quantized on the device for go_fast), matmul, and absMax (the fp8 input scale's max |x|).

import type { Backend, LinearArgs, OutSpec, Storage } from '../backend.js';
import { type Tensor, numel } from '../tensor.js';
import { type CudaContext, optPtr, ptrOf } from './storage.js';

export function gemmMethods(ctx: CudaContext): Pick<Backend, 'linear' | 'matmul' | 'absMax'> {
  const { ops, out1 } = ctx;
  return {
    linear(out: OutSpec, x: Tensor, w: Tensor, args: LinearArgs): Storage {
      const K = x.shape[x.rank - 1]!;
      const M = K > 0 ? x.size / K : numel(x.shape.slice(0, -1));
      const N = w.shape[0]!;
      const y = out1(out);
      const bias = { bias: optPtr(args.bias), biasDt: args.bias?.dtype };
      if (args.quantizeInput === 'f8e4m3') {
        ops.linearFp8In({
          dt: x.dtype,
          x: ptrOf(x),
          w8: ptrOf(w),
          y: y.ptr,
          M,
          N,
          K,
          ...bias,
          wScale: args.weightScale,
          act: args.act,
          amax: optPtr(args.inputAmax),
        });
        return y;
      }
      ops.gemm({
        dt: x.dtype,
        a: ptrOf(x),
        b: ptrOf(w),
        bDt: w.dtype,
        c: y.ptr,
        batch: 1,
        M,
        N,
        K,
        bNK: true,
        strideA: 0,
        strideB: 0,
        strideC: 0,
        ...bias,
        alpha: args.weightScale,
        act: args.act,
      });
      return y;
    },

    matmul(out: OutSpec, a: Tensor, b: Tensor, transB: boolean): Storage {
      const [M, K] = a.shape.slice(-2) as [number, number];
      const N = transB ? b.shape[b.rank - 2]! : b.shape[b.rank - 1]!;
      const batch = numel(a.shape.slice(0, -2));
      const y = out1(out);
      ops.gemm({
        dt: a.dtype,
        a: ptrOf(a),
        b: ptrOf(b),
        bDt: b.dtype,
        c: y.ptr,
        batch,
        M,
        N,
        K,
        bNK: transB,
        strideA: M * K,
        strideB: b.rank > 2 ? K * N : 0,
        strideC: M * N,
        alpha: 1,
        act: 'none',
      });
      return y;
    },

    absMax(x: Tensor): number {
      return ops.absMax({ dt: x.dtype, x: ptrOf(x), n: x.size });
    },
  };
}
