// tiled_gemm.cuh — the portable GEMM used when cuBLASLt is absent (and always by conv2d).
// Algorithm: classic shared-memory tiling, a 64x64 output tile per 256-thread block, K in steps
// of 16, each thread accumulating a 4x4 register block in fp32. Operands come through loader
// functors (decode any dtype, implicit im2col for conv) and results leave through an epilogue
// functor (bias, rounding, activation), so linear, matmul and conv2d share one kernel. Why: it is
// short enough to be obviously correct; speed comes from cuBLASLt (gemm.cu), not from here.
#pragma once
#include "common.cuh"

namespace fxs {

constexpr int TM = 64, TN = 64, TK = 16, TT = 256;

// LA(batch, m, k) -> float; LB(batch, k, n) -> float with LB::k_contig telling whether
// consecutive k are adjacent in memory (picks the coalesced load order); EP(batch, m, n, acc).
template <class LA, class LB, class EP>
__global__ void __launch_bounds__(TT) tiled_gemm_kernel(LA la, LB lb, EP ep, int64_t M, int64_t N, int64_t K) {
  __shared__ float As[TK][TM + 4];
  __shared__ float Bs[TK][TN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = (int64_t)blockIdx.y * TM, n0 = (int64_t)blockIdx.x * TN;
  const int64_t bt = blockIdx.z;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += TK) {
#pragma unroll
    for (int e = 0; e < (TM * TK) / TT; e++) {
      int idx = tid + e * TT;
      int mm = idx / TK, kk = idx % TK;
      int64_t m = m0 + mm, k = k0 + kk;
      As[kk][mm] = (m < M && k < K) ? la(bt, m, k) : 0.f;
    }
#pragma unroll
    for (int e = 0; e < (TN * TK) / TT; e++) {
      int idx = tid + e * TT;
      int nn, kk;
      if (LB::k_contig) { nn = idx / TK; kk = idx % TK; } else { kk = idx / TN; nn = idx % TN; }
      int64_t n = n0 + nn, k = k0 + kk;
      Bs[kk][nn] = (n < N && k < K) ? lb(bt, k, n) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < TK; kk++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) a[i] = As[kk][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int64_t m = m0 + ty * 4 + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      int64_t n = n0 + tx * 4 + j;
      if (n < N) ep(bt, m, n, acc[i][j]);
    }
  }
}

template <class LA, class LB, class EP>
int launch_tiled_gemm(LA la, LB lb, EP ep, int64_t batch, int64_t M, int64_t N, int64_t K, cudaStream_t s) {
  if (batch <= 0 || M <= 0 || N <= 0) return 0;
  dim3 grid((unsigned)((N + TN - 1) / TN), (unsigned)((M + TM - 1) / TM), (unsigned)batch);
  if ((M + TM - 1) / TM > 65535 || batch > 65535) return (int)cudaErrorInvalidConfiguration;
  tiled_gemm_kernel<<<grid, TT, 0, s>>>(la, lb, ep, M, N, K);
  return (int)cudaGetLastError();
}

}  // namespace fxs
