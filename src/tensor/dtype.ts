// Element types and their exact conversions to and from float32.
//
// bf16/f16/f8 values are stored as raw bit patterns (Uint16Array / Uint8Array) and converted with
// round-to-nearest-even, NaN and infinities kept, exactly like PyTorch's `Tensor.to(dtype)`
// (c10/util/BFloat16.h `round_to_nearest_even`, c10/util/Half.h, c10/util/Float8_e4m3fn.h).

export type DType = 'f32' | 'bf16' | 'f16' | 'f8e4m3' | 'i32';

export const DTYPES: readonly DType[] = ['f32', 'bf16', 'f16', 'f8e4m3', 'i32'];

/** Bytes per element. */
export function dtypeSize(dtype: DType): number {
  switch (dtype) {
    case 'f32':
    case 'i32':
      return 4;
    case 'bf16':
    case 'f16':
      return 2;
    case 'f8e4m3':
      return 1;
  }
}

export function isFloat(dtype: DType): boolean {
  return dtype !== 'i32';
}

/** The safetensors spelling of each dtype (safetensors/src/tensor.rs `Dtype`). */
export const SAFETENSORS_DTYPE: Record<DType, string> = {
  f32: 'F32',
  bf16: 'BF16',
  f16: 'F16',
  f8e4m3: 'F8_E4M3',
  i32: 'I32',
};

export function dtypeFromSafetensors(name: string): DType | undefined {
  for (const d of DTYPES) if (SAFETENSORS_DTYPE[d] === name) return d;
  return undefined;
}

/** The typed array that holds raw elements of a dtype. */
export type RawArray = Float32Array | Uint16Array | Uint8Array | Int32Array;

export function allocRaw(dtype: DType, n: number): RawArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(n);
    case 'i32':
      return new Int32Array(n);
    case 'bf16':
    case 'f16':
      return new Uint16Array(n);
    case 'f8e4m3':
      return new Uint8Array(n);
  }
}

/** A typed-array view of raw bytes (copies when the bytes are not aligned for the element size). */
export function rawFromBytes(dtype: DType, bytes: Uint8Array): RawArray {
  const size = dtypeSize(dtype);
  if (bytes.byteLength % size !== 0) {
    throw new Error(`rawFromBytes: ${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  }
  let b = bytes;
  if (b.byteOffset % size !== 0) b = b.slice();
  const n = b.byteLength / size;
  switch (dtype) {
    case 'f32':
      return new Float32Array(b.buffer, b.byteOffset, n);
    case 'i32':
      return new Int32Array(b.buffer, b.byteOffset, n);
    case 'bf16':
    case 'f16':
      return new Uint16Array(b.buffer, b.byteOffset, n);
    case 'f8e4m3':
      return new Uint8Array(b.buffer, b.byteOffset, n);
  }
}

export function bytesOf(raw: RawArray): Uint8Array {
  return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
}

// ---------------------------------------------------------------------------------------------
// bf16

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** float32 -> bf16 bits, round to nearest even; any NaN becomes 0x7fc0, +-inf stays inf. */
export function f32ToBf16Bits(x: number): number {
  f32buf[0] = x;
  const u = u32buf[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0; // NaN -> canonical quiet NaN, as c10 does
  // c10: rounding_bias = ((U32 >> 16) & 1) + 0x7FFF
  return ((u + (((u >>> 16) & 1) + 0x7fff)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(b: number): number {
  u32buf[0] = (b & 0xffff) << 16;
  return f32buf[0]!;
}

/** Round a float32 value to the nearest bf16 value (the value PyTorch gets from `.to(bfloat16)`). */
export function roundBf16(x: number): number {
  return bf16BitsToF32(f32ToBf16Bits(x));
}

/** In-place bf16 rounding of a whole array (fast path, no per-element function call). */
export function roundBf16Array(a: Float32Array): void {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < u.length; i++) {
    const v = u[i]!;
    if ((v & 0x7fffffff) > 0x7f800000) u[i] = 0x7fc00000;
    else u[i] = ((v + (((v >>> 16) & 1) + 0x7fff)) & 0xffff0000) >>> 0;
  }
}

// ---------------------------------------------------------------------------------------------
// f16 (IEEE binary16)

export function f32ToF16Bits(x: number): number {
  f32buf[0] = x;
  const u = u32buf[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | (mant !== 0 ? 0x7e00 : 0x7c00); // NaN -> 0x7e00 (c10), inf
  // unbiased exponent
  const e = exp - 127;
  if (e > 15) return sign | 0x7c00; // overflow -> inf
  if (e >= -14) {
    // normal half: 10 mantissa bits, round to nearest even on the 13 dropped bits
    let h = ((e + 15) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1; // may carry into exponent: fine
    return sign | h;
  }
  if (e < -25) return sign; // underflows to zero (below half the smallest subnormal)
  // subnormal half: value = mant' * 2^-24
  mant |= 0x800000; // implicit bit
  const shift = -e - 14 + 13; // bits to drop
  let h = mant >>> shift;
  const rest = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) === 1)) h += 1;
  return sign | h;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// ---------------------------------------------------------------------------------------------
// f8 e4m3fn (no infinities; 0x7f/0xff are NaN; max finite 448), as torch.float8_e4m3fn.

export const F8E4M3_MAX = 448;

export function f8e4m3BitsToF32(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >>> 3) & 0xf;
  const mant = b & 0x7;
  if (exp === 0xf && mant === 0x7) return NaN;
  if (exp === 0) return sign * mant * 2 ** -9; // subnormal: mant/8 * 2^-6
  return sign * (1 + mant / 8) * 2 ** (exp - 7);
}

/**
 * float32 -> e4m3fn bits, round to nearest even. Like c10's `fp8e4m3fn_from_fp32_value`, values
 * whose magnitude rounds past 448 (|x| > 464; 464 itself ties to even, to 448) become NaN (0x7f),
 * not a saturated 448.
 */
export function f32ToF8e4m3Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7f;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.abs(Math.fround(x));
  if (a > 464) return sign | 0x7f; // rounds up past 448 (c10: f_bits >= 480 -> NaN, (464, 480) round to 0x7f)
  if (a < 2 ** -6) {
    // subnormal range: step 2^-9
    const q = a / 2 ** -9;
    let m = Math.floor(q);
    const r = q - m;
    if (r > 0.5 || (r === 0.5 && (m & 1) === 1)) m += 1;
    return sign | m; // m == 8 becomes the smallest normal 0x08 automatically
  }
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1; // guard log2 rounding
  if (2 ** (e + 1) <= a) e += 1;
  const q = (a / 2 ** e - 1) * 8;
  let m = Math.floor(q);
  const r = q - m;
  if (r > 0.5 || (r === 0.5 && (m & 1) === 1)) m += 1;
  if (m === 8) {
    m = 0;
    e += 1;
  }
  return sign | ((e + 7) << 3) | m;
}

// ---------------------------------------------------------------------------------------------
// Whole-array conversions

/** Decode raw elements of any dtype to float32 values. */
export function rawToF32(dtype: DType, raw: RawArray, out?: Float32Array): Float32Array {
  const n = raw.length;
  const o = out ?? new Float32Array(n);
  switch (dtype) {
    case 'f32':
      o.set(raw as Float32Array);
      break;
    case 'i32':
      for (let i = 0; i < n; i++) o[i] = raw[i]!;
      break;
    case 'bf16': {
      const u = new Uint32Array(o.buffer, o.byteOffset, n);
      const r = raw as Uint16Array;
      for (let i = 0; i < n; i++) u[i] = r[i]! << 16;
      break;
    }
    case 'f16':
      for (let i = 0; i < n; i++) o[i] = f16BitsToF32(raw[i]!);
      break;
    case 'f8e4m3': {
      const lut = F8_LUT;
      for (let i = 0; i < n; i++) o[i] = lut[raw[i]!]!;
      break;
    }
  }
  return o;
}

/** Encode float32 values into raw elements of a dtype (rounding as PyTorch's cast does). */
export function f32ToRaw(dtype: DType, values: Float32Array, out?: RawArray): RawArray {
  const n = values.length;
  const o = out ?? allocRaw(dtype, n);
  switch (dtype) {
    case 'f32':
      (o as Float32Array).set(values);
      break;
    case 'i32': {
      const r = o as Int32Array;
      for (let i = 0; i < n; i++) r[i] = Math.trunc(values[i]!); // torch: float -> int truncates
      break;
    }
    case 'bf16': {
      const r = o as Uint16Array;
      const u = new Uint32Array(values.buffer, values.byteOffset, n);
      for (let i = 0; i < n; i++) {
        const v = u[i]!;
        r[i] = (v & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : ((v + (((v >>> 16) & 1) + 0x7fff)) >>> 16) & 0xffff;
      }
      break;
    }
    case 'f16': {
      const r = o as Uint16Array;
      for (let i = 0; i < n; i++) r[i] = f32ToF16Bits(values[i]!);
      break;
    }
    case 'f8e4m3': {
      const r = o as Uint8Array;
      for (let i = 0; i < n; i++) r[i] = f32ToF8e4m3Bits(values[i]!);
      break;
    }
  }
  return o;
}

/** Round float32 values in place to the nearest value representable in `dtype` (no-op for f32). */
export function roundToDtypeInPlace(dtype: DType, values: Float32Array): void {
  switch (dtype) {
    case 'f32':
      return;
    case 'bf16':
      roundBf16Array(values);
      return;
    case 'f16':
      for (let i = 0; i < values.length; i++) values[i] = f16BitsToF32(f32ToF16Bits(values[i]!));
      return;
    case 'f8e4m3':
      for (let i = 0; i < values.length; i++) values[i] = F8_LUT[f32ToF8e4m3Bits(values[i]!)]!;
      return;
    case 'i32':
      for (let i = 0; i < values.length; i++) values[i] = Math.trunc(values[i]!);
      return;
  }
}

const F8_LUT = (() => {
  const t = new Float32Array(256);
  for (let i = 0; i < 256; i++) t[i] = f8e4m3BitsToF32(i);
  return t;
})();
