// rope.cu — FLUX rotary embedding: each adjacent pair (x[2k], x[2k+1]) of a head is multiplied by
// the fp32 2x2 matrix pe[b, l, k] = [[cos, −sin], [sin, cos]] (BFL apply_rope, flux-spec §1.4).
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

}  // namespace fxs

extern "C" {
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
