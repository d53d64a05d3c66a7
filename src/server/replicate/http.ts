// What the Replicate API's resource plugins share: their options, the server's absolute base URL
// (Replicate's objects carry absolute URLs), `Prefer: wait`, and the API token check.

import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { ServiceError } from '../errors.js';
import type { PredictionService } from '../service/types.js';

export interface ReplicateApiOptions {
  readonly service: PredictionService;
  /** Bearer token required on every /v1 request; none: open. */
  readonly auth?: string | undefined;
  /** Absolute URL the server is reached at (no trailing slash); default: from the request. */
  readonly publicBaseUrl?: string | undefined;
  /** How /v1 outputs are returned: data URIs, or URLs under publicBaseUrl (or the request's base). */
  readonly outputs: 'data-uri' | 'url';
  /** Predictions per list page (100). */
  readonly pageSize?: number | undefined;
  /** Reported as the versions' `cog_version`. */
  readonly version: string;
  /** Largest file POST /v1/files takes (100 MiB, Replicate's limit). */
  readonly maxUploadBytes?: number | undefined;
  /** SSE keep-alive comment interval (15 s). */
  readonly sseKeepAliveMs?: number | undefined;
}

export const nullableString = { type: ['string', 'null'] } as const;

/** The server's absolute base URL (no trailing slash). */
export function baseUrlOf(req: FastifyRequest, publicBaseUrl: string | undefined): string {
  if (publicBaseUrl) return publicBaseUrl.replace(/\/+$/, '');
  return `${req.protocol}://${req.host}`;
}

/** `Prefer: wait` -> 60, `wait=N` -> N (clamped to 1..60), else undefined (seconds). */
export function preferWait(header: string | string[] | undefined): number | undefined {
  const v = Array.isArray(header) ? header.join(',') : (header ?? '');
  for (const part of v.split(',')) {
    const m = /^\s*wait(?:\s*=\s*(\d+))?\s*$/i.exec(part);
    if (!m) continue;
    if (m[1] === undefined) return 60;
    return Math.min(60, Math.max(1, Number(m[1])));
  }
  return undefined;
}

/** `Authorization: Bearer|Token T` must carry `token` (throws ServiceError 'unauthenticated'). */
export function checkToken(req: FastifyRequest, token: string): void {
  const h = req.headers['authorization'];
  const m = typeof h === 'string' ? /^(?:Bearer|Token)\s+(.+)$/i.exec(h.trim()) : null;
  if (!m) throw new ServiceError('unauthenticated', 'You did not pass an authentication token');
  // Compare digests so the time taken says nothing about the token.
  const given = createHash('sha256').update(m[1]!).digest();
  if (!given.equals(createHash('sha256').update(token).digest())) throw new ServiceError('unauthenticated', 'You did not pass a valid authentication token');
}
