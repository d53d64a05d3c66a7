// CPU storage: one typed array per tensor. Also the decode/encode helpers every kernel uses:
// inputs are decoded to float32, outputs are encoded to the out dtype once.
//
// Memory: op outputs live on ordinary ArrayBuffers. SharedArrayBuffers are not counted as GC
// pressure by V8 (a loop allocating only SABs grows without bound until something else triggers
// a GC), so they are used only where memory is long-lived: uploads (weights, inputs from the
// host), cached parameter decodes, and the pool's reusable staging arena (pool.ts). The pool
// copies plain arrays in and out of that arena; the copies are tiny next to the work it splits.

import type { OutSpec, Storage } from '../backend.js';
import { type DType, type RawArray, allocRaw, dtypeSize, f32ToRaw, rawToF32 } from '../dtype.js';
import type { Tensor } from '../tensor.js';

export class CpuStorage implements Storage {
  private raw: RawArray | null;
  /** Cached float32 decode of a non-f32 parameter tensor (see paramF32). */
  decoded: Float32Array | null = null;

  constructor(
    readonly dtype: DType,
    raw: RawArray,
  ) {
    this.raw = raw;
  }

  get byteLength(): number {
    return this.raw?.byteLength ?? 0;
  }

  get data(): RawArray {
    if (this.raw === null) throw new Error(`cpu storage (${this.dtype}) used after free`);
    return this.raw;
  }

  release(): void {
    this.raw = null;
    if (this.decoded) {
      cacheBytes -= this.decoded.byteLength;
      this.decoded = null;
    }
  }
}

/** A zero-filled typed array of `n` elements of `dtype` on a SharedArrayBuffer (long-lived data only). */
export function allocShared(dtype: DType, n: number): RawArray {
  const sab = new SharedArrayBuffer(n * dtypeSize(dtype));
  switch (dtype) {
    case 'f32':
      return new Float32Array(sab);
    case 'i32':
      return new Int32Array(sab);
    case 'bf16':
    case 'f16':
      return new Uint16Array(sab);
    case 'f8e4m3':
      return new Uint8Array(sab);
  }
}

export function sharedF32(n: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(n * 4));
}

/** A zero-filled float32 array on an ordinary ArrayBuffer (op outputs and temporaries). */
export function newF32(n: number): Float32Array {
  return new Float32Array(n);
}

/**
 * A shape as int32 values. Dims computed by callers (Math.floor, divisions) can arrive as boxed
 * doubles; kernels fed doubles get re-optimised by V8 with float64 index math, which made the
 * conv kernel 1.7x slower inside the full pipeline than in isolation. Every backend method reads
 * its dims through this.
 */
export function dimsOf(t: { readonly shape: readonly number[] }): number[] {
  return t.shape.map((d) => d | 0);
}

export function storageOf(t: Tensor): CpuStorage {
  const s = t.storage;
  if (!(s instanceof CpuStorage)) throw new Error(`cpu backend got a tensor of backend ${t.backend.name}`);
  return s;
}

/** The raw elements of a tensor (do not write to them: storage may be shared by views). */
export function rawOf(t: Tensor): RawArray {
  return storageOf(t).data;
}

/**
 * Float32 values of an activation tensor: the storage itself for f32 (read only!), otherwise a
 * fresh decode.
 */
export function f32Of(t: Tensor): Float32Array {
  const s = storageOf(t);
  if (s.dtype === 'f32') return s.data as Float32Array;
  return rawToF32(s.dtype, s.data, newF32(s.data.length));
}

// Decoding a bf16/f8 weight on every call would cost as much as a small GEMM, so parameter
// decodes are cached on the storage, within a byte budget (the full FLUX model would not fit).
let cacheBytes = 0;
let cacheBudget = (Number(process.env['FLUXSERVE_CPU_DECODE_CACHE_MB']) || 2048) * 2 ** 20;

export function setDecodeCacheBudget(bytes: number): void {
  cacheBudget = bytes;
}

export function decodeCacheBytes(): number {
  return cacheBytes;
}

// Decodes that do not fit the cache go to a small ring of reusable shared buffers instead of a
// fresh SharedArrayBuffer each call: V8 does not count shared buffers as GC pressure, so fresh
// ones piled up to ~2x the weights during one forward of a large bf16 model (docs/loading.md).
// Ops are synchronous and read at most a weight, a bias and a scale at once, so a ring of 4
// slots is never overwritten while an op still reads it.
const SCRATCH_SLOTS = 4;
const scratch: (Float32Array | null)[] = new Array<Float32Array | null>(SCRATCH_SLOTS).fill(null);
let scratchNext = 0;

function scratchF32(n: number): Float32Array {
  const i = scratchNext;
  scratchNext = (scratchNext + 1) % SCRATCH_SLOTS;
  let buf = scratch[i];
  if (!buf || buf.length < n) {
    buf = sharedF32(n);
    scratch[i] = buf;
  }
  return buf.length === n ? buf : new Float32Array(buf.buffer, 0, n);
}

/** Float32 values of a parameter tensor (weight, bias, norm scale), cached for non-f32 dtypes. */
export function paramF32(t: Tensor): Float32Array {
  const s = storageOf(t);
  if (s.dtype === 'f32') return s.data as Float32Array;
  if (s.decoded) return s.decoded;
  const n = s.data.length;
  if (cacheBytes + n * 4 <= cacheBudget) {
    const f = rawToF32(s.dtype, s.data, sharedF32(n));
    s.decoded = f;
    cacheBytes += f.byteLength;
    return f;
  }
  return rawToF32(s.dtype, s.data, scratchF32(n));
}

/** Like f32Of/paramF32 for an optional tensor. */
export function optParamF32(t: Tensor | undefined): Float32Array | undefined {
  return t ? paramF32(t) : undefined;
}

/**
 * Storage for `out` from float32 values the op just computed: wraps them (f32) or encodes them
 * (one rounding). Never pass an input's own array.
 */
export function encodeOut(out: OutSpec, values: Float32Array): CpuStorage {
  if (out.dtype === 'f32') return new CpuStorage('f32', values);
  return new CpuStorage(out.dtype, f32ToRaw(out.dtype, values));
}

/** Unsigned-integer view of raw elements, for exact bit copies in layout ops. */
export type BitsArray = Uint32Array | Uint16Array | Uint8Array;

export function bitsOf(raw: RawArray): BitsArray {
  switch (raw.BYTES_PER_ELEMENT) {
    case 4:
      return new Uint32Array(raw.buffer, raw.byteOffset, raw.length);
    case 2:
      return new Uint16Array(raw.buffer, raw.byteOffset, raw.length);
    default:
      return new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
  }
}

/** New storage of `n` elements of `dtype` and its bit view. */
export function allocBits(dtype: DType, n: number): { storage: CpuStorage; bits: BitsArray } {
  const raw = allocRaw(dtype, n);
  return { storage: new CpuStorage(dtype, raw), bits: bitsOf(raw) };
}
