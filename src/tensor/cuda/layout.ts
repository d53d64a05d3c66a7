// The CUDA backend's layout ops: bit copies by element width (concat and slice as strided row
// copies, permute, splitHeads, nearest upsampling) and the embedding gather.

import type { Backend, OutSpec, Storage } from '../backend.js';
import { dtypeSize } from '../dtype.js';
import { OpError } from '../ops.js';
import { type Tensor, numel } from '../tensor.js';
import { type CudaContext, ptrOf, rowMajorStrides } from './storage.js';

type LayoutMethods = Pick<Backend, 'upsampleNearest' | 'concat' | 'slice' | 'permute' | 'splitHeads' | 'embedding'>;

/** [outer, axis, inner] of a shape around `axis`. */
function around(shape: readonly number[], axis: number): { outer: number; inner: number } {
  return { outer: numel(shape.slice(0, axis)), inner: numel(shape.slice(axis + 1)) };
}

export function layoutMethods(ctx: CudaContext): LayoutMethods {
  const { ops, out1 } = ctx;
  return {
    upsampleNearest(out: OutSpec, x: Tensor, factor: number): Storage {
      const [B, C, H, W] = x.shape as [number, number, number, number];
      const y = out1(out);
      ops.upsampleNearest({ elem: x.dtype, x: ptrOf(x), y: y.ptr, BC: B * C, H, W, factor });
      return y;
    },

    concat(out: OutSpec, xs: readonly Tensor[], axis: number): Storage {
      const os = out.shape;
      const y = out1(out);
      const { outer, inner } = around(os, axis);
      const rowOut = os[axis]! * inner;
      let off = 0;
      for (const t of xs) {
        const row = t.shape[axis]! * inner;
        ops.copy2d({ elem: out.dtype, src: ptrOf(t), srcStride: row, srcOff: 0, dst: y.ptr, dstStride: rowOut, dstOff: off, rows: outer, rowLen: row });
        off += row;
      }
      return y;
    },

    slice(out: OutSpec, x: Tensor, axis: number, start: number): Storage {
      const os = out.shape;
      const y = out1(out);
      const { outer, inner } = around(os, axis);
      const rowIn = x.shape[axis]! * inner;
      const rowOut = os[axis]! * inner;
      ops.copy2d({
        elem: out.dtype,
        src: ptrOf(x),
        srcStride: rowIn,
        srcOff: start * inner,
        dst: y.ptr,
        dstStride: rowOut,
        dstOff: 0,
        rows: outer,
        rowLen: rowOut,
      });
      return y;
    },

    permute(out: OutSpec, x: Tensor, perm: readonly number[]): Storage {
      const y = out1(out);
      const n = x.size;
      if (n === 0) return y;
      if (x.rank === 0) {
        ops.copyBytes({ dst: y.ptr, src: ptrOf(x), bytes: dtypeSize(x.dtype) });
        return y;
      }
      const st = rowMajorStrides(x.shape);
      ops.permute({ elem: x.dtype, x: ptrOf(x), y: y.ptr, n, outDims: perm.map((p) => x.shape[p]!), inStrides: perm.map((p) => st[p]!) });
      return y;
    },

    splitHeads(outs: readonly OutSpec[], x: Tensor, heads: number): Storage[] {
      const [B, L, F] = x.shape as [number, number, number];
      const D = F / (outs.length * heads);
      return outs.map((spec, part) => {
        const y = out1(spec);
        ops.splitHeads({ elem: x.dtype, x: ptrOf(x), y: y.ptr, B, L, F, H: heads, D, part });
        return y;
      });
    },

    embedding(out: OutSpec, table: Tensor, ids: Tensor): Storage {
      const [V, D] = table.shape as [number, number];
      // ids are few (token ids); check them on the host so a bad id is an OpError like on the CPU
      const idv = new Int32Array(ids.size);
      ctx.runtime.download(ptrOf(ids), 0, idv);
      for (let i = 0; i < idv.length; i++) {
        const id = idv[i]!;
        if (id < 0 || id >= V) {
          throw new OpError(
            'embedding',
            `id ${id} at position ${i} is outside [0, ${V}) (got table [${V}, ${D}] ${table.dtype}, ids [${ids.shape.join(', ')}] i32)`,
          );
        }
      }
      const y = out1(out);
      ops.embedding({ elem: table.dtype, table: ptrOf(table), ids: ptrOf(ids), y: y.ptr, n: ids.size, D });
      return y;
    },
  };
}
