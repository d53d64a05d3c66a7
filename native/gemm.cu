// gemm.cu — linear and matmul: C = act(alpha·A·op(B) + bias), fp32 accumulation.
// Algorithm: cuBLASLt (compiled in with -DFLUXSERVE_HAVE_CUBLASLT) when A, B and C share one of
// f32/bf16/f16 and the bias (if any) has that dtype too: bf16/f16 tensor-core GEMMs with fp32
// compute, f32 with CUBLAS_COMPUTE_32F (no TF32, so f32 results match the CPU reference), the bias
// added by the BIAS epilogue and alpha = the fp8 weight scale. Everything else (fp8 weights, mixed
// dtypes, builds without cuBLASLt) takes the tiled kernel of tiled_gemm.cuh. Why: FLUX is ~95%
// GEMM FLOPs and only a vendor GEMM reaches tensor-core speed; the fallback keeps every dtype
// combination correct. The activation is a separate rounding point (ops.ts: Linear then GELU are
// two PyTorch ops), so by default it runs as its own pass after the GEMM's rounded output;
// FXS_CUBLASLT_GELU_EPILOGUE=1 fuses GELU_BIAS (tanh GELU, one rounding fewer: faster, not
// bit-identical to the reference chain).
#include <stdlib.h>
#include <string.h>

#include "tiled_gemm.cuh"

#ifdef FLUXSERVE_HAVE_CUBLASLT
#include <cublasLt.h>

#include <mutex>
#include <unordered_map>
#endif

namespace fxs {

struct LoadA {
  const void* p; int dt; int64_t stride, K;
  __device__ __forceinline__ float operator()(int64_t b, int64_t m, int64_t k) const { return ldx(p, dt, b * stride + m * K + k); }
};
struct LoadBnk {  // B stored [N, K]
  static constexpr bool k_contig = true;
  const void* p; int dt; int64_t stride, K;
  __device__ __forceinline__ float operator()(int64_t b, int64_t k, int64_t n) const { return ldx(p, dt, b * stride + n * K + k); }
};
struct LoadBkn {  // B stored [K, N]
  static constexpr bool k_contig = false;
  const void* p; int dt; int64_t stride, N;
  __device__ __forceinline__ float operator()(int64_t b, int64_t k, int64_t n) const { return ldx(p, dt, b * stride + k * N + n); }
};
template <int DT> struct GemmEpi {
  void* c; int64_t stride, N; const void* bias; int bias_dt; float alpha; int act;
  const float* dscale;  // device scalar multiplying alpha (the fp8 input scale), or null
  __device__ __forceinline__ void operator()(int64_t b, int64_t m, int64_t n, float acc) const {
    float v = acc * (dscale ? alpha * *dscale : alpha);
    if (bias) v += ldx(bias, bias_dt, n);
    if (act != FXS_ACT_NONE) v = act_apply(act, Io<DT>::rnd(v));
    Io<DT>::st(c, b * stride + m * N + n, v);
  }
};

template <int DT>
__global__ void act_inplace_kernel(void* y, int64_t n, int act) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Io<DT>::st(y, i, act_apply(act, Io<DT>::ld(y, i)));
}

// Dynamic per-tensor e4m3 quantisation of a linear's input (ops.ts linear quantizeInput):
// s = max|x| / 448 (1 when x is all zero), x_q = e4m3(x / s). The max is order-independent, so the
// result is deterministic (unlike float atomics); non-negative floats compare like their bits.
template <int DT>
__global__ void amax_kernel(const void* x, int64_t n, unsigned* amax_bits) {
  float m = 0.f;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    m = fmaxf(m, fabsf(Io<DT>::ld(x, i)));
  block_amax_atomic(m, amax_bits);
}
template <int DT>
int absmax_to_host(const void* x, int64_t n, float* out) {
  *out = 0.f;
  if (n <= 0) return 0;
  unsigned* d = nullptr;
  int rc = fxs_malloc(4, (void**)&d);
  if (rc) return rc;
  cudaMemsetAsync(d, 0, 4, FXS_STREAM);
  amax_kernel<DT><<<blocks_capped(n, 256, 1024u), 256, 0, FXS_STREAM>>>(x, n, d);
  rc = (int)cudaGetLastError();
  unsigned bits = 0;
  if (!rc) rc = fxs_download(&bits, d, 4);
  fxs_free(d);
  memcpy(out, &bits, 4);
  return rc;
}

template <int DT>
__global__ void quant_e4m3_kernel(const void* x, int64_t n, uint8_t* xq, const unsigned* amax_bits, float* scale) {
  const float amax = __uint_as_float(*amax_bits);
  const float s = amax > 0.f ? amax / 448.f : 1.f;
  if (blockIdx.x == 0 && threadIdx.x == 0) *scale = s;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    xq[i] = f8_enc(Io<DT>::ld(x, i) / s);
}

#ifdef FLUXSERVE_HAVE_CUBLASLT
// ---- cuBLASLt path (isolated: nothing outside this block refers to cuBLASLt) ------------------
namespace lt {

std::mutex mu;
cublasLtHandle_t handle = nullptr;
void* workspace = nullptr;
constexpr size_t kWorkspace = 32u << 20;

struct Key {
  int dt, b_nk, epi; int64_t batch, M, N, K, sa, sb, sc; int fp8;  // fp8: A and B are e4m3 (scaled)
  bool operator==(const Key& o) const {
    return dt == o.dt && b_nk == o.b_nk && epi == o.epi && fp8 == o.fp8 && batch == o.batch && M == o.M && N == o.N &&
           K == o.K && sa == o.sa && sb == o.sb && sc == o.sc;
  }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 1469598103934665603ull;
    for (int64_t v : {(int64_t)k.dt, (int64_t)k.b_nk, (int64_t)k.epi, (int64_t)k.fp8, k.batch, k.M, k.N, k.K, k.sa, k.sb, k.sc})
      h = (h ^ (size_t)v) * 1099511628211ull;
    return h;
  }
};
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo;
  bool ok = false;
};
std::unordered_map<Key, Plan, KeyHash> plans;

bool init() {
  if (handle) return true;
  if (cublasLtCreate(&handle) != CUBLAS_STATUS_SUCCESS) return false;
  if (cudaMalloc(&workspace, kWorkspace) != cudaSuccess) { workspace = nullptr; return false; }
  return true;
}

cudaDataType_t cuda_type(int dt) {
  return dt == FXS_DT_BF16 ? CUDA_R_16BF : dt == FXS_DT_F16 ? CUDA_R_16F : CUDA_R_32F;
}

// Row-major C[M,N] = A[M,K]·op(B) is column-major Cᵀ[N,M] = op(B)ᵀ·Aᵀ: cuBLAS "A" is our B
// (transposed when B is [N,K]), cuBLAS "B" is our A, no transpose.
Plan* plan_for(const Key& k) {
  auto it = plans.find(k);
  if (it != plans.end()) return it->second.ok ? &it->second : nullptr;
  Plan& p = plans[k];
  cudaDataType_t t = cuda_type(k.dt);
  cudaDataType_t tin = k.fp8 ? CUDA_R_8F_E4M3 : t;  // fp8: e4m3 inputs, output and bias in DT
  cublasComputeType_t ct = CUBLAS_COMPUTE_32F;
  if (cublasLtMatmulDescCreate(&p.op, ct, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) return nullptr;
  cublasOperation_t ta = k.b_nk ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  cublasLtEpilogue_t epi = k.epi == 2 ? CUBLASLT_EPILOGUE_GELU_BIAS : k.epi == 1 ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi));
  // our B: [N,K] row-major = col-major K x N (ld K); [K,N] row-major = col-major N x K (ld N)
  if (k.fp8) {  // Hopper's fp8 GEMMs take only the "TN" layout: both operands K-major
    static const bool fast = env_on("FXS_FP8_FAST_ACCUM");
    int8_t fa = fast ? 1 : 0;
    cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fa, sizeof(fa));
  }
  if (k.b_nk) cublasLtMatrixLayoutCreate(&p.a, tin, k.K, k.N, k.K);
  else cublasLtMatrixLayoutCreate(&p.a, tin, k.N, k.K, k.N);
  cublasLtMatrixLayoutCreate(&p.b, tin, k.K, k.M, k.K);
  cublasLtMatrixLayoutCreate(&p.c, t, k.N, k.M, k.N);
  if (k.batch > 1) {
    int32_t bc = (int32_t)k.batch;
    for (auto pr : {std::make_pair(p.a, k.sb), std::make_pair(p.b, k.sa), std::make_pair(p.c, k.sc)}) {
      cublasLtMatrixLayoutSetAttribute(pr.first, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc));
      int64_t st = pr.second;
      cublasLtMatrixLayoutSetAttribute(pr.first, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &st, sizeof(st));
    }
  }
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  size_t ws = kWorkspace;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  cublasLtMatmulHeuristicResult_t res;
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.c, p.c, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) return nullptr;
  p.algo = res.algo;
  p.ok = true;
  return &p;
}

// Returns 0 when it ran, -1 when this case is not for cuBLASLt (caller falls back), else an error.
int try_gemm(int dt, const void* A, const void* B, void* C, int64_t batch, int64_t M, int64_t N, int64_t K,
             int b_nk, int64_t sa, int64_t sb, int64_t sc, const void* bias, float alpha, int act, bool* act_done,
             const float* x_scale = nullptr) {
  std::lock_guard<std::mutex> g(mu);
  if (!init()) return -1;
  static const bool fuse_gelu = env_on("FXS_CUBLASLT_GELU_EPILOGUE");
  int epi = bias ? 1 : 0;
  *act_done = false;
  if (fuse_gelu && bias && act == FXS_ACT_GELU_TANH) { epi = 2; *act_done = true; }
  Key key{dt, b_nk, epi, batch, M, N, K, sa, sb, sc, x_scale ? 1 : 0};
  Plan* p = plan_for(key);
  if (!p) { *act_done = false; return -1; }
  if (bias) cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
  // our x is cuBLAS's B: its dequantisation scale is B's (a device scalar); the weight scale is alpha
  if (x_scale) cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scale, sizeof(x_scale));
  float beta = 0.f;
  cublasStatus_t st = cublasLtMatmul(handle, p->op, &alpha, B, p->a, A, p->b, &beta, C, p->c, C, p->c, &p->algo,
                                     workspace, kWorkspace, FXS_STREAM);
  if (st != CUBLAS_STATUS_SUCCESS) { *act_done = false; return -1; }
  return 0;
}

}  // namespace lt
#endif  // FLUXSERVE_HAVE_CUBLASLT

// FXS_REQUIRE_CUBLASLT=1 (device script, emulator tests): a case meant for cuBLASLt that it
// refused is an error instead of a silent fallback, so a wrong layout cannot hide behind it.
inline bool require_cublaslt() {
  static const bool on = env_on("FXS_REQUIRE_CUBLASLT");
  return on;
}

// After a cuBLASLt GEMM that did not fuse the activation: one pass over its rounded output.
template <int DT>
int activation_after_lt(void* C, int64_t n, int act, bool act_done) {
  if (act != FXS_ACT_NONE && !act_done) act_inplace_kernel<DT><<<blocks_capped(n, 256, 65535u * 16), 256, 0, FXS_STREAM>>>(C, n, act);
  return (int)cudaGetLastError();
}

// linear with an fp8 weight and a dynamically quantised fp8 input (go_fast): amax (unless the
// producer of x computed it: `amax_in`, float bits), quantise into a temporary e4m3 copy of x,
// then an fp8 GEMM (cuBLASLt, else the tiled kernel) with the input scale read on the device, so
// nothing waits for the host.
template <int DT>
int gemm_fp8_input(const void* A, const void* B, void* C, int64_t M, int64_t N, int64_t K, const void* bias,
                   int bias_dt, float alpha, int act, const unsigned* amax_in) {
  static float* scratch = nullptr;  // [0] amax bits, [1] scale; stream order makes one copy enough
  if (!scratch && cudaMalloc((void**)&scratch, 256) != cudaSuccess) return (int)cudaErrorMemoryAllocation;
  if (M <= 0 || N <= 0) return 0;
  const int64_t n = M * K;
  void* xq = nullptr;
  int rc = fxs_malloc((size_t)(n > 0 ? n : 1), &xq);
  if (rc) return rc;
  const unsigned g = blocks_capped(n, 256, 1024u);
  if (!amax_in) {
    cudaMemsetAsync(scratch, 0, 4, FXS_STREAM);
    amax_kernel<DT><<<g, 256, 0, FXS_STREAM>>>(A, n, (unsigned*)scratch);
  }
  quant_e4m3_kernel<DT><<<g, 256, 0, FXS_STREAM>>>(A, n, (uint8_t*)xq, amax_in ? amax_in : (const unsigned*)scratch, scratch + 1);
  rc = (int)cudaGetLastError();
  if (rc) { fxs_free(xq); return rc; }
#ifdef FLUXSERVE_HAVE_CUBLASLT
  if ((DT == FXS_DT_BF16 || DT == FXS_DT_F16) && (!bias || bias_dt == DT) && K > 0) {
    bool act_done = false;
    int r = lt::try_gemm(DT, xq, B, C, 1, M, N, K, 1, 0, 0, 0, bias, alpha, act, &act_done, scratch + 1);
    if (r == 0) {
      fxs_free(xq);  // stream-ordered: the GEMM enqueued before any reuse
      return activation_after_lt<DT>(C, M * N, act, act_done);
    }
    if (require_cublaslt()) { fxs_free(xq); return (int)cudaErrorNotSupported; }
  }
#endif
  LoadA la{xq, FXS_DT_F8E4M3, 0, K};
  GemmEpi<DT> ep{C, 0, N, bias, bias_dt, alpha, act, scratch + 1};
  rc = launch_tiled_gemm(la, LoadBnk{B, FXS_DT_F8E4M3, 0, K}, ep, 1, M, N, K, FXS_STREAM);
  fxs_free(xq);
  return rc;
}

template <int DT>
int gemm_impl(const void* A, const void* B, int b_dt, void* C, int64_t batch, int64_t M, int64_t N, int64_t K,
              int b_nk, int64_t sa, int64_t sb, int64_t sc, const void* bias, int bias_dt, float alpha, int act) {
  // A broadcast B over a contiguous batch is one GEMM with batch·M rows.
  if (batch > 1 && sb == 0 && sa == M * K && sc == M * N) { M *= batch; batch = 1; sa = sc = 0; }
#ifdef FLUXSERVE_HAVE_CUBLASLT
  if (DT != FXS_DT_F8E4M3 && b_dt == DT && (!bias || bias_dt == DT) && K > 0) {
    bool act_done = false;
    int r = lt::try_gemm(DT, A, B, C, batch, M, N, K, b_nk, sa, sb, sc, bias, alpha, act, &act_done);
    if (r == 0) return activation_after_lt<DT>(C, batch * M * N, act, act_done);
    if (require_cublaslt()) return (int)cudaErrorNotSupported;
  }
#endif
  LoadA la{A, DT, sa, K};
  GemmEpi<DT> ep{C, sc, N, bias, bias_dt, alpha, act, nullptr};
  if (b_nk) return launch_tiled_gemm(la, LoadBnk{B, b_dt, sb, K}, ep, batch, M, N, K, FXS_STREAM);
  return launch_tiled_gemm(la, LoadBkn{B, b_dt, sb, N}, ep, batch, M, N, K, FXS_STREAM);
}

}  // namespace fxs

extern "C" {
#define FXS_DEF_GEMM(dt)                                                                          \
  int fxs_gemm_##dt(const void* A, const void* B, int b_dtype, void* C, int64_t batch, int64_t M,  \
                    int64_t N, int64_t K, int b_nk, int64_t stride_a, int64_t stride_b,           \
                    int64_t stride_c, const void* bias, int bias_dtype, float alpha, int act) {    \
    return fxs::gemm_impl<FXS_DT_CODE_##dt>(A, B, b_dtype, C, batch, M, N, K, b_nk, stride_a,      \
                                            stride_b, stride_c, bias, bias_dtype, alpha, act);     \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_GEMM)
#define FXS_DEF_LINEAR_FP8IN(dt)                                                                    \
  int fxs_linear_fp8in_##dt(const void* x, const void* w8, void* y, int64_t M, int64_t N, int64_t K, \
                            const void* bias, int bias_dtype, float w_scale, int act, const void* amax) { \
    if (FXS_DT_CODE_##dt == FXS_DT_F8E4M3) return (int)cudaErrorInvalidValue;                      \
    return fxs::gemm_fp8_input<FXS_DT_CODE_##dt>(x, w8, y, M, N, K, bias, bias_dtype, w_scale, act, \
                                                 (const unsigned*)amax);                             \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_LINEAR_FP8IN)
#define FXS_DEF_ABSMAX(dt)                                                                          \
  int fxs_absmax_##dt(const void* x, int64_t n, float* out) {                                       \
    return fxs::absmax_to_host<FXS_DT_CODE_##dt>(x, n, out);                                        \
  }
FXS_FOR_FLOAT_DTYPES(FXS_DEF_ABSMAX)

int fxs_has_cublaslt(void) {
#ifdef FLUXSERVE_HAVE_CUBLASLT
  return 1;
#else
  return 0;
#endif
}
}
