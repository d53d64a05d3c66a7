// Output files PUT to an upload URL, as Cog does with `--upload-url` (cog python/cog/files.py
// put_file_to_signed_endpoint; crates/coglet orchestrator.rs upload_file):
// `PUT {base with a trailing slash}{basename}` with the raw bytes, `Content-Type` of the file and
// `X-Prediction-ID`; retried on 408/429/500/502/503/504 and network errors (Python Cog: 3 retries,
// backoff from 0.1 s). The output value is the response's `Location` header when present, else the
// final request URL (redirects followed), with the query string (signing parameters) stripped.

import { redact } from './webhooks.js';

export interface UploadOptions {
  /** Retries after the first attempt (3). */
  readonly retries?: number;
  /** First retry delay, doubling (100 ms). */
  readonly backoffMs?: number;
  /** Per attempt (25 s, coglet's). */
  readonly timeoutMs?: number;
  readonly userAgent?: string;
}

export class FileUploadError extends Error {
  constructor(readonly detail: string) {
    super('Got error trying to upload output files');
    this.name = 'FileUploadError';
  }
}

const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

/** `base` with exactly one trailing slash, then the basename (URL-encoded). */
export function uploadTarget(base: string, filename: string): string {
  const name = filename.split('/').pop() ?? filename;
  return `${base.endsWith('/') ? base : `${base}/`}${encodeURIComponent(name)}`;
}

/** The URL without its query string and fragment (signing parameters). */
export function stripQuery(url: string): string {
  const u = new URL(url);
  u.search = '';
  u.hash = '';
  return u.toString();
}

/** PUTs one file; resolves to the URL the output then is. Throws FileUploadError (or the abort reason). */
export async function uploadFile(
  base: string,
  file: { name: string; contentType: string; data: Buffer },
  predictionId: string,
  signal: AbortSignal | undefined,
  opts: UploadOptions = {},
): Promise<string> {
  const target = uploadTarget(base, file.name);
  const retries = opts.retries ?? 3;
  const headers: Record<string, string> = {
    'content-type': file.contentType,
    'x-prediction-id': predictionId,
    'user-agent': opts.userAgent ?? 'fluxserve',
  };
  let last = '';
  for (let attempt = 0; ; attempt++) {
    signal?.throwIfAborted();
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? 25_000);
    const s = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      const res = await fetch(target, { method: 'PUT', headers, body: file.data, redirect: 'follow', signal: s });
      await res.body?.cancel();
      if (res.ok) {
        const location = res.headers.get('location');
        return stripQuery(location ? new URL(location, res.url || target).toString() : res.url || target);
      }
      last = `HTTP ${res.status} from ${redact(target)}`;
      if (!RETRY_STATUSES.has(res.status)) throw new FileUploadError(last);
    } catch (e) {
      if (e instanceof FileUploadError) throw e;
      if (signal?.aborted) throw signal.reason;
      last = `${redact(target)}: ${timeout.aborted ? 'timed out' : e instanceof Error ? ((e.cause as Error | undefined)?.message ?? e.message) : String(e)}`;
    }
    if (attempt >= retries) throw new FileUploadError(`${last} (after ${attempt + 1} attempts)`);
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, (opts.backoffMs ?? 100) * 2 ** attempt);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}
