// A small tar reader: finds the `*.safetensors` members of an uncompressed tar file and copies one
// out, with positioned reads (the archive is never held in memory).
//
// Why: Replicate fine-tune weights (`_weights`, `replicate.delivery/.../trained_model.tar`) are a
// plain tar made by `tar -cvf /tmp/trained_model.tar output/flux_train_replicate` in
// replicate/flux-fine-tuner train.py: `output/flux_train_replicate/lora.safetensors` next to
// `config.yaml` and `captions/*.txt`. cog-flux's data: URIs are tars too (weights.py, any
// compression; gzip is undone before we get here).
//
// Format (POSIX ustar, GNU and pax extensions as GNU tar writes them): 512-byte header blocks,
// name[0..100), size[124..136) octal (or GNU base-256 when the top bit of the first byte is set),
// typeflag[156], magic "ustar" at 257, prefix[345..500) joined with '/' for ustar names. Type 'L'
// (GNU long name) and 'x' (pax, `path=` record) set the name of the next member. Data is padded to
// 512 bytes; the archive ends with zero blocks.

import * as fs from 'node:fs';

export interface TarMember {
  readonly name: string;
  /** Absolute offset of the member's data in the archive. */
  readonly offset: number;
  readonly size: number;
}

function cstr(b: Buffer, start: number, len: number): string {
  const end = b.indexOf(0, start);
  return b.toString('utf8', start, end < 0 || end > start + len ? start + len : end);
}

function tarNumber(b: Buffer, start: number, len: number, file: string): number {
  if (b[start]! & 0x80) {
    // GNU base-256: big-endian, the top bit of the first byte is the marker.
    let v = b[start]! & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + b[start + i]!;
    return v;
  }
  const s = cstr(b, start, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new Error(`${file}: bad number ${JSON.stringify(s)} in a tar header`);
  return parseInt(s, 8);
}

/** True when the first 512 bytes look like a tar header (ustar magic, or a valid v7 checksum). */
export function looksLikeTar(head: Buffer): boolean {
  if (head.length < 512) return false;
  if (head.toString('latin1', 257, 262) === 'ustar') return true;
  const stored = cstr(head, 148, 8).trim();
  if (!/^[0-7]+$/.test(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : head[i]!;
  return sum === parseInt(stored, 8);
}

/** Lists the regular-file members of an uncompressed tar archive. */
export function listTar(file: string): TarMember[] {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const header = Buffer.alloc(512);
    const out: TarMember[] = [];
    let pos = 0;
    let nextName: string | undefined;
    while (pos + 512 <= size) {
      if (fs.readSync(fd, header, 0, 512, pos) !== 512) break;
      if (header.every((x) => x === 0)) break;
      if (!looksLikeTar(header)) throw new Error(`${file}: not a tar archive (bad header at byte ${pos})`);
      const type = String.fromCharCode(header[156]!);
      const len = tarNumber(header, 124, 12, file);
      const dataAt = pos + 512;
      if (dataAt + len > size) throw new Error(`${file}: tar member at byte ${pos} runs past the end of the archive`);
      let name = cstr(header, 0, 100);
      if (header.toString('latin1', 257, 262) === 'ustar') {
        const prefix = cstr(header, 345, 155);
        if (prefix) name = `${prefix}/${name}`;
      }
      if (type === 'L' || type === 'x') {
        const body = Buffer.alloc(len);
        fs.readSync(fd, body, 0, len, dataAt);
        if (type === 'L') nextName = cstr(body, 0, len);
        else {
          // pax records: "<len> key=value\n"
          for (const rec of body.toString('utf8').split('\n')) {
            const m = /^\d+ path=(.*)$/.exec(rec);
            if (m) nextName = m[1];
          }
        }
      } else {
        if (type === '0' || type === '\0' || type === '7') {
          out.push({ name: nextName ?? name, offset: dataAt, size: len });
        }
        nextName = undefined;
      }
      pos = dataAt + Math.ceil(len / 512) * 512;
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

/** The `*.safetensors` members, skipping macOS AppleDouble (`._x.safetensors`) companions. */
export function safetensorsMembers(members: readonly TarMember[]): TarMember[] {
  return members.filter((m) => {
    const base = m.name.slice(m.name.lastIndexOf('/') + 1);
    return base.toLowerCase().endsWith('.safetensors') && !base.startsWith('._');
  });
}

/** Copies one member's bytes to `dest` (64 MiB at a time). */
export function extractMember(file: string, member: TarMember, dest: string): void {
  const src = fs.openSync(file, 'r');
  const dst = fs.openSync(dest, 'w');
  try {
    const chunk = Buffer.alloc(Math.min(member.size, 64 * 1024 * 1024) || 1);
    let done = 0;
    while (done < member.size) {
      const n = fs.readSync(src, chunk, 0, Math.min(chunk.length, member.size - done), member.offset + done);
      if (n <= 0) throw new Error(`${file}: short read in tar member ${member.name}`);
      fs.writeSync(dst, chunk, 0, n);
      done += n;
    }
  } finally {
    fs.closeSync(src);
    fs.closeSync(dst);
  }
}
