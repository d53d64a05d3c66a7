import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { referenceCheck } from '../../src/debug/reference-check.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { BFL_TINY_A } from './fixture.js';

describe('reference check against the BFL PyTorch fixture (bfl-tiny-a)', () => {
  it('reproduces every tensor of every case within tolerance', async () => {
    const lines: string[] = [];
    const { results, ok } = await referenceCheck(BFL_TINY_A, { backend: cpuBackend, log: (l) => lines.push(l) });
    const names = results.map((r) => r.name);
    for (const want of [
      'tap.double_blocks.0.img',
      'tap.single_blocks.1',
      'forward.out',
      'noise.seed42.f32',
      'sample.latents_packed',
      'sample.decoded',
      'sample.uint8',
      'vae.encoded',
    ]) {
      assert.ok(names.includes(want), `no result for ${want}`);
    }
    const bad = results.filter((r) => !r.ok);
    assert.deepEqual(bad, [], lines.join('\n'));
    assert.equal(ok, true);
  });
});
