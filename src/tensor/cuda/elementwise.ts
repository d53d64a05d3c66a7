// The CUDA backend's elementwise ops and casts: broadcasting binary ops (dims collapsed here),
// affine, activations, row softmax, the gated residual, geluConcat and cast.

import type { Activation, Backend, BinaryOp, OutSpec, Storage } from '../backend.js';
import { broadcastStrides, collapseBroadcast as collapse } from '../broadcast.js';
import { type Tensor, numel } from '../tensor.js';
import { MAX_RANK } from './op-table.js';
import { type CudaContext, optPtr, ptrOf } from './storage.js';

type ElementwiseMethods = Pick<Backend, 'binary' | 'affine' | 'activation' | 'softmax' | 'gatedResidual' | 'cast'> & Required<Pick<Backend, 'geluConcat'>>;

export function elementwiseMethods(ctx: CudaContext): ElementwiseMethods {
  const { ops, out1 } = ctx;
  return {
    binary(out: OutSpec, op: BinaryOp, a: Tensor, b: Tensor): Storage {
      const y = out1(out);
      if (numel(out.shape) === 0) return y;
      const c = collapse(out.shape, broadcastStrides(a.shape, out.shape), broadcastStrides(b.shape, out.shape));
      if (c.dims.length > MAX_RANK) throw new Error(`cuda binary: more than ${MAX_RANK} non-mergeable dims (${out.shape.join('x')})`);
      ops.binary({ dt: a.dtype, op, a: ptrOf(a), b: ptrOf(b), bDt: b.dtype, out: y.ptr, dims: c.dims, strideA: c.sa, strideB: c.sb });
      return y;
    },

    affine(out: OutSpec, x: Tensor, mul: number, add: number): Storage {
      const y = out1(out);
      ops.affine({ dt: x.dtype, x: ptrOf(x), y: y.ptr, n: x.size, mul, add });
      return y;
    },

    activation(out: OutSpec, x: Tensor, act: Activation): Storage {
      const y = out1(out);
      ops.activation({ dt: x.dtype, x: ptrOf(x), y: y.ptr, n: x.size, act });
      return y;
    },

    softmax(out: OutSpec, x: Tensor): Storage {
      const D = x.shape[x.rank - 1] ?? 1;
      const y = out1(out);
      ops.softmax({ dt: x.dtype, x: ptrOf(x), y: y.ptr, rows: D > 0 ? x.size / D : 0, D });
      return y;
    },

    gatedResidual(out: OutSpec, x: Tensor, gate: Tensor, yIn: Tensor): Storage {
      const [B, L, D] = x.shape as [number, number, number];
      const y = out1(out);
      ops.gatedResidual({ dt: x.dtype, x: ptrOf(x), gate: ptrOf(gate), gateDt: gate.dtype, yin: ptrOf(yIn), out: y.ptr, B, L, D });
      return y;
    },

    geluConcat(out: OutSpec, a: Tensor, h: Tensor, colOffset: number, width: number, amaxOut?: Tensor): Storage {
      const [B, L, Da] = a.shape as [number, number, number];
      const y = out1(out);
      ops.geluConcat({
        dt: a.dtype,
        a: ptrOf(a),
        h: ptrOf(h),
        out: y.ptr,
        rows: B * L,
        Da,
        C: h.shape[2]!,
        col: colOffset,
        W: width,
        amax: optPtr(amaxOut),
      });
      return y;
    },

    cast(out: OutSpec, x: Tensor): Storage {
      return ctx.castTo(x, out.dtype);
    },
  };
}
