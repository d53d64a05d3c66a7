// elementwise.cu — binary ops with NumPy broadcasting, affine, activations, gatedResidual,
// softmax and cast.
// Algorithm: grid-stride loops, one output element per iteration; broadcasting by decomposing the
// flat output index over the (caller-collapsed, rank <= 8) output dims with per-operand strides
// (0 on broadcast dims). Softmax is one block per row (max, sum of exp, scale). Math in fp32
// except affine, which multiplies in double like the CPU reference's JS numbers do, so
// x·(1/√d)-style scalars give the same float. Rounding points as ops.ts: one per op, affine two
// (x·mul, then + add), gatedResidual two (gate·y, then x + …). Why: these ops are memory-bound;
// simple loops reach bandwidth and are easy to check against the CPU reference.
#include "common.cuh"

namespace fxs {

struct Bcast {
  int rank;
  int64_t dims[FXS_MAX_RANK], sa[FXS_MAX_RANK], sb[FXS_MAX_RANK];
};

inline unsigned ew_grid(int64_t n) {
  unsigned g = blocks_for(n, 256);
  return g > 65535u * 8 ? 65535u * 8 : g;
}
#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

template <int DT>
__global__ void binary_kernel(int op, const void* a, const void* b, int bdt, void* out, int64_t n, Bcast bc) {
  GRID_STRIDE(i, n) {
    int64_t r = i, ia = 0, ib = 0;
    for (int d = bc.rank - 1; d >= 0; d--) {
      int64_t q = r / bc.dims[d], c = r - q * bc.dims[d];
      ia += c * bc.sa[d];
      ib += c * bc.sb[d];
      r = q;
    }
    float x = Io<DT>::ld(a, ia), y = ldx(b, bdt, ib);
    Io<DT>::st(out, i, op == FXS_OP_ADD ? x + y : op == FXS_OP_SUB ? x - y : x * y);
  }
}

template <int DT>
__global__ void affine_kernel(const void* x, void* y, int64_t n, double mul, double add) {
  GRID_STRIDE(i, n) {
    float v = Io<DT>::ld(x, i);
    if (mul != 1.0) {
      v = (float)((double)v * mul);
      if (add != 0.0) v = Io<DT>::rnd(v);  // x·mul, then + add is a second op
    }
    if (add != 0.0) v = (float)((double)v + add);
    Io<DT>::st(y, i, v);
  }
}

// Row kernels (row_grid in common.cuh): grid.y strides over rows, grid.x·blockDim.x over the
// columns of a row, so the only division is one per row.
#define ROW_LOOP(r, rows) for (int64_t r = blockIdx.y; r < (rows); r += gridDim.y)
#define COL_LOOP(c, cols) for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < (cols); c += (int64_t)gridDim.x * blockDim.x)

// [a | gelu_tanh(h[:, col : col + W])] (ops.ts geluConcat): one pass over the output rows.
template <int DT>
__global__ void gelu_concat_kernel(const void* a, const void* h, void* out, int64_t rows, int64_t Da, int64_t C, int64_t col,
                                   int64_t W, unsigned* amax) {
  const int64_t Do = Da + W;
  float m = 0.f;
  ROW_LOOP(r, rows) {
    COL_LOOP(c, Do) {
      const float v = Io<DT>::rnd(c < Da ? Io<DT>::ld(a, r * Da + c) : act_apply(FXS_ACT_GELU_TANH, Io<DT>::ld(h, r * C + col + (c - Da))));
      Io<DT>::st(out, r * Do + c, v);
      m = fmaxf(m, fabsf(v));
    }
  }
  if (amax) block_amax_atomic(m, amax);  // linear2's fp8 input scale, without re-reading out
}

template <int DT>
__global__ void activation_kernel(const void* x, void* y, int64_t n, int act) {
  GRID_STRIDE(i, n) Io<DT>::st(y, i, act_apply(act, Io<DT>::ld(x, i)));
}

template <int DT>
__global__ void gated_residual_kernel(const void* x, const void* gate, int gdt, const void* yin, void* out, int64_t rows,
                                      int64_t L, int64_t D) {
  ROW_LOOP(r, rows) {
    const int64_t g0 = (r / L) * D;  // the gate row of this batch item
    COL_LOOP(d, D) {
      const int64_t i = r * D + d;
      float t = Io<DT>::rnd(ldx(gate, gdt, g0 + d) * Io<DT>::ld(yin, i));  // gate·y
      Io<DT>::st(out, i, Io<DT>::ld(x, i) + t);                             // x + gate·y
    }
  }
}

template <int DT>
__global__ void softmax_kernel(const void* x, void* y, int64_t D) {
  __shared__ float sh[32];
  int64_t off = (int64_t)blockIdx.x * D;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) m = fmaxf(m, Io<DT>::ld(x, off + i));
  m = warp_max(m);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = m;
  __syncthreads();
  m = (threadIdx.x & 31) < ((blockDim.x + 31) >> 5) ? sh[threadIdx.x & 31] : -INFINITY;
  m = warp_max(m);
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += expf(Io<DT>::ld(x, off + i) - m);
  s = block_sum(s, sh);  // a row of −inf gives NaN, like torch.softmax
  float inv = 1.f / s;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) Io<DT>::st(y, off + i, expf(Io<DT>::ld(x, off + i) - m) * inv);
}

template <int DT>
__global__ void cast_kernel(const void* x, int xdt, void* y, int64_t n) {
  GRID_STRIDE(i, n) Io<DT>::st(y, i, ldx(x, xdt, i));
}

// float -> int32 like a JS Int32Array store of Math.trunc(v): NaN/±inf -> 0, else wrap mod 2^32.
__global__ void cast_to_i32_kernel(const void* x, int xdt, int32_t* y, int64_t n) {
  GRID_STRIDE(i, n) {
    if (xdt == FXS_DT_I32) { y[i] = ((const int32_t*)x)[i]; continue; }
    double v = (double)ldx(x, xdt, i);
    if (!isfinite(v)) { y[i] = 0; continue; }
    double t = trunc(v);
    double m = fmod(t, 4294967296.0);
    if (m < 0) m += 4294967296.0;
    y[i] = (int32_t)(uint32_t)m;
  }
}

}  // namespace fxs

extern "C" {
#define FXS_DEF_ELEM(dt)                                                                                   \
  int fxs_binary_##dt(int op, const void* a, const void* b, int b_dtype, void* out, int rank,                \
                      const int64_t* dims, const int64_t* stride_a, const int64_t* stride_b) {              \
    if (rank < 1 || rank > FXS_MAX_RANK) return (int)cudaErrorInvalidValue;                                 \
    fxs::Bcast bc;                                                                                          \
    bc.rank = rank;                                                                                         \
    int64_t n = 1;                                                                                          \
    for (int d = 0; d < rank; d++) { bc.dims[d] = dims[d]; bc.sa[d] = stride_a[d]; bc.sb[d] = stride_b[d]; n *= dims[d]; } \
    if (n <= 0) return 0;                                                                                   \
    fxs::binary_kernel<FXS_DT_CODE_##dt><<<fxs::ew_grid(n), 256, 0, FXS_STREAM>>>(op, a, b, b_dtype, out, n, bc); \
    return FXS_LAUNCHED();                                                                                  \
  }                                                                                                         \
  int fxs_affine_##dt(const void* x, void* y, int64_t n, double mul, double add) {                          \
    if (n <= 0) return 0;                                                                                   \
    fxs::affine_kernel<FXS_DT_CODE_##dt><<<fxs::ew_grid(n), 256, 0, FXS_STREAM>>>(x, y, n, mul, add);      \
    return FXS_LAUNCHED();                                                                                  \
  }                                                                                                         \
  int fxs_activation_##dt(const void* x, void* y, int64_t n, int act) {                                     \
    if (n <= 0) return 0;                                                                                   \
    fxs::activation_kernel<FXS_DT_CODE_##dt><<<fxs::ew_grid(n), 256, 0, FXS_STREAM>>>(x, y, n, act);       \
    return FXS_LAUNCHED();                                                                                  \
  }                                                                                                         \
  int fxs_gated_residual_##dt(const void* x, const void* gate, int gate_dtype, const void* yin, void* out,  \
                              int64_t B, int64_t L, int64_t D) {                                            \
    int64_t n = B * L * D;                                                                                  \
    if (n <= 0) return 0;                                                                                   \
    fxs::gated_residual_kernel<FXS_DT_CODE_##dt><<<fxs::row_grid(B * L, D), 256, 0, FXS_STREAM>>>(x, gate, gate_dtype, yin, out, B * L, L, D); \
    return FXS_LAUNCHED();                                                                                  \
  }                                                                                                         \
  int fxs_softmax_##dt(const void* x, void* y, int64_t rows, int64_t D) {                                   \
    if (rows <= 0 || D <= 0) return 0;                                                                      \
    fxs::softmax_kernel<FXS_DT_CODE_##dt><<<(unsigned)rows, 256, 0, FXS_STREAM>>>(x, y, D);                \
    return FXS_LAUNCHED();                                                                                  \
  }                                                                                                         \
  int fxs_cast_to_##dt(const void* x, int x_dtype, void* y, int64_t n) {                                    \
    if (n <= 0) return 0;                                                                                   \
    fxs::cast_kernel<FXS_DT_CODE_##dt><<<fxs::ew_grid(n), 256, 0, FXS_STREAM>>>(x, x_dtype, y, n);         \
    return FXS_LAUNCHED();                                                                                  \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_ELEM)
#define FXS_DEF_GELU_CONCAT(dt)                                                                     \
  int fxs_gelu_concat_##dt(const void* a, const void* h, void* out, int64_t rows, int64_t Da,        \
                           int64_t C, int64_t col, int64_t W, void* amax) {                         \
    int64_t n = rows * (Da + W);                                                                    \
    if (n <= 0) return 0;                                                                           \
    fxs::gelu_concat_kernel<FXS_DT_CODE_##dt><<<fxs::row_grid(rows, Da + W), 256, 0, FXS_STREAM>>>(a, h, out, rows, Da, C, col, W, (unsigned*)amax); \
    return FXS_LAUNCHED();                                                                          \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_GELU_CONCAT)

int fxs_cast_to_i32(const void* x, int x_dtype, void* y, int64_t n) {
  if (n <= 0) return 0;
  fxs::cast_to_i32_kernel<<<fxs::ew_grid(n), 256, 0, FXS_STREAM>>>(x, x_dtype, (int32_t*)y, n);
  return FXS_LAUNCHED();
}
}
