// common.cuh — device-side dtype codecs, rounding points, activations and reductions shared by
// every kernel file. The codecs reproduce src/tensor/dtype.ts bit for bit (bf16 RNE with NaN ->
// 0x7fc0 like c10; f16 RNE with NaN -> sign|0x7e00; e4m3fn RNE with |x| > 464 -> NaN 0x7f), so a
// rounding point on the GPU is the same value as on the CPU reference. Values are handled as
// float: loads decode to fp32, `rnd<DT>` is a store-and-reload (a rounding point of ops.ts).
#pragma once
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <stdint.h>

#include "fluxserve_cuda.h"

namespace fxs {

__device__ __forceinline__ float bf16_dec(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }
__device__ __forceinline__ uint16_t bf16_enc(float x) {
  uint32_t u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return (uint16_t)((u + (((u >> 16) & 1u) + 0x7fffu)) >> 16);
}

__device__ __forceinline__ float f16_dec(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0) {
    float v = (float)mant * 5.9604644775390625e-8f;  // mant * 2^-24, exact
    return sign ? -v : v;
  }
  if (exp == 0x1f) return __uint_as_float(sign | 0x7f800000u | (mant << 13));
  return __uint_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
}
__device__ __forceinline__ uint16_t f16_enc(float x) {
  uint32_t u = __float_as_uint(x);
  uint32_t sign = (u >> 16) & 0x8000u;
  int exp = (int)((u >> 23) & 0xff);
  uint32_t mant = u & 0x7fffffu;
  if (exp == 0xff) return (uint16_t)(sign | (mant ? 0x7e00u : 0x7c00u));
  int e = exp - 127;
  if (e > 15) return (uint16_t)(sign | 0x7c00u);
  if (e >= -14) {
    uint32_t h = ((uint32_t)(e + 15) << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h += 1;
    return (uint16_t)(sign | h);
  }
  if (e < -25) return (uint16_t)sign;
  mant |= 0x800000u;
  int shift = -e - 14 + 13;
  uint32_t h = mant >> shift;
  uint32_t rest = mant & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (h & 1u))) h += 1;
  return (uint16_t)(sign | h);
}

__device__ __forceinline__ float f8_dec(uint8_t b) {
  float sign = (b & 0x80) ? -1.f : 1.f;
  int exp = (b >> 3) & 0xf, mant = b & 7;
  if (exp == 0xf && mant == 7) return __uint_as_float(0x7fc00000u);
  if (exp == 0) return sign * (float)mant * 0.001953125f;  // mant * 2^-9
  return sign * ldexpf(1.f + (float)mant * 0.125f, exp - 7);
}
__device__ __forceinline__ uint8_t f8_enc(float x) {
  if (isnan(x)) return 0x7f;
  uint8_t sign = signbit(x) ? 0x80 : 0;
  float a = fabsf(x);
  if (a > 464.f) return sign | 0x7f;
  if (a < 0.015625f) {  // below 2^-6: subnormal steps of 2^-9
    float q = a * 512.f;
    float m = floorf(q), r = q - m;
    int mi = (int)m;
    if (r > 0.5f || (r == 0.5f && (mi & 1))) mi += 1;
    return (uint8_t)(sign | mi);
  }
  int k;
  frexpf(a, &k);  // a = f·2^k, f in [0.5, 1)
  int e = k - 1;
  float q = (ldexpf(a, -e) - 1.f) * 8.f;
  float m = floorf(q), r = q - m;
  int mi = (int)m;
  if (r > 0.5f || (r == 0.5f && (mi & 1))) mi += 1;
  if (mi == 8) { mi = 0; e += 1; }
  return (uint8_t)(sign | ((e + 7) << 3) | mi);
}

// Typed access for the op's main dtype (compile time).
template <int DT> struct Io;
template <> struct Io<FXS_DT_F32> {
  static __device__ __forceinline__ float ld(const void* p, int64_t i) { return ((const float*)p)[i]; }
  static __device__ __forceinline__ void st(void* p, int64_t i, float v) { ((float*)p)[i] = v; }
  static __device__ __forceinline__ float rnd(float v) { return v; }
};
template <> struct Io<FXS_DT_BF16> {
  static __device__ __forceinline__ float ld(const void* p, int64_t i) { return bf16_dec(((const uint16_t*)p)[i]); }
  static __device__ __forceinline__ void st(void* p, int64_t i, float v) { ((uint16_t*)p)[i] = bf16_enc(v); }
  static __device__ __forceinline__ float rnd(float v) { return bf16_dec(bf16_enc(v)); }
};
template <> struct Io<FXS_DT_F16> {
  static __device__ __forceinline__ float ld(const void* p, int64_t i) { return f16_dec(((const uint16_t*)p)[i]); }
  static __device__ __forceinline__ void st(void* p, int64_t i, float v) { ((uint16_t*)p)[i] = f16_enc(v); }
  static __device__ __forceinline__ float rnd(float v) { return f16_dec(f16_enc(v)); }
};
template <> struct Io<FXS_DT_F8E4M3> {
  static __device__ __forceinline__ float ld(const void* p, int64_t i) { return f8_dec(((const uint8_t*)p)[i]); }
  static __device__ __forceinline__ void st(void* p, int64_t i, float v) { ((uint8_t*)p)[i] = f8_enc(v); }
  static __device__ __forceinline__ float rnd(float v) { return f8_dec(f8_enc(v)); }
};
template <> struct Io<FXS_DT_I32> {
  static __device__ __forceinline__ float ld(const void* p, int64_t i) { return (float)((const int32_t*)p)[i]; }
};

// Runtime-dtype load for secondary operands (the branch is uniform across a launch).
__device__ __forceinline__ float ldx(const void* p, int dt, int64_t i) {
  switch (dt) {
    case FXS_DT_F32: return ((const float*)p)[i];
    case FXS_DT_BF16: return bf16_dec(((const uint16_t*)p)[i]);
    case FXS_DT_F16: return f16_dec(((const uint16_t*)p)[i]);
    case FXS_DT_F8E4M3: return f8_dec(((const uint8_t*)p)[i]);
    default: return (float)((const int32_t*)p)[i];
  }
}

__device__ __forceinline__ float act_apply(int act, float x) {
  switch (act) {
    // 0.5·x·(1 + tanh(u)) written as x·sigmoid(2u): the same function without the cancellation of
    // 1 + tanh(u) for u << 0 in fp32 (found by the emulator: 1.5% of bf16 outputs off by an ulp
    // against the f64 reference for x near -5).
    case FXS_ACT_GELU_TANH: return x / (1.f + expf(-1.5957691216057308f * (x + 0.044715f * x * x * x)));
    case FXS_ACT_GELU: return 0.5f * x * (1.f + erff(x * 0.7071067811865476f));
    case FXS_ACT_SILU: return x / (1.f + expf(-x));
    case FXS_ACT_QUICK_GELU: return x / (1.f + expf(-1.702f * x));
    default: return x;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Raises *amax (float bits, ordered like unsigned for non-negative values) to the block's max of m
// (m >= 0, NaN already dropped by fmaxf): go_fast's per-tensor input amax, deterministic because a
// max is order-free. Every thread of the block must call it, once per kernel.
__device__ __forceinline__ void block_amax_atomic(float m, unsigned* amax) {
  __shared__ float sh_amax[32];
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  m = warp_max(m);
  if (lane == 0) sh_amax[wid] = m;
  __syncthreads();
  if (wid == 0) {
    float t = lane < nw ? sh_amax[lane] : 0.f;
    t = warp_max(t);
    if (lane == 0) atomicMax(amax, __float_as_uint(t));
  }
}
// Sum over a block of up to 1024 threads (every thread gets the result). `sh` holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* sh) {
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  float t = lane < nw ? sh[lane] : 0.f;
  return warp_sum(t);
}

inline unsigned blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return (unsigned)(b < 1 ? 1 : (b > 2147483647 ? 2147483647 : b));
}
/** blocks_for, at most `cap` blocks (grid-stride kernels). */
inline unsigned blocks_capped(int64_t n, int threads, unsigned cap) {
  unsigned b = blocks_for(n, threads);
  return b > cap ? cap : b;
}
/**
 * Grid of a row kernel (rows strided over grid.y, a row's columns over grid.x·256 threads): no
 * per-element 64-bit division, which costs more than moving a bf16 element.
 */
inline dim3 row_grid(int64_t rows, int64_t cols) {
  return dim3(blocks_capped(cols, 256, 64u), (unsigned)(rows < 65535 ? (rows < 1 ? 1 : rows) : 65535));
}
/** An on/off switch from the environment: set and starting with '1'. */
inline bool env_on(const char* name) {
  const char* v = getenv(name);
  return v && v[0] == '1';
}

}  // namespace fxs

#define FXS_STREAM ((cudaStream_t)fxs_stream())
#define FXS_LAUNCHED() ((int)cudaGetLastError())
// Dispatch a runtime dtype to a template argument.
#define FXS_DT_SWITCH(dt, DT, ...)                                  \
  switch (dt) {                                                     \
    case FXS_DT_F32: { constexpr int DT = FXS_DT_F32; __VA_ARGS__; break; } \
    case FXS_DT_BF16: { constexpr int DT = FXS_DT_BF16; __VA_ARGS__; break; } \
    case FXS_DT_F16: { constexpr int DT = FXS_DT_F16; __VA_ARGS__; break; } \
    case FXS_DT_F8E4M3: { constexpr int DT = FXS_DT_F8E4M3; __VA_ARGS__; break; } \
    default: return (int)cudaErrorInvalidValue;                     \
  }
#define FXS_DT_CODE_f32 FXS_DT_F32
#define FXS_DT_CODE_bf16 FXS_DT_BF16
#define FXS_DT_CODE_f16 FXS_DT_F16
#define FXS_DT_CODE_f8e4m3 FXS_DT_F8E4M3
#define FXS_DT_CODE_i32 FXS_DT_I32
