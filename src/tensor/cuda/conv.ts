// The CUDA backend's conv2d (native/conv.cu: im2col in bands + cuBLASLt, or an implicit GEMM).

import type { Backend, Conv2dArgs, OutSpec, Storage } from '../backend.js';
import type { Tensor } from '../tensor.js';
import { type CudaContext, optPtr, ptrOf } from './storage.js';

export function convMethods(ctx: CudaContext): Pick<Backend, 'conv2d'> {
  const { ops, out1 } = ctx;
  return {
    conv2d(out: OutSpec, x: Tensor, w: Tensor, args: Conv2dArgs): Storage {
      const [B, C, H, W] = x.shape as [number, number, number, number];
      const [O, , kh, kw] = w.shape as [number, number, number, number];
      const [, , Ho, Wo] = out.shape as [number, number, number, number];
      const y = out1(out);
      ops.conv2d({
        dt: x.dtype,
        x: ptrOf(x),
        w: ptrOf(w),
        wDt: w.dtype,
        bias: optPtr(args.bias),
        biasDt: args.bias?.dtype,
        y: y.ptr,
        B,
        C,
        H,
        W,
        O,
        kh,
        kw,
        sh: args.stride[0],
        sw: args.stride[1],
        pt: args.padding[0],
        pl: args.padding[2],
        Ho,
        Wo,
      });
      return y;
    },
  };
}
