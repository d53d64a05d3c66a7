// Bit-exact port of PyTorch's CPU random normal sampling, so that
//
//   randn(shape, seed, dtype)  ==  torch.randn(shape, dtype=dtype,
//                                              generator=torch.Generator("cpu").manual_seed(seed))
//
// which is how both FLUX references draw the initial latent noise (BFL `get_noise`, diffusers
// `randn_tensor` with a CPU generator; flux-spec §3.6).
//
// What PyTorch does (read from pytorch/pytorch and verified bit for bit against torch 1.13.1
// (Debian build, the fixture's torch) and torch 2.13.0 (manylinux CPU wheel) on x86-64):
//
// * Generator: `at::CPUGeneratorImpl` holds an `at::mt19937` (aten/src/ATen/core/MT19937RNGEngine.h),
//   the reference MT19937 (init_genrand, 624 words, standard tempering). `manual_seed(s)` takes s as
//   a uint64 (negative Python ints are reinterpreted as two's complement) and seeds the engine with
//   `s & 0xffffffff` only: seeds s and s + 2^32 give the same stream, -1 == 2^32-1 == 2^64-1.
//   `random()` = one 32-bit draw; `random64()` = (first << 32) | second.
// * Uniforms (aten/src/ATen/core/TransformationHelper.h `uniform_real`): [0,1) from
//   `(bits & (2^digits - 1)) * 2^-digits`, digits = 24 for float (from random()), 53 for double (from
//   random64()) and 8 for bfloat16 (from random(): only 256 distinct values).
// * `normal_` (aten/src/ATen/native/cpu/DistributionTemplates.h `normal_kernel`), used by randn:
//   - numel >= 16 and contiguous: `normal_fill`. float32: fill EVERY element with a float uniform
//     first, then Box-Muller in blocks of 16: for j < 8, u1 = 1 - d[j], u2 = d[j+8],
//     r = sqrt(-2 ln u1), θ = 2π u2, d[j] = r cos θ, d[j+8] = r sin θ. If numel % 16 != 0, the last
//     16 elements are refilled with 16 fresh uniforms and transformed again (overwriting the tail).
//     x86-64 builds (AVX2 and AVX512 dispatch alike) use `normal_fill_16_AVX2`, whose log/sincos are
//     the Cephes polynomials of avx_mathfun.h (not libm), compiled with FMA contraction; ported op by
//     op below. Builds without AVX2 (aarch64, ATEN_CPU_CAPABILITY=default) use libm logf/cosf/sinf:
//     the 'generic' kernel approximates those with correctly rounded float math (within ~2 ulp,
//     ~1.5% of elements differ in the last bits from glibc).
//   - bfloat16, numel >= 16, PyTorch 1.13 … at least 2.7.1 ('legacy'): the same scheme with 8-bit
//     bf16 uniforms for the whole tensor and bf16 arithmetic (`normal_fill_16<BFloat16>`: log, -2·,
//     sqrt, θ, cos, sin and each product rounded to bf16), so |x| <= 3.33 (pytorch issue #166853,
//     filed against 2.7.1). The bf16 tensor is NOT the float32 tensor rounded.
//   - bfloat16, numel >= 16, newer PyTorch (2.13.0 checked; `NormalFill16<opmath_t>`) ('float'):
//     per block of 16, draw 16 float uniforms, run the float32 kernel, round to bf16; the tail block
//     draws 16 fresh uniforms right after the full blocks. For numel % 16 == 0 this is exactly the
//     float32 noise rounded to bf16.
//   - numel < 16 (any dtype, all versions): per element `at::normal_distribution<double>` — u1, u2
//     double uniforms (two random64() each), r = sqrt(-2 ln(1 - u2)) (newer sources: log1p(-u2),
//     same argument since 1 - u2 is exact), θ = 2π u1; returns r cos θ and caches r sin θ in the
//     generator for the next element; the double is then cast to the dtype (bf16 via float).
// * FLUX latents always have numel % 16 == 0 (16 channels), so the tail rules only matter elsewhere.
// * Note: replicate/cog-flux draws its noise on the GPU (`get_noise(..., device="cuda")`, a CUDA
//   Philox generator), so this CPU port reproduces the BFL CLI / diffusers-with-CPU-generator noise,
//   not Replicate's images.

import { f32ToBf16Bits, bf16BitsToF32 } from '../tensor/dtype.js';

export type NoiseDType = 'f32' | 'bf16';
/** Which float32 kernel to emulate for tensors with >= 16 elements. */
export type CpuKernel = 'avx2' | 'generic';
/**
 * How bf16 tensors with >= 16 elements are sampled:
 * 'legacy' — PyTorch 1.13 … 2.7 (at least): bf16 arithmetic on 8-bit uniforms (the fixture);
 * 'float'  — newer PyTorch (verified: 2.13.0): float uniforms and float Box-Muller (the same kernel
 *            as float32) block by block, then rounded to bf16. For sizes that are multiples of 16
 *            (every FLUX latent) this equals the float32 noise rounded to bf16.
 */
export type Bf16Algo = 'legacy' | 'float';

export interface RandnOptions {
  /** float32 kernel to emulate (default 'avx2' = x86-64 builds, which also use it on AVX512). */
  kernel?: CpuKernel;
  /** bf16 sampling algorithm (default 'legacy'). */
  bf16?: Bf16Algo;
}

const fr = Math.fround;
const TWO_POW_32 = 4294967296;
const TWO_POW_M24 = 1 / 16777216;
const TWO_POW_M53 = 1 / 9007199254740992;
const UINT64_MAX = (1n << 64n) - 1n;

// ------------------------------------------------------------------------------------------------
// MT19937 (at::mt19937)

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UMASK = 0x80000000;
const LMASK = 0x7fffffff;

/**
 * Turn a user seed into the uint64 that `torch.Generator.manual_seed` stores.
 * Accepts integers in [-2^63, 2^64 - 1] (what PyTorch accepts); negatives wrap to two's complement.
 */
export function seedToUint64(seed: number | bigint): bigint {
  let s: bigint;
  if (typeof seed === 'number') {
    if (!Number.isSafeInteger(seed)) {
      throw new RangeError(`seed must be an integer (a safe integer when given as a number), got ${seed}`);
    }
    s = BigInt(seed);
  } else {
    s = seed;
  }
  if (s < -(1n << 63n) || s > UINT64_MAX) {
    throw new RangeError(`seed ${s} is out of range [-2^63, 2^64-1]`);
  }
  return s < 0n ? s + (1n << 64n) : s;
}

export class Mt19937 {
  /** The uint64 seed as given (PyTorch's `initial_seed()`); only its low 32 bits are used. */
  readonly seed: bigint;
  private readonly state = new Uint32Array(N);
  private left = 1;
  private next = 0;

  constructor(seed: number | bigint = 5489) {
    this.seed = seedToUint64(seed);
    const st = this.state;
    st[0] = Number(this.seed & 0xffffffffn);
    for (let j = 1; j < N; j++) {
      const prev = st[j - 1]!;
      st[j] = (Math.imul(1812433253, (prev ^ (prev >>> 30)) >>> 0) + j) >>> 0;
    }
    this.left = 1;
    this.next = 0;
  }

  private nextState(): void {
    const st = this.state;
    const twist = (u: number, v: number): number => ((((u & UMASK) | (v & LMASK)) >>> 1) ^ (v & 1 ? MATRIX_A : 0)) >>> 0;
    let p = 0;
    for (; p < N - M; p++) st[p] = (st[p + M]! ^ twist(st[p]!, st[p + 1]!)) >>> 0;
    for (; p < N - 1; p++) st[p] = (st[p + M - N]! ^ twist(st[p]!, st[p + 1]!)) >>> 0;
    st[N - 1] = (st[M - 1]! ^ twist(st[N - 1]!, st[0]!)) >>> 0;
    this.left = N;
    this.next = 0;
  }

  /** Next tempered 32-bit output (unsigned). */
  nextU32(): number {
    if (--this.left === 0) this.nextState();
    let y = this.state[this.next++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

// ------------------------------------------------------------------------------------------------
// CPUGeneratorImpl

/**
 * A torch CPU generator: the mt19937 engine plus the cached second Box-Muller value of
 * `at::normal_distribution<double>`. Use one instance for several draws to reproduce code that
 * draws repeatedly from the same `torch.Generator` (e.g. diffusers img2img: VAE sample, then noise).
 */
export class TorchCpuGenerator {
  readonly engine: Mt19937;
  /** next_double_normal_sample_ */
  private cachedNormal: number | undefined;

  constructor(seed: number | bigint) {
    this.engine = new Mt19937(seed);
  }

  /** CPUGeneratorImpl::random */
  random(): number {
    return this.engine.nextU32();
  }

  /** uniform_real_distribution<float>(0,1): 24 random bits. */
  uniformF32(): number {
    return (this.engine.nextU32() & 0xffffff) * TWO_POW_M24;
  }

  /** uniform_real_distribution<BFloat16>(0,1): 8 random bits (digits of bfloat16 = 8). */
  uniformBf16(): number {
    return (this.engine.nextU32() & 0xff) / 256;
  }

  /** uniform_real_distribution<double>(0,1): low 53 bits of random64() = (hi << 32) | lo. */
  uniformF64(): number {
    const hi = this.engine.nextU32();
    const lo = this.engine.nextU32();
    return ((hi & 0x1fffff) * TWO_POW_32 + lo) * TWO_POW_M53;
  }

  /** at::normal_distribution<double>(0, 1) with the generator-level cache. */
  normalF64(): number {
    if (this.cachedNormal !== undefined) {
      const v = this.cachedNormal;
      this.cachedNormal = undefined;
      return v;
    }
    const u1 = this.uniformF64();
    const u2 = this.uniformF64();
    const r = Math.sqrt(-2.0 * Math.log(1.0 - u2));
    const theta = 2.0 * Math.PI * u1;
    this.cachedNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** `torch.randn(shape, dtype, generator=this)` (or `tensor.normal_(0, 1, generator=this)`). */
  randn(shape: readonly number[], dtype: NoiseDType, opts: RandnOptions = {}): Float32Array {
    const n = numelOf(shape);
    const out = new Float32Array(n);
    if (n === 0) return out;
    if (n < 16) {
      // at::normal_distribution<double>, one element at a time, cast to the dtype
      for (let i = 0; i < n; i++) {
        const v = this.normalF64();
        out[i] = dtype === 'bf16' ? bf16BitsToF32(f32ToBf16Bits(v)) : v;
      }
      return out;
    }
    const fill16 = (opts.kernel ?? 'avx2') === 'avx2' ? normalFill16Avx2 : normalFill16GenericF32;
    if (dtype === 'f32') {
      for (let i = 0; i < n; i++) out[i] = this.uniformF32();
      for (let i = 0; i + 16 <= n; i += 16) fill16(out, i);
      if (n % 16 !== 0) {
        for (let i = n - 16; i < n; i++) out[i] = this.uniformF32();
        fill16(out, n - 16);
      }
      return out;
    }
    if ((opts.bf16 ?? 'legacy') === 'legacy') {
      // normal_fill<BFloat16>: 8-bit uniforms for the whole tensor first, bf16 arithmetic
      for (let i = 0; i < n; i++) out[i] = this.uniformBf16();
      for (let i = 0; i + 16 <= n; i += 16) normalFill16Bf16(out, i);
      if (n % 16 !== 0) {
        for (let i = n - 16; i < n; i++) out[i] = this.uniformBf16();
        normalFill16Bf16(out, n - 16);
      }
      return out;
    }
    // newer normal_fill: per block, 16 float uniforms -> float Box-Muller -> round to bf16
    const buf = new Float32Array(16);
    const block = (offset: number): void => {
      for (let j = 0; j < 16; j++) buf[j] = this.uniformF32();
      fill16(buf, 0);
      for (let j = 0; j < 16; j++) out[offset + j] = bf16BitsToF32(f32ToBf16Bits(buf[j]!));
    };
    for (let i = 0; i + 16 <= n; i += 16) block(i);
    if (n % 16 !== 0) block(n - 16);
    return out;
  }
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`invalid shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

// ------------------------------------------------------------------------------------------------
// bf16 normal_fill_16<BFloat16>: each c10::BFloat16 operation computes in float and rounds to bf16.

const rb = (x: number): number => bf16BitsToF32(f32ToBf16Bits(x));
const TWO_PI_F64 = 2.0 * Math.PI; // 2.0f * c10::pi<double>, a double

function normalFill16Bf16(d: Float32Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = rb(1 - d[o + j]!); // exact: d is k/256
    const u2 = d[o + j + 8]!;
    const lg = rb(fr(Math.log(u1))); // std::log(BFloat16) -> bf16(logf(float))
    const radius = rb(fr(Math.sqrt(rb(-2 * lg))));
    const theta = rb(TWO_PI_F64 * u2); // double product -> BFloat16(float(double))
    const c = rb(fr(Math.cos(theta)));
    const s = rb(fr(Math.sin(theta)));
    // radius * cos * std + mean, std = 1, mean = 0, each step rounded to bf16 (+0 turns -0 into +0)
    d[o + j] = rb(rb(radius * c) * 1) + 0;
    d[o + j + 8] = rb(rb(radius * s) * 1) + 0;
  }
}

// ------------------------------------------------------------------------------------------------
// float32 generic normal_fill_16<float> (non-AVX2 builds): float ops with libm-style functions.

function normalFill16GenericF32(d: Float32Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = fr(1 - d[o + j]!);
    const u2 = d[o + j + 8]!;
    const radius = fr(Math.sqrt(fr(-2 * fr(Math.log(u1)))));
    const theta = fr(TWO_PI_F64 * u2);
    d[o + j] = fr(radius * fr(Math.cos(theta))) + 0;
    d[o + j + 8] = fr(radius * fr(Math.sin(theta))) + 0;
  }
}

// ------------------------------------------------------------------------------------------------
// float32 AVX2 normal_fill_16_AVX2 with avx_mathfun.h log256_ps / sincos256_ps, one lane at a time.

const f32scratch = new Float32Array(1);
const u32scratch = new Uint32Array(f32scratch.buffer);
function f32Bits(x: number): number {
  f32scratch[0] = x;
  return u32scratch[0]!;
}
function bitsF32(b: number): number {
  u32scratch[0] = b >>> 0;
  return f32scratch[0]!;
}

const f64scratch = new Float64Array(1);
const u32of64 = new Uint32Array(f64scratch.buffer); // little-endian: [lo, hi]

/** Correctly rounded float32 fused multiply-add a*b + c (a, b, c float32 values). */
export function fmaF32(a: number, b: number, c: number): number {
  const p = a * b; // exact: 24 + 24 bits
  const s = p + c;
  if (!Number.isFinite(s)) return fr(s);
  // TwoSum: exact error of the double addition; then round-to-odd so the final fround is exact.
  const bb = s - p;
  const err = p - (s - bb) + (c - bb);
  if (err === 0) return fr(s);
  f64scratch[0] = s;
  if ((u32of64[0]! & 1) === 0) {
    // move s one ulp towards the exact value (makes it odd = sticky)
    const towardsLarger = err > 0 === s > 0;
    let lo = u32of64[0]!;
    let hi = u32of64[1]!;
    if (towardsLarger) {
      lo = (lo + 1) >>> 0;
      if (lo === 0) hi = (hi + 1) >>> 0;
    } else {
      if (lo === 0) hi = (hi - 1) >>> 0;
      lo = (lo - 1) >>> 0;
    }
    u32of64[0] = lo;
    u32of64[1] = hi;
    return fr(f64scratch[0]!);
  }
  return fr(s);
}

const C_ONE = 1;
const C_HALF = 0.5;
const MIN_NORM_POS = bitsF32(0x00800000);
const SQRTHF = fr(0.707106781186547524);
const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
].map(fr);
const LOG_Q1 = fr(-2.1219444e-4);
const LOG_Q2 = fr(0.693359375);
const MINUS_DP1 = fr(-0.78515625);
const MINUS_DP2 = fr(-2.4187564849853515625e-4);
const MINUS_DP3 = fr(-3.77489497744594108e-8);
const SINCOF_P0 = fr(-1.9515295891e-4);
const SINCOF_P1 = fr(8.3321608736e-3);
const SINCOF_P2 = fr(-1.6666654611e-1);
const COSCOF_P0 = fr(2.443315711809948e-5);
const COSCOF_P1 = fr(-1.388731625493765e-3);
const COSCOF_P2 = fr(4.166664568298827e-2);
const FOPI = fr(1.27323954473516);
const TWO_PI_F32 = fr(2.0 * Math.PI);

// PyTorch's AVX2 kernels are compiled with -mavx2 -mfma and GCC's default -ffp-contract=fast, so
// GCC contracts the `_mm256_mul_ps` + `_mm256_add_ps/sub_ps` pairs of avx_mathfun.h into FMAs.
// Which product gets fused where two are summed was determined against torch 1.13.1 (Debian build,
// GCC 12.2) and 2.13.0 (wheel, GCC 13.3): 0 mismatches over 1M samples; without FMAs ~0.1% of
// elements are 1 ulp off.
const madd = fmaF32;

/** log256_ps for one lane; x in (0, 1]. */
export function avxLogF32(xIn: number): number {
  if (!(xIn > 0)) return NaN;
  let x = Math.max(xIn, MIN_NORM_POS);
  const bits = f32Bits(x);
  let e = fr((bits >>> 23) - 0x7f + C_ONE);
  x = bitsF32((bits & ~0x7f800000) | f32Bits(C_HALF));
  const mask = x < SQRTHF;
  const tmp0 = mask ? x : 0;
  x = fr(x - C_ONE);
  if (mask) e = fr(e - C_ONE);
  x = fr(x + tmp0);
  const z = fr(x * x);
  let y = LOG_P[0]!;
  for (let k = 1; k < 9; k++) y = madd(y, x, LOG_P[k]!);
  y = fr(y * x);
  y = madd(y, z, fr(e * LOG_Q1)); // y*z + e*q1: the y*z product is the fused one
  y = fr(y - fr(z * C_HALF)); // z*0.5 is exact: fused or not gives the same
  x = fr(x + y);
  x = fr(x + fr(e * LOG_Q2)); // e*q2 is exact (q2 has 9 significant bits)
  return x;
}

/** sincos256_ps for one lane: returns [sin, cos]. */
export function avxSinCosF32(xIn: number): [number, number] {
  let signSin = xIn < 0 || Object.is(xIn, -0);
  let x = Math.abs(xIn);
  let y = fr(x * FOPI);
  let j = Math.trunc(y) | 0;
  j = (j + 1) & ~1;
  y = j; // exact int -> float for these magnitudes
  const swapSignSin = (j & 4) !== 0;
  const polyMask = (j & 2) === 0;
  x = madd(y, MINUS_DP1, x);
  x = madd(y, MINUS_DP2, x);
  x = madd(y, MINUS_DP3, x);
  const signCos = (~(j - 2) & 4) !== 0;
  signSin = signSin !== swapSignSin;
  const z = fr(x * x);
  let yc = COSCOF_P0;
  yc = madd(yc, z, COSCOF_P1);
  yc = madd(yc, z, COSCOF_P2);
  yc = fr(yc * z);
  yc = madd(yc, z, -fr(z * C_HALF)); // y*z - z*0.5: the y*z product is the fused one
  yc = fr(yc + C_ONE);
  let ys = SINCOF_P0;
  ys = madd(ys, z, SINCOF_P1);
  ys = madd(ys, z, SINCOF_P2);
  ys = fr(ys * z);
  ys = madd(ys, x, x);
  let s = polyMask ? 0 + ys : yc + 0;
  let c = polyMask ? yc + 0 : 0 + ys;
  if (signSin) s = -s;
  if (signCos) c = -c;
  return [s, c];
}

function normalFill16Avx2(d: Float32Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = fr(C_ONE - d[o + j]!);
    const u2 = d[o + j + 8]!;
    const radius = fr(Math.sqrt(fr(-2 * avxLogF32(u1))));
    const theta = fr(TWO_PI_F32 * u2);
    const [s, c] = avxSinCosF32(theta);
    // _mm256_fmadd_ps(n, std=1, mean=0)
    d[o + j] = fr(radius * c) + 0;
    d[o + j + 8] = fr(radius * s) + 0;
  }
}

// ------------------------------------------------------------------------------------------------
// Public API

/**
 * `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=...)`.
 * bf16 results are returned as float32 values that are exactly representable in bf16.
 * See RandnOptions for the PyTorch-version / CPU-kernel variants (defaults: x86-64, bf16 'legacy').
 */
export function randn(shape: readonly number[], seed: number | bigint, dtype: NoiseDType, opts: RandnOptions = {}): Float32Array {
  return new TorchCpuGenerator(seed).randn(shape, dtype, opts);
}

/** Same as `randn(shape, seed, 'bf16')` as raw bf16 bit patterns. */
export function randnBf16Bits(shape: readonly number[], seed: number | bigint, opts: RandnOptions = {}): Uint16Array {
  const v = randn(shape, seed, 'bf16', opts);
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = f32ToBf16Bits(v[i]!);
  return out;
}

/**
 * A random seed the way cog-flux picks one when `seed` is not given (cog-flux-behaviour.md §7):
 * the BFL bf16 engine (`int.from_bytes(os.urandom(2), "big")`) and the diffusers engine both use a
 * 16-bit seed, 0..65535. (The fp8 engine instead uses 0..2^32-2; pass bits=32 for that range.)
 */
export function randomSeed(bits: 16 | 32 = 16): number {
  const buf = new Uint32Array(1);
  globalThis.crypto.getRandomValues(buf);
  return bits === 16 ? buf[0]! >>> 16 : buf[0]! % 0xffffffff;
}
