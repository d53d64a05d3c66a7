// rope.cu — FLUX rotary embedding: each adjacent pair (x[2k], x[2k+1]) of a head is multiplied by
// the fp32 2x2 matrix pe[b, l, k] = [[cos, −sin], [sin, cos]] (black-forest-labs/flux src/flux/math.py apply_rope).
// Algorithm: one thread per pair, grid-stride; the pe table is read as float4 per pair. Math in
// fp32, one rounding of the output. Why: it is purely memory-bound; one pass, no shared memory.
#include "common.cuh"

namespace fxs {

template <int DT>
__global__ void rope_kernel(const void* x, const float* pe, int pe_batched, void* y, int64_t pairs, int64_t H,
                            int64_t L, int64_t half) {
  for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < pairs; p += (int64_t)gridDim.x * blockDim.x) {
    int64_t k = p % half, row = p / half;  // row = (b·H + h)·L + l
    int64_t l = row % L, b = row / (L * H);
    const float4 m = reinterpret_cast<const float4*>(pe)[(pe_batched ? b * L : 0) * half + l * half + k];
    float x0 = Io<DT>::ld(x, 2 * p), x1 = Io<DT>::ld(x, 2 * p + 1);
    Io<DT>::st(y, 2 * p, m.x * x0 + m.y * x1);
    Io<DT>::st(y, 2 * p + 1, m.z * x0 + m.w * x1);
  }
}

// attn_prep — split heads + QK RMSNorm + RoPE (+ the text/image concat) in one pass (ops.ts attnPrep).
// Algorithm: one warp per (b, l, h) head row; lane j holds pairs j, j+32, ... (Dh <= 256: up to 4
// pairs, in registers); the row's sum of squares is a warp reduction; the q/k values then go through
// exactly the unfused chain's rounding points (rms_norm_kernel: rnd(x·rrms)·scale, rounded; rope:
// fp32 2x2 product, rounded); v is copied. Why: the composition reads and writes the qkv data five
// times (slice, splitHeads, two norms, concat, two ropes); this reads it once and writes q, k, v once.
template <int DT>
__global__ void attn_prep_kernel(FxsAttnSeg s0, FxsAttnSeg s1, int nseg, const float* pe, int pe_batched, void* q, void* k,
                                 void* v, int64_t B, int64_t H, int64_t Ltot, int Dh, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t unit = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (unit >= B * Ltot * H) return;  // uniform per warp
  const int64_t h = unit % H, bl = unit / H, l = bl % Ltot, b = bl / Ltot;
  const bool second = nseg > 1 && l >= s0.L;
  const FxsAttnSeg& sg = second ? s1 : s0;
  const int64_t ll = second ? l - s0.L : l;
  const int64_t HD = H * Dh, base = (b * sg.L + ll) * sg.C + sg.col + h * Dh;
  const int64_t out_off = ((b * H + h) * Ltot + l) * Dh;
  const int half = Dh / 2;
  const float4* pet = reinterpret_cast<const float4*>(pe) + ((pe_batched ? b * Ltot : 0) + l) * half;
  for (int d = lane; d < Dh; d += 32) Io<DT>::st(v, out_off + d, Io<DT>::ld(sg.x, base + 2 * HD + d));
#pragma unroll
  for (int part = 0; part < 2; part++) {
    const int64_t src = base + part * HD;
    const void* scale = part ? sg.ks : sg.qs;
    const int sdt = part ? sg.ks_dtype : sg.qs_dtype;
    void* dst = part ? k : q;
    float x0[4] = {0.f, 0.f, 0.f, 0.f}, x1[4] = {0.f, 0.f, 0.f, 0.f};
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int p = lane + 32 * i;
      if (p < half) {
        x0[i] = Io<DT>::ld(sg.x, src + 2 * p);
        x1[i] = Io<DT>::ld(sg.x, src + 2 * p + 1);
        ss += x0[i] * x0[i] + x1[i] * x1[i];
      }
    }
    const float rrms = 1.f / sqrtf(warp_sum(ss) / (float)Dh + eps);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int p = lane + 32 * i;
      if (p < half) {
        const float a = Io<DT>::rnd(Io<DT>::rnd(x0[i] * rrms) * ldx(scale, sdt, 2 * p));
        const float c = Io<DT>::rnd(Io<DT>::rnd(x1[i] * rrms) * ldx(scale, sdt, 2 * p + 1));
        const float4 m = pet[p];
        Io<DT>::st(dst, out_off + 2 * p, m.x * a + m.y * c);
        Io<DT>::st(dst, out_off + 2 * p + 1, m.z * a + m.w * c);
      }
    }
  }
}

}  // namespace fxs

extern "C" {
#define FXS_DEF_ATTN_PREP(dt)                                                                       \
  int fxs_attn_prep_##dt(FxsAttnSeg s0, FxsAttnSeg s1, int nseg, const float* pe, int pe_batched,   \
                         void* q, void* k, void* v, int64_t B, int64_t H, int64_t Ltot, int64_t Dh,  \
                         float eps) {                                                                \
    if (Dh < 2 || Dh > 256 || Dh % 2 || nseg < 1 || nseg > 2) return (int)cudaErrorInvalidValue;     \
    int64_t units = B * Ltot * H;                                                                   \
    if (units <= 0) return 0;                                                                       \
    unsigned g = fxs::blocks_for(units, 8);                                                         \
    fxs::attn_prep_kernel<FXS_DT_CODE_##dt><<<g, 256, 0, FXS_STREAM>>>(s0, s1, nseg, pe, pe_batched, q, k, v, B, H, \
                                                                     Ltot, (int)Dh, eps);            \
    return FXS_LAUNCHED();                                                                          \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_ATTN_PREP)

#define FXS_DEF_ROPE(dt)                                                                           \
  int fxs_rope_##dt(const void* x, const float* pe, int pe_batched, void* y, int64_t B, int64_t H,  \
                    int64_t L, int64_t D) {                                                         \
    int64_t pairs = B * H * L * (D / 2);                                                            \
    if (pairs <= 0) return 0;                                                                       \
    unsigned g = fxs::blocks_for(pairs, 256);                                                       \
    if (g > 65535u * 8) g = 65535u * 8;                                                             \
    fxs::rope_kernel<FXS_DT_CODE_##dt><<<g, 256, 0, FXS_STREAM>>>(x, pe, pe_batched, y, pairs, H, L, D / 2); \
    return FXS_LAUNCHED();                                                                          \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_ROPE)
}
