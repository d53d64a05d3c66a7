// attention.cu — softmax(q·kᵀ·scale + bias [+ causal mask])·v with heads merged on output.
// Algorithm: one warp per query row, 8 rows per block; keys/values stream through shared memory
// in tiles of 32 (decoded to fp32), lane j scores key j of the tile (full dot product over D from
// a padded, conflict-free tile), then an online softmax in fp32 (running max m and sum l per row,
// rescaling the accumulator by exp(m_old − m_new)), with each lane owning Dv/32 output columns.
// A row whose keys are all masked (−inf) outputs 0 (ops.ts; torch >= 2.5 _safe_softmax).
// Why: a single-pass flash-style kernel that never materialises the L×L scores and handles any
// Lq/Lk, D/Dv <= 128, any bias broadcast and the causal mask, in every dtype. The dispatcher below
// sends bf16/f16 calls of the common shapes to the tensor-core kernels instead: the Hopper wgmma
// kernel (flash_wgmma.cu, once wgmma_check.cu has checked it) or the mma.sync one (flash_mma.cu).
#include <stdint.h>

#include "attention.cuh"
#include "mma.cuh"

namespace fxs {

constexpr int AT_ROWS = 8, AT_KT = 32, AT_DMAX = 128;

template <int DT>
__global__ void __launch_bounds__(AT_ROWS * 32) attention_kernel(const void* q, const void* k, const void* v, const void* bias,
                                                                 int bdt, int64_t bsb, int64_t bsh, void* out, int64_t H,
                                                                 int64_t Lq, int64_t Lk, int D, int Dv, float scale, int causal) {
  __shared__ float Ks[AT_KT][AT_DMAX + 1];
  __shared__ float Vs[AT_KT][AT_DMAX];
  __shared__ float Qs[AT_ROWS][AT_DMAX];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int64_t h = blockIdx.y, b = blockIdx.z, bh = b * H + h;
  const int64_t i = (int64_t)blockIdx.x * AT_ROWS + w;  // this warp's query row
  const bool active = i < Lq;
  for (int d = lane; d < D; d += 32) Qs[w][d] = active ? Io<DT>::ld(q, (bh * Lq + i) * D + d) : 0.f;
  float o[AT_DMAX / 32];
#pragma unroll
  for (int c = 0; c < AT_DMAX / 32; c++) o[c] = 0.f;
  float m = -INFINITY, l = 0.f;
  // causal: the block's last row needs keys [0, row + 1)
  int64_t last_row = min((int64_t)blockIdx.x * AT_ROWS + AT_ROWS, Lq) - 1;
  int64_t kend = causal ? min(Lk, last_row + 1) : Lk;
  const int64_t boff = b * bsb + h * bsh;
  for (int64_t j0 = 0; j0 < kend; j0 += AT_KT) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < AT_KT * D; idx += blockDim.x) {
      int r = idx / D, d = idx % D;
      int64_t j = j0 + r;
      Ks[r][d] = j < Lk ? Io<DT>::ld(k, (bh * Lk + j) * D + d) : 0.f;
    }
    for (int idx = threadIdx.x; idx < AT_KT * Dv; idx += blockDim.x) {
      int r = idx / Dv, d = idx % Dv;
      int64_t j = j0 + r;
      Vs[r][d] = j < Lk ? Io<DT>::ld(v, (bh * Lk + j) * Dv + d) : 0.f;
    }
    __syncthreads();
    if (!active) continue;
    int64_t j = j0 + lane;
    float s = -INFINITY;
    if (j < Lk && !(causal && j > i)) {
      float acc = 0.f;
      for (int d = 0; d < D; d++) acc = fmaf(Qs[w][d], Ks[lane][d], acc);
      s = acc * scale;
      if (bias) s += ldx(bias, bdt, boff + i * Lk + j);
    }
    float mt = warp_max(s);
    float mn = fmaxf(m, mt);
    if (mn == -INFINITY) continue;  // everything so far masked
    float p = expf(s - mn);         // s = −inf -> 0
    float corr = expf(m - mn);      // m = −inf -> 0
    l = l * corr + warp_sum(p);
    m = mn;
#pragma unroll
    for (int c = 0; c < AT_DMAX / 32; c++) o[c] *= corr;
    for (int jj = 0; jj < AT_KT; jj++) {
      float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
      for (int c = 0; c < AT_DMAX / 32; c++) {
        int d = lane + 32 * c;
        if (d < Dv) o[c] = fmaf(pj, Vs[jj][d], o[c]);
      }
    }
  }
  if (!active) return;
  float inv = l > 0.f ? 1.f / l : (l == 0.f ? 0.f : l);  // all masked -> 0; NaN stays NaN
  const int64_t HD = H * Dv;
#pragma unroll
  for (int c = 0; c < AT_DMAX / 32; c++) {
    int d = lane + 32 * c;
    if (d < Dv) Io<DT>::st(out, (b * Lq + i) * HD + h * Dv + d, l == 0.f ? 0.f : o[c] * inv);
  }
}

template <int DT>
int attention_launch(const void* q, const void* k, const void* v, const void* bias, int bdt, int64_t bsb, int64_t bsh,
                     void* out, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, int64_t Dv, float scale,
                     int causal) {
  if (D > AT_DMAX || Dv > AT_DMAX || D < 1 || Dv < 1) return (int)cudaErrorInvalidValue;
  if (B <= 0 || H <= 0 || Lq <= 0) return 0;
  if (H > 65535 || B > 65535) return (int)cudaErrorInvalidConfiguration;
  if constexpr (DT == FXS_DT_BF16 || DT == FXS_DT_F16) {
    static const bool simt = env_on("FXS_ATTN_SIMT");
    bool aligned = (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) & 15) == 0;
    if (!simt && aligned && D == 128 && Dv == 128 && Lk > 0 && !bias && !causal && wgmma_mode() > 0) {
      return flash_wgmma_attention(DT, wgmma_mode() == 2, q, k, v, out, B, H, Lq, Lk, scale);
    }
    if (!simt && aligned && D == Dv && (D == 64 || D == 128) && Lk > 0) {
      return flash_mma_attention(DT, D, q, k, v, bias, bdt, bsb, bsh, out, B, H, Lq, Lk, scale, causal);
    }
  }
  dim3 grid((unsigned)((Lq + AT_ROWS - 1) / AT_ROWS), (unsigned)H, (unsigned)B);
  attention_kernel<DT><<<grid, AT_ROWS * 32, 0, FXS_STREAM>>>(q, k, v, bias, bdt, bsb, bsh, out, H, Lq, Lk, (int)D, (int)Dv,
                                                               scale, causal);
  return FXS_LAUNCHED();
}

}  // namespace fxs

extern "C" {
#define FXS_DEF_ATTN(dt)                                                                                     \
  int fxs_attention_##dt(const void* q, const void* k, const void* v, const void* bias, int bias_dtype,       \
                         int64_t bias_sb, int64_t bias_sh, void* out, int64_t B, int64_t H, int64_t Lq,       \
                         int64_t Lk, int64_t D, int64_t Dv, float scale, int causal) {                        \
    return fxs::attention_launch<FXS_DT_CODE_##dt>(q, k, v, bias, bias_dtype, bias_sb, bias_sh, out, B, H, Lq, \
                                                   Lk, D, Dv, scale, causal);                                 \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_ATTN)
}
