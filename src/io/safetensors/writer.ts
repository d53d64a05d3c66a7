// Writing one safetensors file: the header built in tensor order and padded to 8 bytes, then each
// tensor's raw bytes (read one tensor at a time from a TensorSource), written atomically.

import { DTYPES, type DType, type RawArray, SAFETENSORS_DTYPE, bytesOf, dtypeSize } from '../../tensor/dtype.js';
import type { TensorSource } from '../source.js';
import { SafetensorsError, describe, fmtShape } from './errors.js';
import { writeAll, writeAtomically } from './file-io.js';

export interface TensorToWrite {
  dtype: DType;
  shape: readonly number[];
  data: RawArray;
}

const ARRAY_FOR: Record<DType, string> = {
  f32: 'Float32Array',
  i32: 'Int32Array',
  bf16: 'Uint16Array',
  f16: 'Uint16Array',
  f8e4m3: 'Uint8Array',
};

function arrayMatches(dtype: DType, data: RawArray): boolean {
  switch (dtype) {
    case 'f32':
      return data instanceof Float32Array;
    case 'i32':
      return data instanceof Int32Array;
    case 'bf16':
    case 'f16':
      return data instanceof Uint16Array;
    case 'f8e4m3':
      return data instanceof Uint8Array;
  }
}

function isTensorSource(x: unknown): x is TensorSource {
  const s = x as Partial<TensorSource>;
  return typeof s === 'object' && s !== null && typeof s.read === 'function' && typeof s.info === 'function' && typeof s.keys === 'function';
}

interface Planned {
  name: string;
  dtype: DType;
  shape: readonly number[];
  bytes: number;
  get: () => RawArray;
}

function checkShape(file: string, name: string, shape: readonly number[]): number {
  if (!Array.isArray(shape)) throw new SafetensorsError(file, `cannot write "${name}": shape is not an array`);
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new SafetensorsError(file, `cannot write "${name}": shape ${fmtShape(shape)} must hold non-negative integers`);
    }
    n *= d;
  }
  return n;
}

export function checkMetadata(file: string, metadata: Record<string, unknown> | undefined): void {
  if (metadata === undefined) return;
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new SafetensorsError(file, `cannot write metadata "${k}": value is ${describe(v)}, not a string`);
  }
}

/**
 * Writes a safetensors file: tensors in the given order (a TensorSource: its keys() order, read one
 * tensor at a time), the header JSON padded with spaces to a multiple of 8 bytes so the data section
 * is 8-byte aligned. The file appears at `file` only once complete (temp file + rename).
 */
export function writeSafetensors(file: string, tensors: Iterable<readonly [string, TensorToWrite]> | TensorSource, metadata?: Record<string, string>): void {
  checkMetadata(file, metadata);
  const plan: Planned[] = [];
  const seen = new Set<string>();
  const add = (name: string, dtype: DType, shape: readonly number[], get: () => RawArray) => {
    if (name === '__metadata__') throw new SafetensorsError(file, 'cannot write a tensor named "__metadata__"');
    if (seen.has(name)) throw new SafetensorsError(file, `cannot write "${name}" twice`);
    if (!DTYPES.includes(dtype)) throw new SafetensorsError(file, `cannot write "${name}": unknown dtype ${JSON.stringify(dtype)}`);
    seen.add(name);
    const n = checkShape(file, name, shape);
    plan.push({ name, dtype, shape: [...shape], bytes: n * dtypeSize(dtype), get });
  };
  if (isTensorSource(tensors)) {
    const src = tensors;
    for (const name of src.keys()) {
      const info = src.info(name);
      if (!info) throw new SafetensorsError(file, `cannot write "${name}": ${src.label} lists it but has no info for it`);
      add(name, info.dtype, info.shape, () => src.read(name));
    }
  } else {
    for (const [name, t] of tensors) {
      const data = t.data;
      add(name, t.dtype, t.shape, () => data);
    }
  }

  // Header, built by hand so the key order is exactly the tensor order.
  const parts: string[] = [];
  if (metadata !== undefined) {
    parts.push(
      `"__metadata__":{${Object.entries(metadata)
        .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`)
        .join(',')}}`,
    );
  }
  let offset = 0;
  for (const t of plan) {
    const entry = { dtype: SAFETENSORS_DTYPE[t.dtype], shape: t.shape, data_offsets: [offset, offset + t.bytes] };
    parts.push(`${JSON.stringify(t.name)}:${JSON.stringify(entry)}`);
    offset += t.bytes;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  header.fill(0x20, 8 + json.byteLength);

  writeAtomically(file, (fd) => {
    writeAll(fd, header);
    for (const t of plan) {
      const data = t.get();
      if (!arrayMatches(t.dtype, data)) {
        throw new SafetensorsError(
          file,
          `cannot write "${t.name}": dtype ${t.dtype} needs a ${ARRAY_FOR[t.dtype]} (raw elements), got ${data.constructor.name}`,
        );
      }
      if (data.byteLength !== t.bytes) {
        throw new SafetensorsError(
          file,
          `cannot write "${t.name}": shape ${fmtShape(t.shape)} ${t.dtype} needs ${t.bytes} bytes, the data has ${data.byteLength}`,
        );
      }
      writeAll(fd, bytesOf(data));
    }
  });
}
