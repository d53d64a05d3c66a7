// File inputs given as http(s) URLs (Cog's `Path` inputs: cog python/cog/types.py Path.validate):
// the server downloads them before the prediction is admitted, so the predictor only ever sees
// data: URIs. Each download is bounded — a size cap (Content-Length checked first, then counted
// while reading), one deadline for the whole download, a limit on redirects (followed by hand,
// http(s) only) — and must be an image (`image/*`, or a generic binary type whose bytes the
// decoder sniffs). A failure names the field and is answered 422 by both APIs. URLs appear in
// messages only without their query string and credentials (signed URLs carry secrets there).

import type { Profile } from '../predictor/profiles.js';
import { dataUri } from './files.js';
import { redact } from './webhooks.js';

export interface InputFetchOptions {
  /** Largest file accepted (32 MiB). */
  readonly maxBytes?: number;
  /** Deadline for one file, redirects and body included (30 s). */
  readonly timeoutMs?: number;
  /** Redirects followed (5). */
  readonly maxRedirects?: number;
  readonly userAgent?: string;
}

export const INPUT_FETCH_DEFAULTS = Object.freeze({ maxBytes: 32 * 1024 * 1024, timeoutMs: 30_000, maxRedirects: 5 });

export interface InputFetchFailure {
  /** The input field, e.g. `image`. */
  readonly field: string;
  readonly message: string;
}

export class InputFetchError extends Error {
  constructor(readonly failures: readonly InputFetchFailure[]) {
    super(failures.map((f) => f.message).join('; '));
    this.name = 'InputFetchError';
  }
}

const GENERIC_TYPES = new Set(['application/octet-stream', 'binary/octet-stream', 'application/binary']);

function acceptableType(contentType: string | null): boolean {
  if (contentType === null || contentType.trim() === '') return true;
  const t = contentType.split(';')[0]!.trim().toLowerCase();
  return t.startsWith('image/') || GENERIC_TYPES.has(t);
}

const isHttpUrl = (v: unknown): v is string => typeof v === 'string' && /^https?:\/\//i.test(v);

/** The profile's file fields (Cog `Path` inputs). */
export function fileFields(profile: Profile<unknown>): string[] {
  return profile.fields.filter((f) => f.type === 'file').map((f) => f.name);
}

/** Whether any file field of `input` is an http(s) URL (nothing to fetch otherwise). */
export function hasUrlInputs(fields: readonly string[], input: Record<string, unknown>): boolean {
  return fields.some((f) => isHttpUrl(input[f]));
}

/** Downloads one URL within the limits; returns a data: URI. Throws an Error whose message is safe to show. */
export async function fetchInput(url: string, opts: InputFetchOptions = {}, signal?: AbortSignal): Promise<string> {
  const maxBytes = opts.maxBytes ?? INPUT_FETCH_DEFAULTS.maxBytes;
  const maxRedirects = opts.maxRedirects ?? INPUT_FETCH_DEFAULTS.maxRedirects;
  const deadline = AbortSignal.timeout(opts.timeoutMs ?? INPUT_FETCH_DEFAULTS.timeoutMs);
  const s = signal ? AbortSignal.any([signal, deadline]) : deadline;
  let current = url;
  try {
    for (let hop = 0; ; hop++) {
      const res = await fetch(current, { redirect: 'manual', signal: s, headers: { 'user-agent': opts.userAgent ?? 'fluxserve', accept: 'image/*' } });
      if (res.status >= 300 && res.status < 400 && res.headers.has('location')) {
        await res.body?.cancel();
        if (hop >= maxRedirects) throw new Error(`more than ${maxRedirects} redirects`);
        const next = new URL(res.headers.get('location')!, current);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new Error(`redirected to a ${next.protocol} URL`);
        current = next.toString();
        continue;
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      const contentType = res.headers.get('content-type');
      if (!acceptableType(contentType)) {
        await res.body?.cancel();
        throw new Error(`expected an image, got content-type ${contentType!.split(';')[0]!.trim()}`);
      }
      const declared = Number(res.headers.get('content-length') ?? NaN);
      if (Number.isFinite(declared) && declared > maxBytes) {
        await res.body?.cancel();
        throw new Error(`the file is larger than ${maxBytes} bytes`);
      }
      const chunks: Uint8Array[] = [];
      let total = 0;
      if (res.body) {
        const reader = res.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          total += value.byteLength;
          if (total > maxBytes) {
            await reader.cancel();
            throw new Error(`the file is larger than ${maxBytes} bytes`);
          }
          chunks.push(value);
        }
      }
      const type = contentType && contentType.trim() !== '' ? contentType.split(';')[0]!.trim().toLowerCase() : 'application/octet-stream';
      return dataUri(type, Buffer.concat(chunks));
    }
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    if (deadline.aborted) throw new Error(`timed out after ${(opts.timeoutMs ?? INPUT_FETCH_DEFAULTS.timeoutMs) / 1000} s`);
    const err = e as Error & { cause?: { code?: string; message?: string } };
    const detail = err.name === 'TypeError' && err.cause ? (err.cause.code ?? err.cause.message ?? err.message) : err.message;
    throw new Error(detail);
  }
}

/**
 * Returns `input` with every http(s) URL in a file field replaced by a data: URI of the downloaded
 * file. Throws InputFetchError listing every field that failed.
 */
export async function fetchFileInputs(
  fields: readonly string[],
  input: Record<string, unknown>,
  opts: InputFetchOptions = {},
  signal?: AbortSignal,
): Promise<Record<string, unknown>> {
  const todo = fields.filter((f) => isHttpUrl(input[f]));
  if (todo.length === 0) return input;
  const results = await Promise.allSettled(todo.map((f) => fetchInput(input[f] as string, opts, signal)));
  if (signal?.aborted) throw signal.reason;
  const out = { ...input };
  const failures: InputFetchFailure[] = [];
  results.forEach((r, i) => {
    const field = todo[i]!;
    if (r.status === 'fulfilled') out[field] = r.value;
    else
      failures.push({
        field,
        message: `${field}: could not fetch ${redact(input[field] as string)}: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`,
      });
  });
  if (failures.length > 0) throw new InputFetchError(failures);
  return out;
}
