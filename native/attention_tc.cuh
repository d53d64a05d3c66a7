// attention_tc.cuh — the online-softmax pieces shared by the two tensor-core flash kernels
// (flash_mma.cu, flash_wgmma.cu).
#pragma once
#include "mma.cuh"

namespace fxs {

// ---- pieces shared by the two tensor-core kernels. Accumulators are in the mma C layout: a thread
// holds rows g and g+8 of its warp's 16, columns 8i + 2t and 8i + 2t + 1 of each 8-column chunk i,
// flat as acc[4i + e] (e: bit 1 = the row, bit 0 = the column) -------------------------------------

// One online-softmax step for the thread's two rows: mx holds this tile's thread-partial maxima (the
// running max included); reduces them over the 4 lanes of the row, returns the exponent base mu and
// the rescale factor corr for the old sums and accumulators, and updates m_r and l_r.
__device__ __forceinline__ void online_softmax_step(float mx[2], float m_r[2], float l_r[2], float mu[2], float corr[2]) {
#pragma unroll
  for (int r = 0; r < 2; r++) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    mu[r] = mx[r] == -INFINITY ? 0.f : mx[r];  // a row masked so far: p = 0, nothing to rescale
    corr[r] = exp2f(m_r[r] - mu[r]);
    m_r[r] = mx[r];
    l_r[r] *= corr[r];
  }
}

// acc *= corr of its row, over NC 8-column chunks (the online softmax's rescale of O).
template <int NC>
__device__ __forceinline__ void rescale_rows(float* acc, const float corr[2]) {
#pragma unroll
  for (int i = 0; i < NC; i++) {
    acc[4 * i + 0] *= corr[0]; acc[4 * i + 1] *= corr[0];
    acc[4 * i + 2] *= corr[1]; acc[4 * i + 3] *= corr[1];
  }
}

// P = dtype(exp2(s − mu)) over NC 8-key chunks: added to the row sums (the rounded values, so the
// weights applied to V are exactly the normalised ones) and packed as mma A fragments of 16 keys.
template <int DT, int NC>
__device__ __forceinline__ void softmax_probs(const float* s, const float mu[2], float l_r[2], uint32_t (*pa)[4]) {
#pragma unroll
  for (int i = 0; i < NC; i++) {
    float p[4];
#pragma unroll
    for (int e = 0; e < 4; e++) {
      p[e] = Mma16<DT>::dec(Mma16<DT>::enc(exp2f(s[4 * i + e] - mu[e >> 1])));
      l_r[e >> 1] += p[e];
    }
    pa[i >> 1][(i & 1) * 2 + 0] = pack2<DT>(p[0], p[1]);
    pa[i >> 1][(i & 1) * 2 + 1] = pack2<DT>(p[2], p[3]);
  }
}

// out[row, col0 + c] = o / l for the thread's two rows (row sums reduced over the 4 lanes first;
// rows at or past Lq skipped; all keys masked, l = 0 -> 0 as in ops.ts). Row r of the output
// starts at element base + r·row_stride.
template <int DT, int NC>
__device__ __forceinline__ void store_rows(void* out, const float* o, float l_r[2], const int64_t rows[2], int64_t Lq,
                                           int64_t row_stride, int64_t base, int t) {
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
    l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    if (rows[r] >= Lq) continue;
    const float inv = l_r[r] > 0.f ? 1.f / l_r[r] : 0.f;
    const int64_t at = base + rows[r] * row_stride + 2 * t;
#pragma unroll
    for (int i = 0; i < NC; i++) {
      Io<DT>::st(out, at + i * 8, o[4 * i + 2 * r] * inv);
      Io<DT>::st(out, at + i * 8 + 1, o[4 * i + 2 * r + 1] * inv);
    }
  }
}

}  // namespace fxs
