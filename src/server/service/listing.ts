// Pages of /v1 predictions, newest first, with opaque cursors (base64url JSON of a creation
// sequence number and a direction), as Replicate's list endpoints page
// (https://replicate.com/docs/reference/http#predictions.list).

import { ServiceError } from '../errors.js';
import type { Prediction } from './prediction.js';
import type { ListQuery, PredictionPage } from './types.js';

interface Cursor {
  /** Items with seq below this (next page) or above it (previous page). */
  readonly seq: number;
  readonly dir: 'next' | 'prev';
}

const encodeCursor = (c: Cursor): string => Buffer.from(JSON.stringify(c)).toString('base64url');

function decodeCursor(s: string): Cursor | undefined {
  try {
    const c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Partial<Cursor> | null;
    if (c && typeof c.seq === 'number' && (c.dir === 'next' || c.dir === 'prev')) return { seq: c.seq, dir: c.dir };
  } catch {
    // not a cursor of ours
  }
  return undefined;
}

/** One page of `newestFirst` (throws ServiceError 'bad-request' on a cursor that is not ours). */
export function pageOf(newestFirst: readonly Prediction[], q: ListQuery): PredictionPage {
  let cursor: Cursor | undefined;
  if (q.cursor !== undefined) {
    cursor = decodeCursor(q.cursor);
    if (!cursor) throw new ServiceError('bad-request', 'Invalid cursor');
  }
  const after = q.createdAfter?.getTime();
  const before = q.createdBefore?.getTime();
  const all = newestFirst.filter((p) => (after === undefined || p.createdAt.getTime() > after) && (before === undefined || p.createdAt.getTime() < before));
  let page: Prediction[];
  if (cursor?.dir === 'prev') {
    const newer = all.filter((p) => p.seq > cursor.seq);
    page = newer.slice(Math.max(0, newer.length - q.pageSize));
  } else {
    page = all.filter((p) => cursor === undefined || p.seq < cursor.seq).slice(0, q.pageSize);
  }
  const first = page[0];
  const last = page[page.length - 1];
  return {
    results: page.map((p) => p.snapshot()),
    next: last && all.some((p) => p.seq < last.seq) ? encodeCursor({ seq: last.seq, dir: 'next' }) : null,
    previous: first && all.some((p) => p.seq > first.seq) ? encodeCursor({ seq: first.seq, dir: 'prev' }) : null,
  };
}
