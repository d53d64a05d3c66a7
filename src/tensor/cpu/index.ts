// The CPU backend: the reference implementation of every op in pure TypeScript. Storage is a
// shared typed array of the tensor's dtype; kernels decode to float32, compute, and encode the
// output once (fused ops round where ops.ts says). Big GEMMs, convolutions and attention are
// split across a worker pool (pool.ts).

import type { Backend, Storage } from '../backend.js';
import { type DType, type RawArray, allocRaw, dtypeSize, rawToF32 } from '../dtype.js';
import { attention } from './attention.js';
import { conv2d } from './conv.js';
import { activation, affine, binary, rope, softmax } from './elementwise.js';
import { absMax, cast, concat, embedding, permute, slice, splitHeads, upsampleNearest } from './layout.js';
import { linear, matmul } from './linear.js';
import { gatedResidual, groupNorm, layerNorm, modulatedLayerNorm, rmsNorm } from './norm.js';
import { CpuStorage, allocShared, bitsOf } from './storage.js';

export { configurePool as configureCpuPool, poolInfo as cpuPoolInfo, shutdownPool as shutdownCpuPool } from './pool.js';
export type { PoolConfig as CpuPoolConfig, PoolInfo as CpuPoolInfo } from './pool.js';
export { setDecodeCacheBudget, decodeCacheBytes } from './storage.js';

function asCpu(s: Storage): CpuStorage {
  if (!(s instanceof CpuStorage)) throw new Error('cpu backend: storage from another backend');
  return s;
}

export const cpuBackend: Backend = {
  name: 'cpu',

  upload(dtype: DType, raw: RawArray): Storage {
    if (raw.BYTES_PER_ELEMENT !== dtypeSize(dtype)) {
      throw new Error(`cpu upload: a ${raw.constructor.name} cannot hold ${dtype} elements`);
    }
    const data = allocShared(dtype, raw.length);
    bitsOf(data).set(bitsOf(raw));
    return new CpuStorage(dtype, data);
  },

  zeros(dtype: DType, n: number): Storage {
    return new CpuStorage(dtype, allocShared(dtype, n));
  },

  read(storage: Storage, dtype: DType, n: number): RawArray {
    const s = asCpu(storage);
    if (s.dtype !== dtype) throw new Error(`cpu read: storage holds ${s.dtype}, asked for ${dtype}`);
    const out = allocRaw(dtype, n);
    bitsOf(out).set(bitsOf(s.data).subarray(0, n));
    return out;
  },

  write(storage: Storage, dtype: DType, raw: RawArray, offsetElems: number): void {
    const s = asCpu(storage);
    if (s.dtype !== dtype) throw new Error(`cpu write: storage holds ${s.dtype}, asked to write ${dtype}`);
    if (raw.BYTES_PER_ELEMENT !== dtypeSize(dtype)) throw new Error(`cpu write: a ${raw.constructor.name} cannot hold ${dtype} elements`);
    const n = s.data.length;
    if (!Number.isInteger(offsetElems) || offsetElems < 0 || offsetElems + raw.length > n) {
      throw new Error(`cpu write: elements [${offsetElems}, ${offsetElems + raw.length}) are outside a storage of ${n}`);
    }
    bitsOf(s.data).set(bitsOf(raw), offsetElems);
    // keep the cached float32 decode of a parameter (storage.ts paramF32) in step
    if (s.decoded) rawToF32(dtype, raw, s.decoded.subarray(offsetElems, offsetElems + raw.length));
  },

  free(storage: Storage): void {
    asCpu(storage).release();
  },

  synchronize(): void {},

  linear,
  matmul,
  attention,
  layerNorm,
  rmsNorm,
  groupNorm,
  modulatedLayerNorm,
  gatedResidual,
  binary,
  affine,
  activation,
  softmax,
  rope,
  conv2d,
  upsampleNearest,
  concat,
  slice,
  permute,
  splitHeads,
  embedding,
  cast,
  absMax,
};
