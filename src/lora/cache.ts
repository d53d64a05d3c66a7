// The LoRA download cache: a folder of validated `.safetensors` files named by a hash.
//
//   <dir>/<key>.safetensors   the file (only ever created by a rename of a complete, validated file)
//   <dir>/<key>.json          sidecar: {source (redacted), bytes, created}; informational
//   <dir>/.tmp-*              downloads in progress (removed on failure; stale ones swept at start)
//
// Key = sha256("v1", normalized source, credential identity). The credential identity is "anon"
// when nothing secret was sent, else a salted hash of the token (or of a signed URL's query). So a
// request without a token never finds a file that was downloaded with one (cog-flux keyed by the
// input string only — reference/cog-flux-behaviour.md §4.2), and no token ever appears in a file
// name. A request WITH a token may use an anonymous entry (anyone could download that).
//
// Budget: after each download, least-recently-used files (mtime; a hit touches the file) are deleted
// until the folder is within `maxBytes`; the file just added is never deleted, nor one being
// resolved in this process. One in-process promise per key makes concurrent requests download once;
// across processes, unique temp names plus an atomic rename keep readers from seeing partial files
// (two processes may both download; the last rename wins and both files are complete).
//
// Downloads (`download`): redirects followed manually (at most `maxRedirects`; request headers —
// the Authorization header — go only to the origin they were meant for), a connect timeout (until
// response headers) and an idle timeout (between body chunks), a size cap checked on Content-Length
// and on the streamed count, Content-Length mismatch = truncated. Every failure is a
// LoraSourceError with a code and a redacted message.

import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { SafetensorsFile } from '../io/safetensors.js';
import { LoraSourceError, asSourceError, redact, redactUrl } from './source-errors.js';
import { extractMember, listTar, looksLikeTar, safetensorsMembers } from './tar.js';

export { LoraSourceError } from './source-errors.js';
export type { LoraSourceErrorCode } from './source-errors.js';

export interface LoraCacheOptions {
  /** Cache folder; default $FLUXSERVE_CACHE/loras, else ~/.cache/fluxserve/loras. */
  dir?: string;
  /** Byte budget of the folder (LRU eviction after each download); default 20 GiB. */
  maxBytes?: number;
  /** Largest download accepted (Content-Length and streamed count, and a decompressed gzip); default 4 GiB. */
  maxFileBytes?: number;
  /** Time allowed until response headers arrive, per request/redirect hop; default 30 s. */
  connectTimeoutMs?: number;
  /** Time allowed between two body chunks; default 60 s. */
  idleTimeoutMs?: number;
  /** Redirects followed per download; default 10. */
  maxRedirects?: number;
  /** How long resolutions of mutable references (latest version, repo file list) are remembered; default 10 min. */
  metaTtlMs?: number;
  /** Log sink (lines are already redacted). */
  log?: (line: string) => void;
}

/** What a cache entry is: a normalized source and the credential (if any) that was used to get it. */
export interface CacheKey {
  /** Normalized, credential-free description of the bytes (e.g. `hf:owner/model@main/lora.safetensors`). */
  readonly source: string;
  /** The token or signed query sent to get the bytes; only its salted hash enters the key. */
  readonly credential?: string | undefined;
}

export interface HttpRequest {
  readonly url: string;
  /** Sent to `url`'s origin only; dropped when a redirect leaves that origin. */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface EnsureOptions {
  /** Redacted, human-readable source for messages and the sidecar. */
  readonly description: string;
  /** Writes the raw bytes (safetensors, tar, or gzip of either) to `tmp`. */
  readonly fetch: (tmp: string) => Promise<void>;
  /** Treat an entry older than this as missing (mutable references fetched without a version). */
  readonly maxAgeMs?: number;
  readonly signal?: AbortSignal | undefined;
  /** Strings to mask in every message (tokens, signed queries). */
  readonly secrets?: readonly (string | undefined)[];
}

export interface DownloadOptions {
  readonly description: string;
  readonly signal?: AbortSignal | undefined;
  readonly secrets?: readonly (string | undefined)[];
}

export interface CacheEntry {
  readonly key: string;
  readonly path: string;
  readonly bytes: number;
  readonly lastUsedMs: number;
  readonly source?: string;
}

const GiB = 1024 ** 3;
const TOKEN_SALT = 'fluxserve-lora-credential-v1';

/** Default folder: $FLUXSERVE_CACHE/loras, else ~/.cache/fluxserve/loras. */
export function defaultLoraCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env['FLUXSERVE_CACHE'] || join(homedir(), '.cache', 'fluxserve'), 'loras');
}

/** A salted hash standing for a credential (never the credential itself). */
export function credentialId(credential: string | undefined): string {
  if (!credential) return 'anon';
  return `cred-${createHash('sha256').update(TOKEN_SALT).update('\0').update(credential).digest('hex').slice(0, 24)}`;
}

export class LoraCache {
  readonly dir: string;
  readonly maxBytes: number;
  readonly maxFileBytes: number;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxRedirects: number;
  readonly metaTtlMs: number;
  /** Hits, misses (downloads started), evictions since construction. */
  readonly stats = { hits: 0, misses: 0, evictions: 0 };
  private readonly log: (line: string) => void;
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly memo = new Map<string, { until: number; value: Promise<unknown> }>();
  private readonly pinned = new Map<string, number>();

  constructor(opts: LoraCacheOptions = {}) {
    this.dir = opts.dir ?? defaultLoraCacheDir();
    this.maxBytes = opts.maxBytes ?? 20 * GiB;
    this.maxFileBytes = opts.maxFileBytes ?? 4 * GiB;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 30_000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.maxRedirects = opts.maxRedirects ?? 10;
    this.metaTtlMs = opts.metaTtlMs ?? 10 * 60_000;
    this.log = opts.log ?? (() => {});
    fs.mkdirSync(this.dir, { recursive: true });
    this.sweepTemp();
  }

  /** The file name stem of an entry: hex only. */
  keyOf(k: CacheKey): string {
    return createHash('sha256').update('v1\0').update(k.source).update('\0').update(credentialId(k.credential)).digest('hex').slice(0, 40);
  }

  pathOf(key: string): string {
    return join(this.dir, `${key}.safetensors`);
  }

  /**
   * The cached file for `k` (touched as most recently used), or undefined. With a credential, an
   * anonymous entry for the same source also counts.
   */
  lookup(k: CacheKey, maxAgeMs?: number): string | undefined {
    const keys = [this.keyOf(k)];
    if (k.credential) keys.push(this.keyOf({ source: k.source }));
    for (const key of keys) {
      const p = this.pathOf(key);
      let st: fs.Stats;
      try {
        st = fs.statSync(p);
      } catch {
        continue;
      }
      if (maxAgeMs !== undefined && Date.now() - this.created(key, st) > maxAgeMs) continue;
      const now = new Date();
      try {
        fs.utimesSync(p, now, now);
      } catch {
        continue; // evicted in between
      }
      this.stats.hits++;
      return p;
    }
    return undefined;
  }

  /**
   * The validated file for `k`: a cache hit, the result of a download already running in this
   * process, or a new download (`opts.fetch` into a temp file, then gunzip / tar extraction,
   * SafetensorsFile validation and an atomic rename). Evicts LRU entries over the budget afterwards.
   */
  async ensure(k: CacheKey, opts: EnsureOptions): Promise<{ path: string; hit: boolean }> {
    const secrets = opts.secrets ?? [];
    checkAborted(opts.signal);
    const hitPath = this.lookup(k, opts.maxAgeMs);
    if (hitPath) {
      this.log(`LoRA cache hit: ${redact(opts.description, secrets)}`);
      return { path: hitPath, hit: true };
    }
    const key = this.keyOf(k);
    let p = this.inflight.get(key);
    if (!p) {
      this.stats.misses++;
      p = this.fill(key, opts).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    } else {
      this.log(`LoRA download already in progress, waiting: ${redact(opts.description, secrets)}`);
    }
    // The shared download ignores one waiter's abort (others may still want it); each waiter stops waiting.
    const path = await raceAbort(p, opts.signal);
    return { path, hit: false };
  }

  /** Keeps `path` (an entry of this cache) from eviction until the returned function is called. */
  pin(path: string): () => void {
    const key = basename(path).replace(/\.safetensors$/, '');
    this.pinned.set(key, (this.pinned.get(key) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.pinned.get(key) ?? 1) - 1;
      if (n <= 0) this.pinned.delete(key);
      else this.pinned.set(key, n);
    };
  }

  /** Remembers `fn()`'s result under `key` for `ttlMs` (default metaTtlMs); failures are not remembered. */
  memoize<T>(key: string, fn: () => Promise<T>, ttlMs = this.metaTtlMs): Promise<T> {
    const now = Date.now();
    const m = this.memo.get(key);
    if (m && m.until > now) return m.value as Promise<T>;
    const value = fn();
    this.memo.set(key, { until: now + ttlMs, value });
    value.catch(() => {
      if (this.memo.get(key)?.value === value) this.memo.delete(key);
    });
    return value;
  }

  /** Every entry, least recently used first. */
  entries(): CacheEntry[] {
    const out: CacheEntry[] = [];
    for (const name of safeReaddir(this.dir)) {
      if (!name.endsWith('.safetensors') || name.startsWith('.')) continue;
      const key = name.slice(0, -'.safetensors'.length);
      try {
        const st = fs.statSync(join(this.dir, name));
        const side = this.sidecar(key);
        out.push({ key, path: join(this.dir, name), bytes: st.size, lastUsedMs: st.mtimeMs, ...(side?.source ? { source: side.source } : {}) });
      } catch {
        /* removed meanwhile */
      }
    }
    return out.sort((a, b) => a.lastUsedMs - b.lastUsedMs);
  }

  /** Deletes least-recently-used entries until the folder fits `maxBytes` (never `keep`, pinned or in-flight keys). */
  evict(keep?: string): void {
    const list = this.entries();
    let total = list.reduce((s, e) => s + e.bytes, 0);
    for (const e of list) {
      if (total <= this.maxBytes) break;
      if (e.key === keep || this.pinned.has(e.key) || this.inflight.has(e.key)) continue;
      try {
        fs.unlinkSync(e.path);
        fs.rmSync(join(this.dir, `${e.key}.json`), { force: true });
        total -= e.bytes;
        this.stats.evictions++;
        this.log(`LoRA cache: evicted ${e.source ?? e.key} (${e.bytes} bytes; budget ${this.maxBytes})`);
      } catch {
        /* already gone */
      }
    }
  }

  /**
   * Downloads `req` to `dest` (created or truncated). Follows redirects, applies the timeouts and the
   * size cap, and maps every failure to a LoraSourceError naming `opts.description` (redacted).
   */
  async download(req: HttpRequest, dest: string, opts: DownloadOptions): Promise<void> {
    const secrets = [...(opts.secrets ?? []), ...secretsOfUrl(req.url)];
    const what = redact(opts.description, secrets);
    const fail = (code: ConstructorParameters<typeof LoraSourceError>[0], msg: string, status?: number): never => {
      throw new LoraSourceError(code, redact(msg, secrets), status);
    };
    const authOrigin = new URL(req.url).origin;
    let url = req.url;
    for (let hop = 0; ; hop++) {
      checkAborted(opts.signal, what);
      const sameOrigin = new URL(url).origin === authOrigin;
      const headers: Record<string, string> = {
        'accept-encoding': 'identity',
        'user-agent': 'fluxserve',
        ...(sameOrigin ? (req.headers ?? {}) : {}),
      };
      const ctl = new AbortController();
      let timedOut: 'connect' | 'idle' | undefined;
      const onAbort = () => ctl.abort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      let timer = setTimeout(() => {
        timedOut = 'connect';
        ctl.abort();
      }, this.connectTimeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      let res: Response;
      try {
        res = await fetch(url, { headers, redirect: 'manual', signal: ctl.signal });
      } catch (e) {
        cleanup();
        if (timedOut) fail('timeout', `${what}: no response within ${this.connectTimeoutMs} ms (${redactUrl(url)})`);
        if (opts.signal?.aborted) fail('aborted', `${what}: download cancelled`);
        fail('network', `${what}: cannot connect${url === req.url ? '' : ` to ${redactUrl(url)}`}: ${networkReason(e)}`);
        throw e; // unreachable
      }
      try {
        if ([301, 302, 303, 307, 308].includes(res.status)) {
          const loc = res.headers.get('location');
          await res.body?.cancel().catch(() => {});
          if (!loc) fail('http', `${what}: redirect ${res.status} without a Location header from ${redactUrl(url)}`, res.status);
          if (hop >= this.maxRedirects) fail('redirects', `${what}: more than ${this.maxRedirects} redirects`, res.status);
          const next = new URL(loc!, url);
          if (next.protocol !== 'https:' && next.protocol !== 'http:') fail('http', `${what}: redirect to an unsupported scheme ${next.protocol}`);
          secrets.push(...secretsOfUrl(next.href));
          this.log(`LoRA download ${what}: redirected to ${redactUrl(next.href)}`);
          url = next.href;
          continue;
        }
        if (res.status < 200 || res.status > 299) {
          const detail = await errorDetail(res);
          fail(...httpFailure(res.status, what, detail));
        }
        const encoded = (res.headers.get('content-encoding') ?? 'identity').toLowerCase() !== 'identity';
        const clHeader = res.headers.get('content-length');
        const expected = clHeader !== null && !encoded && /^\d+$/.test(clHeader) ? Number(clHeader) : undefined;
        if (expected !== undefined && expected > this.maxFileBytes) {
          await res.body?.cancel().catch(() => {});
          fail('too-large', `${what}: ${expected} bytes is over the LoRA size limit of ${this.maxFileBytes} bytes`);
        }
        const fh = await fs.promises.open(dest, 'w');
        let got = 0;
        try {
          const reader = res.body?.getReader();
          if (reader) {
            const arm = () => {
              clearTimeout(timer);
              timer = setTimeout(() => {
                timedOut = 'idle';
                ctl.abort();
              }, this.idleTimeoutMs);
            };
            arm();
            for (;;) {
              let chunk: { done: boolean; value?: Uint8Array };
              try {
                chunk = await reader.read();
              } catch (e) {
                if (timedOut) fail('timeout', `${what}: stalled for ${this.idleTimeoutMs} ms after ${got} bytes`);
                if (opts.signal?.aborted) fail('aborted', `${what}: download cancelled`);
                if (expected !== undefined && got < expected) fail('truncated', `${what}: connection closed after ${got} of ${expected} bytes`);
                fail('network', `${what}: download failed after ${got} bytes: ${networkReason(e)}`);
                throw e;
              }
              if (chunk.done) break;
              const value = chunk.value!;
              got += value.byteLength;
              if (got > this.maxFileBytes) {
                ctl.abort();
                fail('too-large', `${what}: more than the LoRA size limit of ${this.maxFileBytes} bytes`);
              }
              await fh.write(value);
              arm();
            }
          }
        } finally {
          await fh.close();
        }
        if (expected !== undefined && got !== expected) {
          fail('truncated', `${what}: got ${got} bytes, Content-Length said ${expected}`);
        }
        return;
      } finally {
        cleanup();
      }
    }
  }

  // -------------------------------------------------------------------------------------------

  private async fill(key: string, opts: EnsureOptions): Promise<string> {
    const secrets = opts.secrets ?? [];
    const what = redact(opts.description, secrets);
    const tmp = join(this.dir, `.tmp-${key}-${process.pid}-${randomBytes(4).toString('hex')}`);
    const temps = [tmp];
    const started = Date.now();
    this.log(`LoRA downloading: ${what}`);
    try {
      await opts.fetch(tmp);
      const file = await this.toSafetensors(tmp, what, temps);
      const dest = this.pathOf(key);
      const bytes = fs.statSync(file).size;
      fs.writeFileSync(join(this.dir, `${key}.json`), `${JSON.stringify({ source: what, bytes, created: new Date().toISOString() })}\n`);
      fs.renameSync(file, dest);
      this.log(`LoRA downloaded: ${what} (${bytes} bytes in ${((Date.now() - started) / 1000).toFixed(2)} s)`);
      this.evict(key);
      return dest;
    } catch (e) {
      throw asSourceError(e, 'network', secrets);
    } finally {
      for (const t of temps) fs.rmSync(t, { force: true });
    }
  }

  /** gzip -> tar -> one .safetensors, then validation; returns the path of the validated file. */
  private async toSafetensors(tmp: string, what: string, temps: string[]): Promise<string> {
    let file = tmp;
    let head = readHead(file);
    if (head[0] === 0x1f && head[1] === 0x8b) {
      const out = `${tmp}.gunzip`;
      temps.push(out);
      let n = 0;
      const cap = this.maxFileBytes;
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          n += chunk.length;
          if (n > cap) cb(new LoraSourceError('too-large', `${what}: decompressed size is over the LoRA size limit of ${cap} bytes`));
          else cb(null, chunk);
        },
      });
      try {
        await pipeline(fs.createReadStream(file), createGunzip(), counter, fs.createWriteStream(out));
      } catch (e) {
        if (e instanceof LoraSourceError) throw e;
        throw new LoraSourceError('invalid', `${what}: broken gzip data: ${(e as Error).message}`);
      }
      file = out;
      head = readHead(file);
    }
    if (looksLikeTar(head)) {
      let members;
      try {
        members = listTar(file);
      } catch (e) {
        throw new LoraSourceError('invalid', `${what}: ${(e as Error).message.replace(file, 'tar')}`);
      }
      const found = safetensorsMembers(members);
      if (found.length === 0)
        throw new LoraSourceError(
          'invalid',
          `${what}: no .safetensors file in the tar archive (members: ${
            members
              .map((m) => m.name)
              .slice(0, 20)
              .join(', ') || 'none'
          })`,
        );
      let pick = found.length === 1 ? found[0] : undefined;
      if (!pick) {
        const named = found.filter((m) => /(^|\/)lora\.safetensors$/.test(m.name));
        if (named.length === 1) pick = named[0];
      }
      if (!pick) throw new LoraSourceError('ambiguous', `${what}: several .safetensors files in the tar archive: ${found.map((m) => m.name).join(', ')}`);
      const out = `${tmp}.member`;
      temps.push(out);
      extractMember(file, pick, out);
      file = out;
      head = readHead(file);
    }
    let st: SafetensorsFile;
    try {
      st = SafetensorsFile.open(file);
    } catch (e) {
      const problem = (e as Error).message.startsWith(file) ? (e as Error).message.slice(file.length + 2) : (e as Error).message;
      const first = head.subarray(0, 16).toString('latin1');
      const hint = /^\s*</.test(first) ? ' (it looks like an HTML page)' : /^\s*[{[]/.test(first) ? ' (it looks like JSON)' : '';
      throw new LoraSourceError('invalid', `${what} is not a safetensors file${hint}: ${problem}`);
    }
    st.close();
    return file;
  }

  private sidecar(key: string): { source?: string; created?: string } | undefined {
    try {
      return JSON.parse(fs.readFileSync(join(this.dir, `${key}.json`), 'utf8')) as { source?: string; created?: string };
    } catch {
      return undefined;
    }
  }

  private created(key: string, st: fs.Stats): number {
    const c = this.sidecar(key)?.created;
    const t = c ? Date.parse(c) : NaN;
    return Number.isFinite(t) ? t : st.ctimeMs;
  }

  /** Removes temp files older than an hour (crashed downloads of any process). */
  private sweepTemp(): void {
    const cutoff = Date.now() - 3600_000;
    for (const name of safeReaddir(this.dir)) {
      if (!name.startsWith('.tmp-')) continue;
      try {
        const p = join(this.dir, name);
        if (fs.statSync(p).mtimeMs < cutoff) fs.rmSync(p, { force: true });
      } catch {
        /* ignore */
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function readHead(file: string): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(512);
    const n = fs.readSync(fd, b, 0, 512, 0);
    return b.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

/** The query string of a URL is a credential when present (signed URLs). */
function secretsOfUrl(u: string): string[] {
  try {
    const url = new URL(u);
    const out: string[] = [];
    if (url.search.length > 1) out.push(url.search.slice(1));
    for (const [, v] of url.searchParams) if (v.length >= 8) out.push(v);
    if (url.password) out.push(url.password);
    return out;
  } catch {
    return [];
  }
}

function checkAborted(signal: AbortSignal | undefined, what = 'LoRA'): void {
  if (signal?.aborted) throw new LoraSourceError('aborted', `${what}: cancelled`);
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new LoraSourceError('aborted', 'LoRA download cancelled'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new LoraSourceError('aborted', 'LoRA download cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function networkReason(e: unknown): string {
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  return err.cause?.code ?? err.cause?.message ?? err.message ?? String(e);
}

/** A short, server-provided reason: HF's X-Error-Code/X-Error-Message headers, or a JSON message. */
async function errorDetail(res: Response): Promise<string> {
  const parts: string[] = [];
  const code = res.headers.get('x-error-code');
  const msg = res.headers.get('x-error-message');
  if (code) parts.push(code);
  if (msg) parts.push(msg);
  try {
    const text = (await res.text()).slice(0, 2000);
    if (!msg && text) {
      try {
        const j = JSON.parse(text) as Record<string, unknown>;
        const m = j['message'] ?? j['detail'] ?? j['error'];
        if (typeof m === 'string') parts.push(m.slice(0, 300));
      } catch {
        /* not JSON: not shown (could be a whole HTML page) */
      }
    }
  } catch {
    /* body unreadable */
  }
  return parts.join(': ');
}

/** Maps a non-2xx status to a code and message (what `fail` takes). */
export function httpFailure(status: number, what: string, detail = ''): [LoraSourceError['code'], string, number] {
  const d = detail ? ` (${detail})` : '';
  if (status === 401 || status === 403) {
    const host = /huggingface/i.test(what)
      ? 'set HF_TOKEN or pass hf_api_token'
      : /civitai/i.test(what)
        ? 'set CIVITAI_API_TOKEN or pass civitai_api_token'
        : /replicate/i.test(what)
          ? 'set REPLICATE_API_TOKEN'
          : 'the URL may need a token or a signed query';
    const verb = status === 401 ? 'authentication required' : 'authentication failed (no access)';
    return ['auth', `${verb} for ${what}${d}; ${host}`, status];
  }
  if (status === 404 || status === 410) return ['not-found', `${what}: not found (HTTP ${status})${d}`, status];
  if (status >= 500) return ['server', `${what}: server error HTTP ${status}${d}; try again later`, status];
  return ['http', `${what}: HTTP ${status}${d}`, status];
}
