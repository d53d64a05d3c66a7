// Creation: tensors from host values, from raw encoded elements, and zeros.

import type { Backend } from '../backend.js';
import type { DType, RawArray } from '../dtype.js';
import { type Shape, StorageRef, Tensor, numel, shapeStr } from '../tensor.js';
import { OpError } from './guards.js';
import { cast } from './layout.js';

/** A tensor holding a copy of host values (float32 values are rounded to `dtype`). */
export function fromArray(be: Backend, shape: Shape, data: ArrayLike<number>, dtype: DType = 'f32'): Tensor {
  const n = numel(shape);
  if (data.length !== n) throw new OpError('fromArray', `${data.length} values for shape ${shapeStr(shape)} (needs ${n})`);
  if (dtype === 'i32') {
    const raw = data instanceof Int32Array ? data : Int32Array.from(data);
    return new Tensor(be, new StorageRef(be.upload('i32', raw)), [...shape], 'i32');
  }
  const f = data instanceof Float32Array ? data : Float32Array.from(data);
  const t = new Tensor(be, new StorageRef(be.upload('f32', f)), [...shape], 'f32');
  if (dtype === 'f32') return t;
  try {
    return cast(t, dtype);
  } finally {
    t.dispose();
  }
}

/** A tensor over raw elements already encoded in `dtype` (bf16 bit patterns etc.). */
export function fromRaw(be: Backend, shape: Shape, dtype: DType, raw: RawArray): Tensor {
  if (raw.length !== numel(shape)) {
    throw new OpError('fromRaw', `${raw.length} elements for shape ${shapeStr(shape)} (needs ${numel(shape)})`);
  }
  return new Tensor(be, new StorageRef(be.upload(dtype, raw)), [...shape], dtype);
}

export function zeros(be: Backend, shape: Shape, dtype: DType = 'f32'): Tensor {
  return new Tensor(be, new StorageRef(be.zeros(dtype, numel(shape))), [...shape], dtype);
}
