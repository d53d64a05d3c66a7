// The prefix builder that model constructors ask for their weights through (candle's VarBuilder,
// candle-nn/src/var_builder.rs): `w.pp('double_blocks').pp(0).get('img_mod.lin.weight',
// [6 * D, D])`. Constructors are therefore the manifest of a checkpoint. Missing and mis-shaped keys
// are collected and reported together by `finish()`, which also rejects keys nobody asked for.

import type { TensorSource } from '../io/source.js';
import type { Backend } from '../tensor/backend.js';
import { type DType, isFloat } from '../tensor/dtype.js';
import { cast, fromRaw } from '../tensor/ops.js';
import { type Shape, StorageRef, Tensor, shapeStr } from '../tensor/tensor.js';

export class CheckpointError extends Error {
  constructor(
    message: string,
    readonly missing: string[] = [],
    readonly unexpected: string[] = [],
    readonly misshaped: string[] = [],
  ) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export interface LoadOptions {
  /** Float weights are converted to this dtype (fp8 weights are kept as fp8 when `keepFp8`). */
  dtype?: DType;
  keepFp8?: boolean;
  /** Keys allowed to be present and unused (e.g. a checkpoint's extra buffers). */
  ignoreUnused?: (key: string) => boolean;
}

/** Shared state of one load: which keys were requested, what went wrong. */
class LoadState {
  readonly used = new Set<string>();
  readonly missing: string[] = [];
  readonly misshaped: string[] = [];
  readonly loaded: Tensor[] = [];
  constructor(
    readonly source: TensorSource,
    readonly backend: Backend,
    readonly opts: LoadOptions,
  ) {}
}

export class Weights {
  private constructor(
    private readonly state: LoadState,
    readonly prefix: string,
  ) {}

  static from(source: TensorSource, backend: Backend, opts: LoadOptions = {}): Weights {
    return new Weights(new LoadState(source, backend, opts), '');
  }

  get backend(): Backend {
    return this.state.backend;
  }

  /** A builder for a sub-module: `pp('double_blocks').pp(3)` -> prefix `double_blocks.3.`. */
  pp(name: string | number): Weights {
    return new Weights(this.state, `${this.prefix}${name}.`);
  }

  has(name: string): boolean {
    return this.state.source.info(this.prefix + name) !== undefined;
  }

  /** The checkpoint's dtype of `name` (undefined when absent). */
  dtypeOf(name: string): DType | undefined {
    return this.state.source.info(this.prefix + name)?.dtype;
  }

  /** The tensor `prefix + name`, which must have exactly `shape`. */
  get(name: string, shape: Shape): Tensor {
    const t = this.load(name, shape);
    if (t) return t;
    // Missing: recorded; a placeholder is returned so that construction goes on and finish()
    // can report every missing key at once. It holds no memory and must never be computed on.
    return new Tensor(this.state.backend, new StorageRef(this.state.backend.zeros('f32', 0)), shape, 'f32');
  }

  /** Like get(), but absent keys are fine (undefined). */
  getOptional(name: string, shape: Shape): Tensor | undefined {
    if (!this.has(name)) return undefined;
    return this.load(name, shape);
  }

  private load(name: string, shape: Shape): Tensor | undefined {
    const s = this.state;
    const key = this.prefix + name;
    const info = s.source.info(key) ?? s.source.provide?.(key, shape);
    if (!info) {
      s.missing.push(`${key} ${shapeStr(shape)}`);
      return undefined;
    }
    s.used.add(key);
    if (shapeStr(info.shape) !== shapeStr(shape)) {
      s.misshaped.push(`${key}: expected ${shapeStr(shape)}, found ${shapeStr(info.shape)}`);
      return new Tensor(s.backend, new StorageRef(s.backend.zeros('f32', 0)), shape, 'f32');
    }
    const raw = s.source.read(key);
    let t = fromRaw(s.backend, shape, info.dtype, raw);
    const want = s.opts.dtype;
    const keep = info.dtype === 'f8e4m3' && s.opts.keepFp8;
    if (want && isFloat(info.dtype) && info.dtype !== want && !keep) {
      const c = cast(t, want);
      t.dispose();
      t = c;
    }
    s.loaded.push(t);
    return t;
  }

  /** Throws a CheckpointError naming every missing, mis-shaped and unexpected key. */
  finish(): void {
    const s = this.state;
    const unexpected = s.source
      .keys()
      .filter((k) => !s.used.has(k) && !(s.opts.ignoreUnused?.(k) ?? false))
      .sort();
    if (s.missing.length === 0 && s.misshaped.length === 0 && unexpected.length === 0) return;
    const parts: string[] = [];
    const list = (xs: string[]) => xs.slice(0, 20).join('; ') + (xs.length > 20 ? `; ... (${xs.length} in all)` : '');
    if (s.missing.length) parts.push(`missing keys: ${list(s.missing)}`);
    if (s.misshaped.length) parts.push(`mis-shaped keys: ${list(s.misshaped)}`);
    if (unexpected.length) parts.push(`unexpected keys: ${list(unexpected)}`);
    for (const t of s.loaded) t.dispose();
    throw new CheckpointError(`${s.source.label}: ${parts.join('. ')}`, s.missing, unexpected, s.misshaped);
  }

  /** Every tensor loaded so far (the model owns them; dispose them to unload). */
  get tensors(): readonly Tensor[] {
    return this.state.loaded;
  }
}
