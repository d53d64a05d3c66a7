// Shared by the safetensors tests: a temporary folder, deterministic raw data, hand-built files and
// an assertion that an error names its file and problem.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsError } from '../../src/io/safetensors.js';
import { type DType, type RawArray, allocRaw, bytesOf } from '../../src/tensor/dtype.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fluxserve-st-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
export function tmpPath(name: string): string {
  return path.join(tmp, `${counter++}-${name}`);
}
export function tmpDir(name: string): string {
  const d = tmpPath(name);
  fs.mkdirSync(d);
  return d;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Deterministic raw data covering all bit patterns of the element size. */
export function fill(dtype: DType, shape: readonly number[], seed: number): RawArray {
  const a = allocRaw(dtype, numel(shape));
  const b = bytesOf(a);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < b.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return a;
}

/** A file built by hand: 8-byte header length (or an override), the header text, then data. */
export function rawFile(name: string, header: unknown, data: Uint8Array | number = 0, lenOverride?: bigint): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const hb = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(hb.length));
  const body = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data);
  const p = tmpPath(name);
  fs.writeFileSync(p, Buffer.concat([len, hb, body]));
  return p;
}

export function assertErr(fn: () => unknown, file: string, problem: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${String(e)}`);
    assert.ok(e.message.includes(path.basename(file)), `message "${e.message}" does not name ${file}`);
    assert.match(e.message, problem);
    return true;
  });
}
