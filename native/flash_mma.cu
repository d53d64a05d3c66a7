// flash_mma.cu — tensor-core flash attention (bf16/f16, D = Dv in {64, 128}) with mma.sync.
// Algorithm (FlashAttention-2 style, written from its paper's description): a block of 8 warps owns
// 128 query rows (16 per warp, Q kept in registers as mma A fragments); K and V stream through
// shared memory in tiles of 64 keys, two stages deep (cp.async fetches tile j+1 while tile j is
// computed; rows padded by 16 bytes so ldmatrix is conflict free; 70 KB of dynamic shared memory
// at D = 128, the Q tile staged in the same space first); S = Q·Kᵀ with mma.sync m16n8k16 into fp32, softmax online in the log2 domain (running
// max and partial sums per thread, the row max shared by the 4 lanes of an mma group), P rounded to
// the input dtype and reused straight from the S registers as the A operand of O += P·V (V through
// ldmatrix.trans). The row sum adds the rounded P, so the weights applied to V are exactly the
// normalised ones. Bias (any broadcast) and the causal mask act on S like in the SIMT kernel.
// Why: FLUX spends ~15 of its 74 TFLOP per 1024² step in attention (docs/performance.md); the
// SIMT kernel (attention.cu) runs on CUDA cores at a few % of the tensor-core rate.
#include "attention.cuh"
#include "attention_tc.cuh"

namespace fxs {

constexpr int FA_WARPS = 8, FA_BM = 16 * FA_WARPS, FA_BN = 64, FA_THREADS = 32 * FA_WARPS;

/** Dynamic shared memory of the flash kernel: K and V, two stages each (the Q tile fits in the first two). */
template <int D>
constexpr size_t fa_smem_bytes() { return (size_t)4 * FA_BN * (D + 8) * sizeof(uint16_t); }

template <int DT, int D>
__global__ void __launch_bounds__(FA_THREADS, 1) flash_attn_kernel(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                                              const void* bias, int bdt, int64_t bsb, int64_t bsh, void* out,
                                                              int64_t H, int64_t Lq, int64_t Lk, float scale_log2, int causal) {
  constexpr int LDS = D + 8;  // padded row, in elements
  constexpr int CH = D / 8;   // 16-byte chunks per row
  constexpr int TILE = FA_BN * LDS;
  static_assert(FA_BM * LDS <= 2 * TILE, "the Q tile is staged in the first K/V stage pair");
  constexpr float LOG2E = 1.4426950408889634f;
  FXS_DYNAMIC_SMEM(uint16_t, smem);
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g = lane >> 2, t = lane & 3;
  const int64_t h = blockIdx.y, b = blockIdx.z, bh = b * H + h;
  const int64_t q0 = (int64_t)blockIdx.x * FA_BM;
  const uint16_t* qb = q + bh * Lq * D;
  const uint16_t* kb = k + bh * Lk * D;
  const uint16_t* vb = v + bh * Lk * D;

  for (int c = tid; c < FA_BM * CH; c += FA_THREADS) {
    int r = c / CH, cc = c % CH;
    int64_t row = q0 + r;
    cp_async16(&smem[r * LDS + cc * 8], qb + (row < Lq ? row : 0) * D + cc * 8, row < Lq);
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kc = 0; kc < D / 16; kc++)
    ldmatrix_x4(qf[kc], &smem[(w * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + kc * 16 + (lane >> 4) * 8]);
  __syncthreads();  // the Q tile's space becomes the first K/V stage

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f};
  const int64_t rows[2] = {q0 + w * 16 + g, q0 + w * 16 + g + 8};
  const int64_t kend = causal ? min(Lk, min(q0 + FA_BM, Lq)) : Lk;
  const int64_t boff = b * bsb + h * bsh;
  const int64_t ntiles = (kend + FA_BN - 1) / FA_BN;

  // stage st: K at smem + 2·st·TILE, V right after it
  auto load_kv = [&](int64_t j0, int st) {
    uint16_t* Kd = smem + 2 * st * TILE;
    uint16_t* Vd = Kd + TILE;
    for (int c = tid; c < FA_BN * CH; c += FA_THREADS) {
      int r = c / CH, cc = c % CH;
      int64_t j = j0 + r;
      bool ok = j < Lk;
      cp_async16(&Kd[r * LDS + cc * 8], kb + (ok ? j : 0) * D + cc * 8, ok);
      cp_async16(&Vd[r * LDS + cc * 8], vb + (ok ? j : 0) * D + cc * 8, ok);
    }
  };
  if (ntiles > 0) load_kv(0, 0);
  cp_async_commit();

  for (int64_t it = 0; it < ntiles; it++) {
    const int st = (int)(it & 1);
    const int64_t j0 = it * FA_BN;
    if (it + 1 < ntiles) load_kv(j0 + FA_BN, st ^ 1);  // stage st^1 was released by the last iteration's barrier
    cp_async_commit();                                   // (an empty group at the end keeps the count uniform)
    cp_async_wait<1>();                                  // everything but the newest group: tile `it` is here
    __syncthreads();
    const uint16_t* Ks = smem + 2 * st * TILE;
    const uint16_t* Vs = Ks + TILE;

    float s[FA_BN / 8][4];
#pragma unroll
    for (int i = 0; i < FA_BN / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int kc = 0; kc < D / 16; kc++) {
#pragma unroll
      for (int np = 0; np < FA_BN / 16; np++) {
        uint32_t kf[4];
        ldmatrix_x4(kf, &Ks[(np * 16 + (lane >> 4) * 8 + (lane & 7)) * LDS + kc * 16 + ((lane >> 3) & 1) * 8]);
        const uint32_t b0[2] = {kf[0], kf[1]}, b1[2] = {kf[2], kf[3]};
        mma16816<DT>(s[2 * np], qf[kc], b0);
        mma16816<DT>(s[2 * np + 1], qf[kc], b1);
      }
    }
    // scores in the log2 domain; bias; masks (keys past Lk, causal)
    float mx[2] = {m_r[0], m_r[1]};
#pragma unroll
    for (int nt = 0; nt < FA_BN / 8; nt++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int64_t row = rows[e >> 1], j = j0 + nt * 8 + 2 * t + (e & 1);
        float x = s[nt][e] * scale_log2;
        if (bias && row < Lq && j < Lk) x += ldx(bias, bdt, boff + row * Lk + j) * LOG2E;
        if (j >= Lk || (causal && j > row)) x = -INFINITY;
        s[nt][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    }
    float mu[2], corr[2];
    online_softmax_step(mx, m_r, l_r, mu, corr);
    uint32_t pa[FA_BN / 16][4];
    softmax_probs<DT, FA_BN / 8>(&s[0][0], mu, l_r, pa);
    rescale_rows<D / 8>(&o[0][0], corr);
#pragma unroll
    for (int kc = 0; kc < FA_BN / 16; kc++) {
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        uint32_t vf[4];
        ldmatrix_x4_trans(vf, &Vs[(kc * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDS + dp * 16 + (lane >> 4) * 8]);
        const uint32_t b0[2] = {vf[0], vf[1]}, b1[2] = {vf[2], vf[3]};
        mma16816<DT>(o[2 * dp], pa[kc], b0);
        mma16816<DT>(o[2 * dp + 1], pa[kc], b1);
      }
    }
    __syncthreads();  // every warp is done with stage st before the next iteration refills it
  }
  store_rows<DT, D / 8>(out, &o[0][0], l_r, rows, Lq, H * D, b * Lq * H * D + h * D, t);
}

template <int DT, int D>
int flash_mma_run(const void* q, const void* k, const void* v, const void* bias, int bdt, int64_t bsb, int64_t bsh, void* out,
                  int64_t B, int64_t H, int64_t Lq, int64_t Lk, float scale, int causal) {
  static const cudaError_t attr =
      cudaFuncSetAttribute(flash_attn_kernel<DT, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)fa_smem_bytes<D>());
  if (attr != cudaSuccess) return (int)attr;
  dim3 grid((unsigned)((Lq + FA_BM - 1) / FA_BM), (unsigned)H, (unsigned)B);
  flash_attn_kernel<DT, D><<<grid, FA_THREADS, fa_smem_bytes<D>(), FXS_STREAM>>>(
      (const uint16_t*)q, (const uint16_t*)k, (const uint16_t*)v, bias, bdt, bsb, bsh, out, H, Lq, Lk, scale * 1.4426950408889634f,
      causal);
  return FXS_LAUNCHED();
}

int flash_mma_attention(int dt, int64_t D, const void* q, const void* k, const void* v, const void* bias, int bdt, int64_t bsb,
                        int64_t bsh, void* out, int64_t B, int64_t H, int64_t Lq, int64_t Lk, float scale, int causal) {
  if (dt == FXS_DT_BF16) {
    return D == 128 ? flash_mma_run<FXS_DT_BF16, 128>(q, k, v, bias, bdt, bsb, bsh, out, B, H, Lq, Lk, scale, causal)
                    : flash_mma_run<FXS_DT_BF16, 64>(q, k, v, bias, bdt, bsb, bsh, out, B, H, Lq, Lk, scale, causal);
  }
  return D == 128 ? flash_mma_run<FXS_DT_F16, 128>(q, k, v, bias, bdt, bsb, bsh, out, B, H, Lq, Lk, scale, causal)
                  : flash_mma_run<FXS_DT_F16, 64>(q, k, v, bias, bdt, bsb, bsh, out, B, H, Lq, Lk, scale, causal);
}

}  // namespace fxs
