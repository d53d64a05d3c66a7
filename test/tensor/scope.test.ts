// Tensor ownership: tidy(), Scope, dispose.

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { Scope, resetScopesForTests, scopeDepth, tidy, untrack } from '../../src/tensor/scope.js';
import { add, fromArray, reshape } from '../../src/tensor/ops.js';
import { cpuBackend as be } from '../../src/tensor/cpu/index.js';

afterEach(() => resetScopesForTests());

describe('tidy', () => {
  it('disposes intermediates and keeps returned tensors (single, array, object)', () => {
    let mid: ReturnType<typeof add> | undefined;
    const x = fromArray(be, [2], [1, 2]);
    const y = tidy(() => {
      mid = add(x, x);
      return add(mid, x);
    });
    assert.ok(mid!.disposed);
    assert.ok(!y.disposed);
    assert.ok(!x.disposed, 'inputs created outside are not touched');
    assert.deepEqual([...y.toFloat32()], [3, 6]);

    const r = tidy(() => {
      const a = add(x, x);
      const b = add(a, a);
      const c = add(b, b);
      return { pair: [a, c], nested: { b } };
    });
    assert.ok(!r.pair[0]!.disposed && !r.pair[1]!.disposed && !r.nested.b.disposed);
  });

  it('nested tidy hands results to the enclosing scope', () => {
    const x = fromArray(be, [1], [1]);
    let inner: ReturnType<typeof add> | undefined;
    const outer = tidy(() => {
      inner = tidy(() => add(x, x));
      return add(inner, x);
    });
    assert.ok(inner!.disposed, 'the inner result is an intermediate of the outer tidy');
    assert.ok(!outer.disposed);
    assert.equal(scopeDepth(), 0);
  });

  it('refuses async functions and disposes what they created', () => {
    const x = fromArray(be, [1], [1]);
    let made: ReturnType<typeof add> | undefined;
    assert.throws(
      () =>
        tidy(() => {
          made = add(x, x);
          return Promise.resolve(made);
        }),
      /synchronous/,
    );
    assert.ok(made!.disposed);
    assert.equal(scopeDepth(), 0);
  });

  it('disposes everything when the function throws', () => {
    const x = fromArray(be, [1], [1]);
    let made: ReturnType<typeof add> | undefined;
    assert.throws(() =>
      tidy(() => {
        made = add(x, x);
        throw new Error('boom');
      }),
    );
    assert.ok(made!.disposed);
    assert.equal(scopeDepth(), 0);
  });

  it('untrack() lets a tensor outlive its tidy()', () => {
    const x = fromArray(be, [1], [1]);
    let kept: ReturnType<typeof add> | undefined;
    tidy(() => {
      kept = untrack(add(x, x));
      return undefined;
    });
    assert.ok(!kept!.disposed);
  });
});

describe('Scope', () => {
  it('keep(), run() and dispose() own tensors', () => {
    const x = fromArray(be, [2], [1, 2]);
    const scope = new Scope('request');
    const a = scope.keep(add(x, x));
    const { b } = scope.run(() => ({ b: add(a, x), tmp: undefined }));
    assert.equal(scope.size, 2);
    assert.ok(!a.disposed && !b.disposed);
    scope.dispose();
    assert.ok(a.disposed && b.disposed);
    assert.ok(!x.disposed);
    assert.throws(() => scope.keep(add(x, x)), /already disposed/);
    scope.dispose(); // idempotent
  });

  it('keep() inside tidy() takes the tensor out of the tidy', () => {
    const x = fromArray(be, [1], [5]);
    const scope = new Scope();
    tidy(() => {
      scope.keep(add(x, x));
      return undefined;
    });
    assert.equal(scope.size, 1);
    scope.dispose();
  });

  it('works with `using`', () => {
    const x = fromArray(be, [1], [5]);
    let t: ReturnType<typeof add> | undefined;
    {
      using scope = new Scope();
      t = scope.keep(add(x, x));
    }
    assert.ok(t.disposed);
  });
});

describe('dispose', () => {
  it('use after dispose throws, naming the tensor', () => {
    const x = fromArray(be, [2, 2], [1, 2, 3, 4]);
    x.dispose();
    assert.throws(() => x.toFloat32(), /used after dispose/);
    assert.throws(() => add(x, x), /add: input used after dispose/);
    x.dispose(); // idempotent
  });

  it('views share storage; it is freed with the last one', () => {
    const x = fromArray(be, [2, 2], [1, 2, 3, 4]);
    const v = reshape(x, [4]);
    const storage = x.storage;
    x.dispose();
    assert.deepEqual([...v.toFloat32()], [1, 2, 3, 4]);
    v.dispose();
    assert.throws(() => be.read(storage, 'f32', 4), /after free/);
  });
});
