// What every op family of the CUDA backend shares: device storage (a pointer from the addon's
// caching allocator), the bound op table, and allocation / free / cast helpers over them.

import type { OutSpec, Storage } from '../backend.js';
import { type DType, dtypeSize } from '../dtype.js';
import { type Shape, type Tensor, numel } from '../tensor.js';
import type { AddonRuntime } from './addon.js';
import type { CudaOps } from './op-table.js';

export class CudaStorage implements Storage {
  freed = false;
  constructor(
    readonly ptr: bigint,
    readonly byteLength: number,
    readonly dtype: DType,
  ) {}
}

export function asCuda(s: Storage): CudaStorage {
  if (!(s instanceof CudaStorage)) throw new Error('cuda backend: storage from another backend');
  if (s.freed) throw new Error('cuda backend: storage used after free');
  return s;
}

/** A tensor's device pointer. */
export const ptrOf = (t: Tensor): bigint => asCuda(t.storage).ptr;
/** An optional tensor's device pointer (undefined: absent). */
export const optPtr = (t: Tensor | undefined): bigint | undefined => (t ? ptrOf(t) : undefined);

export function rowMajorStrides(shape: Shape): number[] {
  const st = new Array<number>(shape.length);
  for (let i = shape.length - 1, s = 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i]!;
  }
  return st;
}

/** The bound ops and the storage helpers each op family is built over. */
export interface CudaContext {
  readonly ops: CudaOps;
  /** The addon's hand-written exports (host transfers, counters). */
  readonly runtime: AddonRuntime;
  alloc(dtype: DType, n: number): CudaStorage;
  /** The storage for an op's output. */
  out1(out: OutSpec): CudaStorage;
  /** Free temporaries after the ops that use them were enqueued (stream-ordered reuse). */
  freeAll(...ss: CudaStorage[]): void;
  /** A copy of x in `dtype` (a byte copy when it already is). */
  castTo(x: Tensor, dtype: DType): CudaStorage;
}

export function makeContext(ops: CudaOps, runtime: AddonRuntime): CudaContext {
  const alloc = (dtype: DType, n: number): CudaStorage => {
    const bytes = n * dtypeSize(dtype);
    return new CudaStorage(ops.malloc({ bytes: Math.max(bytes, 1) }), bytes, dtype);
  };
  return {
    ops,
    runtime,
    alloc,
    out1: (out) => alloc(out.dtype, numel(out.shape)),
    freeAll(...ss) {
      for (const s of ss) {
        if (!s.freed) {
          s.freed = true;
          ops.free({ p: s.ptr });
        }
      }
    },
    castTo(x, dtype) {
      const y = alloc(dtype, x.size);
      if (x.dtype === dtype) ops.copyBytes({ dst: y.ptr, src: ptrOf(x), bytes: x.size * dtypeSize(dtype) });
      else ops.cast({ to: dtype, x: ptrOf(x), xDt: x.dtype, y: y.ptr, n: x.size });
      return y;
    },
  };
}
