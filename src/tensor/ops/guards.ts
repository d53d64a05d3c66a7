// The checks every op starts with: errors that name the op and its inputs' shapes and dtypes, one
// backend for all inputs (none disposed), float inputs, and wrapping a backend's output storage.

import type { Backend, OutSpec, Storage } from '../backend.js';
import { isFloat } from '../dtype.js';
import { type Shape, StorageRef, Tensor, shapeStr } from '../tensor.js';

export class OpError extends Error {
  constructor(op: string, msg: string) {
    super(`${op}: ${msg}`);
    this.name = 'OpError';
  }
}

function describe(named: Record<string, Tensor | undefined>): string {
  return Object.entries(named)
    .filter(([, t]) => t !== undefined)
    .map(([k, t]) => `${k} ${shapeStr(t!.shape)} ${t!.dtype}`)
    .join(', ');
}

export function fail(op: string, why: string, named: Record<string, Tensor | undefined>): never {
  throw new OpError(op, `${why} (got ${describe(named)})`);
}

export function sameBackend(op: string, named: Record<string, Tensor | undefined>): Backend {
  let be: Backend | undefined;
  for (const t of Object.values(named)) {
    if (!t) continue;
    if (t.disposed) fail(op, `input used after dispose`, named);
    if (be && t.backend !== be) fail(op, `inputs live on different backends`, named);
    be = t.backend;
  }
  if (!be) throw new OpError(op, 'no tensor inputs');
  return be;
}

export function wrap(be: Backend, out: OutSpec, s: Storage): Tensor {
  return new Tensor(be, new StorageRef(s), out.shape, out.dtype);
}

export function requireFloat(op: string, named: Record<string, Tensor | undefined>): void {
  for (const [k, t] of Object.entries(named)) {
    if (t && !isFloat(t.dtype)) fail(op, `${k} must be a float tensor`, named);
  }
}

export function last(shape: Shape): number {
  return shape[shape.length - 1] ?? 1;
}
