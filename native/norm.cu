// norm.cu — layerNorm, rmsNorm, modulatedLayerNorm (adaLN) and groupNorm (+SiLU).
// Algorithm: one 256-thread block per row for the row norms, statistics in fp32 by two passes
// (mean, then the biased variance of x − mean; the row is re-read from L1/L2, rows are at most a
// few thousand elements), block reductions by warp shuffles. GroupNorm's groups are large (up to
// millions of elements in the VAE), so it runs in three kernels: chunk partials (count, mean, M2)
// by Welford merged with Chan's formula, a per-group merge, and a fully parallel apply pass.
// Why: two-pass/Welford fp32 statistics match the float64 CPU reference to a few fp32 ulps, and
// the rounding points are those listed in ops.ts (modulatedLayerNorm rounds LN, 1 + scale, the
// product and the sum, like the unfused PyTorch chain).
#include "common.cuh"

namespace fxs {

constexpr int NT = 256;

__device__ __forceinline__ void row_stats(const void* x, int dt, int64_t off, int64_t D, float eps, float* sh,
                                          float* mean_out, float* rstd_out) {
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += ldx(x, dt, off + i);
  float mean = block_sum(s, sh) / (float)D;
  float v = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float d = ldx(x, dt, off + i) - mean;
    v += d * d;
  }
  float var = block_sum(v, sh) / (float)D;
  *mean_out = mean;
  *rstd_out = 1.f / sqrtf(var + eps);
}

template <int DT>
__global__ void layer_norm_kernel(const void* x, const void* w, int wdt, const void* b, int bdt, void* y, int64_t D, float eps) {
  __shared__ float sh[32];
  int64_t off = (int64_t)blockIdx.x * D;
  float mean, rstd;
  row_stats(x, DT, off, D, eps, sh, &mean, &rstd);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float v = (Io<DT>::ld(x, off + i) - mean) * rstd;
    if (w) v *= ldx(w, wdt, i);
    if (b) v += ldx(b, bdt, i);
    Io<DT>::st(y, off + i, v);
  }
}

template <int DT>
__global__ void rms_norm_kernel(const void* x, const void* w, int wdt, void* y, int64_t D, float eps) {
  __shared__ float sh[32];
  int64_t off = (int64_t)blockIdx.x * D;
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float v = Io<DT>::ld(x, off + i);
    s += v * v;
  }
  float rrms = 1.f / sqrtf(block_sum(s, sh) / (float)D + eps);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float v = Io<DT>::ld(x, off + i) * rrms;
    if (w) v = Io<DT>::rnd(v) * ldx(w, wdt, i);  // BFL: (x·rrms).to(dtype) * scale
    Io<DT>::st(y, off + i, v);
  }
}

template <int DT>
__global__ void mod_layer_norm_kernel(const void* x, const void* shift, int shdt, const void* scale, int scdt, void* y,
                                      int64_t L, int64_t D, float eps, unsigned* amax) {
  __shared__ float sh[32];
  int64_t row = blockIdx.x, b = row / L, off = row * D;
  float mean, rstd;
  row_stats(x, DT, off, D, eps, sh, &mean, &rstd);
  float m = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float ln = Io<DT>::rnd((Io<DT>::ld(x, off + i) - mean) * rstd);       // LN(x)
    float sc = Io<DT>::rnd(1.f + ldx(scale, scdt, b * D + i));            // 1 + scale
    float v = Io<DT>::rnd(ln * sc);                                        // (1 + scale)·LN(x)
    float o = Io<DT>::rnd(v + ldx(shift, shdt, b * D + i));                // … + shift
    Io<DT>::st(y, off + i, o);
    m = fmaxf(m, fabsf(o));
  }
  if (amax) block_amax_atomic(m, amax);  // the next linear's fp8 input scale, without re-reading y
}

// ---- groupNorm ----------------------------------------------------------------------------------
struct Welford { float n, mean, m2; };
__device__ __forceinline__ Welford merge(Welford a, Welford b) {
  float n = a.n + b.n;
  if (n == 0.f) return a;
  float d = b.mean - a.mean, fb = b.n / n;
  return {n, a.mean + d * fb, a.m2 + b.m2 + d * d * a.n * fb};
}

// grid (B·G, chunks): partial statistics of chunk c of group u.
__global__ void gn_partial_kernel(const void* x, int dt, int64_t len, int64_t chunk, float* part) {
  __shared__ Welford sw[NT];
  int64_t u = blockIdx.x, c = blockIdx.y;
  int64_t base = u * len, lo = c * chunk, hi = min(len, lo + chunk);
  Welford w{0.f, 0.f, 0.f};
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    float v = ldx(x, dt, base + i);
    w.n += 1.f;
    float d = v - w.mean;
    w.mean += d / w.n;
    w.m2 += d * (v - w.mean);
  }
  sw[threadIdx.x] = w;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sw[threadIdx.x] = merge(sw[threadIdx.x], sw[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    float* o = part + (u * gridDim.y + c) * 3;
    o[0] = sw[0].n; o[1] = sw[0].mean; o[2] = sw[0].m2;
  }
}

__global__ void gn_merge_kernel(const float* part, int64_t units, int64_t chunks, float eps, float* stats) {
  int64_t u = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (u >= units) return;
  Welford w{0.f, 0.f, 0.f};
  for (int64_t c = 0; c < chunks; c++) {
    const float* p = part + (u * chunks + c) * 3;
    w = merge(w, Welford{p[0], p[1], p[2]});
  }
  stats[u * 2] = w.mean;
  stats[u * 2 + 1] = 1.f / sqrtf((w.n > 0.f ? w.m2 / w.n : 0.f) + eps);
}

template <int DT>
__global__ void gn_apply_kernel(const void* x, const void* w, int wdt, const void* b, int bdt, void* y, const float* stats,
                                int64_t n, int64_t C, int64_t S, int64_t Cg, int act) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t bc = i / S, bb = bc / C, c = bc - bb * C;
    int64_t u = bb * (C / Cg) + c / Cg;
    float mean = stats[u * 2], rstd = stats[u * 2 + 1];
    float scale = rstd * ldx(w, wdt, c);
    float shift = ldx(b, bdt, c) - mean * scale;
    float v = Io<DT>::ld(x, i) * scale + shift;
    if (act != FXS_ACT_NONE) v = act_apply(act, Io<DT>::rnd(v));  // GroupNorm, then SiLU: two ops
    Io<DT>::st(y, i, v);
  }
}

inline unsigned grid_cap(int64_t n) {
  unsigned g = blocks_for(n, NT);
  return g > 65535u * 8 ? 65535u * 8 : g;
}

template <int DT>
int group_norm_impl(const void* x, const void* w, int wdt, const void* b, int bdt, void* y, int64_t B, int64_t C,
                    int64_t S, int64_t G, float eps, int act) {
  int64_t units = B * G, len = (C / G) * S, n = B * C * S;
  if (n == 0) return 0;
  int64_t chunk = 16384;
  int64_t chunks = (len + chunk - 1) / chunk;
  if (chunks > 1024) { chunks = 1024; chunk = (len + chunks - 1) / chunks; }
  if (chunks < 1) chunks = 1;
  void* scratch = nullptr;
  int e = fxs_malloc((size_t)(units * chunks * 3 + units * 2) * sizeof(float), &scratch);
  if (e) return e;
  float* part = (float*)scratch;
  float* stats = part + units * chunks * 3;
  cudaStream_t s = FXS_STREAM;
  gn_partial_kernel<<<dim3((unsigned)units, (unsigned)chunks), NT, 0, s>>>(x, DT, len, chunk, part);
  gn_merge_kernel<<<blocks_for(units, 128), 128, 0, s>>>(part, units, chunks, eps, stats);
  gn_apply_kernel<DT><<<grid_cap(n), NT, 0, s>>>(x, w, wdt, b, bdt, y, stats, n, C, S, C / G, act);
  e = (int)cudaGetLastError();
  fxs_free(scratch);  // stream-ordered: the next user of the block runs after these kernels
  return e;
}

}  // namespace fxs

extern "C" {
#define FXS_DEF_NORM(dt)                                                                            \
  int fxs_layer_norm_##dt(const void* x, const void* w, int w_dtype, const void* b, int b_dtype,     \
                          void* y, int64_t rows, int64_t D, float eps) {                             \
    if (rows <= 0 || D <= 0) return 0;                                                               \
    fxs::layer_norm_kernel<FXS_DT_CODE_##dt><<<(unsigned)rows, fxs::NT, 0, FXS_STREAM>>>(x, w, w_dtype, b, b_dtype, y, D, eps); \
    return FXS_LAUNCHED();                                                                           \
  }                                                                                                  \
  int fxs_rms_norm_##dt(const void* x, const void* w, int w_dtype, void* y, int64_t rows, int64_t D, \
                        float eps) {                                                                 \
    if (rows <= 0 || D <= 0) return 0;                                                               \
    fxs::rms_norm_kernel<FXS_DT_CODE_##dt><<<(unsigned)rows, fxs::NT, 0, FXS_STREAM>>>(x, w, w_dtype, y, D, eps); \
    return FXS_LAUNCHED();                                                                           \
  }                                                                                                  \
  int fxs_group_norm_##dt(const void* x, const void* w, int w_dtype, const void* b, int b_dtype,     \
                          void* y, int64_t B, int64_t C, int64_t S, int64_t groups, float eps,       \
                          int act) {                                                                 \
    return fxs::group_norm_impl<FXS_DT_CODE_##dt>(x, w, w_dtype, b, b_dtype, y, B, C, S, groups, eps, act); \
  }                                                                                                  \
  int fxs_modulated_layer_norm_##dt(const void* x, const void* shift, int shift_dtype,               \
                                    const void* scale, int scale_dtype, void* y, int64_t B,          \
                                    int64_t L, int64_t D, float eps, void* amax) {                   \
    if (B * L <= 0 || D <= 0) return 0;                                                              \
    fxs::mod_layer_norm_kernel<FXS_DT_CODE_##dt><<<(unsigned)(B * L), fxs::NT, 0, FXS_STREAM>>>(     \
        x, shift, shift_dtype, scale, scale_dtype, y, L, D, eps, (unsigned*)amax);                   \
    return FXS_LAUNCHED();                                                                           \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_NORM)
}
