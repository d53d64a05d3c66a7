// The CUDA backend's norms: layerNorm, rmsNorm, groupNorm (with its fused activation) and the
// adaLN modulatedLayerNorm (optionally raising go_fast's amax in the same pass).

import type { Activation, Backend, OutSpec, Storage } from '../backend.js';
import { type Tensor, numel } from '../tensor.js';
import { type CudaContext, optPtr, ptrOf } from './storage.js';

type NormMethods = Pick<Backend, 'layerNorm' | 'rmsNorm' | 'groupNorm' | 'modulatedLayerNorm'>;

/** Rows of the last dim: [rows, D] (an empty last dim has no rows). */
function lastDimRows(x: Tensor): { rows: number; D: number } {
  const D = x.shape[x.rank - 1] ?? 1;
  return { rows: D > 0 ? x.size / D : 0, D };
}

export function normMethods(ctx: CudaContext): NormMethods {
  const { ops, out1 } = ctx;
  return {
    layerNorm(out: OutSpec, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Storage {
      const y = out1(out);
      ops.layerNorm({
        dt: x.dtype,
        x: ptrOf(x),
        w: optPtr(weight),
        wDt: weight?.dtype,
        b: optPtr(bias),
        bDt: bias?.dtype,
        y: y.ptr,
        ...lastDimRows(x),
        eps,
      });
      return y;
    },

    rmsNorm(out: OutSpec, x: Tensor, weight: Tensor | undefined, eps: number): Storage {
      const y = out1(out);
      ops.rmsNorm({ dt: x.dtype, x: ptrOf(x), w: optPtr(weight), wDt: weight?.dtype, y: y.ptr, ...lastDimRows(x), eps });
      return y;
    },

    groupNorm(out: OutSpec, x: Tensor, groups: number, weight: Tensor, bias: Tensor, eps: number, act: Activation): Storage {
      const [B, C] = x.shape as [number, number];
      const S = numel(x.shape.slice(2));
      const y = out1(out);
      ops.groupNorm({
        dt: x.dtype,
        x: ptrOf(x),
        w: ptrOf(weight),
        wDt: weight.dtype,
        b: ptrOf(bias),
        bDt: bias.dtype,
        y: y.ptr,
        B,
        C,
        S,
        groups,
        eps,
        act,
      });
      return y;
    },

    modulatedLayerNorm(out: OutSpec, x: Tensor, shift: Tensor, scale: Tensor, eps: number, amaxOut?: Tensor): Storage {
      const [B, L, D] = x.shape as [number, number, number];
      const y = out1(out);
      ops.modulatedLayerNorm({
        dt: x.dtype,
        x: ptrOf(x),
        shift: ptrOf(shift),
        shiftDt: shift.dtype,
        scale: ptrOf(scale),
        scaleDt: scale.dtype,
        y: y.ptr,
        B,
        L,
        D,
        eps,
        amax: optPtr(amaxOut),
      });
      return y;
    },
  };
}
