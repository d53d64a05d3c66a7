// attention.cu — softmax(q·kᵀ·scale + bias [+ causal mask])·v with heads merged on output.
// Algorithm: one warp per query row, 8 rows per block; keys/values stream through shared memory
// in tiles of 32 (decoded to fp32), lane j scores key j of the tile (full dot product over D from
// a padded, conflict-free tile), then an online softmax in fp32 (running max m and sum l per row,
// rescaling the accumulator by exp(m_old − m_new)), with each lane owning Dv/32 output columns.
// A row whose keys are all masked (−inf) outputs 0 (ops.ts; torch >= 2.5 _safe_softmax).
// Why: correctness first — a single-pass flash-style kernel that never materialises the L×L
// scores, handles any Lq/Lk, D/Dv <= 128, any bias broadcast and the causal mask; it does not use
// tensor cores yet (a WMMA/wgmma tile version is the next step; see docs/gpu.md).
#include <stdlib.h>

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


// ---- tensor-core flash attention (bf16/f16, D = Dv in {64, 128}) ------------------------------------
// Algorithm (FlashAttention-2 style, written from its paper's description): a block of 8 warps owns
// 128 query rows (16 per warp, Q kept in registers as mma A fragments); K and V stream through
// shared memory in tiles of 64 keys, two stages deep (cp.async fetches tile j+1 while tile j is
// computed; rows padded by 16 bytes so ldmatrix is conflict free; 70 KB of dynamic shared memory
// at D = 128, the Q tile staged in the same space first); S = Q·Kᵀ with mma.sync m16n8k16 into fp32, softmax online in the log2 domain (running
// max and partial sums per thread, the row max shared by the 4 lanes of an mma group), P rounded to
// the input dtype and reused straight from the S registers as the A operand of O += P·V (V through
// ldmatrix.trans). The row sum adds the rounded P, so the weights applied to V are exactly the
// normalised ones. Bias (any broadcast) and the causal mask act on S like in the SIMT kernel.
// Why: FLUX spends ~15 of its 74 TFLOP per 1024² step in attention (perf-anchors §10); the SIMT
// kernel above runs on CUDA cores at a few % of the tensor-core rate.
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
#pragma unroll
    for (int r = 0; r < 2; r++) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      mu[r] = mx[r] == -INFINITY ? 0.f : mx[r];  // a row masked so far: p = 0, nothing to rescale
      corr[r] = exp2f(m_r[r] - mu[r]);
      m_r[r] = mx[r];
      l_r[r] *= corr[r];
    }
    uint32_t pa[FA_BN / 16][4];
#pragma unroll
    for (int nt = 0; nt < FA_BN / 8; nt++) {
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; e++) {
        p[e] = Mma16<DT>::dec(Mma16<DT>::enc(exp2f(s[nt][e] - mu[e >> 1])));
        l_r[e >> 1] += p[e];
      }
      pa[nt >> 1][(nt & 1) * 2 + 0] = pack2<DT>(p[0], p[1]);
      pa[nt >> 1][(nt & 1) * 2 + 1] = pack2<DT>(p[2], p[3]);
    }
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
      o[i][0] *= corr[0]; o[i][1] *= corr[0];
      o[i][2] *= corr[1]; o[i][3] *= corr[1];
    }
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
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
    l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
  }
  const int64_t HD = H * D;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int64_t row = rows[r];
    if (row >= Lq) continue;
    const float inv = l_r[r] > 0.f ? 1.f / l_r[r] : 0.f;  // all keys masked -> 0 (ops.ts)
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
      const int64_t base = (b * Lq + row) * HD + h * D + i * 8 + 2 * t;
      Io<DT>::st(out, base, o[i][2 * r] * inv);
      Io<DT>::st(out, base + 1, o[i][2 * r + 1] * inv);
    }
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
    if (!simt && aligned && D == Dv && (D == 64 || D == 128) && Lk > 0) {
      dim3 grid((unsigned)((Lq + FA_BM - 1) / FA_BM), (unsigned)H, (unsigned)B);
      const float sl2 = scale * 1.4426950408889634f;
      if (D == 128) {
        static const cudaError_t attr = cudaFuncSetAttribute(flash_attn_kernel<DT, 128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                             (int)fa_smem_bytes<128>());
        if (attr != cudaSuccess) return (int)attr;
        flash_attn_kernel<DT, 128><<<grid, FA_THREADS, fa_smem_bytes<128>(), FXS_STREAM>>>(
            (const uint16_t*)q, (const uint16_t*)k, (const uint16_t*)v, bias, bdt, bsb, bsh, out, H, Lq, Lk, sl2, causal);
      } else {
        flash_attn_kernel<DT, 64><<<grid, FA_THREADS, fa_smem_bytes<64>(), FXS_STREAM>>>(
            (const uint16_t*)q, (const uint16_t*)k, (const uint16_t*)v, bias, bdt, bsb, bsh, out, H, Lq, Lk, sl2, causal);
      }
      return FXS_LAUNCHED();
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
