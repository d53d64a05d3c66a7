// The CUDA backend's memory, stream and graph methods: host transfers, zeros, free, stream marks
// (bounded run-ahead), CUDA graph capture and replay, device copies and the allocator's counters.

import type { Backend, CapturedGraph, Storage, StreamMark } from '../backend.js';
import { type DType, type RawArray, allocRaw, dtypeSize } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import type { CudaMemStats } from './addon.js';
import { type CudaContext, asCuda, ptrOf } from './storage.js';

/** The allocator's controls the backend adds to `Backend`. */
export interface CudaMemoryControls {
  memStats(): CudaMemStats;
  resetPeak(): void;
  emptyCache(): void;
}

type MemoryMethods = Pick<Backend, 'upload' | 'zeros' | 'read' | 'write' | 'free' | 'synchronize'> &
  Required<Pick<Backend, 'mark' | 'captureGraph' | 'copyInto'>> &
  CudaMemoryControls;

export function memoryMethods(ctx: CudaContext): MemoryMethods {
  const { ops, alloc, runtime: A } = ctx;
  return {
    upload(dtype: DType, raw: RawArray): Storage {
      if (raw.BYTES_PER_ELEMENT !== dtypeSize(dtype)) throw new Error(`cuda upload: a ${raw.constructor.name} cannot hold ${dtype} elements`);
      const s = alloc(dtype, raw.length);
      try {
        A.upload(s.ptr, 0, raw);
      } catch (e) {
        ops.free({ p: s.ptr }); // e.g. refused while a graph is being captured
        s.freed = true;
        throw e;
      }
      return s;
    },

    zeros(dtype: DType, n: number): Storage {
      const s = alloc(dtype, n);
      ops.memset0({ dst: s.ptr, bytes: s.byteLength });
      return s;
    },

    read(storage: Storage, dtype: DType, n: number): RawArray {
      const s = asCuda(storage);
      if (s.dtype !== dtype) throw new Error(`cuda read: storage holds ${s.dtype}, asked for ${dtype}`);
      const out = allocRaw(dtype, n);
      A.download(s.ptr, 0, out); // waits for the stream
      return out;
    },

    write(storage: Storage, dtype: DType, raw: RawArray, offsetElems: number): void {
      const s = asCuda(storage);
      if (s.dtype !== dtype) throw new Error(`cuda write: storage holds ${s.dtype}, asked to write ${dtype}`);
      if (raw.BYTES_PER_ELEMENT !== dtypeSize(dtype)) throw new Error(`cuda write: a ${raw.constructor.name} cannot hold ${dtype} elements`);
      const n = s.byteLength / dtypeSize(dtype);
      if (!Number.isInteger(offsetElems) || offsetElems < 0 || offsetElems + raw.length > n) {
        throw new Error(`cuda write: elements [${offsetElems}, ${offsetElems + raw.length}) are outside a storage of ${n}`);
      }
      A.upload(s.ptr, offsetElems * dtypeSize(dtype), raw);
    },

    free(storage: Storage): void {
      ctx.freeAll(asCuda(storage));
    },

    mark(): StreamMark {
      const m = ops.mark({});
      let done = false;
      const finish = (release: boolean) => {
        if (done) throw new Error('cuda: a stream mark was waited for or released twice');
        done = true;
        ops.markWait({ mark: m, release });
      };
      return { wait: () => finish(false), release: () => finish(true) };
    },

    captureGraph(fn: () => Tensor): CapturedGraph {
      A.attentionKernel(); // the wgmma self-check (downloads) must not fall inside the capture
      ops.graphBegin({});
      let output: Tensor;
      try {
        output = fn();
      } catch (e) {
        ops.graphEnd({ abort: true });
        throw e;
      }
      let g: bigint;
      try {
        g = ops.graphEnd({ abort: false });
      } catch (e) {
        output.dispose();
        throw e;
      }
      let live = true;
      return {
        output,
        replay: () => {
          if (!live) throw new Error('cuda: replay of a disposed graph');
          ops.graphLaunch({ graph: g });
        },
        dispose: () => {
          if (!live) return;
          live = false;
          output.dispose();
          ops.graphDestroy({ graph: g });
        },
      };
    },

    copyInto(dst: Tensor, src: Tensor): void {
      if (dst.dtype !== src.dtype || dst.size !== src.size) {
        throw new Error(`cuda copyInto: ${src.dtype}[${src.size}] into ${dst.dtype}[${dst.size}]`);
      }
      ops.copyBytes({ dst: ptrOf(dst), src: ptrOf(src), bytes: src.size * dtypeSize(src.dtype) });
    },

    synchronize(): void {
      ops.synchronize({});
    },

    memStats: () => A.memStats(),
    resetPeak: () => A.resetPeak(),
    emptyCache: () => ops.emptyCache({}),
  };
}
