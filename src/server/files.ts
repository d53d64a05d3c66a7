// In-memory file store: files uploaded through POST /v1/files (https://replicate.com/docs/reference/http#files.create;
// the replicate npm client's lib/files.js uploads Buffer inputs there) and output images served by
// URL when the server has a public base URL. Uploads expire after 24 h like Replicate's; outputs
// live as long as their prediction is remembered.

import { createHash, randomBytes } from 'node:crypto';
import type { FileService } from './service/types.js';

export interface StoredFile {
  readonly id: string;
  /** `upload` (POST /v1/files) or `output` (a prediction's image, served without auth by URL). */
  readonly kind: 'upload' | 'output';
  readonly name: string;
  readonly contentType: string;
  readonly data: Buffer;
  readonly metadata: unknown;
  readonly createdAt: Date;
  readonly expiresAt: Date;
  readonly sha256: string;
}

export const FILE_TTL_MS = 24 * 3600 * 1000;

/** A lower-case base32 id like Replicate's (26 characters, 130 random bits). */
export function newId(): string {
  const bytes = randomBytes(17);
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  return out;
}

export class FileStore {
  private readonly files = new Map<string, StoredFile>();

  constructor(private readonly ttlMs = FILE_TTL_MS) {}

  add(f: { kind: StoredFile['kind']; name: string; contentType: string; data: Buffer; metadata?: unknown }, now = new Date()): StoredFile {
    this.purge(now);
    const file: StoredFile = {
      id: newId(),
      kind: f.kind,
      name: f.name,
      contentType: f.contentType,
      data: f.data,
      metadata: f.metadata ?? {},
      createdAt: now,
      expiresAt: new Date(now.getTime() + this.ttlMs),
      sha256: createHash('sha256').update(f.data).digest('hex'),
    };
    this.files.set(file.id, file);
    return file;
  }

  get(id: string, now = new Date()): StoredFile | undefined {
    const f = this.files.get(id);
    if (f && f.expiresAt <= now) {
      this.files.delete(id);
      return undefined;
    }
    return f;
  }

  delete(id: string): boolean {
    return this.files.delete(id);
  }

  list(kind: StoredFile['kind']): StoredFile[] {
    this.purge(new Date());
    return [...this.files.values()].filter((f) => f.kind === kind).sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  }

  private purge(now: Date): void {
    for (const [id, f] of this.files) if (f.expiresAt <= now) this.files.delete(id);
  }
}

/** `data:<type>;base64,<...>`. */
export function dataUri(contentType: string, data: Buffer): string {
  return `data:${contentType};base64,${data.toString('base64')}`;
}

/** The FileService of the in-process service over a FileStore. */
export function localFileService(store: FileStore): FileService {
  const uploaded = (id: string) => {
    const f = store.get(id);
    return f && f.kind === 'upload' ? f : undefined;
  };
  return {
    upload: async (f) => store.add({ kind: 'upload', ...f }),
    uploaded: async (id) => uploaded(id),
    uploads: async () => store.list('upload'),
    deleteUpload: async (id) => uploaded(id) !== undefined && store.delete(id),
    output: async (id, name) => {
      const f = store.get(id);
      return f && f.kind === 'output' && f.name === name ? f : undefined;
    },
  };
}
