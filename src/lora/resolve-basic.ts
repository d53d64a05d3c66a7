// The LoRA references a predictor can resolve without any network access, and log redaction.
//
//   data:[<type>][;base64],<payload>   the payload is a .safetensors file, or (as cog-flux's data:
//                                      rule, cog-flux-behaviour.md §4.1) a tar (optionally gzipped)
//                                      holding exactly one .safetensors. Written once, content
//                                      addressed (sha256), under `dataDir`.
//   /abs/path.safetensors, ./rel..., ../rel..., file:///...
//                                      a local file, only when the server allows local LoRAs.
//
// Everything else (owner/name, huggingface.co/..., civitai.com/..., https://... .safetensors / .tar)
// is for the downloader (src/lora/sources.ts), injected into the Predictor as `resolveLora`.
//
// redactRef/redactText keep tokens and signed query strings out of logs and error messages: a
// URL's query string and userinfo are replaced by `***`, `token=...` anywhere is masked as
// cog-flux does (`token=***`), and any explicitly given secret is replaced wherever it appears.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

export interface LoraResolveContext {
  readonly signal?: AbortSignal | undefined;
  /** Progress lines for the prediction log; must never be given a token or a signed URL. */
  readonly log: (line: string) => void;
  /** A credential for gated downloads (HF / CivitAI / Replicate); never logged. */
  readonly token?: string | undefined;
}

export interface ResolvedLora {
  /** A local .safetensors file. */
  readonly path: string;
  /** Where it came from, safe to log ("data: URI (1234 bytes)", "local file", "huggingface.co/o/m"). */
  readonly source: string;
}

export type LoraResolver = (ref: string, ctx: LoraResolveContext) => Promise<ResolvedLora>;

/** A reference that cannot be resolved (bad data: URI, missing local file, local paths refused, ...). */
export class LoraResolveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoraResolveError';
  }
}

export interface BasicResolverOptions {
  /** Accept local file paths (a server operator's choice; off by default). */
  readonly allowLocal?: boolean;
  /** Where decoded data: URIs are written (default: <tmpdir>/fluxserve-lora-data). */
  readonly dataDir?: string;
}

/** 'data' or 'local' when the basic resolver handles `ref`; undefined when it is for the downloader. */
export function basicRefKind(ref: string): 'data' | 'local' | undefined {
  const r = ref.trim();
  if (/^data:/i.test(r)) return 'data';
  if (/^file:/i.test(r) || r.startsWith('/') || r.startsWith('./') || r.startsWith('../') || /^[A-Za-z]:[\\/]/.test(r)) return 'local';
  return undefined;
}

/** Resolves data: URIs and (when allowed) local paths; throws LoraResolveError for anything else. */
export function basicLoraResolver(opts: BasicResolverOptions = {}): LoraResolver {
  const dataDir = opts.dataDir ?? join(tmpdir(), 'fluxserve-lora-data');
  return async (ref, ctx) => {
    ctx.signal?.throwIfAborted();
    const kind = basicRefKind(ref);
    if (kind === 'data') return resolveDataUri(ref.trim(), dataDir);
    if (kind === 'local') {
      if (!opts.allowLocal) throw new LoraResolveError('local LoRA paths are not allowed on this server');
      const r = ref.trim();
      const path = /^file:/i.test(r) ? fileURLToPath(r) : isAbsolute(r) ? r : resolve(r);
      let isFile = false;
      try {
        isFile = statSync(path).isFile();
      } catch {
        // reported below
      }
      if (!isFile) throw new LoraResolveError(`no such file: ${path}`);
      return { path, source: 'local file' };
    }
    throw new LoraResolveError(
      `cannot resolve ${JSON.stringify(redactRef(ref))}: this server has no LoRA downloader (only data: URIs${opts.allowLocal ? ' and local paths' : ''} are accepted)`,
    );
  };
}

function resolveDataUri(ref: string, dataDir: string): ResolvedLora {
  const comma = ref.indexOf(',');
  if (comma < 0) throw new LoraResolveError('malformed data: URI (no comma)');
  const meta = ref.slice(5, comma);
  const payload = ref.slice(comma + 1);
  let bytes: Buffer;
  if (/;base64$/i.test(meta)) {
    const clean = payload.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(clean)) throw new LoraResolveError('malformed data: URI (invalid base64)');
    bytes = Buffer.from(clean, 'base64');
  } else {
    bytes = Buffer.from(decodeURIComponent(payload), 'latin1');
  }
  if (bytes.length === 0) throw new LoraResolveError('empty data: URI');
  const what = `data: URI (${bytes.length} bytes)`;
  let file = bytes;
  let inner = '';
  if (file[0] === 0x1f && file[1] === 0x8b) {
    try {
      file = gunzipSync(file);
    } catch (e) {
      throw new LoraResolveError(`${what}: gzip payload could not be decompressed (${(e as Error).message})`);
    }
  }
  if (isTar(file)) {
    const entry = singleSafetensorsInTar(file);
    inner = `, ${entry.name} from its tar`;
    file = entry.data;
  }
  const hash = createHash('sha256').update(file).digest('hex').slice(0, 32);
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, `${hash}.safetensors`);
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
    writeFileSync(tmp, file);
    renameSync(tmp, path);
  }
  return { path, source: `${what}${inner}` };
}

function isTar(b: Buffer): boolean {
  return b.length >= 512 && b.toString('latin1', 257, 262) === 'ustar';
}

/** The one .safetensors regular file of a ustar/GNU tar (cog-flux: exactly one, else an error). */
function singleSafetensorsInTar(b: Buffer): { name: string; data: Buffer } {
  const found: { name: string; data: Buffer }[] = [];
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= b.length) {
    const h = b.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break;
    const str = (a: number, n: number) => h.toString('latin1', a, a + n).replace(/\0.*$/s, '');
    const size = parseInt(str(124, 12).trim() || '0', 8);
    if (!Number.isFinite(size) || size < 0) throw new LoraResolveError('data: URI tar: corrupt header');
    const type = str(156, 1) || '0';
    const prefix = str(345, 155);
    let name = longName ?? (prefix ? `${prefix}/${str(0, 100)}` : str(0, 100));
    longName = undefined;
    const start = off + 512;
    if (start + size > b.length) throw new LoraResolveError('data: URI tar: truncated');
    const data = b.subarray(start, start + size);
    if (type === 'L') longName = data.toString('utf8').replace(/\0.*$/s, '');
    else if ((type === '0' || type === '7') && name.endsWith('.safetensors')) found.push({ name: (name = name.replace(/^\.\//, '')), data });
    off = start + Math.ceil(size / 512) * 512;
  }
  if (found.length === 0) throw new LoraResolveError('No .safetensors file found in tarball');
  if (found.length > 1) throw new LoraResolveError('Multiple .safetensors files found in tarball');
  return found[0]!;
}

/** A LoRA reference as it may appear in a log: no query string, userinfo or data payload. */
export function redactRef(ref: string): string {
  const r = ref.trim();
  if (/^data:/i.test(r)) {
    const comma = r.indexOf(',');
    const type = comma > 0 ? r.slice(5, comma).split(';')[0] || 'text/plain' : '?';
    return `data:${type} URI (${r.length} chars)`;
  }
  return redactText(r);
}

/** Masks URL query strings and userinfo, `token=...` pairs, and every given secret, in free text. */
export function redactText(text: string, secrets: readonly (string | undefined)[] = []): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('***');
  out = out.replace(/\b(https?:\/\/)[^/\s@]*@/gi, '$1***@');
  out = out.replace(/\b(https?:\/\/[^\s?#"']+|[\w-]+(?:\.[\w-]+)+\/[^\s?#"']*)\?[^\s#"']+/gi, (_m, base: string) => `${base}?***`);
  out = out.replace(/(token=)[^&\s"']*/gi, '$1***');
  out = out.replace(/\b(Bearer\s+)\S+/gi, '$1***');
  return out;
}
