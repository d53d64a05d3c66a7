// Layout ops (bit-exact copies) and cast for every dtype pair.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import {
  DTYPES,
  type DType,
  type RawArray,
  allocRaw,
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  f32ToF8e4m3Bits,
  f8e4m3BitsToF32,
} from '../../src/tensor/dtype.js';
import { OpError, cast, concat, embedding, fromArray, fromRaw, permute, reshape, slice, splitHeads } from '../../src/tensor/ops.js';
import { numel } from '../../src/tensor/tensor.js';
import { forEachBackend, randomTensor } from '../helpers/backends.js';
import { strides, unravel } from './naive.js';

describe('concat / slice / reshape', () => {
  for (const dtype of ['f32', 'bf16', 'i32'] as const) {
    forEachBackend(`concat along each axis, ${dtype}`, (be) => {
      const shapes = [
        [2, 3, 4],
        [2, 1, 4],
        [2, 5, 4],
      ];
      for (const axis of [0, 1, 2, -1]) {
        const ax = axis < 0 ? axis + 3 : axis;
        const parts = shapes.map((s, i) => {
          const sh = [2, 3, 4];
          sh[ax] = s[1]!;
          return { shape: sh, ...randomTensor(be, sh, 10 + i, { dtype: dtype === 'i32' ? 'f32' : dtype, scale: 100 }) };
        });
        const ts = dtype === 'i32' ? parts.map((p) => cast(p.t, 'i32')) : parts.map((p) => p.t);
        const vals = ts.map((t) => t.toFloat32());
        const y = concat(ts, axis);
        const outShape = [2, 3, 4];
        outShape[ax] = parts.reduce((s, p) => s + p.shape[ax]!, 0);
        assert.deepEqual(y.shape, outShape);
        assert.equal(y.dtype, dtype);
        const got = y.toFloat32();
        // naive: walk the output, find the part and its index
        for (let i = 0; i < got.length; i++) {
          const idx = unravel(i, outShape);
          let a = idx[ax]!;
          let p = 0;
          while (a >= parts[p]!.shape[ax]!) a -= parts[p++]!.shape[ax]!;
          idx[ax] = a;
          const st = strides(parts[p]!.shape);
          const src = idx.reduce((s, v, d) => s + v * st[d]!, 0);
          assert.equal(got[i], vals[p]![src], `concat axis ${axis} ${dtype} at ${i}`);
        }
      }
    });
  }

  forEachBackend('slice along each axis, incl. empty and full ranges', (be) => {
    const shape = [3, 4, 5];
    const x = randomTensor(be, shape, 20, { dtype: 'bf16' });
    for (const [axis, s, e] of [
      [0, 1, 3],
      [1, 0, 4],
      [2, 2, 3],
      [-1, 0, 5],
      [1, 2, 2],
    ] as const) {
      const ax = axis < 0 ? axis + 3 : axis;
      const y = slice(x.t, axis, s, e);
      const outShape = [...shape];
      outShape[ax] = e - s;
      assert.deepEqual(y.shape, outShape);
      const got = y.toFloat32();
      const st = strides(shape);
      for (let i = 0; i < got.length; i++) {
        const idx = unravel(i, outShape);
        idx[ax] = idx[ax]! + s;
        assert.equal(got[i], x.v[idx.reduce((a, v, d) => a + v * st[d]!, 0)]);
      }
    }
  });

  forEachBackend('reshape shares storage, infers -1 and keeps the data order', (be) => {
    const x = randomTensor(be, [2, 3, 4], 30);
    const y = reshape(x.t, [4, -1]);
    assert.deepEqual(y.shape, [4, 6]);
    assert.equal(y.storage, x.t.storage);
    assert.deepEqual([...y.toFloat32()], [...x.v]);
    const z = reshape(x.t, [24, 1, 1]);
    x.t.dispose();
    assert.deepEqual([...z.toFloat32()], [...x.v], 'a view keeps the storage alive');
    y.dispose();
    z.dispose();
  });
});

describe('permute', () => {
  forEachBackend('permute every permutation of rank 3 and some of rank 4, f32/bf16/f8/i32', (be) => {
    const perms3 = [
      [0, 1, 2],
      [0, 2, 1],
      [1, 0, 2],
      [1, 2, 0],
      [2, 0, 1],
      [2, 1, 0],
    ];
    const perms4 = [
      [0, 2, 1, 3],
      [3, 2, 1, 0],
      [0, 2, 3, 1],
      [1, 0, 3, 2],
    ];
    for (const dtype of ['f32', 'bf16', 'f8e4m3'] as const) {
      for (const [shape, perms] of [
        [[2, 3, 5], perms3],
        [[3, 1, 4, 2], perms4],
        [[1, 7, 1], perms3],
      ] as [number[], number[][]][]) {
        const x = randomTensor(be, shape, 40, { dtype });
        const st = strides(shape);
        for (const perm of perms) {
          const y = permute(x.t, perm);
          const outShape = perm.map((p) => shape[p]!);
          assert.deepEqual(y.shape, outShape);
          const got = y.toFloat32();
          for (let i = 0; i < got.length; i++) {
            const idx = unravel(i, outShape);
            let src = 0;
            for (let d = 0; d < perm.length; d++) src += idx[d]! * st[perm[d]!]!;
            assert.equal(got[i], x.v[src], `permute [${shape}] by [${perm}] ${dtype} at ${i}`);
          }
        }
      }
    }
    const ids = fromArray(be, [2, 3], [1, 2, 3, 4, 5, 6], 'i32');
    assert.deepEqual([...permute(ids, [1, 0]).toRaw()], [1, 4, 2, 5, 3, 6]);
    assert.deepEqual([...permute(fromArray(be, [4], [1, 2, 3, 4]), [0]).toFloat32()], [1, 2, 3, 4]);
  });
});

describe('splitHeads', () => {
  forEachBackend('splitHeads B L (K H D) -> K x [B, H, L, D]', (be) => {
    for (const [B, L, K, H, D] of [
      [2, 3, 3, 2, 4],
      [1, 1, 1, 1, 1],
      [2, 5, 2, 3, 1],
    ]) {
      const x = randomTensor(be, [B!, L!, K! * H! * D!], 50, { dtype: 'bf16' });
      const parts = splitHeads(x.t, K!, H!);
      assert.equal(parts.length, K);
      parts.forEach((p, k) => {
        assert.deepEqual(p.shape, [B, H, L, D]);
        const got = p.toFloat32();
        for (let b = 0; b < B!; b++)
          for (let h = 0; h < H!; h++)
            for (let l = 0; l < L!; l++)
              for (let d = 0; d < D!; d++) {
                assert.equal(got[((b * H! + h) * L! + l) * D! + d], x.v[(b * L! + l) * K! * H! * D! + (k * H! + h) * D! + d]);
              }
      });
    }
  });
});

describe('embedding', () => {
  forEachBackend('embedding gathers rows; out-of-range ids throw OpError', (be) => {
    for (const dtype of ['f32', 'bf16'] as const) {
      const table = randomTensor(be, [7, 5], 60, { dtype });
      const idv = [3, 0, 6, 6, 1, 2];
      const ids = fromArray(be, [2, 3], idv, 'i32');
      const y = embedding(table.t, ids);
      assert.deepEqual(y.shape, [2, 3, 5]);
      assert.equal(y.dtype, dtype);
      const got = y.toFloat32();
      idv.forEach((id, i) => assert.deepEqual([...got.subarray(i * 5, i * 5 + 5)], [...table.v.subarray(id * 5, id * 5 + 5)]));
      for (const bad of [7, -1]) {
        assert.throws(
          () => embedding(table.t, fromArray(be, [2], [0, bad], 'i32')),
          (e: unknown) => e instanceof OpError && /embedding/.test(e.message) && e.message.includes(`id ${bad}`),
        );
      }
    }
  });
});

describe('cast', () => {
  /** Values that exercise rounding, overflow and specials in every format. */
  const VALUES = [
    0,
    -0,
    1,
    -1,
    0.1,
    -2.75,
    3.14159,
    1 + 2 ** -8,
    1 + 3 * 2 ** -8,
    300,
    448,
    465,
    1000,
    65504,
    70000,
    1e-3,
    2 ** -9,
    2 ** -20,
    1e-30,
    -123456.7,
    2 ** 31 + 0.5,
    Infinity,
    -Infinity,
    NaN,
  ];

  /** Naive decode of one raw element. */
  function decode(d: DType, b: number): number {
    switch (d) {
      case 'f32':
      case 'i32':
        return b;
      case 'bf16':
        return bf16BitsToF32(b);
      case 'f16':
        return f16BitsToF32(b);
      case 'f8e4m3':
        return f8e4m3BitsToF32(b);
    }
  }

  /** Naive encode of one float32 value (torch: float -> int truncates toward zero). */
  function encode(d: DType, v: number): number {
    switch (d) {
      case 'f32':
        return Math.fround(v);
      case 'i32':
        return Number.isFinite(v) ? Math.trunc(v) | 0 : 0;
      case 'bf16':
        return f32ToBf16Bits(v);
      case 'f16':
        return f32ToF16Bits(v);
      case 'f8e4m3':
        return f32ToF8e4m3Bits(v);
    }
  }

  forEachBackend('cast between every pair of dtypes', (be) => {
    for (const from of DTYPES) {
      // the source: VALUES encoded in `from` (i32 gets the truncated finite values)
      const src: RawArray = allocRaw(from, VALUES.length);
      VALUES.forEach((v, i) => (src[i] = encode(from, v)));
      const x = fromRaw(be, [VALUES.length], from, src);
      for (const to of DTYPES) {
        const y = cast(x, to);
        assert.equal(y.dtype, to);
        const got = y.toRaw();
        for (let i = 0; i < VALUES.length; i++) {
          const expect = encode(to, Math.fround(decode(from, src[i]!)));
          const isNaN = Number.isNaN(decode(to, got[i]!)) && Number.isNaN(decode(to, expect));
          assert.ok(isNaN || got[i] === expect, `cast ${from} -> ${to} of ${VALUES[i]}: got ${got[i]}, expected ${expect}`);
        }
      }
    }
  });

  forEachBackend('cast f32 -> i32 truncates toward zero; i32 -> f32 is exact below 2^24', (be) => {
    assert.deepEqual([...cast(fromArray(be, [4], [1.9, -1.9, 0.5, -7.5]), 'i32').toRaw()], [1, -1, 0, -7]);
    assert.deepEqual([...cast(fromArray(be, [3], [16777215, -3, 0], 'i32'), 'f32').toFloat32()], [16777215, -3, 0]);
    assert.equal(numel([2, 0]), 0);
    assert.equal(cast(fromArray(be, [2, 0], []), 'bf16').size, 0);
  });
});
