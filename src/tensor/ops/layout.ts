// Layout ops: concat, slice, reshape (a view), permute, splitHeads, embedding lookup, dtype cast and
// the absMax reduction.

import type { OutSpec } from '../backend.js';
import type { DType } from '../dtype.js';
import { type Tensor, numel, shapeStr } from '../tensor.js';
import { OpError, fail, requireFloat, sameBackend, wrap } from './guards.js';

function normAxis(op: string, axis: number, rank: number, named: Record<string, Tensor | undefined>): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) fail(op, `axis ${axis} out of range for rank ${rank}`, named);
  return a;
}

/** Concatenate along an axis; all other dims and the dtype must agree. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  const op = 'concat';
  if (xs.length === 0) throw new OpError(op, 'needs at least one tensor');
  const named = Object.fromEntries(xs.map((t, i) => [`x${i}`, t]));
  const be = sameBackend(op, named);
  const first = xs[0]!;
  const a = normAxis(op, axis, first.rank, named);
  let total = 0;
  for (const t of xs) {
    if (t.rank !== first.rank || t.dtype !== first.dtype) fail(op, 'ranks or dtypes differ', named);
    for (let d = 0; d < t.rank; d++) if (d !== a && t.shape[d] !== first.shape[d]) fail(op, `dim ${d} differs`, named);
    total += t.shape[a]!;
  }
  const shape = [...first.shape];
  shape[a] = total;
  const out = { shape, dtype: first.dtype };
  return wrap(be, out, be.concat(out, xs, a));
}

/** x[..., start:end, ...] along one axis (copy). */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const op = 'slice';
  const named = { x };
  const be = sameBackend(op, named);
  const a = normAxis(op, axis, x.rank, named);
  const n = x.shape[a]!;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > n || start > end) {
    fail(op, `range [${start}, ${end}) outside 0..${n} on axis ${a}`, named);
  }
  const shape = [...x.shape];
  shape[a] = end - start;
  const out = { shape, dtype: x.dtype };
  return wrap(be, out, be.slice(out, x, a, start));
}

/** A view with a new shape (same storage); one dim may be -1. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const op = 'reshape';
  const named = { x };
  sameBackend(op, named);
  const s = [...shape];
  const inferred = s.indexOf(-1);
  if (inferred !== s.lastIndexOf(-1)) fail(op, `at most one -1 in ${shapeStr(shape)}`, named);
  if (inferred >= 0) {
    const rest = numel(s.filter((_, i) => i !== inferred));
    if (rest === 0 || x.size % rest !== 0) fail(op, `cannot infer -1 in ${shapeStr(shape)}`, named);
    s[inferred] = x.size / rest;
  }
  if (s.some((d) => !Number.isInteger(d) || d < 0) || numel(s) !== x.size) {
    fail(op, `cannot view ${x.size} elements as ${shapeStr(shape)}`, named);
  }
  return x.view(s);
}

/** Transpose dims: out.shape[i] = x.shape[perm[i]] (copy). */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const op = 'permute';
  const named = { x };
  const be = sameBackend(op, named);
  const sorted = [...perm].sort((p, q) => p - q);
  if (perm.length !== x.rank || sorted.some((p, i) => p !== i)) fail(op, `perm [${perm}] is not a permutation of rank ${x.rank}`, named);
  const out = { shape: perm.map((p) => x.shape[p]!), dtype: x.dtype };
  return wrap(be, out, be.permute(out, x, perm));
}

/**
 * Split a packed projection x [B, L, n·H·D] into n tensors [B, H, L, D] (einops
 * "B L (K H D) -> K B H L D" in BFL's DoubleStreamBlock.forward, src/flux/modules/layers.py): part p,
 * head h is columns [(p·H + h)·D, (p·H + h + 1)·D).
 */
export function splitHeads(x: Tensor, parts: number, heads: number): Tensor[] {
  const op = 'splitHeads';
  const named = { x };
  const be = sameBackend(op, named);
  if (x.rank !== 3) fail(op, 'x must be [B, L, n*H*D]', named);
  const [B, L, F] = x.shape as [number, number, number];
  if (!Number.isInteger(parts) || parts < 1 || !Number.isInteger(heads) || heads < 1 || F % (parts * heads) !== 0) {
    fail(op, `last dim ${F} is not ${parts} parts x ${heads} heads`, named);
  }
  const D = F / (parts * heads);
  const outs: OutSpec[] = Array.from({ length: parts }, () => ({ shape: [B, heads, L, D], dtype: x.dtype }));
  const storages = be.splitHeads(outs, x, heads);
  return storages.map((s, i) => wrap(be, outs[i]!, s));
}

/** Gather rows of table [V, D] by integer ids [...] -> [..., D]. Ids out of range throw. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  const op = 'embedding';
  const named = { table, ids };
  const be = sameBackend(op, named);
  if (table.rank !== 2) fail(op, 'table must be [V, D]', named);
  if (ids.dtype !== 'i32') fail(op, 'ids must be i32', named);
  const out = { shape: [...ids.shape, table.shape[1]!], dtype: table.dtype };
  return wrap(be, out, be.embedding(out, table, ids));
}

/** Convert to another dtype (round to nearest even for bf16/f16/f8, NaN/inf kept; floats -> i32 truncate). */
export function cast(x: Tensor, dtype: DType): Tensor {
  const op = 'cast';
  const be = sameBackend(op, { x });
  const out = { shape: x.shape, dtype };
  return wrap(be, out, be.cast(out, x));
}

/**
 * max |x| over all elements as a host number (a reduction that waits for the backend; used when
 * quantising weights, not inside a denoising step). NaN elements are ignored; 0 for an empty tensor.
 */
export function absMax(x: Tensor): number {
  const op = 'absMax';
  const be = sameBackend(op, { x });
  requireFloat(op, { x });
  return x.size === 0 ? 0 : be.absMax(x);
}
