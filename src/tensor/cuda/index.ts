// The CUDA backend: every Backend method calls the Node-API addon build/fluxserve_cuda.node
// (native/, built by `npm run build:native`). Storage is a device pointer (BigInt) from the
// addon's caching allocator; ops enqueue kernels on one CUDA stream and return at once; `read`
// waits for the stream. This file computes only shapes, strides and launch arguments — the math
// is in native/*.cu, whose semantics and rounding points follow ops.ts like the CPU reference.
//
// Loading: `loadCudaBackend()` returns undefined (and remembers why) when the addon is absent,
// fails to load, or finds no GPU. registry.ts calls it once; see docs/gpu.md for when the reason
// is printed.

import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import type { Activation, AttentionArgs, AttnPrepSegment, Backend, BinaryOp, CapturedGraph, Conv2dArgs, LinearArgs, OutSpec, Storage, StreamMark } from '../backend.js';
import { type DType, type RawArray, allocRaw, dtypeSize } from '../dtype.js';
import { OpError } from '../ops.js';
import { type Shape, type Tensor, numel } from '../tensor.js';
import { broadcastStrides, collapseBroadcast as collapse } from '../broadcast.js';

/** The addon's exports (native/addon.cc). Pointers are BigInt; 0n means "absent". */
interface Addon {
  abiVersion: number;
  init(device?: number): { name: string; deviceCount: number; ccMajor: number; ccMinor: number; totalMem: number; cublasLt: number };
  malloc(bytes: number): bigint;
  free(p: bigint): void;
  emptyCache(): void;
  synchronize(): void;
  attentionKernel(): string;
  mark(): bigint;
  markWait(mark: bigint, release?: number): void;
  graphBegin(): void;
  graphEnd(abort: number): bigint;
  graphLaunch(g: bigint): void;
  graphDestroy(g: bigint): void;
  memStats(): CudaMemStats;
  resetPeak(): void;
  upload(p: bigint, byteOffset: number, src: RawArray): void;
  download(p: bigint, byteOffset: number, dst: RawArray): void;
  memset0(p: bigint, bytes: number): void;
  copyBytes(dst: bigint, src: bigint, bytes: number): void;
  gemm(dt: number, a: bigint, b: bigint, bDt: number, c: bigint, batch: number, M: number, N: number, K: number, bNK: number,
    sa: number, sb: number, sc: number, bias: bigint, biasDt: number, alpha: number, act: number): void;
  absMax(dt: number, x: bigint, n: number): number;
  attnPrep(dt: number, seg0: (bigint | number)[] | null, seg1: (bigint | number)[] | null, pe: bigint, peBatched: number, q: bigint, k: bigint,
    v: bigint, B: number, H: number, Ltot: number, Dh: number, eps: number): void;
  geluConcat(dt: number, a: bigint, h: bigint, out: bigint, rows: number, Da: number, C: number, col: number, W: number, amax: bigint): void;
  linearFp8In(dt: number, x: bigint, w: bigint, y: bigint, M: number, N: number, K: number, bias: bigint, biasDt: number,
    wScale: number, act: number, amax: bigint): void;
  attention(dt: number, q: bigint, k: bigint, v: bigint, bias: bigint, biasDt: number, biasSB: number, biasSH: number, out: bigint,
    B: number, H: number, Lq: number, Lk: number, D: number, Dv: number, scale: number, causal: number): void;
  layerNorm(dt: number, x: bigint, w: bigint, wDt: number, b: bigint, bDt: number, y: bigint, rows: number, D: number, eps: number): void;
  rmsNorm(dt: number, x: bigint, w: bigint, wDt: number, y: bigint, rows: number, D: number, eps: number): void;
  groupNorm(dt: number, x: bigint, w: bigint, wDt: number, b: bigint, bDt: number, y: bigint, B: number, C: number, S: number,
    G: number, eps: number, act: number): void;
  modulatedLayerNorm(dt: number, x: bigint, shift: bigint, shDt: number, scale: bigint, scDt: number, y: bigint, B: number, L: number,
    D: number, eps: number, amax: bigint): void;
  gatedResidual(dt: number, x: bigint, gate: bigint, gDt: number, y: bigint, out: bigint, B: number, L: number, D: number): void;
  binary(dt: number, op: number, a: bigint, b: bigint, bDt: number, out: bigint, dims: number[], sa: number[], sb: number[]): void;
  affine(dt: number, x: bigint, y: bigint, n: number, mul: number, add: number): void;
  activation(dt: number, x: bigint, y: bigint, n: number, act: number): void;
  softmax(dt: number, x: bigint, y: bigint, rows: number, D: number): void;
  rope(dt: number, x: bigint, pe: bigint, peBatched: number, y: bigint, B: number, H: number, L: number, D: number): void;
  conv2d(dt: number, x: bigint, w: bigint, wDt: number, bias: bigint, bDt: number, y: bigint, B: number, C: number, H: number,
    W: number, O: number, kh: number, kw: number, sh: number, sw: number, pt: number, pl: number, Ho: number, Wo: number): void;
  cast(srcDt: number, dstDt: number, x: bigint, y: bigint, n: number): void;
  copy2d(width: number, src: bigint, srcStride: number, srcOff: number, dst: bigint, dstStride: number, dstOff: number,
    rows: number, rowLen: number): void;
  permute(width: number, x: bigint, y: bigint, n: number, outDims: number[], inStrides: number[]): void;
  splitHeads(width: number, x: bigint, y: bigint, B: number, L: number, F: number, H: number, D: number, part: number): void;
  upsampleNearest(width: number, x: bigint, y: bigint, BC: number, H: number, W: number, factor: number): void;
  embedding(width: number, table: bigint, ids: bigint, y: bigint, n: number, D: number): void;
}

const ABI_VERSION = 3; // 3: memStats().hostWaits
const DT: Record<DType, number> = { f32: 0, bf16: 1, f16: 2, f8e4m3: 3, i32: 4 };
const ACT: Record<Activation, number> = { none: 0, gelu_tanh: 1, gelu: 2, silu: 3, quick_gelu: 4 };
const OPS: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2 };
/** The fused attention kernel's head-dim limit (native/attention.cu AT_DMAX). */
const ATTN_DMAX = 128;

export class CudaStorage implements Storage {
  freed = false;
  constructor(
    readonly ptr: bigint,
    readonly byteLength: number,
    readonly dtype: DType,
  ) {}
}

function ptrOf(t: Tensor): bigint {
  const s = t.storage;
  if (!(s instanceof CudaStorage)) throw new Error('cuda backend: storage from another backend');
  if (s.freed) throw new Error('cuda backend: storage used after free');
  return s.ptr;
}
const opt = (t: Tensor | undefined): bigint => (t ? ptrOf(t) : 0n);
const optDt = (t: Tensor | undefined): number => (t ? DT[t.dtype] : 0);

function rowMajorStrides(shape: Shape): number[] {
  const st = new Array<number>(shape.length);
  for (let i = shape.length - 1, s = 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i]!;
  }
  return st;
}


function width(dtype: DType): number {
  return dtypeSize(dtype);
}

/** Build the Backend over a loaded, initialised addon. */
function makeBackend(A: Addon): Backend & { memStats(): ReturnType<Addon['memStats']>; resetPeak(): void; emptyCache(): void } {
  const alloc = (dtype: DType, n: number): CudaStorage => {
    const bytes = n * dtypeSize(dtype);
    return new CudaStorage(A.malloc(Math.max(bytes, 1)), bytes, dtype);
  };
  const out1 = (out: OutSpec): CudaStorage => alloc(out.dtype, numel(out.shape));
  const asCuda = (s: Storage): CudaStorage => {
    if (!(s instanceof CudaStorage)) throw new Error('cuda backend: storage from another backend');
    if (s.freed) throw new Error('cuda backend: storage used after free');
    return s;
  };
  /** Free temporaries after the ops that use them were enqueued (stream-ordered reuse). */
  const freeAll = (...ss: CudaStorage[]): void => {
    for (const s of ss) {
      if (!s.freed) {
        s.freed = true;
        A.free(s.ptr);
      }
    }
  };
  const castTo = (x: Tensor, dtype: DType): CudaStorage => {
    const y = alloc(dtype, x.size);
    if (x.dtype === dtype) A.copyBytes(y.ptr, ptrOf(x), x.size * dtypeSize(dtype));
    else A.cast(DT[x.dtype], DT[dtype], ptrOf(x), y.ptr, x.size);
    return y;
  };

  /**
   * Attention for head dims the fused kernel does not take (the VAE's single 512-wide head):
   * f32 copies of q/k/v, S = scale·q·kᵀ (+ bias) with the f32 GEMM, a row softmax, P·v, then
   * merge heads and one rounding to the output dtype. Materialises [B·H, Lq, Lk] f32 scores.
   */
  const attentionUnfused = (out: OutSpec, q: Tensor, k: Tensor, v: Tensor, args: AttentionArgs): Storage => {
    const [B, H, Lq, D] = q.shape as [number, number, number, number];
    const Lk = k.shape[2]!;
    const Dv = v.shape[3]!;
    if (args.causal) throw new Error(`cuda attention: causal masking needs head dims <= ${ATTN_DMAX} (got ${D}, ${Dv})`);
    const qf = castTo(q, 'f32');
    const kf = castTo(k, 'f32');
    const vf = castTo(v, 'f32');
    const BH = B * H;
    const S = alloc('f32', BH * Lq * Lk);
    A.gemm(DT.f32, qf.ptr, kf.ptr, DT.f32, S.ptr, BH, Lq, Lk, D, 1, Lq * D, Lk * D, Lq * Lk, 0n, 0, args.scale, 0);
    if (args.bias) {
      const bs = args.bias.shape;
      const os = [B, H, Lq, Lk];
      const c = collapse(os, rowMajorStrides(os), broadcastStrides(bs, os));
      A.binary(DT.f32, OPS.add, S.ptr, ptrOf(args.bias), DT[args.bias.dtype], S.ptr, c.dims, c.sa, c.sb);
    }
    A.softmax(DT.f32, S.ptr, S.ptr, BH * Lq, Lk);
    const O = alloc('f32', BH * Lq * Dv); // [B, H, Lq, Dv]
    A.gemm(DT.f32, S.ptr, vf.ptr, DT.f32, O.ptr, BH, Lq, Dv, Lk, 0, Lq * Lk, Lk * Dv, Lq * Dv, 0n, 0, 1, 0);
    const merged = alloc('f32', BH * Lq * Dv); // [B, Lq, H, Dv]
    const inShape = [B, H, Lq, Dv];
    const st = rowMajorStrides(inShape);
    const perm = [0, 2, 1, 3];
    A.permute(4, O.ptr, merged.ptr, BH * Lq * Dv, perm.map((p) => inShape[p]!), perm.map((p) => st[p]!));
    const y = out1(out);
    if (out.dtype === 'f32') A.copyBytes(y.ptr, merged.ptr, BH * Lq * Dv * 4);
    else A.cast(DT.f32, DT[out.dtype], merged.ptr, y.ptr, BH * Lq * Dv);
    freeAll(qf, kf, vf, S, O, merged);
    return y;
  };

  return {
    name: 'cuda',

    upload(dtype: DType, raw: RawArray): Storage {
      if (raw.BYTES_PER_ELEMENT !== dtypeSize(dtype)) throw new Error(`cuda upload: a ${raw.constructor.name} cannot hold ${dtype} elements`);
      const s = alloc(dtype, raw.length);
      try {
        A.upload(s.ptr, 0, raw);
      } catch (e) {
        A.free(s.ptr); // e.g. refused while a graph is being captured
        s.freed = true;
        throw e;
      }
      return s;
    },

    zeros(dtype: DType, n: number): Storage {
      const s = alloc(dtype, n);
      A.memset0(s.ptr, s.byteLength);
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
      freeAll(asCuda(storage));
    },

    mark(): StreamMark {
      const m = A.mark();
      let done = false;
      const finish = (release: number) => {
        if (done) throw new Error('cuda: a stream mark was waited for or released twice');
        done = true;
        A.markWait(m, release);
      };
      return { wait: () => finish(0), release: () => finish(1) };
    },
    captureGraph(fn: () => Tensor): CapturedGraph {
      A.attentionKernel(); // the wgmma self-check (downloads) must not fall inside the capture
      A.graphBegin();
      let output: Tensor;
      try {
        output = fn();
      } catch (e) {
        A.graphEnd(1);
        throw e;
      }
      let g: bigint;
      try {
        g = A.graphEnd(0);
      } catch (e) {
        output.dispose();
        throw e;
      }
      let live = true;
      return {
        output,
        replay: () => {
          if (!live) throw new Error('cuda: replay of a disposed graph');
          A.graphLaunch(g);
        },
        dispose: () => {
          if (!live) return;
          live = false;
          output.dispose();
          A.graphDestroy(g);
        },
      };
    },
    copyInto(dst: Tensor, src: Tensor): void {
      if (dst.dtype !== src.dtype || dst.size !== src.size) {
        throw new Error(`cuda copyInto: ${src.dtype}[${src.size}] into ${dst.dtype}[${dst.size}]`);
      }
      A.copyBytes(ptrOf(dst), ptrOf(src), src.size * dtypeSize(src.dtype));
    },
    synchronize(): void {
      A.synchronize();
    },

    memStats: () => A.memStats(),
    resetPeak: () => A.resetPeak(),
    emptyCache: () => A.emptyCache(),

    linear(out: OutSpec, x: Tensor, w: Tensor, args: LinearArgs): Storage {
      const K = x.shape[x.rank - 1]!;
      const M = K > 0 ? x.size / K : numel(x.shape.slice(0, -1));
      const N = w.shape[0]!;
      const y = out1(out);
      if (args.quantizeInput === 'f8e4m3') {
        A.linearFp8In(DT[x.dtype], ptrOf(x), ptrOf(w), y.ptr, M, N, K, opt(args.bias), optDt(args.bias), args.weightScale, ACT[args.act], opt(args.inputAmax));
        return y;
      }
      A.gemm(DT[x.dtype], ptrOf(x), ptrOf(w), DT[w.dtype], y.ptr, 1, M, N, K, 1, 0, 0, 0, opt(args.bias), optDt(args.bias), args.weightScale, ACT[args.act]);
      return y;
    },

    matmul(out: OutSpec, a: Tensor, b: Tensor, transB: boolean): Storage {
      const [M, K] = a.shape.slice(-2) as [number, number];
      const N = transB ? b.shape[b.rank - 2]! : b.shape[b.rank - 1]!;
      const batch = numel(a.shape.slice(0, -2));
      const y = out1(out);
      A.gemm(DT[a.dtype], ptrOf(a), ptrOf(b), DT[b.dtype], y.ptr, batch, M, N, K, transB ? 1 : 0, M * K, b.rank > 2 ? K * N : 0, M * N, 0n, 0, 1, 0);
      return y;
    },

    attention(out: OutSpec, q: Tensor, k: Tensor, v: Tensor, args: AttentionArgs): Storage {
      const [B, H, Lq, D] = q.shape as [number, number, number, number];
      const Lk = k.shape[2]!;
      const Dv = v.shape[3]!;
      if (D > ATTN_DMAX || Dv > ATTN_DMAX) return attentionUnfused(out, q, k, v, args);
      const bias = args.bias;
      const bs = bias?.shape;
      const y = out1(out);
      A.attention(
        DT[q.dtype], ptrOf(q), ptrOf(k), ptrOf(v), opt(bias), optDt(bias),
        bs && bs[0] !== 1 ? bs[1]! * Lq * Lk : 0, bs && bs[1] !== 1 ? Lq * Lk : 0,
        y.ptr, B, H, Lq, Lk, D, Dv, args.scale, args.causal ? 1 : 0,
      );
      return y;
    },

    layerNorm(out: OutSpec, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Storage {
      const D = x.shape[x.rank - 1] ?? 1;
      const y = out1(out);
      A.layerNorm(DT[x.dtype], ptrOf(x), opt(weight), optDt(weight), opt(bias), optDt(bias), y.ptr, D > 0 ? x.size / D : 0, D, eps);
      return y;
    },

    rmsNorm(out: OutSpec, x: Tensor, weight: Tensor | undefined, eps: number): Storage {
      const D = x.shape[x.rank - 1] ?? 1;
      const y = out1(out);
      A.rmsNorm(DT[x.dtype], ptrOf(x), opt(weight), optDt(weight), y.ptr, D > 0 ? x.size / D : 0, D, eps);
      return y;
    },

    groupNorm(out: OutSpec, x: Tensor, groups: number, weight: Tensor, bias: Tensor, eps: number, act: Activation): Storage {
      const [B, C] = x.shape as [number, number];
      const S = numel(x.shape.slice(2));
      const y = out1(out);
      A.groupNorm(DT[x.dtype], ptrOf(x), ptrOf(weight), DT[weight.dtype], ptrOf(bias), DT[bias.dtype], y.ptr, B, C, S, groups, eps, ACT[act]);
      return y;
    },

    modulatedLayerNorm(out: OutSpec, x: Tensor, shift: Tensor, scale: Tensor, eps: number, amaxOut?: Tensor): Storage {
      const [B, L, D] = x.shape as [number, number, number];
      const y = out1(out);
      A.modulatedLayerNorm(DT[x.dtype], ptrOf(x), ptrOf(shift), DT[shift.dtype], ptrOf(scale), DT[scale.dtype], y.ptr, B, L, D, eps, opt(amaxOut));
      return y;
    },

    gatedResidual(out: OutSpec, x: Tensor, gate: Tensor, yIn: Tensor): Storage {
      const [B, L, D] = x.shape as [number, number, number];
      const y = out1(out);
      A.gatedResidual(DT[x.dtype], ptrOf(x), ptrOf(gate), DT[gate.dtype], ptrOf(yIn), y.ptr, B, L, D);
      return y;
    },

    binary(out: OutSpec, op: BinaryOp, a: Tensor, b: Tensor): Storage {
      const y = out1(out);
      if (numel(out.shape) === 0) return y;
      const c = collapse(out.shape, broadcastStrides(a.shape, out.shape), broadcastStrides(b.shape, out.shape));
      if (c.dims.length > 8) throw new Error(`cuda binary: more than 8 non-mergeable dims (${out.shape.join('x')})`);
      A.binary(DT[a.dtype], OPS[op], ptrOf(a), ptrOf(b), DT[b.dtype], y.ptr, c.dims, c.sa, c.sb);
      return y;
    },

    affine(out: OutSpec, x: Tensor, mul: number, add: number): Storage {
      const y = out1(out);
      A.affine(DT[x.dtype], ptrOf(x), y.ptr, x.size, mul, add);
      return y;
    },

    activation(out: OutSpec, x: Tensor, act: Activation): Storage {
      const y = out1(out);
      A.activation(DT[x.dtype], ptrOf(x), y.ptr, x.size, ACT[act]);
      return y;
    },

    softmax(out: OutSpec, x: Tensor): Storage {
      const D = x.shape[x.rank - 1] ?? 1;
      const y = out1(out);
      A.softmax(DT[x.dtype], ptrOf(x), y.ptr, D > 0 ? x.size / D : 0, D);
      return y;
    },

    rope(out: OutSpec, x: Tensor, pe: Tensor): Storage {
      const [B, H, L, D] = x.shape as [number, number, number, number];
      const y = out1(out);
      A.rope(DT[x.dtype], ptrOf(x), ptrOf(pe), pe.shape[0] === 1 ? 0 : 1, y.ptr, B, H, L, D);
      return y;
    },

    attnPrep(outs: readonly OutSpec[], segments: readonly AttnPrepSegment[], heads: number, pe: Tensor, eps: number): Storage[] {
      const [B, H, Ltot, Dh] = outs[0]!.shape as [number, number, number, number];
      const ys = outs.map((o) => out1(o));
      const seg = (s: AttnPrepSegment | undefined) =>
        s ? [ptrOf(s.x), s.x.shape[1]!, s.x.shape[2]!, s.colOffset, ptrOf(s.qScale), DT[s.qScale.dtype], ptrOf(s.kScale), DT[s.kScale.dtype]] : null;
      A.attnPrep(DT[outs[0]!.dtype], seg(segments[0]), seg(segments[1]), ptrOf(pe), pe.shape[0] === 1 ? 0 : 1, ys[0]!.ptr, ys[1]!.ptr, ys[2]!.ptr,
        B, H, Ltot, Dh, eps);
      return ys;
    },

    fusedAmax: true,

    geluConcat(out: OutSpec, a: Tensor, h: Tensor, colOffset: number, width: number, amaxOut?: Tensor): Storage {
      const [B, L, Da] = a.shape as [number, number, number];
      const y = out1(out);
      A.geluConcat(DT[a.dtype], ptrOf(a), ptrOf(h), y.ptr, B * L, Da, h.shape[2]!, colOffset, width, opt(amaxOut));
      return y;
    },

    conv2d(out: OutSpec, x: Tensor, w: Tensor, args: Conv2dArgs): Storage {
      const [B, C, H, W] = x.shape as [number, number, number, number];
      const [O, , kh, kw] = w.shape as [number, number, number, number];
      const [, , Ho, Wo] = out.shape as [number, number, number, number];
      const y = out1(out);
      A.conv2d(DT[x.dtype], ptrOf(x), ptrOf(w), DT[w.dtype], opt(args.bias), optDt(args.bias), y.ptr,
        B, C, H, W, O, kh, kw, args.stride[0], args.stride[1], args.padding[0], args.padding[2], Ho, Wo);
      return y;
    },

    upsampleNearest(out: OutSpec, x: Tensor, factor: number): Storage {
      const [B, C, H, W] = x.shape as [number, number, number, number];
      const y = out1(out);
      A.upsampleNearest(width(x.dtype), ptrOf(x), y.ptr, B * C, H, W, factor);
      return y;
    },

    concat(out: OutSpec, xs: readonly Tensor[], axis: number): Storage {
      const os = out.shape;
      const y = out1(out);
      const outer = numel(os.slice(0, axis));
      const inner = numel(os.slice(axis + 1));
      const rowOut = os[axis]! * inner;
      let off = 0;
      for (const t of xs) {
        const row = t.shape[axis]! * inner;
        A.copy2d(width(out.dtype), ptrOf(t), row, 0, y.ptr, rowOut, off, outer, row);
        off += row;
      }
      return y;
    },

    slice(out: OutSpec, x: Tensor, axis: number, start: number): Storage {
      const os = out.shape;
      const y = out1(out);
      const outer = numel(os.slice(0, axis));
      const inner = numel(os.slice(axis + 1));
      const rowIn = x.shape[axis]! * inner;
      const rowOut = os[axis]! * inner;
      A.copy2d(width(out.dtype), ptrOf(x), rowIn, start * inner, y.ptr, rowOut, 0, outer, rowOut);
      return y;
    },

    permute(out: OutSpec, x: Tensor, perm: readonly number[]): Storage {
      const y = out1(out);
      const n = x.size;
      if (n === 0) return y;
      if (x.rank === 0) {
        A.copyBytes(y.ptr, ptrOf(x), dtypeSize(x.dtype));
        return y;
      }
      const st = rowMajorStrides(x.shape);
      A.permute(width(x.dtype), ptrOf(x), y.ptr, n, perm.map((p) => x.shape[p]!), perm.map((p) => st[p]!));
      return y;
    },

    splitHeads(outs: readonly OutSpec[], x: Tensor, heads: number): Storage[] {
      const [B, L, F] = x.shape as [number, number, number];
      const D = F / (outs.length * heads);
      return outs.map((spec, p) => {
        const y = out1(spec);
        A.splitHeads(width(x.dtype), ptrOf(x), y.ptr, B, L, F, heads, D, p);
        return y;
      });
    },

    embedding(out: OutSpec, table: Tensor, ids: Tensor): Storage {
      const [V, D] = table.shape as [number, number];
      // ids are few (token ids); check them on the host so a bad id is an OpError like on the CPU
      const idv = new Int32Array(ids.size);
      A.download(ptrOf(ids), 0, idv);
      for (let i = 0; i < idv.length; i++) {
        const id = idv[i]!;
        if (id < 0 || id >= V) {
          throw new OpError('embedding', `id ${id} at position ${i} is outside [0, ${V}) (got table [${V}, ${D}] ${table.dtype}, ids [${ids.shape.join(', ')}] i32)`);
        }
      }
      const y = out1(out);
      A.embedding(width(table.dtype), ptrOf(table), ptrOf(ids), y.ptr, ids.size, D);
      return y;
    },

    cast(out: OutSpec, x: Tensor): Storage {
      return castTo(x, out.dtype);
    },

    absMax(x: Tensor): number {
      return A.absMax(DT[x.dtype], ptrOf(x), x.size);
    },
  };
}

/** Where the addon is looked for: $FLUXSERVE_CUDA_ADDON, else build/ at the package root. */
export function cudaAddonPath(env: NodeJS.ProcessEnv = process.env): string {
  const override = env['FLUXSERVE_CUDA_ADDON'];
  if (override) return override;
  // this file is dist/src/tensor/cuda/index.js (built) or src/tensor/cuda/index.ts (sources)
  const candidates = ['../../../../', '../../../'].map((up) => fileURLToPath(new URL(`${up}build/fluxserve_cuda.node`, import.meta.url)));
  return candidates.find((c) => fs.existsSync(c)) ?? candidates[0]!;
}

let loaded: { addon?: Addon; backend: (Backend & { memStats(): CudaMemStats; resetPeak(): void; emptyCache(): void }) | undefined; reason: string; addonExists: boolean; device?: string } | undefined;

/**
 * Load the CUDA backend once: the addon must exist, load, match the ABI version and find a GPU.
 * Returns undefined otherwise; `cudaUnavailableReason()` then says why.
 */
export function loadCudaBackend(env: NodeJS.ProcessEnv = process.env): Backend | undefined {
  if (loaded) return loaded.backend;
  const path = cudaAddonPath(env);
  const addonExists = fs.existsSync(path);
  if (!addonExists) {
    loaded = { backend: undefined, reason: `no addon at ${path} (run npm run build:native on a machine with the CUDA toolkit)`, addonExists };
    return undefined;
  }
  try {
    const require = createRequire(import.meta.url);
    const addon = require(path) as Addon;
    if (addon.abiVersion !== ABI_VERSION) throw new Error(`addon ABI version ${addon.abiVersion}, expected ${ABI_VERSION} (rebuild it)`);
    const info = addon.init(Number(env['FLUXSERVE_CUDA_DEVICE'] ?? 0));
    loaded = {
      backend: makeBackend(addon),
      addon,
      reason: '',
      addonExists,
      device: `${info.name} (sm_${info.ccMajor}${info.ccMinor}, ${(info.totalMem / 2 ** 30).toFixed(1)} GiB, cuBLASLt ${info.cublasLt ? 'on' : 'off'})`,
    };
  } catch (e) {
    loaded = { backend: undefined, reason: (e as Error).message, addonExists };
  }
  return loaded.backend;
}

/** Why the CUDA backend is not available ('' when it is, undefined before the first attempt). */
export function cudaUnavailableReason(): string | undefined {
  return loaded?.reason;
}

/** The GPU the backend runs on, e.g. "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB, cuBLASLt on)". */
export function cudaDeviceDescription(): string | undefined {
  return loaded?.device;
}

/**
 * Whether the Hopper (wgmma) flash-attention kernel is in use: "on (self-check max diff ...)" or
 * "off (why)". Runs its one-time self-check against the mma.sync kernel if no attention call has.
 */
export function cudaAttentionKernel(): string | undefined {
  return loaded?.addon?.attentionKernel();
}

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

/** The caching allocator's counters (bytes), when the backend is loaded. */
export function cudaMemStats(): CudaMemStats | undefined {
  return loaded?.backend?.memStats();
}

export function cudaResetPeak(): void {
  loaded?.backend?.resetPeak();
}

/** Gives the allocator's cached free blocks back to the driver (between benchmark phases). */
export function cudaEmptyCache(): void {
  loaded?.backend?.emptyCache();
}

/** True when an addon file exists (so a failure to load it is worth telling the user about). */
export function cudaAddonWasBuilt(): boolean {
  return loaded?.addonExists ?? false;
}
