// The CPU backend's decoded-weight cache: bf16 weights beyond the cache budget are decoded into a
// small ring of reused buffers, and every op still sees its own weights (no slot is overwritten
// while an op reads it). Results must equal the cached path bit for bit.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuBackend, decodeCacheBytes, setDecodeCacheBudget } from '../../src/tensor/cpu/index.js';
import { cast, conv2d, fromArray, groupNorm, linear } from '../../src/tensor/ops.js';
import { tidy } from '../../src/tensor/scope.js';
import { Rng } from '../helpers/backends.js';

function run(rng: Rng): Float32Array[] {
  return tidy(() => {
    const r = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
    const x = fromArray(cpuBackend, [3, 40], r(120), 'bf16');
    // Six distinct bf16 weights + biases, more than the ring's slots, used in turn twice.
    const ws = Array.from({ length: 6 }, () => fromArray(cpuBackend, [40, 40], r(1600), 'bf16'));
    const bs = Array.from({ length: 6 }, () => fromArray(cpuBackend, [40], r(40), 'bf16'));
    const outs: Float32Array[] = [];
    for (let pass = 0; pass < 2; pass++) {
      let h = x;
      for (let i = 0; i < 6; i++) h = linear(h, ws[i]!, { bias: bs[i], act: 'gelu_tanh' });
      outs.push(h.toFloat32());
    }
    const img = fromArray(cpuBackend, [1, 32, 6, 5], r(960), 'bf16');
    const cw = fromArray(cpuBackend, [32, 32, 3, 3], r(9216), 'bf16');
    const cb = fromArray(cpuBackend, [32], r(32), 'bf16');
    const gw = cast(fromArray(cpuBackend, [32], r(32)), 'bf16');
    const gb = cast(fromArray(cpuBackend, [32], r(32)), 'bf16');
    outs.push(groupNorm(conv2d(img, cw, { bias: cb, padding: 1 }), { groups: 32, weight: gw, bias: gb, eps: 1e-6, act: 'silu' }).toFloat32());
    return outs;
  });
}

test('bf16 weights decoded beyond the cache budget give the same results as cached ones', () => {
  const cached = run(new Rng(11));
  const before = decodeCacheBytes();
  setDecodeCacheBudget(0);
  try {
    const uncached = run(new Rng(11));
    assert.equal(decodeCacheBytes(), before, 'nothing new was cached with a zero budget');
    assert.equal(uncached.length, cached.length);
    for (let i = 0; i < cached.length; i++) assert.deepEqual(uncached[i], cached[i], `output ${i} differs`);
    assert.deepEqual(uncached[0], uncached[1], 'the second pass over the same weights agrees');
  } finally {
    setDecodeCacheBudget((Number(process.env['FLUXSERVE_CPU_DECODE_CACHE_MB']) || 2048) * 2 ** 20);
  }
});
