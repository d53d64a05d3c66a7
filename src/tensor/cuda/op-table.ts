// The CUDA addon's op table: every call the addon exports that takes only pointers and numbers,
// declared once. From it follow
//   - the TypeScript type of each op (`CudaOps`, mapped types below; call sites pass named args),
//   - the Node-API wrappers (native/ops.gen.inc) and the C declarations of the launchers
//     (native/ops.gen.h), written by scripts/gen-addon-ops.ts; test/native/op-table.test.ts checks
//     that regenerating gives the checked-in files.
// The kernels in native/*.cu fill the launchers in; a definition whose parameters differ from the
// generated declaration does not compile (two `extern "C"` functions of one name).
// Model: ggml's op list and candle's CustomOp (an op declared once, each backend fills it in).
//
// Arguments are in the launcher's C parameter order. `by` says how the launcher is chosen:
//   dtype: one launcher per float dtype of the op's main tensor (arg `dt`), fxs_<c>_f32 ... _f8e4m3
//   elem:  layout ops copy bits, one launcher per element width (arg `elem`), fxs_<c>_x32/_x16/_x8
//   cast:  one launcher per target dtype (arg `to`, i32 included), fxs_<c>_<to>
//   none:  the single function fxs_<c>
// `ret`: 'void' (the launcher returns only its status), 'ptr' (a trailing `void** out`, returned
// as a BigInt) or 'f32' (a trailing `float* out`, returned as a number).

import type { Activation, BinaryOp } from '../backend.js';
import type { DType } from '../dtype.js';

/** Bumped whenever the JS calling convention of an export changes (the loader refuses others). */
export const ADDON_ABI_VERSION = 4; // 4: ops from the op table; markWait's release is required

/** dtype codes, in the order of dtype.ts DTYPES (C: FXS_DT_*). */
export const DTYPE_CODES = { f32: 0, bf16: 1, f16: 2, f8e4m3: 3, i32: 4 } as const satisfies Record<DType, number>;
/** activation codes (C: FXS_ACT_*). */
export const ACTIVATION_CODES = { none: 0, gelu_tanh: 1, gelu: 2, silu: 3, quick_gelu: 4 } as const satisfies Record<Activation, number>;
/** binary op codes (C: FXS_OP_*). */
export const BINARY_OP_CODES = { add: 0, sub: 1, mul: 2 } as const satisfies Record<BinaryOp, number>;
/** The most dims a `dims` argument may have (C: FXS_MAX_RANK). */
export const MAX_RANK = 8;
/** The launchers of `by: 'dtype'` ops, in code order (C: FXS_FOR_FLOAT_DTYPES). */
export const FLOAT_DTYPES = ['f32', 'bf16', 'f16', 'f8e4m3'] as const;
/** The launchers of `by: 'elem'` ops: element bytes and suffix (C: FXS_FOR_WIDTHS). */
export const WIDTHS = [
  [4, 'x32'],
  [2, 'x16'],
  [1, 'x8'],
] as const;

/** An argument's kind: its TypeScript type, its C parameter(s) and how the binding reads it. */
export interface ArgKinds {
  /** `const void*` device pointer */
  cptr: bigint;
  /** `void*` device pointer (written, or handed back to the runtime) */
  ptr: bigint;
  /** `const void*`, absent allowed (null) */
  cptrOpt: bigint | undefined;
  /** `void*`, absent allowed (null) */
  ptrOpt: bigint | undefined;
  /** `const float*` device pointer */
  f32ptr: bigint;
  /** `const int32_t*` device pointer */
  i32ptr: bigint;
  /** a float dtype code `int` (0..3) */
  dtype: DType;
  /** the float dtype code of an optional operand (0 when absent) */
  dtypeOpt: DType | undefined;
  /** any dtype code `int` (0..4) */
  anyDtype: DType;
  /** FXS_ACT_* code `int` */
  act: Activation;
  /** FXS_OP_* code `int` */
  binop: BinaryOp;
  /** `int` 0 / 1 */
  flag: boolean;
  /** `int64_t` */
  i64: number;
  /** `size_t` byte count */
  size: number;
  /** `float` */
  f32: number;
  /** `double` */
  f64: number;
  /** `int rank, const int64_t* name`: the first array of a group of equal-length arrays */
  dims: readonly number[];
  /** `const int64_t* name`: an array as long as the preceding `dims` */
  dimsLike: readonly number[];
  /** `FxsAttnSeg s0, FxsAttnSeg s1, int nseg` (fluxserve_cuda.h): one or two segments */
  attnSegs: readonly AttnSegArgs[];
}
export type ArgKind = keyof ArgKinds;

/** One segment of attnPrep (fluxserve_cuda.h FxsAttnSeg). */
export interface AttnSegArgs {
  /** x [B, L, C] */
  x: bigint;
  L: number;
  C: number;
  /** where its q, k, v columns start */
  col: number;
  /** q/k RMSNorm scales [Dh] */
  qScale: bigint;
  qScaleDt: DType;
  kScale: bigint;
  kScaleDt: DType;
}

export type Dispatch = 'dtype' | 'elem' | 'cast' | 'none';
export type RetKind = 'void' | 'ptr' | 'f32';
export interface OpSpec {
  /** the launcher's name without fxs_ and the dispatch suffix */
  readonly c: string;
  readonly by: Dispatch;
  /** the file that fills it in, and what it computes (written above its C declaration) */
  readonly src: string;
  readonly doc: string;
  readonly args: readonly (readonly [name: string, kind: ArgKind])[];
  readonly ret?: RetKind;
}

export const OP_TABLE = {
  // ---- memory, stream marks, graphs (alloc.cu, transfers.cu, graphs.cu) ----
  malloc: { c: 'malloc', by: 'none', src: 'alloc.cu', ret: 'ptr', doc: 'a block of the caching allocator', args: [['bytes', 'size']] },
  free: { c: 'free', by: 'none', src: 'alloc.cu', doc: 'back to the cache (stream-ordered reuse); null is a no-op', args: [['p', 'ptrOpt']] },
  emptyCache: { c: 'empty_cache', by: 'none', src: 'alloc.cu', doc: 'waits for the stream, gives the cached free blocks back to the driver', args: [] },
  synchronize: { c: 'synchronize', by: 'none', src: 'device.cu', doc: 'waits for the stream (a host wait)', args: [] },
  memset0: {
    c: 'memset0',
    by: 'none',
    src: 'transfers.cu',
    doc: 'zeroes bytes on the stream',
    args: [
      ['dst', 'ptr'],
      ['bytes', 'size'],
    ],
  },
  copyBytes: {
    c: 'copy_bytes',
    by: 'none',
    src: 'transfers.cu',
    doc: 'device-to-device copy on the stream',
    args: [
      ['dst', 'ptr'],
      ['src', 'cptr'],
      ['bytes', 'size'],
    ],
  },
  mark: { c: 'mark', by: 'none', src: 'transfers.cu', ret: 'ptr', doc: 'records a mark (an event) on the stream', args: [] },
  markWait: {
    c: 'mark_wait',
    by: 'none',
    src: 'transfers.cu',
    doc: 'waits for a mark (release = 1: only gives it back)',
    args: [
      ['mark', 'ptr'],
      ['release', 'flag'],
    ],
  },
  graphBegin: {
    c: 'graph_begin',
    by: 'none',
    src: 'graphs.cu',
    args: [],
    doc: "starts capturing the stream: allocations come from a pool of the graph's own; host transfers and waits fail with cudaErrorStreamCaptureUnsupported",
  },
  graphEnd: {
    c: 'graph_end',
    by: 'none',
    src: 'graphs.cu',
    ret: 'ptr',
    args: [['abort', 'flag']],
    doc: 'instantiates what was captured (abort = 1 drops it; the graph is then null)',
  },
  graphLaunch: { c: 'graph_launch', by: 'none', src: 'graphs.cu', doc: 'enqueues a replay', args: [['graph', 'ptr']] },
  graphDestroy: {
    c: 'graph_destroy',
    by: 'none',
    src: 'graphs.cu',
    doc: 'waits for the stream, frees the graph and returns its pool',
    args: [['graph', 'ptr']],
  },

  // ---- GEMM and fp8 (gemm.cu) ----
  gemm: {
    c: 'gemm',
    by: 'dtype',
    src: 'gemm.cu',
    doc: 'C[b] = act(alpha · A[b]·op(B[b]) + bias). A [M,K] main dtype; B [N,K] when bNK else [K,N]; strides in elements between batch items (0 = broadcast). Rounding: once after the bias, and once more after the activation (ops.ts linear).',
    args: [
      ['a', 'cptr'],
      ['b', 'cptr'],
      ['bDt', 'dtype'],
      ['c', 'ptr'],
      ['batch', 'i64'],
      ['M', 'i64'],
      ['N', 'i64'],
      ['K', 'i64'],
      ['bNK', 'flag'],
      ['strideA', 'i64'],
      ['strideB', 'i64'],
      ['strideC', 'i64'],
      ['bias', 'cptrOpt'],
      ['biasDt', 'dtypeOpt'],
      ['alpha', 'f32'],
      ['act', 'act'],
    ],
  },
  linearFp8In: {
    c: 'linear_fp8in',
    by: 'dtype',
    src: 'gemm.cu',
    doc: "y[M,N] = act(wScale · s_x · e4m3(x / s_x)·w8ᵀ + bias) with s_x = max|x| / 448 computed on the device (ops.ts linear quantizeInput 'f8e4m3'); w8 e4m3 [N,K]. Not for an fp8 x (invalid value). amax: null, or max|x| as float bits already computed by x's producer (ops.ts inputAmax).",
    args: [
      ['x', 'cptr'],
      ['w8', 'cptr'],
      ['y', 'ptr'],
      ['M', 'i64'],
      ['N', 'i64'],
      ['K', 'i64'],
      ['bias', 'cptrOpt'],
      ['biasDt', 'dtypeOpt'],
      ['wScale', 'f32'],
      ['act', 'act'],
      ['amax', 'cptrOpt'],
    ],
  },
  absMax: {
    c: 'absmax',
    by: 'dtype',
    src: 'gemm.cu',
    ret: 'f32',
    doc: 'max |x[i]| (NaN ignored), read back to the host: waits for the stream.',
    args: [
      ['x', 'cptr'],
      ['n', 'i64'],
    ],
  },

  // ---- attention and rope (attention.cu, rope.cu) ----
  attention: {
    c: 'attention',
    by: 'dtype',
    src: 'attention.cu',
    doc: 'q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv] -> out [B,Lq,H*Dv]; bias element (b,h,i,j) at b*biasSB + h*biasSH + i*Lk + j. D, Dv <= 128.',
    args: [
      ['q', 'cptr'],
      ['k', 'cptr'],
      ['v', 'cptr'],
      ['bias', 'cptrOpt'],
      ['biasDt', 'dtypeOpt'],
      ['biasSB', 'i64'],
      ['biasSH', 'i64'],
      ['out', 'ptr'],
      ['B', 'i64'],
      ['H', 'i64'],
      ['Lq', 'i64'],
      ['Lk', 'i64'],
      ['D', 'i64'],
      ['Dv', 'i64'],
      ['scale', 'f32'],
      ['causal', 'flag'],
    ],
  },
  rope: {
    c: 'rope',
    by: 'dtype',
    src: 'rope.cu',
    doc: 'x [B,H,L,D], pe f32 [B|1, L, D/2, 2, 2] (peBatched = pe has B rows).',
    args: [
      ['x', 'cptr'],
      ['pe', 'f32ptr'],
      ['peBatched', 'flag'],
      ['y', 'ptr'],
      ['B', 'i64'],
      ['H', 'i64'],
      ['L', 'i64'],
      ['D', 'i64'],
    ],
  },
  attnPrep: {
    c: 'attn_prep',
    by: 'dtype',
    src: 'rope.cu',
    doc: 'ops.ts attnPrep with one or two segments along L (FxsAttnSeg). pe f32 [B|1, ΣL, Dh/2, 2, 2]. q, k, v out [B, H, ΣL, Dh]. Dh even, <= 256.',
    args: [
      ['segments', 'attnSegs'],
      ['pe', 'f32ptr'],
      ['peBatched', 'flag'],
      ['q', 'ptr'],
      ['k', 'ptr'],
      ['v', 'ptr'],
      ['B', 'i64'],
      ['H', 'i64'],
      ['Ltot', 'i64'],
      ['Dh', 'i64'],
      ['eps', 'f32'],
    ],
  },

  // ---- norms (norm.cu) ----
  layerNorm: {
    c: 'layer_norm',
    by: 'dtype',
    src: 'norm.cu',
    doc: 'y = layer_norm(x) over rows of D, optional weight and bias',
    args: [
      ['x', 'cptr'],
      ['w', 'cptrOpt'],
      ['wDt', 'dtypeOpt'],
      ['b', 'cptrOpt'],
      ['bDt', 'dtypeOpt'],
      ['y', 'ptr'],
      ['rows', 'i64'],
      ['D', 'i64'],
      ['eps', 'f32'],
    ],
  },
  rmsNorm: {
    c: 'rms_norm',
    by: 'dtype',
    src: 'norm.cu',
    doc: 'y = rms_norm(x) over rows of D, optional weight',
    args: [
      ['x', 'cptr'],
      ['w', 'cptrOpt'],
      ['wDt', 'dtypeOpt'],
      ['y', 'ptr'],
      ['rows', 'i64'],
      ['D', 'i64'],
      ['eps', 'f32'],
    ],
  },
  groupNorm: {
    c: 'group_norm',
    by: 'dtype',
    src: 'norm.cu',
    doc: 'y = act(group_norm(x)) for x [B, C, S], weight and bias [C]',
    args: [
      ['x', 'cptr'],
      ['w', 'cptr'],
      ['wDt', 'dtype'],
      ['b', 'cptr'],
      ['bDt', 'dtype'],
      ['y', 'ptr'],
      ['B', 'i64'],
      ['C', 'i64'],
      ['S', 'i64'],
      ['groups', 'i64'],
      ['eps', 'f32'],
      ['act', 'act'],
    ],
  },
  modulatedLayerNorm: {
    c: 'modulated_layer_norm',
    by: 'dtype',
    src: 'norm.cu',
    doc: 'y = (1 + scale)·layer_norm(x) + shift for x [B, L, D], shift/scale [B, D]. amax: null, or float bits raised to max|y| (ops.ts amaxOut).',
    args: [
      ['x', 'cptr'],
      ['shift', 'cptr'],
      ['shiftDt', 'dtype'],
      ['scale', 'cptr'],
      ['scaleDt', 'dtype'],
      ['y', 'ptr'],
      ['B', 'i64'],
      ['L', 'i64'],
      ['D', 'i64'],
      ['eps', 'f32'],
      ['amax', 'ptrOpt'],
    ],
  },

  // ---- elementwise and casts (elementwise.cu) ----
  geluConcat: {
    c: 'gelu_concat',
    by: 'dtype',
    src: 'elementwise.cu',
    doc: 'out [rows, Da + W] = [a | gelu_tanh(h[:, col : col + W])] with h [rows, C] (ops.ts geluConcat). amax: null, or float bits raised to max|out| (ops.ts amaxOut).',
    args: [
      ['a', 'cptr'],
      ['h', 'cptr'],
      ['out', 'ptr'],
      ['rows', 'i64'],
      ['Da', 'i64'],
      ['C', 'i64'],
      ['col', 'i64'],
      ['W', 'i64'],
      ['amax', 'ptrOpt'],
    ],
  },
  binary: {
    c: 'binary',
    by: 'dtype',
    src: 'elementwise.cu',
    doc: 'out = a op b over out dims (collapsed by the caller) with element strides of a and b (0 = broadcast).',
    args: [
      ['op', 'binop'],
      ['a', 'cptr'],
      ['b', 'cptr'],
      ['bDt', 'dtype'],
      ['out', 'ptr'],
      ['dims', 'dims'],
      ['strideA', 'dimsLike'],
      ['strideB', 'dimsLike'],
    ],
  },
  affine: {
    c: 'affine',
    by: 'dtype',
    src: 'elementwise.cu',
    doc: 'y = x·mul + add',
    args: [
      ['x', 'cptr'],
      ['y', 'ptr'],
      ['n', 'i64'],
      ['mul', 'f64'],
      ['add', 'f64'],
    ],
  },
  activation: {
    c: 'activation',
    by: 'dtype',
    src: 'elementwise.cu',
    doc: 'y = act(x)',
    args: [
      ['x', 'cptr'],
      ['y', 'ptr'],
      ['n', 'i64'],
      ['act', 'act'],
    ],
  },
  gatedResidual: {
    c: 'gated_residual',
    by: 'dtype',
    src: 'elementwise.cu',
    doc: 'out = x + gate·yin for x, yin [B, L, D], gate [B, D]',
    args: [
      ['x', 'cptr'],
      ['gate', 'cptr'],
      ['gateDt', 'dtype'],
      ['yin', 'cptr'],
      ['out', 'ptr'],
      ['B', 'i64'],
      ['L', 'i64'],
      ['D', 'i64'],
    ],
  },
  softmax: {
    c: 'softmax',
    by: 'dtype',
    src: 'elementwise.cu',
    doc: 'y = softmax(x) over rows of D',
    args: [
      ['x', 'cptr'],
      ['y', 'ptr'],
      ['rows', 'i64'],
      ['D', 'i64'],
    ],
  },
  cast: {
    c: 'cast_to',
    by: 'cast',
    src: 'elementwise.cu',
    doc: 'any dtype -> the named dtype (RNE for bf16/f16/e4m3 exactly like dtype.ts; -> i32 truncates and wraps like a JS Int32Array store).',
    args: [
      ['x', 'cptr'],
      ['xDt', 'anyDtype'],
      ['y', 'ptr'],
      ['n', 'i64'],
    ],
  },

  // ---- conv (conv.cu) ----
  conv2d: {
    c: 'conv2d',
    by: 'dtype',
    src: 'conv.cu',
    doc: 'x [B,C,H,W], w [O,C,kh,kw], bias [O] -> y [B,O,Ho,Wo]; padding top/left given, bottom/right are implied by Ho/Wo.',
    args: [
      ['x', 'cptr'],
      ['w', 'cptr'],
      ['wDt', 'dtype'],
      ['bias', 'cptrOpt'],
      ['biasDt', 'dtypeOpt'],
      ['y', 'ptr'],
      ['B', 'i64'],
      ['C', 'i64'],
      ['H', 'i64'],
      ['W', 'i64'],
      ['O', 'i64'],
      ['kh', 'i64'],
      ['kw', 'i64'],
      ['sh', 'i64'],
      ['sw', 'i64'],
      ['pt', 'i64'],
      ['pl', 'i64'],
      ['Ho', 'i64'],
      ['Wo', 'i64'],
    ],
  },

  // ---- layout: bit copies by element width (layout.cu) ----
  copy2d: {
    c: 'copy2d',
    by: 'elem',
    src: 'layout.cu',
    doc: 'rows of rowLen elements from src (row stride, offset) to dst (row stride, offset)',
    args: [
      ['src', 'cptr'],
      ['srcStride', 'i64'],
      ['srcOff', 'i64'],
      ['dst', 'ptr'],
      ['dstStride', 'i64'],
      ['dstOff', 'i64'],
      ['rows', 'i64'],
      ['rowLen', 'i64'],
    ],
  },
  permute: {
    c: 'permute',
    by: 'elem',
    src: 'layout.cu',
    doc: 'y (row-major over outDims) [i] = x[Σ index_d · inStrides[d]]',
    args: [
      ['x', 'cptr'],
      ['y', 'ptr'],
      ['n', 'i64'],
      ['outDims', 'dims'],
      ['inStrides', 'dimsLike'],
    ],
  },
  splitHeads: {
    c: 'split_heads',
    by: 'elem',
    src: 'layout.cu',
    doc: 'y [B, H, L, D] = part `part` of x [B, L, F] (ops.ts splitHeads: part p, head h is columns [(p·H + h)·D, (p·H + h + 1)·D))',
    args: [
      ['x', 'cptr'],
      ['y', 'ptr'],
      ['B', 'i64'],
      ['L', 'i64'],
      ['F', 'i64'],
      ['H', 'i64'],
      ['D', 'i64'],
      ['part', 'i64'],
    ],
  },
  upsampleNearest: {
    c: 'upsample_nearest',
    by: 'elem',
    src: 'layout.cu',
    doc: 'y [BC, H·factor, W·factor] = nearest-neighbour upsampling of x [BC, H, W]',
    args: [
      ['x', 'cptr'],
      ['y', 'ptr'],
      ['BC', 'i64'],
      ['H', 'i64'],
      ['W', 'i64'],
      ['factor', 'i64'],
    ],
  },
  embedding: {
    c: 'embedding',
    by: 'elem',
    src: 'layout.cu',
    doc: 'y [n, D] = table rows ids[0..n)',
    args: [
      ['table', 'cptr'],
      ['ids', 'i32ptr'],
      ['y', 'ptr'],
      ['n', 'i64'],
      ['D', 'i64'],
    ],
  },
} as const satisfies Record<string, OpSpec>;

export type OpName = keyof typeof OP_TABLE;

/** The dispatch key an op's args object carries in front of its C arguments. */
interface DispatchKeys {
  dtype: { dt: DType };
  elem: { elem: DType };
  cast: { to: DType };
  none: {};
}
type ArgTuple = readonly [string, ArgKind];
type RequiredArgs<A extends readonly ArgTuple[]> = {
  [T in A[number] as ArgKinds[T[1]] extends infer V ? (undefined extends V ? never : T[0]) : never]: ArgKinds[T[1]];
};
type OptionalArgs<A extends readonly ArgTuple[]> = {
  [T in A[number] as ArgKinds[T[1]] extends infer V ? (undefined extends V ? T[0] : never) : never]?: ArgKinds[T[1]];
};
type Spec<N extends OpName> = (typeof OP_TABLE)[N];
/** The named arguments of op N: its dispatch key and its C arguments (optional pointers may be left out). */
export type OpArgs<N extends OpName> = DispatchKeys[Spec<N>['by']] & RequiredArgs<Spec<N>['args']> & OptionalArgs<Spec<N>['args']>;
interface RetKinds {
  // biome-ignore lint/suspicious/noConfusingVoidType: the TS return type of an op that returns nothing
  void: void;
  ptr: bigint;
  f32: number;
}
// biome-ignore lint/suspicious/noConfusingVoidType: an op without a return kind returns nothing
type RetOf<S> = S extends { ret: infer R extends RetKind } ? RetKinds[R] : void;
/** The table's ops with named arguments, as `bindOps` makes them. */
export type CudaOps = { readonly [N in OpName]: (args: OpArgs<N>) => RetOf<Spec<N>> };
