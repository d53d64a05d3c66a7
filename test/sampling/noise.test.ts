import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Mt19937, TorchCpuGenerator, randn, randnBf16Bits, randomSeed, seedToUint64, fmaF32 } from '../../src/sampling/noise.js';
import { bf16Bits, f32 } from './fixture.js';

// FNV-1a (32-bit) over the little-endian bytes of the result (float32 words, or bf16 bit patterns).
function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193) >>> 0;
  return h;
}
const bytesOf = (a: Float32Array | Uint16Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function firstMismatch(a: ArrayLike<number>, b: ArrayLike<number>): string | undefined {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `index ${i}: ${a[i]} vs ${b[i]}`;
  return undefined;
}

test('Mt19937 matches the reference MT19937 (std::mt19937 default seed 5489)', () => {
  const mt = new Mt19937(5489);
  assert.equal(mt.nextU32(), 3499211612); // first output for seed 5489
  for (let i = 2; i < 10000; i++) mt.nextU32();
  assert.equal(mt.nextU32(), 4123659995); // the C++ standard's required 10000th value
});

test('seeds map like torch.Generator.manual_seed (uint64, only the low 32 bits seed the engine)', () => {
  assert.equal(seedToUint64(-1), (1n << 64n) - 1n);
  assert.equal(seedToUint64(-(1n << 63n)), 1n << 63n);
  assert.equal(seedToUint64(4294967294), 4294967294n);
  assert.throws(() => seedToUint64(1n << 64n), RangeError);
  assert.throws(() => seedToUint64(-(1n << 63n) - 1n), RangeError);
  assert.throws(() => seedToUint64(1.5), RangeError);
  const a = new Mt19937(5).nextU32();
  assert.equal(new Mt19937(2 ** 32 + 5).nextU32(), a);
  assert.equal(new Mt19937(5n + (7n << 32n)).nextU32(), a);
  assert.equal(new Mt19937(-1).nextU32(), new Mt19937(2 ** 32 - 1).nextU32());
});

test('fixture noise (torch 1.13, CPU generator) is reproduced bit for bit, f32 and bf16', () => {
  for (const seed of [0, 42, 4294967294]) {
    const wantF32 = f32(`noise.seed${seed}.f32`);
    const gotF32 = randn([2, 16, 6, 10], seed, 'f32');
    assert.equal(firstMismatch(gotF32, wantF32), undefined, `seed ${seed} f32`);
    const wantBf16 = bf16Bits(`noise.seed${seed}.bf16`);
    const gotBf16 = randnBf16Bits([2, 16, 6, 10], seed);
    assert.equal(firstMismatch(gotBf16, wantBf16), undefined, `seed ${seed} bf16`);
  }
});

// Computed with torch 1.13.1 (Debian python3-torch, x86-64 AVX2):
//   x = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=...)
//   fnv = FNV-1a over x.numpy() bytes (bf16: the int16 view); picks = x.flatten()[i] (as float).
// The f32 rows are identical with torch 2.13.0 (manylinux CPU wheel, AVX512 machine); the bf16 rows
// with >= 16 elements are the pre-2.8-style 'legacy' algorithm (see noise.ts).
const TORCH_CASES: { shape: number[]; seed: number | bigint; dtype: 'f32' | 'bf16'; fnv: number; picks: [number, number][] }[] = [
  {
    shape: [1, 16, 128, 128],
    seed: 42,
    dtype: 'f32',
    fnv: 544195337,
    picks: [
      [0, 1.9269152879714966],
      [1, 1.4872840642929077],
      [2, 0.9007171988487244],
      [100000, 0.8800625801086426],
      [262143, -2.3294172286987305],
    ],
  },
  { shape: [1], seed: 0, dtype: 'f32', fnv: 4013190748, picks: [[0, 1.5409960746765137]] },
  {
    shape: [2],
    seed: 0,
    dtype: 'f32',
    fnv: 272791116,
    picks: [
      [0, 1.5409960746765137],
      [1, -0.293428897857666],
    ],
  },
  {
    shape: [3],
    seed: 5,
    dtype: 'f32',
    fnv: 3269381510,
    picks: [
      [0, -0.4867807626724243],
      [1, -0.6038215756416321],
      [2, -0.5580962300300598],
    ],
  },
  {
    shape: [15],
    seed: 123,
    dtype: 'f32',
    fnv: 4071914514,
    picks: [
      [0, -0.11146711558103561],
      [1, 0.12036294490098953],
      [2, -0.3696345090866089],
      [14, 0.3528207540512085],
    ],
  },
  {
    shape: [16],
    seed: 123,
    dtype: 'f32',
    fnv: 2097942274,
    picks: [
      [0, 0.3373701870441437],
      [1, -0.1777772158384323],
      [2, -0.3035275936126709],
      [15, 0.26919856667518616],
    ],
  },
  {
    shape: [17],
    seed: 123,
    dtype: 'f32',
    fnv: 3282626654,
    picks: [
      [0, 0.3373701870441437],
      [1, -1.0204719305038452],
      [2, -0.16895627975463867],
      [16, -0.7848533391952515],
    ],
  },
  {
    shape: [31],
    seed: 9,
    dtype: 'f32',
    fnv: 1102438281,
    picks: [
      [0, -1.067394733428955],
      [1, -0.71724534034729],
      [2, 1.089719295501709],
      [30, 1.8010984659194946],
    ],
  },
  {
    shape: [33],
    seed: 9,
    dtype: 'f32',
    fnv: 1689180990,
    picks: [
      [0, -1.067394733428955],
      [1, -0.71724534034729],
      [2, 1.089719295501709],
      [32, -2.3319530487060547],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: 4294967301,
    dtype: 'f32',
    fnv: 2571629640,
    picks: [
      [0, 1.8423298597335815],
      [1, 0.5188871622085571],
      [2, -1.7119213342666626],
      [1919, -1.6075254678726196],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: 5,
    dtype: 'f32',
    fnv: 2571629640,
    picks: [
      [0, 1.8423298597335815],
      [1, 0.5188871622085571],
      [2, -1.7119213342666626],
      [1919, -1.6075254678726196],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: -1,
    dtype: 'f32',
    fnv: 798706385,
    picks: [
      [0, -2.664297580718994],
      [1, -1.0910485982894897],
      [2, 0.45144742727279663],
      [1919, -0.04517233371734619],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: 4294967295,
    dtype: 'f32',
    fnv: 798706385,
    picks: [
      [0, -2.664297580718994],
      [1, -1.0910485982894897],
      [2, 0.45144742727279663],
      [1919, -0.04517233371734619],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: 18446744073709551615n,
    dtype: 'f32',
    fnv: 798706385,
    picks: [
      [0, -2.664297580718994],
      [1, -1.0910485982894897],
      [2, 0.45144742727279663],
      [1919, -0.04517233371734619],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: -9223372036854775808n,
    dtype: 'f32',
    fnv: 3794900873,
    picks: [
      [0, -1.1258398294448853],
      [1, -1.152360200881958],
      [2, -0.2505785822868347],
      [1919, -0.2600441873073578],
    ],
  },
  {
    shape: [4, 16, 90, 90],
    seed: 65535,
    dtype: 'f32',
    fnv: 1656756442,
    picks: [
      [0, 1.162941813468933],
      [5, -0.3080069124698639],
      [7, 0.28783267736434937],
      [518399, -1.1452462673187256],
    ],
  },
  {
    shape: [1, 16, 128, 128],
    seed: 42,
    dtype: 'bf16',
    fnv: 1502246360,
    picks: [
      [0, -0.80859375],
      [1, -1.53125],
      [2, 0.40625],
      [100000, -0.2333984375],
      [262143, -0.6328125],
    ],
  },
  { shape: [1], seed: 0, dtype: 'bf16', fnv: 277792813, picks: [[0, 1.5390625]] },
  {
    shape: [2],
    seed: 0,
    dtype: 'bf16',
    fnv: 2813344013,
    picks: [
      [0, 1.5390625],
      [1, -0.29296875],
    ],
  },
  {
    shape: [3],
    seed: 5,
    dtype: 'bf16',
    fnv: 353323462,
    picks: [
      [0, -0.486328125],
      [1, -0.60546875],
      [2, -0.55859375],
    ],
  },
  {
    shape: [15],
    seed: 123,
    dtype: 'bf16',
    fnv: 4137460640,
    picks: [
      [0, -0.111328125],
      [1, 0.12060546875],
      [2, -0.369140625],
      [14, 0.353515625],
    ],
  },
  {
    shape: [16],
    seed: 123,
    dtype: 'bf16',
    fnv: 779392282,
    picks: [
      [0, -1.3828125],
      [1, -0.91015625],
      [2, -1.15625],
      [15, 0.13671875],
    ],
  },
  {
    shape: [17],
    seed: 123,
    dtype: 'bf16',
    fnv: 490995175,
    picks: [
      [0, -1.3828125],
      [1, -0.2138671875],
      [2, 0.81640625],
      [16, 0.8671875],
    ],
  },
  {
    shape: [31],
    seed: 9,
    dtype: 'bf16',
    fnv: 4062575520,
    picks: [
      [0, -1.15625],
      [1, -0.021728515625],
      [2, 1.0],
      [30, -0.25390625],
    ],
  },
  {
    shape: [33],
    seed: 9,
    dtype: 'bf16',
    fnv: 404594771,
    picks: [
      [0, -1.15625],
      [1, -0.021728515625],
      [2, 1.0],
      [32, 2.03125],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: 4294967301,
    dtype: 'bf16',
    fnv: 1353040273,
    picks: [
      [0, 0.96875],
      [1, 1.3984375],
      [2, 1.8828125],
      [1919, 0.2412109375],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: 5,
    dtype: 'bf16',
    fnv: 1353040273,
    picks: [
      [0, 0.96875],
      [1, 1.3984375],
      [2, 1.8828125],
      [1919, 0.2412109375],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: -1,
    dtype: 'bf16',
    fnv: 149997346,
    picks: [
      [0, 0.8046875],
      [1, 0.37890625],
      [2, -0.310546875],
      [1919, -1.578125],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: 4294967295,
    dtype: 'bf16',
    fnv: 149997346,
    picks: [
      [0, 0.8046875],
      [1, 0.37890625],
      [2, -0.310546875],
      [1919, -1.578125],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: 18446744073709551615n,
    dtype: 'bf16',
    fnv: 149997346,
    picks: [
      [0, 0.8046875],
      [1, 0.37890625],
      [2, -0.310546875],
      [1919, -1.578125],
    ],
  },
  {
    shape: [2, 16, 6, 10],
    seed: -9223372036854775808n,
    dtype: 'bf16',
    fnv: 4162007253,
    picks: [
      [0, 1.4609375],
      [1, 0.291015625],
      [2, 0.9609375],
      [1919, -0.9765625],
    ],
  },
  {
    shape: [4, 16, 90, 90],
    seed: 65535,
    dtype: 'bf16',
    fnv: 4213971027,
    picks: [
      [0, 1.1953125],
      [5, -0.474609375],
      [7, -0.11767578125],
      [518399, -1.0],
    ],
  },
];

test('randn matches torch.randn over shapes, sizes < 16 / = 16 / odd tails, and seed aliases', () => {
  for (const c of TORCH_CASES) {
    const label = `${c.dtype} [${c.shape}] seed ${c.seed}`;
    const v = randn(c.shape, c.seed, c.dtype);
    for (const [i, want] of c.picks) assert.equal(v[i], want, `${label} element ${i}`);
    const bits = c.dtype === 'bf16' ? randnBf16Bits(c.shape, c.seed) : v;
    assert.equal(fnv1a(bytesOf(bits)), c.fnv, `${label} checksum`);
  }
});

// Computed with torch 2.13.0 (the newer bf16 sampler: float math per block of 16, then rounded).
const TORCH_213_BF16: { shape: number[]; seed: number; fnv: number; first: number[] }[] = [
  { shape: [1, 16, 128, 128], seed: 42, fnv: 2790711959, first: [1.9296875, 1.484375, 0.90234375] },
  { shape: [3, 7, 11, 13], seed: 99, fnv: 676443357, first: [0.298828125, -2.640625, 0.72265625] },
  { shape: [17], seed: 123, fnv: 345142458, first: [0.337890625, -0.0771484375, -1.0234375] },
  { shape: [33], seed: 9, fnv: 830851175, first: [-1.0703125, -0.71875, 1.0859375] },
  { shape: [16], seed: 5, fnv: 3610762713, first: [1.84375, 0.51953125, -1.7109375] },
  { shape: [15], seed: 5, fnv: 2033035392, first: [-0.486328125, -0.60546875, -0.55859375] },
];

test("bf16 'float' algorithm matches torch 2.13 (and equals rounded f32 noise for multiples of 16)", () => {
  for (const c of TORCH_213_BF16) {
    const v = randn(c.shape, c.seed, 'bf16', { bf16: 'float' });
    assert.deepEqual(Array.from(v.subarray(0, 3)), c.first, `[${c.shape}] seed ${c.seed}`);
    assert.equal(fnv1a(bytesOf(randnBf16Bits(c.shape, c.seed, { bf16: 'float' }))), c.fnv, `[${c.shape}] checksum`);
  }
  const f = randn([1, 16, 8, 8], 7, 'f32');
  const b = randn([1, 16, 8, 8], 7, 'bf16', { bf16: 'float' });
  const rounded = new Float32Array(randnBf16Bits([1, 16, 8, 8], 7, { bf16: 'float' }).length);
  for (let i = 0; i < f.length; i++) {
    const u = new Uint32Array(new Float32Array([f[i]!]).buffer)[0]!;
    rounded[i] = new Float32Array(new Uint32Array([(((u + (((u >>> 16) & 1) + 0x7fff)) >>> 16) << 16) >>> 0]).buffer)[0]!;
  }
  assert.equal(firstMismatch(b, rounded), undefined);
});

test('a generator reused across calls keeps the cached Box-Muller value like torch', () => {
  // torch (1.13.1 and 2.13.0): g = torch.Generator().manual_seed(0);
  //   randn(3, generator=g); randn(3, generator=g); randn(20, generator=g)[:4]; randn(1, generator=g)
  const want = [
    [1.5409960746765137, -0.293428897857666, -2.1787893772125244],
    [0.5684312582015991, -1.0845223665237427, -1.3985954523086548],
    [-0.08853142708539963, 0.5238832831382751, -0.6658713221549988, 0.8503773808479309],
    [0.19186942279338837],
  ];
  const g = new TorchCpuGenerator(0);
  const got = [
    Array.from(g.randn([3], 'f32')),
    Array.from(g.randn([3], 'f32')),
    Array.from(g.randn([20], 'f32').subarray(0, 4)),
    Array.from(g.randn([1], 'f32')),
  ];
  assert.deepEqual(got, want);
});

test('legacy bf16 noise stays within the 8-bit-uniform bound and is bf16-representable', () => {
  const v = randn([2, 16, 64, 64], 123, 'bf16');
  let max = 0;
  let sum = 0;
  let sq = 0;
  for (const x of v) {
    max = Math.max(max, Math.abs(x));
    sum += x;
    sq += x * x;
    const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
    assert.equal(u & 0xffff, 0);
  }
  assert.ok(max <= Math.sqrt(-2 * Math.log(1 / 256)) + 0.02, `max |x| = ${max}`);
  const mean = sum / v.length;
  const std = Math.sqrt(sq / v.length - mean * mean);
  assert.ok(Math.abs(mean) < 0.02 && Math.abs(std - 1) < 0.02, `mean ${mean} std ${std}`);
});

test('empty shapes and invalid shapes', () => {
  assert.equal(randn([0, 16], 1, 'f32').length, 0);
  assert.throws(() => randn([2, -1], 1, 'f32'), RangeError);
  assert.throws(() => randn([2.5], 1, 'bf16'), RangeError);
});

test('fmaF32 rounds once', () => {
  const a = Math.fround(1 + 2 ** -12);
  // a*a = 1 + 2^-11 + 2^-24: the separate product would round the 2^-24 away
  assert.equal(fmaF32(a, a, -1), Math.fround(2 ** -11 + 2 ** -24));
  assert.equal(fmaF32(2, 3, 4), 10);
  // exact a*b + c = 2^30 + 192 - 2^-40, just below a float midpoint: a double sum would land on the
  // midpoint (2^30 + 192) and then round to even (2^30 + 256); the correct float is 2^30 + 128.
  const x = 8 * (1 + 2 ** -23);
  const y = 8 * (1 - 2 ** -23);
  const c = 2 ** 30 + 128;
  assert.equal(Math.fround(x * y + c), 2 ** 30 + 256);
  assert.equal(fmaF32(x, y, c), 2 ** 30 + 128);
});

test('randomSeed gives a 16-bit seed like cog-flux (32-bit on request)', () => {
  for (let i = 0; i < 200; i++) {
    const s = randomSeed();
    assert.ok(Number.isInteger(s) && s >= 0 && s <= 65535, String(s));
    const t = randomSeed(32);
    assert.ok(Number.isInteger(t) && t >= 0 && t < 2 ** 32 - 1, String(t));
  }
});
