import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ropeTable, timestepEmbedding } from '../../src/models/flux/math.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { roundBf16 } from '../../src/tensor/dtype.js';

describe('RoPE table', () => {
  it('rotates adjacent pairs by pos·ω with the axis-0 frequencies of flux-spec §9', () => {
    const t = ropeTable(new Float32Array([1, 0, 0]), 1, 1, [16, 56, 56], 10_000); // [1, 1, 64, 2, 2]
    const omega = [1, 0.316228, 0.1, 0.0316228, 0.01, 0.00316228, 0.001, 0.000316228];
    for (let k = 0; k < 8; k++) {
      assert.ok(Math.abs(t[4 * k]! - Math.cos(omega[k]!)) < 1e-6);
      assert.ok(Math.abs(t[4 * k + 2]! - Math.sin(omega[k]!)) < 1e-6);
      assert.equal(t[4 * k + 1], -t[4 * k + 2]!);
    }
    for (let k = 8; k < 64; k++) assert.deepEqual([...t.subarray(4 * k, 4 * k + 4)], [1, -0, 0, 1]);
  });
});

describe('timestep embedding', () => {
  it('embeds 1000·t in the model dtype, cos first (flux-spec §1.3, §3.3)', () => {
    // guidance 3.5 in a bf16 model: bf16(1000 · bf16(3.5)) = 3504; frequency 0 is 1.
    const e = timestepEmbedding(cpuBackend, [3.5], 'bf16'); // [1, 256]
    assert.equal(e.dtype, 'bf16');
    const v = e.toFloat32();
    assert.equal(v[0], roundBf16(Math.fround(Math.cos(3504))));
    assert.equal(v[128], roundBf16(Math.fround(Math.sin(3504))));
    e.dispose();
    // f32: σ = 0.7 -> fp32(1000 · fp32(0.7)) = 700
    const f = timestepEmbedding(cpuBackend, [0.7, 0], 'f32'); // [2, 256]
    const w = f.toFloat32();
    assert.equal(w[0], Math.fround(Math.cos(700)));
    assert.equal(w[256], 1); // t = 0: cos 0
    assert.equal(w[256 + 128], 0); // sin 0
    // the lowest frequency, f_127 = 10000^(-127/128) ≈ 1.0746e-4 (flux-spec §9)
    assert.ok(Math.abs(w[127]! - Math.cos(700 * 1.0746e-4)) < 1e-5);
    f.dispose();
  });
});
