// The CPU worker pool: split ops give bit-identical results to single-threaded ones, worker
// threads never keep the process alive, and the thread count follows FLUXSERVE_CPU_THREADS.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { configureCpuPool, cpuBackend as be, cpuPoolInfo, shutdownCpuPool } from '../../src/tensor/cpu/index.js';
import { affine, attention, conv2d, groupNorm, linear, matmul } from '../../src/tensor/ops.js';
import type { CpuStorage } from '../../src/tensor/cpu/storage.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { randomTensor } from '../helpers/backends.js';

const initial = cpuPoolInfo();
after(async () => {
  configureCpuPool({ threads: initial.threads, minFlopsPerThread: initial.minFlopsPerThread });
  await shutdownCpuPool();
});

/** Run `op` single-threaded and split over `threads`; both results' raw bits. */
function both(threads: number, op: () => Tensor): [number[], number[]] {
  configureCpuPool({ threads: 1 });
  const single = [...op().toRaw()];
  configureCpuPool({ threads, minFlopsPerThread: 0 });
  const before = cpuPoolInfo().splitOps;
  const split = [...op().toRaw()];
  assert.ok(cpuPoolInfo().splitOps > before, 'the op should have been split across threads');
  return [single, split];
}

describe('cpu worker pool', () => {
  for (const threads of [2, 3]) {
    it(`gives bit-identical results split over ${threads} threads`, () => {
      const x = randomTensor(be, [37, 29], 1, { dtype: 'bf16' }).t;
      const w = randomTensor(be, [23, 29], 2, { dtype: 'bf16' }).t;
      const bias = randomTensor(be, [23], 3, { dtype: 'bf16' }).t;
      const row = randomTensor(be, [1, 29], 4).t;
      const check = (name: string, op: () => Tensor) => {
        const [a, b] = both(threads, op);
        assert.deepEqual(b, a, `${name}: split result differs`);
      };
      check('linear (rows)', () => linear(x, w, { bias, act: 'gelu_tanh' }));
      check('linear (columns)', () => linear(row, w));
      const a3 = randomTensor(be, [3, 13, 8], 5).t;
      const b3 = randomTensor(be, [3, 8, 11], 6).t;
      check('matmul', () => matmul(a3, b3));
      check('matmul transB broadcast', () => matmul(a3, randomTensor(be, [11, 8], 7).t, { transB: true }));
      const img = randomTensor(be, [2, 5, 11, 9], 8).t;
      check('conv2d 3x3', () => conv2d(img, randomTensor(be, [6, 5, 3, 3], 9).t, { padding: 1 }));
      check('conv2d stride 2', () => conv2d(img, randomTensor(be, [6, 5, 3, 3], 10).t, { stride: 2, padding: [0, 1, 0, 1] }));
      check('conv2d 1x1', () => conv2d(img, randomTensor(be, [7, 5, 1, 1], 11).t));
      const plainImg = affine(img, 1, 0.5); // an op output: staged through the shared arena
      check('conv2d on an op output', () => conv2d(plainImg, randomTensor(be, [6, 5, 3, 3], 9).t, { padding: 1 }));
      const q = randomTensor(be, [2, 2, 45, 8], 12).t;
      const k = randomTensor(be, [2, 2, 45, 8], 13).t;
      const v = randomTensor(be, [2, 2, 45, 6], 14).t;
      const bb = randomTensor(be, [1, 2, 45, 45], 15).t;
      check('attention', () => attention(q, k, v, { bias: bb }));
      check('attention causal', () => attention(q, k, v, { causal: true }));
      const gw = randomTensor(be, [6], 16, { dtype: 'bf16' }).t;
      const gb = randomTensor(be, [6], 17, { dtype: 'bf16' }).t;
      const gx = randomTensor(be, [2, 6, 9, 7], 18, { dtype: 'bf16' }).t;
      check('groupNorm + silu', () => groupNorm(gx, { groups: 3, weight: gw, bias: gb, eps: 1e-6, act: 'silu' }));
      assert.ok(cpuPoolInfo().workers >= 1);
      assert.equal(cpuPoolInfo().disabled, null);
    });
  }

  it('keeps op outputs on ordinary ArrayBuffers (SharedArrayBuffers do not count as GC pressure)', () => {
    configureCpuPool({ threads: 2, minFlopsPerThread: 0 });
    const x = randomTensor(be, [16, 16], 20).t;
    for (const y of [linear(x, x), affine(x, 2), conv2d(x.view([1, 1, 16, 16]), x.view([16, 1, 4, 4]))]) {
      const s = y.storage as CpuStorage;
      assert.ok(!(s.data.buffer instanceof SharedArrayBuffer), 'op output on a SharedArrayBuffer');
    }
  });

  const cpuIndex = fileURLToPath(new URL('../../src/tensor/cpu/index.js', import.meta.url));
  const opsIndex = fileURLToPath(new URL('../../src/tensor/ops.js', import.meta.url));

  it('never keeps the process alive', () => {
    const script = `
      const { cpuBackend, configureCpuPool, cpuPoolInfo } = await import(${JSON.stringify(cpuIndex)});
      const { fromArray, linear } = await import(${JSON.stringify(opsIndex)});
      configureCpuPool({ threads: 2, minFlopsPerThread: 0 });
      const x = fromArray(cpuBackend, [64, 64], new Float32Array(4096).fill(1));
      const y = linear(x, x);
      console.log(cpuPoolInfo().workers, y.toFloat32()[0]);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.signal, null, 'the child process had to be killed: the pool kept it alive');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '1 64');
  });

  it('takes its thread count from FLUXSERVE_CPU_THREADS and rejects bad values', () => {
    const script = `const m = await import(${JSON.stringify(cpuIndex)}); console.log(m.cpuPoolInfo().threads);`;
    const run = (v: string) =>
      spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { ...process.env, FLUXSERVE_CPU_THREADS: v },
        timeout: 30_000,
      });
    assert.equal(run('3').stdout.trim(), '3');
    const bad = run('lots');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /FLUXSERVE_CPU_THREADS must be an integer from 1 to 256 \(got 'lots'\)/);
  });
});
