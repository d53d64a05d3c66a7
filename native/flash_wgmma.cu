// flash_wgmma.cu — Hopper flash attention (sm_90a wgmma, bf16/f16, D = Dv = 128, no bias, no mask).
// Algorithm: FlashAttention-2's loop on Hopper's warpgroup MMA (the FA3 paper's basis, without its
// producer warps and ping-pong scheduling): a block of 2 warpgroups owns 128 query rows (64 each);
// Q stays in shared memory for the whole block, K and Vᵀ tiles of 128 keys stream through two
// cp.async stages. Per tile and warpgroup: S = Q·Kᵀ as 8 wgmma m64n128k16 with both operands in
// shared memory, the online softmax of the mma.sync flash kernel (flash_mma.cu) on the accumulators (log2 domain, P
// rounded to the input dtype, row sums of the rounded P), then O += P·V as 8 wgmma with P straight
// from registers (the accumulator layout is the A-fragment layout) and Vᵀ in shared memory. Every
// operand tile uses the no-swizzle K-major layout (wgmma_desc in mma.cuh): element (r, c) of a
// 128x128 tile at core matrix (r/8, c/8) = byte ((r/8)·16 + c/8)·128, row r%8 within it, so
// LBO = 128 B and SBO = 2 KB; cp.async writes 8 rows of one core matrix per 8 threads (no bank
// conflicts). V is K-major only transposed, so a pre-pass writes Vᵀ [B·H, 128, Lk rounded up to 8]
// (zero pad; ~2 bytes read + written per V element, ~1% of the kernel's time at FLUX sizes).
// Why: on H100 mma.sync reaches about two thirds of the tensor cores' dense rate; attention is
// 14.9 of FLUX's 74.4 TFLOP per 1024² step (docs/performance.md) and the bf16 target (≤ 110 ms/step)
// leaves it ~25 ms. Trust: the first eligible call checks this kernel against the mma.sync kernel
// on an awkward problem (both descriptor readings, bf16 and f16) and falls back if it disagrees.
#include "attention.cuh"
#include "attention_tc.cuh"

namespace fxs {

constexpr int WG_BM = 128, WG_BN = 128, WG_THREADS = 256;  // WG_D: attention.cuh
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

int flash_wgmma_attention(int dt, bool swap, const void* q, const void* k, const void* v, void* out, int64_t B, int64_t H,
                          int64_t Lq, int64_t Lk, float scale) {
  if (dt == FXS_DT_BF16) {
    return swap ? flash_wgmma_run<FXS_DT_BF16, true>(q, k, v, out, B, H, Lq, Lk, scale)
                : flash_wgmma_run<FXS_DT_BF16, false>(q, k, v, out, B, H, Lq, Lk, scale);
  }
  return swap ? flash_wgmma_run<FXS_DT_F16, true>(q, k, v, out, B, H, Lq, Lk, scale)
              : flash_wgmma_run<FXS_DT_F16, false>(q, k, v, out, B, H, Lq, Lk, scale);
}

}  // namespace fxs
