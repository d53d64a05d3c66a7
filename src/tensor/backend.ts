// The Backend interface: storage management plus one method per op of the closed op list
// (ops.ts). ops.ts validates shapes and dtypes and computes each output's shape and dtype ONCE;
// a backend method receives validated tensors and only computes. Each method returns the storage
// of a new contiguous tensor of the shape/dtype that ops.ts passes in `out`.
//
// Numerics contract (both backends): float math in fp32; the result is rounded to the output
// dtype once per op, like one PyTorch op on bf16 tensors (docs/references.md, "Precision of the
// references").
// Fused ops document their internal rounding points (they reproduce the unfused PyTorch chain).

import type { DType, RawArray } from './dtype.js';
import type { Tensor, Shape } from './tensor.js';

/** Backend-owned memory; opaque to everything but its backend. */
export interface Storage {
  readonly byteLength: number;
}

export type Activation = 'none' | 'gelu_tanh' | 'gelu' | 'silu' | 'quick_gelu';

export interface OutSpec {
  readonly shape: Shape;
  readonly dtype: DType;
}

export interface LinearArgs {
  bias?: Tensor | undefined;
  act: Activation;
  /** Per-tensor dequantisation scale of an fp8 weight (1 for other dtypes). */
  weightScale: number;
  /**
   * 'f8e4m3' (only with an fp8 weight): quantise x dynamically per tensor before the product —
   * s = max|x| / 448 (1 when x is all zero), x_q = e4m3(x / s) (RNE), y = (x_q·wᵀ)·s·weightScale
   * + bias, rounded once to x's dtype (go_fast; deterministic: no data-dependent order).
   */
  quantizeInput?: 'f8e4m3' | undefined;
  /** With quantizeInput: max|x| as an f32 [1] tensor already computed by x's producer (ops.ts amaxOut). */
  inputAmax?: Tensor | undefined;
}

export interface AttentionArgs {
  scale: number;
  /** Additive bias broadcastable to [B, H, Lq, Lk] (given as 4-D, dims 0/1 may be 1). */
  bias?: Tensor | undefined;
  causal: boolean;
}

export interface Conv2dArgs {
  bias?: Tensor | undefined;
  stride: readonly [number, number];
  /** [top, bottom, left, right] zero padding. */
  padding: readonly [number, number, number, number];
}

export type BinaryOp = 'add' | 'sub' | 'mul';

/** One stream of ops.ts attnPrep: q, k, v of `heads` heads at columns [colOffset, colOffset + 3·H·Dh) of x [B, L, C]. */
export interface AttnPrepSegment {
  readonly x: Tensor;
  readonly colOffset: number;
  /** RMSNorm scales [Dh] for q and k. */
  readonly qScale: Tensor;
  readonly kScale: Tensor;
}

export interface CapturedGraph {
  readonly output: Tensor;
  replay(): void;
  dispose(): void;
}

export interface StreamMark {
  wait(): void;
  release(): void;
}

export interface Backend {
  readonly name: string;

  // --- memory -----------------------------------------------------------------------------------
  /** New storage holding a copy of `raw` (elements of `dtype`). */
  upload(dtype: DType, raw: RawArray): Storage;
  /** New zero-filled storage for `n` elements. */
  zeros(dtype: DType, n: number): Storage;
  /** Copy `n` elements back to the host. */
  read(storage: Storage, dtype: DType, n: number): RawArray;
  /**
   * Overwrite elements [offsetElems, offsetElems + raw.length) of existing storage in place (LoRA
   * fusing). Every tensor sharing the storage sees the new values; anything a backend derives from
   * a parameter's contents (decoded or packed copies) must be updated or dropped. Never call it
   * while an op that reads the storage may be running.
   */
  write(storage: Storage, dtype: DType, raw: RawArray, offsetElems: number): void;
  free(storage: Storage): void;
  /** Wait for queued work (no-op for synchronous backends). */
  synchronize(): void;
  /**
   * Asynchronous backends: a mark after the work queued so far. `wait()` blocks until that work is
   * done (not what was queued after the mark); `release()` drops it without waiting. Exactly one
   * of the two must be called. Absent on synchronous backends.
   */
  mark?(): StreamMark;
  /**
   * Asynchronous backends that can replay recorded work (CUDA graphs): runs `fn` in capture mode
   * (its ops are recorded, not run; no host transfers or waits may happen inside) and returns the
   * recording. `replay()` runs it again on the current contents of the tensors it read, writing
   * the same intermediates and `output` (owned by the graph: valid until the next replay or
   * `dispose()`). Throws if the work cannot be captured (nothing is left recording then).
   */
  captureGraph?(fn: () => Tensor): CapturedGraph;
  /** Device copy of `src` into the existing `dst` (same dtype and size), in stream order. */
  copyInto?(dst: Tensor, src: Tensor): void;

  // --- ops (see ops.ts for the semantics of each) -----------------------------------------------
  linear(out: OutSpec, x: Tensor, w: Tensor, args: LinearArgs): Storage;
  matmul(out: OutSpec, a: Tensor, b: Tensor, transB: boolean): Storage;
  attention(out: OutSpec, q: Tensor, k: Tensor, v: Tensor, args: AttentionArgs): Storage;
  layerNorm(out: OutSpec, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Storage;
  rmsNorm(out: OutSpec, x: Tensor, weight: Tensor | undefined, eps: number): Storage;
  groupNorm(out: OutSpec, x: Tensor, groups: number, weight: Tensor, bias: Tensor, eps: number, act: Activation): Storage;
  /** amaxOut (only when `fusedAmax`): an f32 [1] tensor raised to max|output| in the same pass. */
  modulatedLayerNorm(out: OutSpec, x: Tensor, shift: Tensor, scale: Tensor, eps: number, amaxOut?: Tensor): Storage;
  gatedResidual(out: OutSpec, x: Tensor, gate: Tensor, y: Tensor): Storage;
  binary(out: OutSpec, op: BinaryOp, a: Tensor, b: Tensor): Storage;
  affine(out: OutSpec, x: Tensor, mul: number, add: number): Storage;
  activation(out: OutSpec, x: Tensor, act: Activation): Storage;
  softmax(out: OutSpec, x: Tensor): Storage;
  rope(out: OutSpec, x: Tensor, pe: Tensor): Storage;
  conv2d(out: OutSpec, x: Tensor, w: Tensor, args: Conv2dArgs): Storage;
  upsampleNearest(out: OutSpec, x: Tensor, factor: number): Storage;
  concat(out: OutSpec, xs: readonly Tensor[], axis: number): Storage;
  slice(out: OutSpec, x: Tensor, axis: number, start: number): Storage;
  permute(out: OutSpec, x: Tensor, perm: readonly number[]): Storage;
  splitHeads(outs: readonly OutSpec[], x: Tensor, heads: number): Storage[];
  embedding(out: OutSpec, table: Tensor, ids: Tensor): Storage;
  cast(out: OutSpec, x: Tensor): Storage;
  /** max |x| over every element, read back to the host (waits for pending work); NaN is ignored. */
  absMax(x: Tensor): number;

  // Optional fused versions of composite ops (ops.ts composes them from the ops above otherwise;
  // a fused version must give the composition's result up to the rounding of fp32 reductions).
  /** ops.ts attnPrep with one or two segments and Dh <= 256: outs = q, k, v [B, H, ΣL, Dh]. */
  attnPrep?(outs: readonly OutSpec[], segments: readonly AttnPrepSegment[], heads: number, pe: Tensor, eps: number): Storage[];
  /** ops.ts geluConcat: out [B, L, Da + width]. */
  geluConcat?(out: OutSpec, a: Tensor, h: Tensor, colOffset: number, width: number, amaxOut?: Tensor): Storage;
  /**
   * True when modulatedLayerNorm and geluConcat fill `amaxOut` themselves (in the pass that writes
   * the output) and linear uses `inputAmax`; otherwise ops.ts composes both from absMax.
   */
  readonly fusedAmax?: boolean;
}
