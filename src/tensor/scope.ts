// Explicit ownership of tensors.
//
// - `tidy(fn)`: runs a *synchronous* function and disposes every tensor created inside it, except
//   the tensors it returns (a tensor, or tensors inside a returned array / plain object). It refuses
//   async functions, because a scope must never span an `await` (another request could run in
//   between, and a throw before the scope's end would leak it; docs/references.md, "Style").
// - `Scope`: a per-request (or per-model) owner. `scope.keep(t)` adopts a tensor, `scope.run(fn)` is
//   tidy() whose results the scope adopts; disposing the scope (in `finally`, or `using`) frees all.
// Tensors created outside any tidy() are owned by their creator (weights live for the process).

import type { Tensor } from './tensor.js';

let stack: Set<Tensor>[] = [];

export function trackInCurrentScope(t: Tensor): void {
  const top = stack[stack.length - 1];
  if (top) top.add(t);
}

function collect(value: unknown, into: Set<Tensor>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 4) return;
  if (isTensor(value)) {
    into.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, into, depth + 1);
    return;
  }
  if (value instanceof Map) {
    for (const v of value.values()) collect(v, into, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, into, depth + 1);
  }
}

function isTensor(v: object): v is Tensor {
  return typeof (v as Tensor).dispose === 'function' && typeof (v as Tensor).backend === 'object' && 'shape' in v;
}

/** Run `fn` synchronously; dispose all tensors it created except those in its result. */
export function tidy<T>(fn: () => T): T {
  const created = new Set<Tensor>();
  stack.push(created);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) {
      throw new Error('tidy() takes a synchronous function: a tensor scope must not span an await');
    }
  } catch (e) {
    stack.pop();
    for (const t of created) t.dispose();
    throw e;
  }
  stack.pop();
  const keep = new Set<Tensor>();
  collect(result, keep);
  for (const t of created) if (!keep.has(t)) t.dispose();
  // Returned tensors belong to the enclosing tidy(), if any.
  const outer = stack[stack.length - 1];
  if (outer) for (const t of keep) if (created.has(t)) outer.add(t);
  return result;
}

/** Take a tensor out of the enclosing tidy() so it survives it; the caller now owns it. */
export function untrack<T extends Tensor>(t: T): T {
  for (const s of stack) s.delete(t);
  return t;
}

/** An explicit owner of tensors, released with dispose() / `using`. */
export class Scope implements Disposable {
  private readonly owned = new Set<Tensor>();
  private closed = false;

  constructor(readonly name = 'scope') {}

  keep<T extends Tensor>(t: T): T {
    if (this.closed) throw new Error(`Scope ${this.name} is already disposed`);
    untrack(t);
    this.owned.add(t);
    return t;
  }

  /** Run `fn` inside tidy() and adopt every tensor in its result. */
  run<T>(fn: () => T): T {
    const r = tidy(fn);
    const found = new Set<Tensor>();
    collect(r, found);
    for (const t of found) this.keep(t);
    return r;
  }

  get size(): number {
    return this.owned.size;
  }

  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.owned) t.dispose();
    this.owned.clear();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** For tests: the number of open tidy() levels (0 outside any). */
export function scopeDepth(): number {
  return stack.length;
}

/** For tests that need a clean state after an unexpected failure. */
export function resetScopesForTests(): void {
  stack = [];
}
