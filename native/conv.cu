// conv.cu — conv2d (NCHW, weights [O, C, kh, kw]) with stride and asymmetric zero padding.
// Two algorithms:
// - cuBLASLt (same dtype x/w/bias in f32/bf16/f16, when cuBLASLt is built in): per batch item and
//   band of output pixels, im2col into a pixel-major buffer col [Pc, K] (K = C·kh·kw), then
//   linear(col, W) -> [Pc, O] with the bias in the GEMM's epilogue (one rounding, as the
//   reference), then a 32x32-tile transpose into y [O, pixels]. Bands keep col under 256 MB (a
//   whole 1024² VAE layer's im2col would be gigabytes). Why: the VAE decoder is a few TFLOP at
//   1024², which the SIMT kernel below turns into hundreds of milliseconds.
// - otherwise implicit GEMM on the tiled kernel of tiled_gemm.cuh: per batch item, M = O output
//   channels, N = Ho·Wo output pixels, K = C·kh·kw; the B operand is im2col computed on the fly by
//   the loader (out-of-image taps read 0), no workspace. FXS_CONV_TILED=1 forces it.
// Epilogue: + bias, one rounding.
#include <stdlib.h>

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

// col[j, k] = x[b, c, iy, ix] for output pixel p0 + j and tap k = (c, ky, kx) (0 outside the image);
// raw bits of element type E. Pixels in grid.y, taps in grid.x: one division per row.
template <class E>
__global__ void im2col_kernel(const E* x, E* col, int64_t C, int64_t H, int64_t W, int kh, int kw, int64_t sh, int64_t sw,
                              int64_t pt, int64_t pl, int64_t Wo, int64_t p0, int64_t Pc, int64_t K) {
  const int khw = kh * kw;
  for (int64_t j = blockIdx.y; j < Pc; j += gridDim.y) {
    const int64_t p = p0 + j, ho = p / Wo, wo = p - ho * Wo;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < K; k += (int64_t)gridDim.x * blockDim.x) {
      const int c = (int)(k / khw), r = (int)(k - (int64_t)c * khw), ky = r / kw, kx = r - ky * kw;
      const int64_t iy = ho * sh - pt + ky, ix = wo * sw - pl + kx;
      col[j * K + k] = (iy < 0 || iy >= H || ix < 0 || ix >= W) ? E(0) : x[(c * H + iy) * W + ix];
    }
  }
}

// y[o, p0 + j] = t[j, o] (t [Pc, O] -> the O planes of y, row stride P): 32x32 tiles through
// shared memory so both the reads and the writes are coalesced.
template <class E>
__global__ void band_transpose_kernel(const E* t, E* y, int64_t Pc, int64_t O, int64_t P, int64_t p0) {
  __shared__ E tile[32][33];
  const int64_t j0 = (int64_t)blockIdx.x * 32, o0 = (int64_t)blockIdx.y * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t j = j0 + i, o = o0 + threadIdx.x;
    if (j < Pc && o < O) tile[i][threadIdx.x] = t[j * O + o];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t o = o0 + i, j = j0 + threadIdx.x;
    if (j < Pc && o < O) y[o * P + p0 + j] = tile[threadIdx.x][i];
  }
}

template <int DT, class E>
int conv_lt(const void* x, const void* w, const void* bias, void* y, int64_t B, int64_t C, int64_t H, int64_t W, int64_t O,
            int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t Ho, int64_t Wo) {
  const int64_t K = C * kh * kw, P = Ho * Wo;
  // FXS_CONV_BAND_BYTES (tests): a smaller im2col band, so that several bands run on small inputs
  static const int64_t budget = getenv("FXS_CONV_BAND_BYTES") ? atoll(getenv("FXS_CONV_BAND_BYTES")) : (int64_t)256 << 20;
  int64_t Pc = budget / (K * (int64_t)sizeof(E));
  if (Pc > P) Pc = P;
  if (Pc < 1) Pc = 1;
  void* col = nullptr;
  void* tmp = nullptr;
  int rc = fxs_malloc((size_t)(Pc * K * sizeof(E)), &col);
  if (!rc) rc = fxs_malloc((size_t)(Pc * O * sizeof(E)), &tmp);
  for (int64_t b = 0; b < B && !rc; b++) {
    const E* xb = (const E*)x + b * C * H * W;
    E* yb = (E*)y + b * O * P;
    for (int64_t p0 = 0; p0 < P && !rc; p0 += Pc) {
      const int64_t n = P - p0 < Pc ? P - p0 : Pc;
      im2col_kernel<E><<<row_grid(n, K), 256, 0, FXS_STREAM>>>(xb, (E*)col, C, H, W, (int)kh, (int)kw, sh, sw, pt, pl, Wo, p0, n, K);
      rc = (int)cudaGetLastError();
      if (!rc) {  // [n, K] · W[O, K]ᵀ + bias -> [n, O]: the linear launcher of gemm.cu (cuBLASLt)
        if constexpr (DT == FXS_DT_F32) rc = fxs_gemm_f32(col, w, DT, tmp, 1, n, O, K, 1, 0, 0, 0, bias, DT, 1.f, FXS_ACT_NONE);
        else if constexpr (DT == FXS_DT_BF16) rc = fxs_gemm_bf16(col, w, DT, tmp, 1, n, O, K, 1, 0, 0, 0, bias, DT, 1.f, FXS_ACT_NONE);
        else rc = fxs_gemm_f16(col, w, DT, tmp, 1, n, O, K, 1, 0, 0, 0, bias, DT, 1.f, FXS_ACT_NONE);
      }
      if (!rc) {
        dim3 g2((unsigned)((n + 31) / 32), (unsigned)((O + 31) / 32));
        band_transpose_kernel<E><<<g2, dim3(32, 8), 0, FXS_STREAM>>>((const E*)tmp, yb, n, O, P, p0);
        rc = (int)cudaGetLastError();
      }
    }
  }
  if (col) fxs_free(col);
  if (tmp) fxs_free(tmp);
  return rc;
}

template <int DT>
int conv_impl(const void* x, const void* w, int w_dtype, const void* bias, int bias_dtype, void* y, int64_t B, int64_t C,
              int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl,
              int64_t Ho, int64_t Wo) {
  static const bool tiled = env_on("FXS_CONV_TILED");
  if (!tiled && fxs_has_cublaslt() && DT != FXS_DT_F8E4M3 && w_dtype == DT && (!bias || bias_dtype == DT) && B > 0 && O > 0 &&
      Ho * Wo > 0) {
    if constexpr (DT == FXS_DT_F32) return conv_lt<DT, uint32_t>(x, w, bias, y, B, C, H, W, O, kh, kw, sh, sw, pt, pl, Ho, Wo);
    else if constexpr (DT == FXS_DT_BF16 || DT == FXS_DT_F16)
      return conv_lt<DT, uint16_t>(x, w, bias, y, B, C, H, W, O, kh, kw, sh, sw, pt, pl, Ho, Wo);
  }
  const int64_t K = C * kh * kw;
  ConvLoadW la{w, w_dtype, K};
  ConvLoadX<DT> lb{x, C, H, W, kh, kw, sh, sw, pt, pl, Wo};
  ConvEpi<DT> ep{y, bias, bias_dtype, O, Ho * Wo};
  return launch_tiled_gemm(la, lb, ep, B, O, Ho * Wo, K, FXS_STREAM);
}

}  // namespace fxs

extern "C" {
#define FXS_DEF_CONV(dt)                                                                                  \
  int fxs_conv2d_##dt(const void* x, const void* w, int w_dtype, const void* bias, int bias_dtype, void* y, \
                      int64_t B, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw,       \
                      int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t Ho, int64_t Wo) {            \
    return fxs::conv_impl<FXS_DT_CODE_##dt>(x, w, w_dtype, bias, bias_dtype, y, B, C, H, W, O, kh, kw, sh, sw, pt, pl, \
                                          Ho, Wo);                                                          \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_CONV)
}
