// Safetensors reading (validated up front, one tensor's byte range at a time), sharded checkpoints
// (`*.safetensors.index.json`), and atomic writing.
//
// File layout (https://github.com/huggingface/safetensors, README "Format"):
//   8 bytes   little-endian u64 N, the header length
//   N bytes   UTF-8 JSON object: { "__metadata__"?: {str: str}, name: {dtype, shape, data_offsets}, ... }
//   rest      the data section; data_offsets [begin, end) are relative to its start
//
// The whole header is checked when a file is opened (see docs/safetensors.md for the rules), so a
// truncated or inconsistent file fails at `open` with a message naming the file and the problem,
// never halfway through loading a model. Tensor bytes are read only when asked for, with
// positioned reads of exactly that tensor's range: nothing ever holds the whole file.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  DTYPES,
  type DType,
  type RawArray,
  SAFETENSORS_DTYPE,
  bytesOf,
  dtypeFromSafetensors,
  dtypeSize,
  rawFromBytes,
} from '../tensor/dtype.js';
import type { TensorInfo, TensorSource } from './source.js';

/** Every error of this module; the message always starts with the file it is about. */
export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

/** The reference implementation's cap on the header length (safetensors/src/tensor.rs MAX_HEADER_SIZE). */
export const DEFAULT_MAX_HEADER_BYTES = 100_000_000;

/** Reads and writes go in pieces of at most this many bytes (a single read/write is capped near 2 GB). */
const IO_CHUNK_BYTES = 64 * 1024 * 1024;

/**
 * Integer dtypes outside our DType set that are read losslessly widened to i32. `info()` reports
 * them as 'i32' and `read()` returns an Int32Array; `storedDtype()`, `byteRange()` and `readBytes()`
 * describe the bytes as stored. (The fixture's `sample.uint8` is U8.)
 */
const WIDENED_TO_I32: Record<string, { size: number; view: (b: Uint8Array) => ArrayLike<number> }> = {
  U8: { size: 1, view: (b) => b },
  BOOL: { size: 1, view: (b) => b },
  I8: { size: 1, view: (b) => new Int8Array(b.buffer, b.byteOffset, b.byteLength) },
  U16: { size: 2, view: (b) => new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2) },
  I16: { size: 2, view: (b) => new Int16Array(b.buffer, b.byteOffset, b.byteLength / 2) },
};

const SUPPORTED_LIST =
  `supported: ${DTYPES.map((d) => SAFETENSORS_DTYPE[d]).join(', ')}; ` +
  `${Object.keys(WIDENED_TO_I32).join(', ')} are read widened to I32`;

interface Entry {
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

function fmtShape(shape: readonly unknown[]): string {
  return `[${shape.map((d) => JSON.stringify(d)).join(', ')}]`;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return `an array`;
  if (v === null) return 'null';
  return typeof v;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads exactly `len` bytes at absolute `position` into a fresh, 8-byte-aligned buffer. */
function readExact(fd: number, file: string, position: number, len: number, what: string): Uint8Array {
  const buf = new Uint8Array(new ArrayBuffer(len));
  let off = 0;
  while (off < len) {
    const want = Math.min(IO_CHUNK_BYTES, len - off);
    const got = fs.readSync(fd, buf, off, want, position + off);
    if (got === 0) {
      throw new SafetensorsError(
        file,
        `unexpected end of file reading ${what}: got ${off} of ${len} bytes at offset ${position} (was the file truncated after it was opened?)`,
      );
    }
    off += got;
  }
  return buf;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.byteLength) {
    const n = Math.min(IO_CHUNK_BYTES, bytes.byteLength - off);
    off += fs.writeSync(fd, bytes, off, n);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading one file

export interface OpenOptions {
  /** Reject headers longer than this many bytes (default 100 MB, as the reference implementation). */
  maxHeaderBytes?: number;
}

export class SafetensorsFile implements TensorSource {
  /** The `__metadata__` string map ({} when the file has none). */
  readonly metadata: Record<string, string>;
  /** The header length N; the data section starts at absolute offset 8 + N. */
  readonly headerBytes: number;
  readonly dataStart: number;
  readonly fileBytes: number;
  private readonly entries: Map<string, Entry>;
  private readonly order: string[];
  private fd: number;

  private constructor(
    readonly label: string,
    fd: number,
    fileBytes: number,
    headerBytes: number,
    metadata: Record<string, string>,
    entries: Map<string, Entry>,
  ) {
    this.fd = fd;
    this.fileBytes = fileBytes;
    this.headerBytes = headerBytes;
    this.dataStart = 8 + headerBytes;
    this.metadata = metadata;
    this.entries = entries;
    // Keys in file order (by offset; header order among equal offsets, i.e. empty tensors).
    const headerOrder = [...entries.keys()];
    const rank = new Map(headerOrder.map((k, i) => [k, i]));
    this.order = headerOrder.sort((a, b) => {
      const ea = entries.get(a)!;
      const eb = entries.get(b)!;
      return ea.begin - eb.begin || ea.end - eb.end || rank.get(a)! - rank.get(b)!;
    });
  }

  /** Opens and fully validates the header; the fd stays open until `close()`. */
  static open(file: string, opts: OpenOptions = {}): SafetensorsFile {
    if (os.endianness() !== 'LE') throw new SafetensorsError(file, 'reading safetensors needs a little-endian machine');
    const maxHeader = opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new SafetensorsError(file, `cannot open: ${(e as Error).message}`);
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new SafetensorsError(file, 'not a regular file');
      const size = st.size;
      if (size < 8) {
        throw new SafetensorsError(file, `file of ${size} bytes is shorter than the 8-byte header length`);
      }
      const lenBytes = readExact(fd, file, 0, 8, 'the header length');
      const n64 = new DataView(lenBytes.buffer).getBigUint64(0, true);
      if (n64 > BigInt(maxHeader)) {
        throw new SafetensorsError(file, `header length ${n64} bytes exceeds the limit of ${maxHeader} bytes`);
      }
      const n = Number(n64);
      if (8 + n > size) {
        throw new SafetensorsError(file, `header of ${n} bytes does not fit in a file of ${size} bytes`);
      }
      const headerRaw = readExact(fd, file, 8, n, 'the header');
      const { metadata, entries } = parseHeader(file, headerRaw, size - 8 - n);
      return new SafetensorsFile(file, fd, size, n, metadata, entries);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  keys(): string[] {
    return [...this.order];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo | undefined {
    return this.entries.get(name)?.info;
  }

  /** The dtype string as stored in the file ('U8' for a tensor that `info` reports as 'i32'). */
  storedDtype(name: string): string {
    return this.entry(name).stored;
  }

  /** Absolute file offsets [start, end) of one tensor's bytes. */
  byteRange(name: string): { start: number; end: number } {
    const e = this.entry(name);
    return { start: this.dataStart + e.begin, end: this.dataStart + e.end };
  }

  /** Exactly the stored bytes of one tensor, in a fresh buffer. */
  readBytes(name: string): Uint8Array {
    const e = this.entry(name);
    if (this.fd < 0) throw new SafetensorsError(this.label, `cannot read "${name}": the file is closed`);
    return readExact(this.fd, this.label, this.dataStart + e.begin, e.end - e.begin, `tensor "${name}"`);
  }

  read(name: string): RawArray {
    const e = this.entry(name);
    const bytes = this.readBytes(name);
    const w = WIDENED_TO_I32[e.stored];
    if (w) {
      const src = w.view(bytes);
      const out = new Int32Array(src.length);
      out.set(src);
      return out;
    }
    return rawFromBytes(e.dtype, bytes);
  }

  close(): void {
    if (this.fd >= 0) {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new SafetensorsError(this.label, `no tensor named "${name}"`);
    return e;
  }
}

function parseHeader(
  file: string,
  raw: Uint8Array,
  dataBytes: number,
): { metadata: Record<string, string>; entries: Map<string, Entry> } {
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
    throw bad(
      `dtype ${stored} shape ${fmtShape(shape)} needs ${expected} bytes but data_offsets [${b}, ${e}) hold ${e - b} bytes`,
    );
  }
  if (e > dataBytes) {
    throw new SafetensorsError(
      file,
      `tensor "${name}" needs bytes [${b}, ${e}) of the data section but the file has only ${dataBytes} (truncated file?)`,
    );
  }
  const dims = Object.freeze([...(shape as number[])]);
  return { name, dtype, stored, shape: dims, begin: b, end: e, info: Object.freeze({ dtype, shape: dims }) };
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints: <base>.safetensors.index.json + shard files

/**
 * Several open safetensors files read as one TensorSource: each tensor name belongs to exactly one
 * file (a name in two files is an error naming both), keys in file order.
 */
abstract class MultiFileSafetensors implements TensorSource {
  private readonly where = new Map<string, SafetensorsFile>();
  private readonly order: string[] = [];

  constructor(
    readonly label: string,
    readonly files: readonly SafetensorsFile[],
  ) {
    for (const f of files) {
      for (const k of f.keys()) {
        const prev = this.where.get(k);
        if (prev) throw new SafetensorsError(label, `tensor "${k}" is in both ${prev.label} and ${f.label}`);
        this.where.set(k, f);
        this.order.push(k);
      }
    }
  }

  keys(): string[] {
    return [...this.order];
  }

  info(name: string): TensorInfo | undefined {
    return this.where.get(name)?.info(name);
  }

  read(name: string): RawArray {
    return this.fileOf(name).read(name);
  }

  /** The file holding a tensor (for byteRange/readBytes/storedDtype). */
  fileOf(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new SafetensorsError(this.label, `no tensor named "${name}"`);
    return f;
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

export class ShardedSafetensors extends MultiFileSafetensors {
  private constructor(
    label: string,
    /** The index's "metadata" object as written (`total_size` is a number in Hugging Face indexes). */
    readonly metadata: Record<string, unknown>,
    /** Shard file name (as written in weight_map) -> open file, in file-name order. */
    readonly shards: ReadonlyMap<string, SafetensorsFile>,
  ) {
    // The index check in open() already guarantees each tensor is in exactly one shard.
    super(label, [...shards.values()]);
  }

  /**
   * Reads the index and opens (and validates) every shard it names. Every weight_map key must be
   * in its shard, and every tensor of a shard must be listed in weight_map for that shard.
   */
  static open(indexPath: string, opts: OpenOptions = {}): ShardedSafetensors {
    let text: string;
    try {
      text = fs.readFileSync(indexPath, 'utf8');
    } catch (e) {
      throw new SafetensorsError(indexPath, `cannot read index: ${(e as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new SafetensorsError(indexPath, `index is not valid JSON (${(e as Error).message})`);
    }
    if (!isPlainObject(json)) throw new SafetensorsError(indexPath, `index is JSON ${describe(json)}, not an object`);
    const meta = json['metadata'] ?? {};
    if (!isPlainObject(meta)) throw new SafetensorsError(indexPath, `index "metadata" is ${describe(meta)}, not an object`);
    const map = json['weight_map'];
    if (!isPlainObject(map)) throw new SafetensorsError(indexPath, `index "weight_map" is ${describe(map)}, not an object`);

    const dir = path.dirname(indexPath);
    const byShard = new Map<string, string[]>();
    for (const [key, shard] of Object.entries(map)) {
      if (typeof shard !== 'string' || shard === '') {
        throw new SafetensorsError(indexPath, `weight_map entry "${key}" is ${JSON.stringify(shard)}, not a file name`);
      }
      let list = byShard.get(shard);
      if (!list) byShard.set(shard, (list = []));
      list.push(key);
    }

    const shards = new Map<string, SafetensorsFile>();
    try {
      for (const shard of [...byShard.keys()].sort()) {
        const keys = byShard.get(shard)!;
        const p = path.resolve(dir, shard);
        const rel = path.relative(path.resolve(dir), p);
        if (path.isAbsolute(shard) || rel.startsWith('..') || path.isAbsolute(rel)) {
          throw new SafetensorsError(indexPath, `shard "${shard}" is outside the index's directory`);
        }
        if (!fs.existsSync(p)) {
          throw new SafetensorsError(
            indexPath,
            `shard "${shard}" (holding "${keys[0]}" and ${keys.length - 1} more tensors) does not exist at ${p}`,
          );
        }
        const f = SafetensorsFile.open(p, opts);
        shards.set(shard, f);
        for (const k of keys) {
          if (!f.has(k)) {
            throw new SafetensorsError(indexPath, `weight_map puts "${k}" in shard "${shard}" but that shard has no such tensor`);
          }
        }
        for (const k of f.keys()) {
          const mapped = Object.hasOwn(map, k) ? map[k] : undefined;
          if (mapped === undefined) {
            throw new SafetensorsError(indexPath, `shard "${shard}" holds tensor "${k}" that weight_map does not list`);
          }
          if (mapped !== shard) {
            throw new SafetensorsError(
              indexPath,
              `shard "${shard}" holds tensor "${k}" but weight_map assigns it to shard ${JSON.stringify(mapped)}`,
            );
          }
        }
      }
    } catch (e) {
      for (const f of shards.values()) f.close();
      throw e;
    }
    return new ShardedSafetensors(indexPath, meta, shards);
  }
}

/** Several safetensors files read as one (a directory without an index); keys must be unique. */
export class MergedSafetensors extends MultiFileSafetensors {}

/**
 * Opens a checkpoint given as a `.safetensors` file, a `*.safetensors.index.json`, or a directory
 * (its single `*.safetensors.index.json`, else its `*.safetensors` files, merged when several).
 */
export function openSafetensors(p: string, opts: OpenOptions = {}): TensorSource & { close(): void } {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e) {
    throw new SafetensorsError(p, `cannot open: ${(e as Error).message}`);
  }
  if (!st.isDirectory()) {
    return p.endsWith('.json') ? ShardedSafetensors.open(p, opts) : SafetensorsFile.open(p, opts);
  }
  const names = fs.readdirSync(p).filter((n) => !n.startsWith('.')).sort();
  const indexes = names.filter((n) => n.endsWith('.safetensors.index.json'));
  if (indexes.length > 1) {
    throw new SafetensorsError(p, `directory has several indexes (${indexes.join(', ')}); name the one to use`);
  }
  if (indexes.length === 1) return ShardedSafetensors.open(path.join(p, indexes[0]!), opts);
  const files = names.filter((n) => n.endsWith('.safetensors'));
  if (files.length === 0) throw new SafetensorsError(p, 'directory has no *.safetensors files and no *.safetensors.index.json');
  if (files.length === 1) return SafetensorsFile.open(path.join(p, files[0]!), opts);
  const opened: SafetensorsFile[] = [];
  try {
    for (const n of files) opened.push(SafetensorsFile.open(path.join(p, n), opts));
    return new MergedSafetensors(p, opened);
  } catch (e) {
    for (const f of opened) f.close();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

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

/** Writes `data` to `file` through a temporary file in the same directory and a rename. */
function writeAtomically(file: string, body: (fd: number) => void): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
  } catch (e) {
    throw new SafetensorsError(file, `cannot create temporary file ${tmp}: ${(e as Error).message}`);
  }
  try {
    body(fd);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = -1;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd >= 0) fs.closeSync(fd);
    try {
      fs.unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw e instanceof SafetensorsError ? e : new SafetensorsError(file, `write failed: ${(e as Error).message}`);
  }
  try {
    const dfd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    // directory fsync is best effort (not supported everywhere)
  }
}

function checkMetadata(file: string, metadata: Record<string, unknown> | undefined): void {
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
export function writeSafetensors(
  file: string,
  tensors: Iterable<readonly [string, TensorToWrite]> | TensorSource,
  metadata?: Record<string, string>,
): void {
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
    parts.push(`"__metadata__":{${Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
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

function pad5(n: number): string {
  return String(n).padStart(5, '0');
}

/**
 * Writes `source` as Hugging Face style shards: `<baseName>-00001-of-0000N.safetensors`, ... and
 * `<baseName>.safetensors.index.json` ({"metadata": {"total_size": bytes, ...metadata},
 * "weight_map": {tensor: shard file}}). Tensors keep the source's key order; a shard is closed when
 * the next tensor would take it past `maxShardBytes` (a larger tensor gets a shard of its own).
 * Each file is written atomically and the index last. Returns the shard paths, then the index path.
 */
export function writeShardedSafetensors(
  dir: string,
  baseName: string,
  source: TensorSource,
  maxShardBytes: number,
  metadata?: Record<string, string>,
): string[] {
  const indexPath = path.join(dir, `${baseName}.safetensors.index.json`);
  if (!(maxShardBytes > 0)) throw new SafetensorsError(indexPath, `maxShardBytes must be positive, got ${maxShardBytes}`);
  checkMetadata(indexPath, metadata);
  fs.mkdirSync(dir, { recursive: true });

  const groups: string[][] = [];
  let cur: string[] = [];
  let curBytes = 0;
  let total = 0;
  for (const name of source.keys()) {
    const info = source.info(name);
    if (!info) throw new SafetensorsError(indexPath, `cannot write "${name}": ${source.label} lists it but has no info for it`);
    let n = 1;
    for (const d of info.shape) n *= d;
    const bytes = n * dtypeSize(info.dtype);
    if (cur.length > 0 && curBytes + bytes > maxShardBytes) {
      groups.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(name);
    curBytes += bytes;
    total += bytes;
  }
  if (cur.length > 0 || groups.length === 0) groups.push(cur);

  const written: string[] = [];
  const weightMap: [string, string][] = [];
  groups.forEach((keys, i) => {
    const shardName = `${baseName}-${pad5(i + 1)}-of-${pad5(groups.length)}.safetensors`;
    const shardPath = path.join(dir, shardName);
    const view: TensorSource = {
      label: source.label,
      keys: () => keys,
      info: (k) => source.info(k),
      read: (k) => source.read(k),
    };
    writeSafetensors(shardPath, view, metadata);
    written.push(shardPath);
    for (const k of keys) weightMap.push([k, shardName]);
  });

  const metaJson = [`"total_size": ${total}`, ...Object.entries(metadata ?? {})
      .filter(([k]) => k !== 'total_size')
      .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)];
  const mapJson = weightMap.map(([k, f]) => `    ${JSON.stringify(k)}: ${JSON.stringify(f)}`);
  const indexText = `{\n  "metadata": {\n    ${metaJson.join(',\n    ')}\n  },\n  "weight_map": {\n${mapJson.join(',\n')}\n  }\n}\n`;
  writeAtomically(indexPath, (fd) => writeAll(fd, new TextEncoder().encode(indexText)));
  written.push(indexPath);
  return written;
}
