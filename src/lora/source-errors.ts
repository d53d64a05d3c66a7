// Errors and redaction for LoRA sources (sources.ts) and the download cache (cache.ts).
//
// Every message that can reach a log line, an error or an API response goes through `redact`:
// URLs lose their query string, fragment and userinfo (signed URLs carry their signature there),
// `token=`/`key=`-like parameters inside free text are masked, and every secret the caller knows
// about (API tokens, signed queries) is replaced by `***` wherever it appears.

/** What went wrong, for callers that map errors to HTTP statuses or retry decisions. */
export type LoraSourceErrorCode =
  /** The reference matches no accepted form (or a malformed URL of a known host). */
  | 'bad-ref'
  /** A local path while local paths are not allowed. */
  | 'local-not-allowed'
  /** 401/403 from a hub: token missing, invalid, or without access to a gated repo. */
  | 'auth'
  /** 404/410, or an API answer that names nothing downloadable. */
  | 'not-found'
  /** Several candidate files and no way to choose (HF repo without a file name, a tar with several). */
  | 'ambiguous'
  /** 5xx from a hub. */
  | 'server'
  /** Any other non-2xx status. */
  | 'http'
  /** The body ended before Content-Length bytes. */
  | 'truncated'
  /** Content-Length or the streamed byte count is over the size cap. */
  | 'too-large'
  /** No response headers within the connect timeout, or no body bytes within the idle timeout. */
  | 'timeout'
  /** More redirects than allowed. */
  | 'redirects'
  /** Connection refused/reset, DNS failure. */
  | 'network'
  /** The downloaded bytes are not a valid safetensors file (nor a tar/gzip holding one). */
  | 'invalid'
  /** The caller's AbortSignal fired. */
  | 'aborted';

/** The one error class of LoRA resolution and download; `code` says which failure it is. */
export class LoraSourceError extends Error {
  constructor(
    readonly code: LoraSourceErrorCode,
    message: string,
    /** The HTTP status when the failure came from a response. */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'LoraSourceError';
  }
}

/** Query parameter names whose values are credentials even outside a signed URL. */
const SECRET_PARAM = /([?&;\s](?:token|access_token|api_key|apikey|key|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&\s"'#]*/gi;

/**
 * A URL for messages: scheme, host, port and path only; a query or fragment becomes `?…`, userinfo
 * is dropped. Non-URLs are returned with secret-looking parameters masked.
 */
export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.protocol === 'data:') return 'data:…';
    const tail = u.search || u.hash ? '?…' : '';
    return `${u.protocol}//${u.host}${u.pathname}${tail}`;
  } catch {
    const q = raw.search(/[?#]/);
    return q >= 0 ? `${raw.slice(0, q)}?…` : raw;
  }
}

/**
 * Masks every secret (exact substrings, and their URL-encoded forms) and every URL query string in
 * `text`. Secrets shorter than 4 characters are ignored (they would mask ordinary words).
 */
export function redact(text: string, secrets: readonly (string | undefined)[] = []): string {
  let out = text;
  const list = secrets
    .filter((s): s is string => typeof s === 'string' && s.length >= 4)
    .flatMap((s) => (encodeURIComponent(s) === s ? [s] : [s, encodeURIComponent(s)]))
    .sort((a, b) => b.length - a.length);
  for (const s of list) out = out.split(s).join('***');
  // URLs in free text: drop their query strings.
  out = out.replace(/\b((?:https?|wss?):\/\/[^\s"'<>?#]*)[?#][^\s"'<>]*/gi, '$1?…');
  out = out.replace(SECRET_PARAM, '$1***');
  return out;
}

/** Wraps any thrown value as a LoraSourceError with a redacted message (LoraSourceErrors pass through, re-redacted). */
export function asSourceError(e: unknown, fallback: LoraSourceErrorCode, secrets: readonly (string | undefined)[]): LoraSourceError {
  if (e instanceof LoraSourceError) {
    const m = redact(e.message, secrets);
    if (m === e.message) return e;
    const r = new LoraSourceError(e.code, m, e.status);
    return r;
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new LoraSourceError(fallback, redact(msg, secrets));
}
