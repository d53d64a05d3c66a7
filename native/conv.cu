// conv.cu — conv2d (NCHW, weights [O, C, kh, kw]) with stride and asymmetric zero padding.
// Algorithm: implicit GEMM on the tiled kernel of tiled_gemm.cuh: per batch item, M = O output
// channels, N = Ho·Wo output pixels, K = C·kh·kw; the B operand is im2col computed on the fly by
// the loader (out-of-image taps read 0), so no im2col buffer is materialised (a 1024² VAE layer's
// would be gigabytes). Epilogue: + bias, one rounding. Why: correct for every shape the VAE uses
// (3x3 pad 1, 1x1, the downsample's stride 2 with (0,1,0,1) padding) with no workspace; a
// tensor-core path (cuDNN or im2col+cuBLASLt per row band) is a later optimisation.
#include "tiled_gemm.cuh"

namespace fxs {

struct ConvLoadW {
  const void* p; int dt; int64_t K;
  __device__ __forceinline__ float operator()(int64_t, int64_t m, int64_t k) const { return ldx(p, dt, m * K + k); }
};
template <int DT> struct ConvLoadX {
  static constexpr bool k_contig = false;
  const void* x; int64_t C, H, W, kh, kw, sh, sw, pt, pl, Wo;
  __device__ __forceinline__ float operator()(int64_t b, int64_t k, int64_t n) const {
    int64_t c = k / (kh * kw), r = k - c * kh * kw, ky = r / kw, kx = r - ky * kw;
    int64_t ho = n / Wo, wo = n - ho * Wo;
    int64_t iy = ho * sh - pt + ky, ix = wo * sw - pl + kx;
    if (iy < 0 || iy >= H || ix < 0 || ix >= W) return 0.f;
    return Io<DT>::ld(x, ((b * C + c) * H + iy) * W + ix);
  }
};
template <int DT> struct ConvEpi {
  void* y; const void* bias; int bdt; int64_t O, P;
  __device__ __forceinline__ void operator()(int64_t b, int64_t o, int64_t n, float acc) const {
    if (bias) acc += ldx(bias, bdt, o);
    Io<DT>::st(y, (b * O + o) * P + n, acc);
  }
};

}  // namespace fxs

extern "C" {
#define FXS_DEF_CONV(dt)                                                                                  \
  int fxs_conv2d_##dt(const void* x, const void* w, int w_dtype, const void* bias, int bias_dtype, void* y, \
                      int64_t B, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw,       \
                      int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t Ho, int64_t Wo) {            \
    constexpr int DT = FXS_DT_CODE_##dt;                                                                   \
    int64_t K = C * kh * kw;                                                                               \
    fxs::ConvLoadW la{w, w_dtype, K};                                                                      \
    fxs::ConvLoadX<DT> lb{x, C, H, W, kh, kw, sh, sw, pt, pl, Wo};                                         \
    fxs::ConvEpi<DT> ep{y, bias, bias_dtype, O, Ho * Wo};                                                  \
    return fxs::launch_tiled_gemm(la, lb, ep, B, O, Ho * Wo, K, FXS_STREAM);                               \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_CONV)
}
