// TensorSource: a named collection of tensors whose bytes are read on demand, one tensor at a time
// (so a 24 GB checkpoint never has to sit in one buffer). Safetensors files, sharded checkpoints,
// renamed views (diffusers -> BFL) and in-memory maps all implement it.

import type { DType, RawArray } from '../tensor/dtype.js';
import { numel, shapeStr } from '../tensor/tensor.js';

export interface TensorInfo {
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export interface TensorSource {
  /** Where the tensors come from, for error messages (a file path, "diffusers:<dir>", ...). */
  readonly label: string;
  keys(): string[];
  info(name: string): TensorInfo | undefined;
  /** The raw elements of one tensor (bf16/f16 as bit patterns). Throws naming the source and key. */
  read(name: string): RawArray;
  /**
   * Optional: make up a tensor that is not there yet (the tiny-model generator builds a model from
   * a source that fabricates each weight the constructors ask for). Returns its info, or undefined.
   */
  provide?(name: string, shape: readonly number[]): TensorInfo | undefined;
}

export interface MapEntry extends TensorInfo {
  readonly data: RawArray;
}

/** An in-memory TensorSource (tests, generators, LoRA deltas). */
export class MapSource implements TensorSource {
  readonly entries = new Map<string, MapEntry>();

  constructor(
    readonly label = 'memory',
    entries?: Iterable<[string, MapEntry]>,
  ) {
    if (entries) for (const [k, v] of entries) this.set(k, v.dtype, v.shape, v.data);
  }

  set(name: string, dtype: DType, shape: readonly number[], data: RawArray): this {
    if (data.length !== numel(shape)) {
      throw new Error(`${this.label}: ${name} has ${data.length} elements, shape ${shapeStr(shape)} needs ${numel(shape)}`);
    }
    this.entries.set(name, { dtype, shape: [...shape], data });
    return this;
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  info(name: string): TensorInfo | undefined {
    return this.entries.get(name);
  }

  read(name: string): RawArray {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.label}: no tensor named ${name}`);
    return e.data;
  }
}
