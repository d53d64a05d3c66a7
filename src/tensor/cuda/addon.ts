// The addon's exports (native/addon.cc): the op table's ops (op-table.ts, bound by bind-ops.ts)
// and the calls written by hand, which answer with objects, strings or take typed arrays.
// Pointers are BigInt; 0n means "absent".

import type { RawArray } from '../dtype.js';
import type { RawOps } from './bind-ops.js';

/** The caching allocator's counters (bytes), and how often the host has waited for the GPU. */
export interface CudaMemStats {
  allocated: number;
  reserved: number;
  peakAllocated: number;
  /** Host waits for the stream so far: synchronize, downloads, blocking (large) uploads. */
  hostWaits: number;
  /** Host waits for a stream mark (the work before it; what was queued after keeps the GPU busy). */
  markWaits: number;
  /** CUDA graph replays enqueued (one per denoising step after the first when graphs are on). */
  graphLaunches: number;
}

export interface CudaDeviceInfo {
  name: string;
  deviceCount: number;
  ccMajor: number;
  ccMinor: number;
  totalMem: number;
  cublasLt: number;
}

/** The hand-written exports; the op table's are `RawOps`. */
export interface AddonRuntime {
  abiVersion: number;
  init(device?: number): CudaDeviceInfo;
  /** The wgmma attention's self-check result ("on (...)" / "off (why)"); runs it the first time. */
  attentionKernel(): string;
  memStats(): CudaMemStats;
  resetPeak(): void;
  upload(p: bigint, byteOffset: number, src: RawArray): void;
  download(p: bigint, byteOffset: number, dst: RawArray): void;
}

export type Addon = AddonRuntime & RawOps;
