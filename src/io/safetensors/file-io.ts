// Whole-range reads and writes on file descriptors, in chunks, and the atomic write (a temporary
// file in the same directory, fsync, rename) that every written file goes through.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SafetensorsError } from './errors.js';

/** Reads and writes go in pieces of at most this many bytes (a single read/write is capped near 2 GB). */
const IO_CHUNK_BYTES = 64 * 1024 * 1024;

/** Reads exactly `len` bytes at absolute `position` into a fresh, 8-byte-aligned buffer. */
export function readExact(fd: number, file: string, position: number, len: number, what: string): Uint8Array {
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

export function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.byteLength) {
    const n = Math.min(IO_CHUNK_BYTES, bytes.byteLength - off);
    off += fs.writeSync(fd, bytes, off, n);
  }
}

/** Writes `data` to `file` through a temporary file in the same directory and a rename. */
export function writeAtomically(file: string, body: (fd: number) => void): void {
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
