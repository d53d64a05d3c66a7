import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  DTYPES,
  F8E4M3_MAX,
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  f32ToF8e4m3Bits,
  f32ToRaw,
  f8e4m3BitsToF32,
  rawToF32,
  roundBf16,
  roundToDtypeInPlace,
} from '../../src/tensor/dtype.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function fromBits(u: number): number {
  u32[0] = u >>> 0;
  return f32[0]!;
}
const hex = (v: number, w = 4): string => `0x${v.toString(16).padStart(w, '0')}`;

// [float32 bits, bf16 bits, f16 bits]: expected values from torch 1.13
// `torch.tensor([x]).to(torch.bfloat16)` / `.to(torch.float16)` (Debian python3-torch 1.13.1).
const TORCH_CASES: readonly [number, number, number][] = [
  [0x3f808000, 0x3f80, 0x3c04], // 1 + 2^-8: halfway, ties to even (down) -> 1
  [0x3f818000, 0x3f82, 0x3c0c], // 1 + 3·2^-8: halfway, ties to even (up) -> 1 + 2^-6
  [0xbf808000, 0xbf80, 0xbc04], // -(1 + 2^-8) -> -1
  [0xbf818000, 0xbf82, 0xbc0c], // -(1 + 3·2^-8) -> -(1 + 2^-6)
  [0x3f808001, 0x3f81, 0x3c04], // just above halfway -> up
  [0x3f80ffff, 0x3f81, 0x3c08],
  [0x3f807fff, 0x3f80, 0x3c04], // just below halfway -> down
  [0x40490fdb, 0x4049, 0x4248], // pi
  [0x3dcccccd, 0x3dcd, 0x2e66], // 0.1
  [0xc2f6e979, 0xc2f7, 0xd7b7],
  [0x7f7fffff, 0x7f80, 0x7c00], // f32 max -> bf16 inf
  [0x7f7f7fff, 0x7f7f, 0x7c00], // largest f32 that stays finite in bf16
  [0x7f7f8000, 0x7f80, 0x7c00], // halfway above bf16 max (odd mantissa) -> inf
  [0x7f7f8001, 0x7f80, 0x7c00],
  [0x7f7effff, 0x7f7f, 0x7c00],
  [0xff7f8000, 0xff80, 0xfc00],
  [0x7f800000, 0x7f80, 0x7c00], // +inf
  [0xff800000, 0xff80, 0xfc00], // -inf
  [0x00000001, 0x0000, 0x0000], // smallest f32 subnormal -> 0
  [0x00008000, 0x0000, 0x0000], // halfway to the smallest bf16 subnormal -> 0 (even)
  [0x00008001, 0x0001, 0x0000], // just above -> smallest bf16 subnormal
  [0x00018000, 0x0002, 0x0000], // halfway between subnormals 1 and 2 -> 2 (even)
  [0x00007fff, 0x0000, 0x0000],
  [0x007fffff, 0x0080, 0x0000], // largest f32 subnormal rounds up to the smallest normal
  [0x007f8000, 0x0080, 0x0000],
  [0x007f7fff, 0x007f, 0x0000], // largest bf16 subnormal
  [0x80000001, 0x8000, 0x8000], // negative subnormal -> -0
  [0x80018000, 0x8002, 0x8000],
  [0x80000000, 0x8000, 0x8000], // -0
  [0x00000000, 0x0000, 0x0000],
  [0x00800000, 0x0080, 0x0000],
  [0x00808000, 0x0080, 0x0000],
  [0x00818000, 0x0082, 0x0000],
  [0x477fe000, 0x4780, 0x7bff], // 65504 = f16 max
  [0x477ff000, 0x4780, 0x7c00], // 65520: halfway past f16 max -> inf
  [0x477fefff, 0x4780, 0x7bff],
  [0x33800000, 0x3380, 0x0001], // 2^-24: smallest f16 subnormal
  [0x33000000, 0x3300, 0x0000], // 2^-25: halfway -> 0
  [0x33000001, 0x3300, 0x0001],
  [0x33400000, 0x3340, 0x0001],
  [0x38800000, 0x3880, 0x0400], // 2^-14: smallest f16 normal
  [0x387fc000, 0x3880, 0x03ff],
  [0x387fe000, 0x3880, 0x0400],
  [0xb87fe000, 0xb880, 0x8400],
  [0x3eaaaaab, 0x3eab, 0x3555],
  [0x3f000000, 0x3f00, 0x3800],
  [0xbf7fffff, 0xbf80, 0xbc00],
  [0x4b7fffff, 0x4b80, 0x7c00],
  [0x4f000000, 0x4f00, 0x7c00],
  [0x36b28993, 0x36b3, 0x0059],
  [0xb3894597, 0xb389, 0x8001],
  [0xc30c0c74, 0xc30c, 0xd860],
  [0x44876c82, 0x4487, 0x643b],
  [0xc21b7b3a, 0xc21b, 0xd0dc],
  [0x34b781b3, 0x34b8, 0x0006],
  [0x341ece0b, 0x341f, 0x0002],
  [0x43b656a5, 0x43b6, 0x5db3],
  [0x440fd8be, 0x4410, 0x607f],
  [0xb950b859, 0xb951, 0x8a86],
  [0xc4f94e86, 0xc4f9, 0xe7ca],
  [0x444af305, 0x444b, 0x6258],
];

describe('bf16', () => {
  it('rounds like torch .to(torch.bfloat16), scalar and array paths', () => {
    const values = new Float32Array(TORCH_CASES.map(([u]) => fromBits(u)));
    const arr = f32ToRaw('bf16', values) as Uint16Array;
    TORCH_CASES.forEach(([u, b], i) => {
      assert.equal(hex(f32ToBf16Bits(fromBits(u))), hex(b), `scalar bf16 of f32 ${hex(u, 8)}`);
      assert.equal(hex(arr[i]!), hex(b), `array bf16 of f32 ${hex(u, 8)}`);
    });
  });

  it('halfway values tie to even: 1+2^-8 -> 1, 1+3·2^-8 -> 1+2^-6, negatives mirrored', () => {
    assert.equal(roundBf16(1 + 2 ** -8), 1);
    assert.equal(roundBf16(1 + 3 * 2 ** -8), 1 + 2 ** -6);
    assert.equal(roundBf16(1 + 5 * 2 ** -8), 1 + 2 ** -6); // 0x3f828000: even 0x3f82 -> down
    assert.equal(roundBf16(-(1 + 2 ** -8)), -1);
    assert.equal(roundBf16(-(1 + 3 * 2 ** -8)), -(1 + 2 ** -6));
  });

  it('NaN -> 0x7fc0 (c10 round_to_nearest_even), any NaN payload or sign', () => {
    // torch's scalar path gives 0x7fc0; its vectorised CPU cast gives 0xffff (also a NaN).
    for (const u of [0x7fc00000, 0xffc00001, 0x7f800001, 0x7fffffff]) {
      assert.equal(hex(f32ToBf16Bits(fromBits(u))), '0x7fc0', `NaN ${hex(u, 8)}`);
    }
    const arr = f32ToRaw('bf16', new Float32Array([NaN, -NaN])) as Uint16Array;
    assert.deepEqual([...arr], [0x7fc0, 0x7fc0]);
    assert.ok(Number.isNaN(bf16BitsToF32(0x7fc0)));
  });

  it('keeps infinities and overflows to inf exactly from 0x7f7f8000', () => {
    assert.equal(roundBf16(Infinity), Infinity);
    assert.equal(roundBf16(-Infinity), -Infinity);
    assert.equal(f32ToBf16Bits(fromBits(0x7f7f7fff)), 0x7f7f);
    assert.equal(f32ToBf16Bits(fromBits(0x7f7f8000)), 0x7f80);
    assert.equal(f32ToBf16Bits(fromBits(0x7f7fffff)), 0x7f80);
    assert.equal(bf16BitsToF32(0x7f7f), 3.3895313892515355e38); // bf16 max
  });

  it('decodes exactly and round-trips every bf16 bit pattern', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const vals = rawToF32('bf16', all);
    const back = f32ToRaw('bf16', vals) as Uint16Array;
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
      assert.equal(back[i], isNaN ? 0x7fc0 : i, `bf16 ${hex(i)}`);
      if (!isNaN) assert.equal(vals[i], bf16BitsToF32(i));
    }
    assert.equal(bf16BitsToF32(0x0001), 2 ** -133); // smallest subnormal
    assert.equal(bf16BitsToF32(0x3f80), 1);
  });
});

describe('f16', () => {
  it('rounds like torch .to(torch.float16)', () => {
    const values = new Float32Array(TORCH_CASES.map(([u]) => fromBits(u)));
    const arr = f32ToRaw('f16', values) as Uint16Array;
    TORCH_CASES.forEach(([u, , h], i) => {
      assert.equal(hex(f32ToF16Bits(fromBits(u))), hex(h), `scalar f16 of f32 ${hex(u, 8)}`);
      assert.equal(hex(arr[i]!), hex(h), `array f16 of f32 ${hex(u, 8)}`);
    });
  });

  it('NaN -> 0x7e00 with its sign, infinities kept, known values', () => {
    assert.equal(hex(f32ToF16Bits(NaN)), '0x7e00');
    assert.equal(hex(f32ToF16Bits(fromBits(0xffc00001))), '0xfe00');
    assert.equal(f32ToF16Bits(Infinity), 0x7c00);
    assert.equal(f32ToF16Bits(-Infinity), 0xfc00);
    assert.equal(f16BitsToF32(0x7bff), 65504);
    assert.equal(f16BitsToF32(0x0001), 2 ** -24);
    assert.equal(f16BitsToF32(0x3c00), 1);
    assert.equal(f16BitsToF32(0xc000), -2);
  });

  it('round-trips every f16 bit pattern', () => {
    for (let i = 0; i < 65536; i++) {
      const v = f16BitsToF32(i);
      const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (isNaN) assert.ok(Number.isNaN(v));
      else assert.equal(f32ToF16Bits(v), i, `f16 ${hex(i)}`);
    }
  });
});

describe('f8e4m3 (e4m3fn)', () => {
  // Expected bit patterns follow c10/util/Float8_e4m3fn.h `fp8e4m3fn_from_fp32_value` (torch >= 2.1;
  // torch 1.13 has no float8 dtype, so these were worked out from that algorithm).
  it('known bit patterns', () => {
    const cases: [number, number][] = [
      [0, 0x00],
      [1, 0x38],
      [-2, 0xc0],
      [0.1, 0x1d], // 1.625·2^-4 = 0.1015625
      [448, 0x7e], // max finite
      [-448, 0xfe],
      [464, 0x7e], // halfway between 448 and the NaN code: ties to even, i.e. 448
      [464.00003, 0x7f], // just past halfway rounds onto 0x7f = NaN
      [-465, 0xff],
      [480, 0x7f], // c10's fp8_max: everything from here on is NaN
      [1e6, 0x7f],
      [2 ** -9, 0x01], // smallest subnormal
      [2 ** -10, 0x00], // halfway to it -> 0 (even)
      [1.5 * 2 ** -10, 0x01],
      [3 * 2 ** -10, 0x02], // halfway between subnormals 1 and 2 -> 2 (even)
      [7.5 * 2 ** -9, 0x08], // halfway between 7·2^-9 and 2^-6 -> 2^-6 (even), smallest normal
      [2 ** -6, 0x08],
      [1.0625, 0x38], // halfway between 1 and 1.125 -> 1
      [1.1875, 0x3a], // halfway between 1.125 and 1.25 -> 1.25
    ];
    for (const [v, b] of cases) assert.equal(hex(f32ToF8e4m3Bits(v), 2), hex(b, 2), `f8 of ${v}`);
  });

  it('NaN and infinities become the NaN code 0x7f (no infinities in e4m3fn)', () => {
    assert.equal(f32ToF8e4m3Bits(NaN), 0x7f);
    assert.equal(f32ToF8e4m3Bits(Infinity), 0x7f);
    assert.equal(f32ToF8e4m3Bits(-Infinity), 0xff);
    assert.ok(Number.isNaN(f8e4m3BitsToF32(0x7f)));
    assert.ok(Number.isNaN(f8e4m3BitsToF32(0xff)));
    assert.equal(f8e4m3BitsToF32(0x7e), F8E4M3_MAX);
  });

  it('round-trips every finite code, and every halfway point ties to even', () => {
    for (let b = 0; b < 256; b++) {
      if ((b & 0x7f) === 0x7f) continue;
      const v = f8e4m3BitsToF32(b);
      if (b === 0x80) assert.ok(Object.is(v, -0));
      assert.equal(f32ToF8e4m3Bits(v), b, `f8 ${hex(b, 2)} = ${v}`);
    }
    for (let b = 0; b < 0x7e; b++) {
      const lo = f8e4m3BitsToF32(b);
      const hi = f8e4m3BitsToF32(b + 1);
      const mid = (lo + hi) / 2; // exact in float32
      assert.equal(f32ToF8e4m3Bits(mid), b % 2 === 0 ? b : b + 1, `halfway between ${hex(b, 2)} and ${hex(b + 1, 2)}`);
      assert.equal(f32ToF8e4m3Bits(Math.fround(mid * (1 + 2 ** -20))), b + 1);
      assert.equal(f32ToF8e4m3Bits(Math.fround(mid * (1 - 2 ** -20))), b);
    }
  });
});

describe('roundToDtypeInPlace', () => {
  it('is a no-op for f32 and agrees with the encoders for the others', () => {
    const vals = new Float32Array([0.1, -3.3, 65519, 1e-7, 500, 1 + 2 ** -8, -0]);
    for (const d of DTYPES) {
      const a = vals.slice();
      roundToDtypeInPlace(d, a);
      const expect = rawToF32(d, f32ToRaw(d, vals));
      if (d === 'f32') assert.deepEqual([...a], [...vals]);
      else for (let i = 0; i < a.length; i++) assert.ok(a[i] === expect[i] || (Number.isNaN(a[i]!) && Number.isNaN(expect[i]!)), `${d} ${vals[i]}`);
    }
  });
});
