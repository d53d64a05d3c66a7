// The header of a safetensors file, checked whole: UTF-8 JSON, `__metadata__` a map of strings,
// each entry's dtype, shape and data_offsets consistent with each other and with the data section,
// and no two tensors' bytes overlapping (docs/safetensors.md lists the rules).

import { DTYPES, type DType, SAFETENSORS_DTYPE, dtypeFromSafetensors, dtypeSize } from '../../tensor/dtype.js';
import type { TensorInfo } from '../source.js';
import { SafetensorsError, describe, fmtShape, isPlainObject } from './errors.js';

/** The reference implementation's cap on the header length (safetensors/src/tensor.rs MAX_HEADER_SIZE). */
export const DEFAULT_MAX_HEADER_BYTES = 100_000_000;

/**
 * Integer dtypes outside our DType set that are read losslessly widened to i32. `info()` reports
 * them as 'i32' and `read()` returns an Int32Array; `storedDtype()`, `byteRange()` and `readBytes()`
 * describe the bytes as stored. (The fixture's `sample.uint8` is U8.)
 */
export const WIDENED_TO_I32: Record<string, { size: number; view: (b: Uint8Array) => ArrayLike<number> }> = {
  U8: { size: 1, view: (b) => b },
  BOOL: { size: 1, view: (b) => b },
  I8: { size: 1, view: (b) => new Int8Array(b.buffer, b.byteOffset, b.byteLength) },
  U16: { size: 2, view: (b) => new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2) },
  I16: { size: 2, view: (b) => new Int16Array(b.buffer, b.byteOffset, b.byteLength / 2) },
};

const SUPPORTED_LIST =
  `supported: ${DTYPES.map((d) => SAFETENSORS_DTYPE[d]).join(', ')}; ` + `${Object.keys(WIDENED_TO_I32).join(', ')} are read widened to I32`;

export interface Entry {
  readonly name: string;
  readonly dtype: DType;
  /** The dtype string in the file (differs from SAFETENSORS_DTYPE[dtype] for widened integers). */
  readonly stored: string;
  readonly shape: readonly number[];
  /** Offsets relative to the data section. */
  readonly begin: number;
  readonly end: number;
  readonly info: TensorInfo;
}

export function parseHeader(file: string, raw: Uint8Array, dataBytes: number): { metadata: Record<string, string>; entries: Map<string, Entry> } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
  } catch {
    throw new SafetensorsError(file, `header of ${raw.byteLength} bytes is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json)) throw new SafetensorsError(file, `header is JSON ${describe(json)}, not an object`);

  let metadata: Record<string, string> = {};
  const entries = new Map<string, Entry>();
  for (const [name, v] of Object.entries(json)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(file, v);
      continue;
    }
    entries.set(name, parseEntry(file, name, v, dataBytes));
  }

  // Overlaps: sort the non-empty ranges by start; each must begin at or after the furthest end so far.
  const ranges = [...entries.values()].filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin || a.end - b.end);
  let furthest: Entry | undefined;
  for (const e of ranges) {
    if (furthest && e.begin < furthest.end) {
      throw new SafetensorsError(
        file,
        `tensors "${furthest.name}" [${furthest.begin}, ${furthest.end}) and "${e.name}" [${e.begin}, ${e.end}) have overlapping data_offsets`,
      );
    }
    if (!furthest || e.end > furthest.end) furthest = e;
  }
  return { metadata, entries };
}

function parseMetadata(file: string, v: unknown): Record<string, string> {
  if (v === null) return {};
  if (!isPlainObject(v)) throw new SafetensorsError(file, `__metadata__ is ${describe(v)}, not an object of strings`);
  const out: Record<string, string> = {};
  for (const [k, s] of Object.entries(v)) {
    if (typeof s !== 'string') {
      throw new SafetensorsError(file, `__metadata__ value for "${k}" is ${describe(s)}, not a string`);
    }
    Object.defineProperty(out, k, { value: s, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function parseEntry(file: string, name: string, v: unknown, dataBytes: number): Entry {
  const bad = (problem: string) => new SafetensorsError(file, `tensor "${name}": ${problem}`);
  if (!isPlainObject(v)) throw bad(`header entry is ${describe(v)}, not an object`);

  const stored = v['dtype'];
  if (typeof stored !== 'string') throw bad(`dtype is ${describe(stored)}, not a string`);
  const widened = WIDENED_TO_I32[stored];
  const dtype = widened ? 'i32' : dtypeFromSafetensors(stored);
  if (!dtype) throw bad(`unsupported dtype ${JSON.stringify(stored)} (${SUPPORTED_LIST})`);
  const elemBytes = widened ? widened.size : dtypeSize(dtype);

  const shape = v['shape'];
  if (!Array.isArray(shape)) throw bad(`shape is ${describe(shape)}, not an array`);
  let numel = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw bad(`shape ${fmtShape(shape)} must hold non-negative integers`);
    }
    numel *= d;
  }
  if (!Number.isSafeInteger(numel * elemBytes)) throw bad(`shape ${fmtShape(shape)} is too large`);

  const offs = v['data_offsets'];
  if (!Array.isArray(offs) || offs.length !== 2) {
    throw bad(`data_offsets must be an array [begin, end], got ${JSON.stringify(offs) ?? describe(offs)}`);
  }
  const [begin, end] = offs as unknown[];
  for (const o of [begin, end]) {
    if (typeof o !== 'number' || !Number.isSafeInteger(o) || o < 0) {
      throw bad(`data_offsets ${fmtShape(offs)} must be non-negative integers`);
    }
  }
  const b = begin as number;
  const e = end as number;
  if (b > e) throw bad(`data_offsets ${fmtShape(offs)} are out of order (begin > end)`);

  const expected = numel * elemBytes;
  if (e - b !== expected) {
    throw bad(`dtype ${stored} shape ${fmtShape(shape)} needs ${expected} bytes but data_offsets [${b}, ${e}) hold ${e - b} bytes`);
  }
  if (e > dataBytes) {
    throw new SafetensorsError(file, `tensor "${name}" needs bytes [${b}, ${e}) of the data section but the file has only ${dataBytes} (truncated file?)`);
  }
  const dims = Object.freeze([...(shape as number[])]);
  return { name, dtype, stored, shape: dims, begin: b, end: e, info: Object.freeze({ dtype, shape: dims }) };
}
