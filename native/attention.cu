// attention.cu — softmax(q·kᵀ·scale + bias [+ causal mask])·v with heads merged on output.
// Algorithm: one warp per query row, 8 rows per block; keys/values stream through shared memory
// in tiles of 32 (decoded to fp32), lane j scores key j of the tile (full dot product over D from
// a padded, conflict-free tile), then an online softmax in fp32 (running max m and sum l per row,
// rescaling the accumulator by exp(m_old − m_new)), with each lane owning Dv/32 output columns.
// A row whose keys are all masked (−inf) outputs 0 (ops.ts; torch >= 2.5 _safe_softmax).
// Why: correctness first — a single-pass flash-style kernel that never materialises the L×L
// scores, handles any Lq/Lk, D/Dv <= 128, any bias broadcast and the causal mask; it does not use
// tensor cores yet (a WMMA/wgmma tile version is the next step; see docs/gpu.md).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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


// ---- Hopper flash attention (sm_90a wgmma, bf16/f16, D = Dv = 128, no bias, no mask) ---------------
// Algorithm: FlashAttention-2's loop on Hopper's warpgroup MMA (the FA3 paper's basis, without its
// producer warps and ping-pong scheduling): a block of 2 warpgroups owns 128 query rows (64 each);
// Q stays in shared memory for the whole block, K and Vᵀ tiles of 128 keys stream through two
// cp.async stages. Per tile and warpgroup: S = Q·Kᵀ as 8 wgmma m64n128k16 with both operands in
// shared memory, the online softmax of the flash kernel above on the accumulators (log2 domain, P
// rounded to the input dtype, row sums of the rounded P), then O += P·V as 8 wgmma with P straight
// from registers (the accumulator layout is the A-fragment layout) and Vᵀ in shared memory. Every
// operand tile uses the no-swizzle K-major layout (wgmma_desc in mma.cuh): element (r, c) of a
// 128x128 tile at core matrix (r/8, c/8) = byte ((r/8)·16 + c/8)·128, row r%8 within it, so
// LBO = 128 B and SBO = 2 KB; cp.async writes 8 rows of one core matrix per 8 threads (no bank
// conflicts). V is K-major only transposed, so a pre-pass writes Vᵀ [B·H, 128, Lk rounded up to 8]
// (zero pad; ~2 bytes read + written per V element, ~1% of the kernel's time at FLUX sizes).
// Why: on H100 mma.sync reaches about two thirds of the tensor cores' dense rate; attention is
// 14.9 of FLUX's 74.4 TFLOP per 1024² step (perf-anchors §10) and the bf16 target (≤ 110 ms/step)
// leaves it ~25 ms. Trust: the first eligible call checks this kernel against the mma.sync kernel
// on an awkward problem (both descriptor readings, bf16 and f16) and falls back if it disagrees.
constexpr int WG_BM = 128, WG_BN = 128, WG_D = 128, WG_THREADS = 256;
constexpr size_t WG_TILE_BYTES = (size_t)128 * 128 * 2;
constexpr size_t WG_SMEM = 5 * WG_TILE_BYTES;  // Q, K[2], Vᵀ[2]: 160 KB

/** Byte offset of element (r, c) of a 128x128 16-bit tile in the blocked core-matrix layout. */
__device__ __forceinline__ uint32_t wg_tile_off(int r, int c) {
  return (uint32_t)((((r >> 3) * 16 + (c >> 3)) * 128) + (r & 7) * 16 + (c & 7) * 2);
}

// one 128x128 tile: rows r of `rows_valid`, 16-byte chunks along c; src(r, chunk) = global address
template <class Src>
__device__ __forceinline__ void wg_load_tile(uint8_t* tile, Src src, int tid) {
#pragma unroll
  for (int i = 0; i < (128 * 16) / WG_THREADS; i++) {
    const int c = tid + i * WG_THREADS;
    const int r = (c & 7) + ((c >> 7) << 3), ch = (c >> 3) & 15;  // 8 consecutive threads: 8 rows of one core matrix
    const uint16_t* g = nullptr;
    const bool ok = src(r, ch, &g);
    cp_async16(tile + wg_tile_off(r, ch * 8), g, ok);
  }
}

template <int DT, bool SWAP_LBO_SBO>
__global__ void __launch_bounds__(WG_THREADS, 1) flash_attn_wgmma_kernel(const uint16_t* q, const uint16_t* k, const uint16_t* vt,
                                                                       void* out, int64_t H, int64_t Lq, int64_t Lk, int64_t LkP,
                                                                       float scale_log2) {
  FXS_DYNAMIC_SMEM(uint8_t, smem);
  const uint32_t LBO = SWAP_LBO_SBO ? 2048 : 128, SBO = SWAP_LBO_SBO ? 128 : 2048;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, w = warp & 3, g = lane >> 2, t = lane & 3;
  const int64_t h = blockIdx.y, b = blockIdx.z, bh = b * H + h;
  const int64_t q0 = (int64_t)blockIdx.x * WG_BM;
  const uint16_t* qb = q + bh * Lq * WG_D;
  const uint16_t* kb = k + bh * Lk * WG_D;
  const uint16_t* vb = vt + bh * WG_D * LkP;
  uint8_t* Qs = smem;
  auto Ks = [&](int st) { return smem + (1 + st) * WG_TILE_BYTES; };
  auto Vs = [&](int st) { return smem + (3 + st) * WG_TILE_BYTES; };

  wg_load_tile(Qs, [&](int r, int ch, const uint16_t** gp) {
    const int64_t row = q0 + r;
    *gp = qb + (row < Lq ? row : 0) * WG_D + ch * 8;
    return row < Lq;
  }, tid);
  auto load_kv = [&](int64_t j0, int st) {
    wg_load_tile(Ks(st), [&](int r, int ch, const uint16_t** gp) {
      const int64_t j = j0 + r;
      *gp = kb + (j < Lk ? j : 0) * WG_D + ch * 8;
      return j < Lk;
    }, tid);
    wg_load_tile(Vs(st), [&](int r, int ch, const uint16_t** gp) {  // r = d, chunks along keys
      const int64_t j = j0 + ch * 8;
      *gp = vb + (int64_t)r * LkP + (j < LkP ? j : 0);
      return j < LkP;
    }, tid);
  };
  const int64_t ntiles = (Lk + WG_BN - 1) / WG_BN;
  load_kv(0, 0);
  cp_async_commit();  // group 0: Q and tile 0

  float o[64];
#pragma unroll
  for (int i = 0; i < 64; i++) o[i] = 0.f;
  float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f};
  const uint8_t* Qw = Qs + wg * (64 / 8) * 2048;  // this warpgroup's 64 rows (8 core-matrix rows of 2 KB)

  for (int64_t it = 0; it < ntiles; it++) {
    const int st = (int)(it & 1);
    const int64_t j0 = it * WG_BN;
    if (it + 1 < ntiles) load_kv(j0 + WG_BN, st ^ 1);  // stage st^1 was released by the last iteration's barrier
    cp_async_commit();
    cp_async_wait<1>();  // tile `it` (and Q) are here
    fence_proxy_async();  // cp.async wrote through the generic proxy; wgmma reads through the async one
    __syncthreads();

    float s[64];
#pragma unroll
    for (int i = 0; i < 64; i++) s[i] = 0.f;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < WG_D / 16; kk++)
      wgmma_m64n128k16_ss<DT>(s, wgmma_desc(Qw + kk * 256, LBO, SBO), wgmma_desc(Ks(st) + kk * 256, LBO, SBO));
    wgmma_commit();
    wgmma_wait<0>();

    float mx[2] = {m_r[0], m_r[1]};
#pragma unroll
    for (int i = 0; i < 16; i++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int64_t j = j0 + 8 * i + 2 * t + (e & 1);
        float x = j < Lk ? s[4 * i + e] * scale_log2 : -INFINITY;
        s[4 * i + e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    }
    float mu[2], corr[2];
    online_softmax_step(mx, m_r, l_r, mu, corr);
    uint32_t pa[8][4];
    softmax_probs<DT, 16>(s, mu, l_r, pa);
    rescale_rows<16>(o, corr);
    wgmma_fence();
#pragma unroll
    for (int kc = 0; kc < WG_BN / 16; kc++) wgmma_m64n128k16_rs<DT>(o, pa[kc], wgmma_desc(Vs(st) + kc * 256, LBO, SBO));
    wgmma_commit();
    wgmma_wait<0>();
    __syncthreads();  // both warpgroups are done with stage st before the next iteration refills it
  }
  const int64_t rows[2] = {q0 + wg * 64 + w * 16 + g, q0 + wg * 64 + w * 16 + g + 8};
  store_rows<DT, 16>(out, o, l_r, rows, Lq, H * WG_D, b * Lq * H * WG_D + h * WG_D, t);
}

// vt[bh][d][j] = v[bh][j][d] for j < Lk, 0 for Lk <= j < LkP (32x32 tiles through shared memory)
__global__ void transpose_v_kernel(const uint16_t* v, uint16_t* vt, int64_t Lk, int64_t LkP, int D) {
  __shared__ uint16_t tile[32][33];
  const int64_t bh = blockIdx.z, j0 = (int64_t)blockIdx.x * 32;
  const int d0 = blockIdx.y * 32;
  for (int r = threadIdx.y; r < 32; r += blockDim.y) {
    const int64_t j = j0 + r;
    tile[r][threadIdx.x] = j < Lk ? v[(bh * Lk + j) * D + d0 + threadIdx.x] : (uint16_t)0;
  }
  __syncthreads();
  for (int r = threadIdx.y; r < 32; r += blockDim.y) {
    const int64_t j = j0 + threadIdx.x;
    if (j < LkP) vt[(bh * D + d0 + r) * LkP + j] = tile[threadIdx.x][r];
  }
}

// The wgmma path for one call: Vᵀ into a scratch buffer (stream-ordered, freed after enqueueing).
template <int DT, bool SWAP>
int flash_wgmma_run(const void* q, const void* k, const void* v, void* out, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                    float scale) {
  static const cudaError_t attr =
      cudaFuncSetAttribute(flash_attn_wgmma_kernel<DT, SWAP>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)WG_SMEM);
  if (attr != cudaSuccess) return (int)attr;
  const int64_t LkP = (Lk + 7) / 8 * 8;
  void* vt = nullptr;
  int rc = fxs_malloc((size_t)(B * H * WG_D * LkP * 2), &vt);
  if (rc) return rc;
  transpose_v_kernel<<<dim3((unsigned)((LkP + 31) / 32), WG_D / 32, (unsigned)(B * H)), dim3(32, 8), 0, FXS_STREAM>>>(
      (const uint16_t*)v, (uint16_t*)vt, Lk, LkP, WG_D);
  rc = FXS_LAUNCHED();
  if (!rc) {
    dim3 grid((unsigned)((Lq + WG_BM - 1) / WG_BM), (unsigned)H, (unsigned)B);
    flash_attn_wgmma_kernel<DT, SWAP><<<grid, WG_THREADS, WG_SMEM, FXS_STREAM>>>(
        (const uint16_t*)q, (const uint16_t*)k, (const uint16_t*)vt, out, H, Lq, Lk, LkP, scale * 1.4426950408889634f);
    rc = FXS_LAUNCHED();
  }
  fxs_free(vt);
  return rc;
}

// The mma.sync flash kernel (D = Dv = 64 or 128, any bias broadcast, optional causal mask): for
// attention_launch and as the wgmma kernel's self-check reference.
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


// ---- the wgmma self-check ------------------------------------------------------------------------------
// -1: not decided yet; 0: off (not sm_90, FXS_ATTN_WGMMA=0, or the check failed); 1: on; 2: on with
// LBO and SBO swapped (the descriptor fields read the other way round than mma.cuh's comment says).
int g_wgmma_mode = -1;
char g_wgmma_note[192] = "not checked yet";

__global__ void probe_fill_kernel(uint16_t* p, int64_t n, uint32_t seed, int f16) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;
    x ^= x >> 15; x *= 2246822519u; x ^= x >> 13;
    float f = ((float)(x & 0xffff) / 65536.f - 0.5f) * 4.f;
    p[i] = f16 ? f16_enc(f) : bf16_enc(f);
  }
}

// max |ref − got| as the bits of a non-negative float (ordered like unsigned integers); NaN -> +inf
template <int DT>
__global__ void probe_diff_kernel(const uint16_t* ref, const uint16_t* got, int64_t n, unsigned* worst) {
  unsigned m = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float d = fabsf(Mma16<DT>::dec(ref[i]) - Mma16<DT>::dec(got[i]));
    const unsigned bits = d <= 3.0e38f ? __float_as_uint(d) : 0x7f800000u;
    m = bits > m ? bits : m;
  }
  atomicMax(worst, m);
}

template <int DT>
bool probe_one(bool swap, float* worst) {
  const int64_t B = 1, H = 2, Lq = 100, Lk = 141, n = B * H * Lq * WG_D, nk = B * H * Lk * WG_D;
  void *q = nullptr, *k = nullptr, *v = nullptr, *ref = nullptr, *got = nullptr;
  bool ok = !fxs_malloc((size_t)n * 2, &q) && !fxs_malloc((size_t)nk * 2, &k) && !fxs_malloc((size_t)nk * 2, &v) &&
            !fxs_malloc((size_t)n * 2, &ref) && !fxs_malloc((size_t)n * 2, &got);
  if (ok) {
    const int f16 = DT == FXS_DT_F16;
    probe_fill_kernel<<<64, 256, 0, FXS_STREAM>>>((uint16_t*)q, n, 1u, f16);
    probe_fill_kernel<<<64, 256, 0, FXS_STREAM>>>((uint16_t*)k, nk, 2u, f16);
    probe_fill_kernel<<<64, 256, 0, FXS_STREAM>>>((uint16_t*)v, nk, 3u, f16);
    const float scale = 0.0883883476f;  // 1/sqrt(128)
    ok = !fxs_memset0(got, (size_t)n * 2) && !FXS_LAUNCHED() && !flash_mma_run<DT, 128>(q, k, v, nullptr, 0, 0, 0, ref, B, H, Lq, Lk, scale, 0) &&
         !(swap ? flash_wgmma_run<DT, true>(q, k, v, got, B, H, Lq, Lk, scale)
                : flash_wgmma_run<DT, false>(q, k, v, got, B, H, Lq, Lk, scale));
  }
  void* worst_bits = nullptr;
  uint32_t wb = 0x7f800000u;  // +inf: a failed run
  if (ok) ok = !fxs_malloc(4, &worst_bits) && !fxs_memset0(worst_bits, 4);
  if (ok) {
    probe_diff_kernel<DT><<<64, 256, 0, FXS_STREAM>>>((const uint16_t*)ref, (const uint16_t*)got, n, (unsigned*)worst_bits);
    ok = !FXS_LAUNCHED() && !fxs_download(&wb, worst_bits, 4);
  }
  float w;
  memcpy(&w, &wb, 4);
  for (void* p : {q, k, v, ref, got, worst_bits})
    if (p) fxs_free(p);
  cudaGetLastError();
  *worst = w;
  return ok && w <= 0.03f;  // outputs are convex combinations of values in [-2, 2]: a few bf16 ulps
}

int wgmma_mode() {
  if (g_wgmma_mode >= 0) return g_wgmma_mode;
  g_wgmma_mode = 0;
  int dev = 0;
  cudaDeviceProp prop;
  const char* env = getenv("FXS_ATTN_WGMMA");
  if (env && env[0] == '0') {
    snprintf(g_wgmma_note, sizeof g_wgmma_note, "off (FXS_ATTN_WGMMA=0)");
  } else if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess || prop.major != 9) {
    cudaGetLastError();
    snprintf(g_wgmma_note, sizeof g_wgmma_note, "off (not an sm_90 device)");
  } else {
    float wb0 = -1, wf0 = -1, wb1 = -1, wf1 = -1;  // -1: not run
    if (probe_one<FXS_DT_BF16>(false, &wb0) && probe_one<FXS_DT_F16>(false, &wf0)) {
      g_wgmma_mode = 1;
      snprintf(g_wgmma_note, sizeof g_wgmma_note, "on (self-check max diff bf16 %.3g, f16 %.3g)", wb0, wf0);
    } else if (probe_one<FXS_DT_BF16>(true, &wb1) && probe_one<FXS_DT_F16>(true, &wf1)) {
      g_wgmma_mode = 2;
      snprintf(g_wgmma_note, sizeof g_wgmma_note, "on, LBO/SBO swapped (documented reading: max diff %.3g / %.3g; swapped: %.3g / %.3g)",
               wb0, wf0, wb1, wf1);
    } else {
      snprintf(g_wgmma_note, sizeof g_wgmma_note, "off (self-check failed: max diff bf16 %.3g, f16 %.3g; swapped %.3g / %.3g)", wb0,
               wf0, wb1, wf1);
    }
    if (g_wgmma_mode == 0 && env && env[0] == '1') fprintf(stderr, "fluxserve: FXS_ATTN_WGMMA=1 but the wgmma attention is %s\n", g_wgmma_note);
  }
  return g_wgmma_mode;
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
    if (!simt && aligned && D == 128 && Dv == 128 && Lk > 0 && !bias && !causal && wgmma_mode() > 0) {
      return wgmma_mode() == 2 ? flash_wgmma_run<DT, true>(q, k, v, out, B, H, Lq, Lk, scale)
                               : flash_wgmma_run<DT, false>(q, k, v, out, B, H, Lq, Lk, scale);
    }
    if (!simt && aligned && D == Dv && (D == 64 || D == 128) && Lk > 0) {
      return D == 128 ? flash_mma_run<DT, 128>(q, k, v, bias, bdt, bsb, bsh, out, B, H, Lq, Lk, scale, causal)
                      : flash_mma_run<DT, 64>(q, k, v, bias, bdt, bsb, bsh, out, B, H, Lq, Lk, scale, causal);
    }
  }
  dim3 grid((unsigned)((Lq + AT_ROWS - 1) / AT_ROWS), (unsigned)H, (unsigned)B);
  attention_kernel<DT><<<grid, AT_ROWS * 32, 0, FXS_STREAM>>>(q, k, v, bias, bdt, bsb, bsh, out, H, Lq, Lk, (int)D, (int)Dv,
                                                               scale, causal);
  return FXS_LAUNCHED();
}

}  // namespace fxs

extern "C" {
const char* fxs_attention_wgmma_check(void) {
  fxs::wgmma_mode();
  return fxs::g_wgmma_note;
}
#define FXS_DEF_ATTN(dt)                                                                                     \
  int fxs_attention_##dt(const void* q, const void* k, const void* v, const void* bias, int bias_dtype,       \
                         int64_t bias_sb, int64_t bias_sh, void* out, int64_t B, int64_t H, int64_t Lq,       \
                         int64_t Lk, int64_t D, int64_t Dv, float scale, int causal) {                        \
    return fxs::attention_launch<FXS_DT_CODE_##dt>(q, k, v, bias, bias_dtype, bias_sb, bias_sh, out, B, H, Lq, \
                                                   Lk, D, Dv, scale, causal);                                 \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_ATTN)
}
