// Test-only reader for the BFL reference fixture (shared/fixtures/bfl-tiny-a/cases.safetensors):
// a minimal safetensors parser (8-byte little-endian header length, JSON header, raw data), kept
// here so these tests do not depend on src/io. Reads the copy of the fixture in test/fixtures/.
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';

export const FIXTURE_DIR = fileURLToPath(new URL('../../../test/fixtures/bfl-tiny-a', import.meta.url));
const CASES = `${FIXTURE_DIR}/cases.safetensors`;

if (!fs.existsSync(CASES)) throw new Error(`the BFL fixture is missing at ${CASES} (copy ../shared/fixtures/bfl-tiny-a there)`);

export interface Entry {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

let cache: Map<string, Entry> | undefined;

export function readCases(): Map<string, Entry> {
  if (cache) return cache;
  const buf = fs.readFileSync(CASES);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLen;
  const m = new Map<string, Entry>();
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = v.data_offsets;
    // copy so typed views are aligned
    m.set(name, { dtype: v.dtype, shape: v.shape, bytes: new Uint8Array(buf.subarray(base + a, base + b)) });
  }
  cache = m;
  return m;
}

export function entry(name: string): Entry {
  const e = readCases().get(name);
  if (!e) throw new Error(`fixture tensor ${name} not found`);
  return e;
}

export function f32(name: string): Float32Array {
  const e = entry(name);
  if (e.dtype !== 'F32') throw new Error(`${name} is ${e.dtype}, not F32`);
  return new Float32Array(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength / 4);
}

/** BF16 tensors as their raw 16-bit patterns. */
export function bf16Bits(name: string): Uint16Array {
  const e = entry(name);
  if (e.dtype !== 'BF16') throw new Error(`${name} is ${e.dtype}, not BF16`);
  return new Uint16Array(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength / 2);
}
