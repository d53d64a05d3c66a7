import { test } from 'node:test';
import assert from 'node:assert/strict';

import { calculateMu, getSchedule, imageSeqLen, img2imgStart, torchLinspaceF32 } from '../../src/sampling/schedule.js';
import { f32 } from './fixture.js';

function assertClose(got: ArrayLike<number>, want: readonly number[], tol: number, label: string): void {
  assert.equal(got.length, want.length, `${label}: length`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i]! - want[i]!) <= tol, `${label}[${i}]: ${got[i]} vs ${want[i]} (tol ${tol})`);
  }
}

test('mu: flux-spec §9 sanity values', () => {
  assert.ok(Math.abs(calculateMu(1024) - 0.63) < 1e-12); // 512x512
  assert.ok(Math.abs(calculateMu(4096) - 1.15) < 1e-12); // 1024x1024
  assert.ok(Math.abs(calculateMu(imageSeqLen(1360, 768)) - 1.14729) < 5e-6); // L = 4080
  assert.ok(Math.abs(calculateMu(imageSeqLen(1024, 1360)) - 1.3775) < 5e-6); // L = 5440, extrapolated
  assert.equal(imageSeqLen(1360, 768), 4080);
  assert.equal(imageSeqLen(1024, 1360), 5440);
  assert.equal(imageSeqLen(80, 48), 15);
  assert.ok(Math.abs(calculateMu(256) - 0.5) < 1e-12);
  assert.ok(Math.abs(calculateMu(4096, 0.3, 0.9) - 0.9) < 1e-12);
});

// The spec prints 6 decimals; sigma_12 at 1024² is 0.80809540 with torch 2.x and 0.80809551 with 1.13
// (one float ulp apart across the rounding boundary), so the tolerance is 1e-6 rather than 5e-7.
test('flux-spec §3.1 reference schedules (printed to 6 decimals), tolerance 1e-6', () => {
  const dev1024 = [
    1.0, 0.988409, 0.976222, 0.963394, 0.949873, 0.935599, 0.920509, 0.904531, 0.887583, 0.869576, 0.850406, 0.829956, 0.808096, 0.784672, 0.759511, 0.732413,
    0.703145, 0.671435, 0.636964, 0.599357, 0.558163, 0.512844, 0.462748, 0.407078, 0.344849, 0.274828, 0.195455, 0.104721, 0,
  ];
  const dev512 = [
    1, 0.972733, 0.944129, 0.914088, 0.882497, 0.849235, 0.814164, 0.777133, 0.737974, 0.696497, 0.652489, 0.605713, 0.555899, 0.50274, 0.445888, 0.384945,
    0.319451, 0.248879, 0.172612, 0.089934, 0,
  ];
  for (const linspace of ['torch2', 'torch1.13'] as const) {
    assertClose(getSchedule(28, 4096, { shift: true, linspace }), dev1024, 1e-6, `dev 1024² ${linspace}`);
    assertClose(getSchedule(20, 1024, { shift: true, linspace }), dev512, 1e-6, `dev 512² ${linspace}`);
    assert.deepEqual(Array.from(getSchedule(4, 4096, { shift: false, linspace })), [1, 0.75, 0.5, 0.25, 0]);
  }
});

test('fixture sample.timesteps (steps 4, 48x80 -> 15 tokens, shift) are reproduced exactly', () => {
  const want = f32('sample.timesteps');
  for (const linspace of ['torch2', 'torch1.13'] as const) {
    assert.deepEqual(Array.from(getSchedule(4, imageSeqLen(80, 48), { shift: true, linspace })), Array.from(want));
  }
});

// BFL get_schedule(N, L).tolist() run with torch 1.13.1 (Debian, AVX2) and torch 2.13.0 (manylinux
// wheel, AVX512): the two differ in single elements by 1 float ulp because their torch.linspace differ.
const TORCH = [
  {
    N: 28,
    L: 4096,
    v113: [
      1.0, 0.988408625125885, 0.9762224555015564, 0.9633944630622864, 0.949872612953186, 0.9355989694595337, 0.9205090403556824, 0.9045307636260986,
      0.8875834345817566, 0.8695759773254395, 0.8504056334495544, 0.8299563527107239, 0.8080955147743225, 0.7846716046333313, 0.7595109343528748,
      0.7324128746986389, 0.7031446695327759, 0.6714348196983337, 0.6369644999504089, 0.5993567705154419, 0.5581628084182739, 0.5128440856933594,
      0.4627484083175659, 0.40707841515541077, 0.3448489308357239, 0.2748279869556427, 0.19545459747314453, 0.10472090542316437, 0.0,
    ],
    v213: [
      1.0, 0.988408625125885, 0.9762224555015564, 0.9633944630622864, 0.949872612953186, 0.9355989694595337, 0.9205090403556824, 0.9045307636260986,
      0.8875834345817566, 0.8695758581161499, 0.8504056334495544, 0.8299563527107239, 0.808095395565033, 0.7846716046333313, 0.7595109343528748,
      0.7324128746986389, 0.7031446695327759, 0.6714348196983337, 0.6369644999504089, 0.5993567705154419, 0.5581628084182739, 0.5128440856933594,
      0.4627484083175659, 0.40707841515541077, 0.3448489308357239, 0.2748279869556427, 0.19545459747314453, 0.10472090542316437, 0.0,
    ],
  },
  {
    N: 20,
    L: 1024,
    v113: [
      1.0, 0.9727331399917603, 0.9441294074058533, 0.9140878915786743, 0.8824971914291382, 0.8492348194122314, 0.8141641616821289, 0.7771334648132324,
      0.7379740476608276, 0.6964967250823975, 0.652489423751831, 0.6057135462760925, 0.5558991432189941, 0.502740204334259, 0.44588831067085266,
      0.38494476675987244, 0.31945133209228516, 0.24887879192829132, 0.17261241376399994, 0.08993416279554367, 0.0,
    ],
    v213: [
      1.0, 0.9727331399917603, 0.9441294074058533, 0.9140878915786743, 0.8824971914291382, 0.8492348194122314, 0.8141641616821289, 0.7771334648132324,
      0.7379740476608276, 0.6964967250823975, 0.652489423751831, 0.6057135462760925, 0.5558990240097046, 0.5027401447296143, 0.44588831067085266,
      0.38494473695755005, 0.31945133209228516, 0.24887879192829132, 0.17261241376399994, 0.08993416279554367, 0.0,
    ],
  },
  {
    N: 50,
    L: 4080,
    v113: [
      1.0, 0.9935622215270996, 0.9869437217712402, 0.9801368117332458, 0.9731334447860718, 0.9659247994422913, 0.9585018157958984, 0.9508547782897949,
      0.9429733157157898, 0.9348466992378235, 0.9264630675315857, 0.9178101420402527, 0.9088746905326843, 0.8996426463127136, 0.890099048614502,
      0.8802279233932495, 0.8700118660926819, 0.8594326972961426, 0.8484705686569214, 0.8371044993400574, 0.825311541557312, 0.8130673170089722,
      0.8003453016281128, 0.7871170043945312, 0.7733516097068787, 0.7590157985687256, 0.7440733909606934, 0.7284848093986511, 0.7122074961662292,
      0.6951946020126343, 0.6773950457572937, 0.6587533354759216, 0.6392077803611755, 0.6186913251876831, 0.597129762172699, 0.5744409561157227,
      0.5505343675613403, 0.525309145450592, 0.49865302443504333, 0.4704408049583435, 0.4405321180820465, 0.4087691605091095, 0.3749740719795227,
      0.3389451801776886, 0.30045366287231445, 0.25923797488212585, 0.21499834954738617, 0.16738931834697723, 0.11601074039936066, 0.06039639562368393, 0.0,
    ],
    v213: [
      1.0, 0.9935622215270996, 0.9869437217712402, 0.9801368117332458, 0.9731334447860718, 0.9659247994422913, 0.9585018157958984, 0.9508547782897949,
      0.9429733157157898, 0.9348466992378235, 0.9264630675315857, 0.9178101420402527, 0.9088746905326843, 0.8996426463127136, 0.890099048614502,
      0.88022780418396, 0.8700118660926819, 0.8594326972961426, 0.8484705686569214, 0.8371044993400574, 0.825311541557312, 0.8130672574043274,
      0.8003453016281128, 0.7871170043945312, 0.7733516097068787, 0.7590158581733704, 0.7440733909606934, 0.7284848093986511, 0.7122074961662292,
      0.6951946020126343, 0.6773950457572937, 0.6587533354759216, 0.6392077803611755, 0.6186913847923279, 0.597129762172699, 0.5744409561157227,
      0.5505343675613403, 0.525309145450592, 0.49865302443504333, 0.4704408347606659, 0.4405321180820465, 0.4087691605091095, 0.3749740719795227,
      0.338945209980011, 0.30045366287231445, 0.25923797488212585, 0.21499836444854736, 0.16738933324813843, 0.11601074039936066, 0.06039639562368393, 0.0,
    ],
  },
];

test('getSchedule equals torch bit for bit (torch 2.x and 1.13 linspace modes)', () => {
  for (const c of TORCH) {
    assert.deepEqual(Array.from(getSchedule(c.N, c.L, { shift: true })), c.v213, `torch2 N=${c.N} L=${c.L}`);
    assert.deepEqual(Array.from(getSchedule(c.N, c.L, { shift: true, linspace: 'torch1.13' })), c.v113, `1.13 N=${c.N} L=${c.L}`);
  }
  // schnell, 28 steps, torch 2.13: plain linspace
  assert.deepEqual(
    Array.from(getSchedule(28, 4096, { shift: false })),
    [
      1.0, 0.9642857313156128, 0.9285714030265808, 0.8928571343421936, 0.8571428656578064, 0.8214285373687744, 0.7857142686843872, 0.75, 0.7142857313156128,
      0.6785714030265808, 0.6428571343421936, 0.6071428656578064, 0.5714285373687744, 0.5357142686843872, 0.5, 0.4642857313156128, 0.4285714626312256,
      0.392857164144516, 0.3571428656578064, 0.3214285969734192, 0.2857142984867096, 0.25, 0.2142857313156128, 0.1785714328289032, 0.1428571492433548,
      0.1071428656578064, 0.0714285746216774, 0.0357142873108387, 0.0,
    ],
  );
});

test('torchLinspaceF32 edge cases', () => {
  assert.deepEqual(Array.from(torchLinspaceF32(1, 0, 1)), [1]);
  assert.deepEqual(Array.from(torchLinspaceF32(1, 0, 2)), [1, 0]);
  assert.equal(torchLinspaceF32(1, 0, 0).length, 0);
  const t = getSchedule(50, 8100, { shift: true });
  assert.equal(t.length, 51);
  assert.equal(t[0], 1);
  assert.equal(t[50], 0);
  for (let i = 1; i < t.length; i++) assert.ok(t[i]! < t[i - 1]!);
  assert.throws(() => getSchedule(0, 4096, { shift: true }), RangeError);
});

test('img2imgStart: cog-flux BFL rule t_idx = int((1 - strength) * N)', () => {
  const s = getSchedule(28, 4096, { shift: true });
  const r = img2imgStart(s, 0.8); // (1 - 0.8) * 28 = 5.599999999999999 -> 5
  assert.equal(r.startIndex, 5);
  assert.equal(r.stepsToRun, 23);
  assert.equal(r.startSigma, s[5]);
  assert.deepEqual(Array.from(r.sigmas), Array.from(s.subarray(5)));
  assert.equal(img2imgStart(s, 1).startIndex, 0);
  const zero = img2imgStart(s, 0); // no step runs: timesteps = [0.0]
  assert.equal(zero.startIndex, 28);
  assert.equal(zero.stepsToRun, 0);
  assert.deepEqual(Array.from(zero.sigmas), [0]);
  assert.throws(() => img2imgStart(s, 1.5), RangeError);
  assert.throws(() => img2imgStart(s, Number.NaN), RangeError);
});

test('img2imgStart: diffusers rule differs where the double rounding crosses an integer', () => {
  const s10 = getSchedule(10, 4096, { shift: true });
  assert.equal(img2imgStart(s10, 0.8).startIndex, 1); // (1-0.8)*10 = 1.9999999999999996
  assert.equal(img2imgStart(s10, 0.8, 'diffusers').startIndex, 2); // 10 - 8.0 = 2
  assert.throws(() => img2imgStart(s10, 0, 'diffusers'), /number of pipeline/);
  // Python over N = 1..50, strength = k/100 (k = 0..100):
  //   sum(int((1.0 - s) * N) * 1000 + int(max(N - min(N * s, N), 0)))  == 62044003
  let sum = 0;
  for (let n = 1; n <= 50; n++) {
    const sig = new Float32Array(n + 1);
    for (let k = 0; k <= 100; k++) {
      const st = k / 100;
      const a = img2imgStart(sig, st).startIndex;
      let b: number;
      try {
        b = img2imgStart(sig, st, 'diffusers').startIndex;
      } catch {
        b = n;
      }
      sum += a * 1000 + b;
    }
  }
  assert.equal(sum, 62044003);
});
