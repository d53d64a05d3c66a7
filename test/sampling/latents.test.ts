import { test } from 'node:test';
import assert from 'node:assert/strict';

import { imageIds, latentSize, pack, textIds, unpack } from '../../src/sampling/latents.js';
import { f32 } from './fixture.js';

function iota(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  return a;
}

test('pack follows the channel rule of flux-spec §9: (c, 2r+ph, 2q+pw) -> token r·(w/2)+q, channel 4c+2ph+pw', () => {
  const B = 2;
  const C = 16;
  const h = 6;
  const w = 10;
  const x = iota(B * C * h * w);
  const p = pack(x, B, C, h, w);
  const L = (h / 2) * (w / 2);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let y = 0; y < h; y++)
        for (let xx = 0; xx < w; xx++) {
          const r = y >> 1;
          const ph = y & 1;
          const q = xx >> 1;
          const pw = xx & 1;
          const token = r * (w / 2) + q;
          const ch = 4 * c + 2 * ph + pw;
          assert.equal(p[(b * L + token) * 4 * C + ch], x[((b * C + c) * h + y) * w + xx]);
        }
});

test('unpack(pack(x)) == x, and pack(unpack(p)) == p', () => {
  for (const [B, C, h, w] of [
    [1, 16, 2, 2],
    [2, 16, 6, 10],
    [3, 4, 8, 4],
    [1, 1, 128, 2],
  ] as const) {
    const x = new Float32Array(B * C * h * w).map(() => Math.random() - 0.5);
    assert.deepEqual(unpack(pack(x, B, C, h, w), B, C, h, w), x);
    assert.deepEqual(pack(unpack(x, B, C, h, w), B, C, h, w), x);
  }
  assert.throws(() => pack(new Float32Array(12), 1, 1, 3, 4), RangeError);
  assert.throws(() => pack(new Float32Array(15), 1, 1, 4, 4), RangeError);
});

test('fixture: unpack(sample.latents_packed) == sample.latents (BFL unpack)', () => {
  const packed = f32('sample.latents_packed'); // [2, 15, 64]
  const want = f32('sample.latents'); // [2, 16, 6, 10]
  assert.deepEqual(unpack(packed, 2, 16, 6, 10), want);
  assert.deepEqual(pack(want, 2, 16, 6, 10), packed);
});

test('fixture: imageIds / textIds equal forward.img_ids / forward.txt_ids', () => {
  const ids = f32('forward.img_ids'); // [2, 15, 3], batch-repeated
  const one = imageIds(6, 10);
  assert.equal(one.length, 15 * 3);
  assert.deepEqual(ids.subarray(0, 45), one);
  assert.deepEqual(ids.subarray(45, 90), one);
  assert.deepEqual(f32('forward.txt_ids').subarray(0, 24), textIds(8));
});

test('imageIds is (0, row, col) row-major over the 2x2 patches; textIds are zeros', () => {
  const ids = imageIds(4, 6); // 2 x 3 patches
  assert.deepEqual(Array.from(ids), [0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 1, 2]);
  assert.equal(imageIds(128, 128).length, 4096 * 3); // 1024x1024
  assert.deepEqual(Array.from(textIds(2)), [0, 0, 0, 0, 0, 0]);
  assert.throws(() => imageIds(5, 4), RangeError);
  assert.deepEqual(latentSize(80, 48), { h: 6, w: 10 });
  assert.deepEqual(latentSize(1024, 1024), { h: 128, w: 128 });
  assert.deepEqual(latentSize(1360, 768), { h: 96, w: 170 });
});
