// One safetensors file as a TensorSource: the header validated at open, then positioned reads of
// exactly one tensor's byte range at a time.

import * as fs from 'node:fs';
import * as os from 'node:os';
import { type RawArray, rawFromBytes } from '../../tensor/dtype.js';
import type { TensorInfo, TensorSource } from '../source.js';
import { SafetensorsError } from './errors.js';
import { readExact } from './file-io.js';
import { DEFAULT_MAX_HEADER_BYTES, type Entry, WIDENED_TO_I32, parseHeader } from './header.js';

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
