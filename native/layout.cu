// layout.cu — concat/slice (as strided 2-D row copies), permute, splitHeads, upsampleNearest and
// embedding. Algorithm: grid-stride loops over the output, one element per iteration, computing
// the source index from the output index; every kernel moves raw bits (typed by element width
// only: uint32/uint16/uint8), so NaN payloads and every dtype are kept exactly like the CPU
// backend's bit copies. Why: these are pure data movement; a flat index map is simple and
// bandwidth-bound. Embedding ids are range-checked on the host by the TS backend (ops.ts wants an
// OpError naming the bad id), so the kernel trusts them.
#include "common.cuh"

namespace fxs {

inline unsigned lay_grid(int64_t n) {
  unsigned g = blocks_for(n, 256);
  return g > 65535u * 8 ? 65535u * 8 : g;
}
#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// rows in grid.y, the row's elements in grid.x (row_grid, common.cuh)
template <class E>
__global__ void copy2d_kernel(const E* src, int64_t ss, int64_t so, E* dst, int64_t ds, int64_t dof, int64_t rows, int64_t len) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < len; c += (int64_t)gridDim.x * blockDim.x)
      dst[dof + r * ds + c] = src[so + r * ss + c];
}


struct Perm { int rank; int64_t dims[FXS_MAX_RANK], st[FXS_MAX_RANK]; };

template <class E>
__global__ void permute_kernel(const E* x, E* y, int64_t n, Perm p) {
  GRID_STRIDE(i, n) {
    int64_t r = i, s = 0;
    for (int d = p.rank - 1; d >= 0; d--) {
      int64_t q = r / p.dims[d];
      s += (r - q * p.dims[d]) * p.st[d];
      r = q;
    }
    y[i] = x[s];
  }
}

// y [B, H, L, D] = part `part` of x [B, L, F], F = parts·H·D
template <class E>
__global__ void split_heads_kernel(const E* x, E* y, int64_t n, int64_t L, int64_t F, int64_t H, int64_t D, int64_t part) {
  GRID_STRIDE(i, n) {
    int64_t d = i % D, t = i / D, l = t % L, bh = t / L, h = bh % H, b = bh / H;
    y[i] = x[(b * L + l) * F + (part * H + h) * D + d];
  }
}

template <class E>
__global__ void upsample_kernel(const E* x, E* y, int64_t n, int64_t H, int64_t W, int64_t f) {
  GRID_STRIDE(i, n) {
    int64_t Wo = W * f, Ho = H * f;
    int64_t ox = i % Wo, t = i / Wo, oy = t % Ho, bc = t / Ho;
    y[i] = x[(bc * H + oy / f) * W + ox / f];
  }
}

template <class E>
__global__ void embedding_kernel(const E* table, const int32_t* ids, E* y, int64_t n, int64_t D) {
  GRID_STRIDE(i, n * D) {
    int64_t r = i / D;
    y[i] = table[(int64_t)ids[r] * D + (i - r * D)];
  }
}

}  // namespace fxs

#define FXS_ELEM_x32 uint32_t
#define FXS_ELEM_x16 uint16_t
#define FXS_ELEM_x8 uint8_t

extern "C" {
#define FXS_DEF_LAYOUT(w)                                                                                  \
  int fxs_copy2d_##w(const void* src, int64_t src_stride, int64_t src_off, void* dst, int64_t dst_stride,   \
                     int64_t dst_off, int64_t rows, int64_t row_len) {                                      \
    typedef FXS_ELEM_##w E;                                                                                 \
    if (rows <= 0 || row_len <= 0) return 0;                                                                \
    fxs::copy2d_kernel<E><<<fxs::row_grid(rows, row_len), 256, 0, FXS_STREAM>>>(                           \
        (const E*)src, src_stride, src_off, (E*)dst, dst_stride, dst_off, rows, row_len);                   \
    return FXS_LAUNCHED();                                                                                  \
  }                                                                                                         \
  int fxs_permute_##w(const void* x, void* y, int64_t n, int rank, const int64_t* out_dims,                 \
                      const int64_t* in_strides) {                                                          \
    typedef FXS_ELEM_##w E;                                                                                 \
    if (rank < 0 || rank > FXS_MAX_RANK) return (int)cudaErrorInvalidValue;                                 \
    if (n <= 0) return 0;                                                                                   \
    fxs::Perm p;                                                                                            \
    p.rank = rank;                                                                                          \
    for (int d = 0; d < rank; d++) { p.dims[d] = out_dims[d]; p.st[d] = in_strides[d]; }                    \
    fxs::permute_kernel<E><<<fxs::lay_grid(n), 256, 0, FXS_STREAM>>>((const E*)x, (E*)y, n, p);             \
    return FXS_LAUNCHED();                                                                                  \
  }                                                                                                         \
  int fxs_split_heads_##w(const void* x, void* y, int64_t B, int64_t L, int64_t F, int64_t H, int64_t D,    \
                          int64_t part) {                                                                   \
    typedef FXS_ELEM_##w E;                                                                                 \
    int64_t n = B * H * L * D;                                                                              \
    if (n <= 0) return 0;                                                                                   \
    fxs::split_heads_kernel<E><<<fxs::lay_grid(n), 256, 0, FXS_STREAM>>>((const E*)x, (E*)y, n, L, F, H, D, part); \
    return FXS_LAUNCHED();                                                                                  \
  }                                                                                                         \
  int fxs_upsample_nearest_##w(const void* x, void* y, int64_t BC, int64_t H, int64_t W, int64_t factor) {  \
    typedef FXS_ELEM_##w E;                                                                                 \
    int64_t n = BC * H * W * factor * factor;                                                               \
    if (n <= 0) return 0;                                                                                   \
    fxs::upsample_kernel<E><<<fxs::lay_grid(n), 256, 0, FXS_STREAM>>>((const E*)x, (E*)y, n, H, W, factor); \
    return FXS_LAUNCHED();                                                                                  \
  }                                                                                                         \
  int fxs_embedding_##w(const void* table, const int32_t* ids, void* y, int64_t n, int64_t D) {             \
    typedef FXS_ELEM_##w E;                                                                                 \
    if (n <= 0 || D <= 0) return 0;                                                                         \
    fxs::embedding_kernel<E><<<fxs::lay_grid(n * D), 256, 0, FXS_STREAM>>>((const E*)table, ids, (E*)y, n, D); \
    return FXS_LAUNCHED();                                                                                  \
  }
FXS_FOR_WIDTHS(FXS_DEF_LAYOUT)
}
