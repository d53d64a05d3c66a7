// Tensor: a shape, a dtype and a reference to backend storage. Tensors are always contiguous
// (row-major); `reshape` shares storage, every other op writes a new tensor.
//
// Memory is owned explicitly: `dispose()` releases the tensor's reference to its storage, and the
// storage is freed when its last tensor is disposed. Scopes (scope.ts) dispose in bulk. Nothing
// relies on garbage collection or finalizers.

import type { Backend, Storage } from './backend.js';
import { type DType, type RawArray, rawToF32 } from './dtype.js';
import { trackInCurrentScope } from './scope.js';

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/** Shared storage with a reference count (views made by reshape share it). */
export class StorageRef {
  refs = 1;
  constructor(readonly storage: Storage) {}
}

let nextId = 1;

export class Tensor implements Disposable {
  readonly id = nextId++;
  private ref: StorageRef | null;

  constructor(
    readonly backend: Backend,
    ref: StorageRef,
    readonly shape: Shape,
    readonly dtype: DType,
  ) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`Tensor: invalid shape ${shapeStr(shape)}`);
    }
    this.ref = ref;
    trackInCurrentScope(this);
  }

  get size(): number {
    return numel(this.shape);
  }

  get rank(): number {
    return this.shape.length;
  }

  get disposed(): boolean {
    return this.ref === null;
  }

  /** The backend storage; throws if the tensor was disposed. */
  get storage(): Storage {
    if (this.ref === null) throw new Error(`Tensor#${this.id} ${shapeStr(this.shape)} ${this.dtype} used after dispose`);
    return this.ref.storage;
  }

  /** A new tensor over the same storage (reshape). */
  view(shape: Shape): Tensor {
    if (this.ref === null) throw new Error(`Tensor#${this.id} used after dispose`);
    this.ref.refs++;
    return new Tensor(this.backend, this.ref, shape, this.dtype);
  }

  dispose(): void {
    const r = this.ref;
    if (r === null) return;
    this.ref = null;
    if (--r.refs === 0) this.backend.free(r.storage);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Raw elements copied to the host (bf16/f16 as bit patterns). */
  toRaw(): RawArray {
    return this.backend.read(this.storage, this.dtype, this.size);
  }

  /** Values decoded to float32 on the host. */
  toFloat32(): Float32Array {
    const raw = this.toRaw();
    return this.dtype === 'f32' ? (raw as Float32Array) : rawToF32(this.dtype, raw);
  }

  toString(): string {
    return `Tensor(${shapeStr(this.shape)}, ${this.dtype}, ${this.backend.name})`;
  }
}
