// fluxserve_cuda.h — the only interface between the N-API layer (addon.cc) and the kernels.
// A stable C ABI: every launcher is `extern "C"`, returns 0 or a cudaError_t code, takes raw
// device pointers, element counts/shapes as int64_t, and enqueues on the library's one stream.
// Names carry the dtype of the op's main tensor (its input x and output, which ops.ts makes the
// same): _f32, _bf16, _f16, _f8e4m3. Secondary operands (weights, biases, modulation vectors,
// the binary op's b) may have another float dtype and are passed with a FXS_DT_* code. Layout
// ops copy bits, so theirs carry the element width: _x32, _x16, _x8. cast carries the target.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// dtype codes, in the order of src/tensor/dtype.ts DTYPES
enum { FXS_DT_F32 = 0, FXS_DT_BF16 = 1, FXS_DT_F16 = 2, FXS_DT_F8E4M3 = 3, FXS_DT_I32 = 4 };
// activation codes (backend.ts Activation)
enum { FXS_ACT_NONE = 0, FXS_ACT_GELU_TANH = 1, FXS_ACT_GELU = 2, FXS_ACT_SILU = 3, FXS_ACT_QUICK_GELU = 4 };
// binary op codes
enum { FXS_OP_ADD = 0, FXS_OP_SUB = 1, FXS_OP_MUL = 2 };
#define FXS_MAX_RANK 8

// --- device, stream, memory (alloc.cu) -----------------------------------------------------------
int fxs_init(int device);
int fxs_device_count(int* count);
int fxs_device_info(char* name, int name_len, int* cc_major, int* cc_minor, size_t* total_mem);
int fxs_has_cublaslt(void);
const char* fxs_error_string(int code);
void* fxs_stream(void);
int fxs_malloc(size_t bytes, void** out);
int fxs_free(void* p);
int fxs_empty_cache(void);
void fxs_mem_stats(size_t* allocated, size_t* reserved, size_t* peak_allocated);
void fxs_reset_peak(void);
int fxs_upload(void* dst, const void* src, size_t bytes);
int fxs_download(void* dst, const void* src, size_t bytes);
int fxs_memset0(void* dst, size_t bytes);
int fxs_copy_bytes(void* dst, const void* src, size_t bytes);
int fxs_synchronize(void);
/** How many times the host has waited for the stream (synchronize, downloads, blocking uploads). */
uint64_t fxs_host_waits(void);
/** Records a mark on the stream (an event); fxs_mark_wait waits for it (release = 1: only gives it back). */
int fxs_mark(void** out);
int fxs_mark_wait(void* mark, int release);
/** How many times the host has waited for a mark. */
uint64_t fxs_mark_waits(void);
/**
 * CUDA graphs: fxs_graph_begin starts capturing the stream (allocations come from a pool of the
 * graph's own; host transfers and waits fail with cudaErrorStreamCaptureUnsupported);
 * fxs_graph_end(0, &g) instantiates what was captured (abort = 1 drops it); fxs_graph_launch
 * enqueues a replay; fxs_graph_destroy waits for the stream, frees the graph and returns its pool.
 */
int fxs_graph_begin(void);
int fxs_graph_end(int abort, void** out);
int fxs_graph_launch(void* graph);
int fxs_graph_destroy(void* graph);
uint64_t fxs_graph_launches(void);

/**
 * The Hopper (wgmma) attention kernel's state after its self-check against the mma.sync kernel,
 * which this call runs first if no eligible attention call has yet: "on (...)" or "off (why)".
 */
const char* fxs_attention_wgmma_check(void);

#define FXS_FOR_FLOAT_DTYPES(X) X(f32) X(bf16) X(f16) X(f8e4m3)

// --- GEMM (gemm.cu) -------------------------------------------------------------------------------
// C[b] = act(alpha · A[b]·op(B[b]) + bias). A [M,K] main dtype; B [N,K] when b_nk else [K,N];
// strides in elements between batch items (0 = broadcast). Rounding: once after the bias, and
// once more after the activation (ops.ts linear).
#define FXS_DECL_GEMM(dt)                                                                           \
  int fxs_gemm_##dt(const void* A, const void* B, int b_dtype, void* C, int64_t batch, int64_t M,   \
                    int64_t N, int64_t K, int b_nk, int64_t stride_a, int64_t stride_b,            \
                    int64_t stride_c, const void* bias, int bias_dtype, float alpha, int act);
FXS_FOR_FLOAT_DTYPES(FXS_DECL_GEMM)
// y[M,N] = act(w_scale · s_x · e4m3(x / s_x)·w8ᵀ + bias) with s_x = max|x| / 448 computed on the
// device (ops.ts linear quantizeInput 'f8e4m3'); w8 e4m3 [N,K]. Not for an fp8 x (invalid value).
// amax: null, or max|x| as float bits already computed by x's producer (ops.ts inputAmax).
#define FXS_DECL_LINEAR_FP8IN(dt)                                                                   \
  int fxs_linear_fp8in_##dt(const void* x, const void* w8, void* y, int64_t M, int64_t N, int64_t K, \
                            const void* bias, int bias_dtype, float w_scale, int act, const void* amax);
FXS_FOR_FLOAT_DTYPES(FXS_DECL_LINEAR_FP8IN)
// *out = max |x[i]| (NaN ignored), read back to the host: waits for the stream.
#define FXS_DECL_ABSMAX(dt) int fxs_absmax_##dt(const void* x, int64_t n, float* out);
FXS_FOR_FLOAT_DTYPES(FXS_DECL_ABSMAX)

// --- attention (attention.cu) ---------------------------------------------------------------------
// q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv] -> out [B,Lq,H*Dv]; bias element (b,h,i,j) at
// b*bias_sb + h*bias_sh + i*Lk + j. D, Dv <= 128.
#define FXS_DECL_ATTN(dt)                                                                           \
  int fxs_attention_##dt(const void* q, const void* k, const void* v, const void* bias,             \
                         int bias_dtype, int64_t bias_sb, int64_t bias_sh, void* out, int64_t B,    \
                         int64_t H, int64_t Lq, int64_t Lk, int64_t D, int64_t Dv, float scale,     \
                         int causal);
FXS_FOR_FLOAT_DTYPES(FXS_DECL_ATTN)

// --- norms (norm.cu) ------------------------------------------------------------------------------
#define FXS_DECL_NORM(dt)                                                                           \
  int fxs_layer_norm_##dt(const void* x, const void* w, int w_dtype, const void* b, int b_dtype,    \
                          void* y, int64_t rows, int64_t D, float eps);                             \
  int fxs_rms_norm_##dt(const void* x, const void* w, int w_dtype, void* y, int64_t rows,           \
                        int64_t D, float eps);                                                      \
  int fxs_group_norm_##dt(const void* x, const void* w, int w_dtype, const void* b, int b_dtype,    \
                          void* y, int64_t B, int64_t C, int64_t S, int64_t groups, float eps,      \
                          int act);                                                                 \
  int fxs_modulated_layer_norm_##dt(const void* x, const void* shift, int shift_dtype,              \
                                    const void* scale, int scale_dtype, void* y, int64_t B,         \
                                    int64_t L, int64_t D, float eps, void* amax);
FXS_FOR_FLOAT_DTYPES(FXS_DECL_NORM)

// --- rope (rope.cu) -------------------------------------------------------------------------------
// x [B,H,L,D], pe f32 [B|1, L, D/2, 2, 2] (pe_batched = pe has B rows).
#define FXS_DECL_ROPE(dt)                                                                           \
  int fxs_rope_##dt(const void* x, const float* pe, int pe_batched, void* y, int64_t B, int64_t H,  \
                    int64_t L, int64_t D);
FXS_FOR_FLOAT_DTYPES(FXS_DECL_ROPE)

// attn_prep (rope.cu): ops.ts attnPrep with one or two segments along L. Segment s: x_s [B, L_s, C_s],
// its q, k, v columns start at col_s; q/k RMSNorm scales [Dh] (dtype codes). pe f32 [B|1, ΣL, Dh/2, 2, 2].
// q, k, v out [B, H, ΣL, Dh]. Dh even, <= 256.
typedef struct {
  const void* x;
  int64_t L, C, col;
  const void* qs;
  const void* ks;
  int qs_dtype, ks_dtype;
} FxsAttnSeg;
#define FXS_DECL_ATTN_PREP(dt)                                                                      \
  int fxs_attn_prep_##dt(FxsAttnSeg s0, FxsAttnSeg s1, int nseg, const float* pe, int pe_batched,   \
                         void* q, void* k, void* v, int64_t B, int64_t H, int64_t Ltot, int64_t Dh,  \
                         float eps);
FXS_FOR_FLOAT_DTYPES(FXS_DECL_ATTN_PREP)

// --- elementwise (elementwise.cu) -----------------------------------------------------------------
// gelu_concat: out [rows, Da + W] = [a | gelu_tanh(h[:, col : col + W])] with h [rows, C] (ops.ts geluConcat).
// amax (here and in modulated_layer_norm): null, or float bits raised to max|out| (ops.ts amaxOut).
#define FXS_DECL_GELU_CONCAT(dt)                                                                    \
  int fxs_gelu_concat_##dt(const void* a, const void* h, void* out, int64_t rows, int64_t Da,        \
                           int64_t C, int64_t col, int64_t W, void* amax);
FXS_FOR_FLOAT_DTYPES(FXS_DECL_GELU_CONCAT)
// binary: out dims (collapsed by the caller) with element strides of a and b (0 = broadcast).
#define FXS_DECL_ELEM(dt)                                                                           \
  int fxs_binary_##dt(int op, const void* a, const void* b, int b_dtype, void* out, int rank,       \
                      const int64_t* dims, const int64_t* stride_a, const int64_t* stride_b);       \
  int fxs_affine_##dt(const void* x, void* y, int64_t n, double mul, double add);                   \
  int fxs_activation_##dt(const void* x, void* y, int64_t n, int act);                              \
  int fxs_gated_residual_##dt(const void* x, const void* gate, int gate_dtype, const void* yin,     \
                              void* out, int64_t B, int64_t L, int64_t D);                          \
  int fxs_softmax_##dt(const void* x, void* y, int64_t rows, int64_t D);
FXS_FOR_FLOAT_DTYPES(FXS_DECL_ELEM)

// cast: any dtype -> the named dtype (RNE for bf16/f16/e4m3 exactly like dtype.ts; -> i32 truncates
// and wraps like a JS Int32Array store).
#define FXS_DECL_CAST(dt) int fxs_cast_to_##dt(const void* x, int x_dtype, void* y, int64_t n);
FXS_FOR_FLOAT_DTYPES(FXS_DECL_CAST)
FXS_DECL_CAST(i32)

// --- conv (conv.cu) -------------------------------------------------------------------------------
// x [B,C,H,W], w [O,C,kh,kw], bias [O] -> y [B,O,Ho,Wo]; padding top/left given, bottom/right are
// implied by Ho/Wo.
#define FXS_DECL_CONV(dt)                                                                           \
  int fxs_conv2d_##dt(const void* x, const void* w, int w_dtype, const void* bias, int bias_dtype,  \
                      void* y, int64_t B, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,   \
                      int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t Ho,       \
                      int64_t Wo);
FXS_FOR_FLOAT_DTYPES(FXS_DECL_CONV)

// --- layout (layout.cu): bit copies by element width ----------------------------------------------
#define FXS_FOR_WIDTHS(X) X(x32) X(x16) X(x8)
#define FXS_DECL_LAYOUT(w)                                                                          \
  int fxs_copy2d_##w(const void* src, int64_t src_stride, int64_t src_off, void* dst,               \
                     int64_t dst_stride, int64_t dst_off, int64_t rows, int64_t row_len);           \
  int fxs_permute_##w(const void* x, void* y, int64_t n, int rank, const int64_t* out_dims,         \
                      const int64_t* in_strides);                                                   \
  int fxs_split_heads_##w(const void* x, void* y, int64_t B, int64_t L, int64_t F, int64_t H,       \
                          int64_t D, int64_t part);                                                 \
  int fxs_upsample_nearest_##w(const void* x, void* y, int64_t BC, int64_t H, int64_t W,            \
                               int64_t factor);                                                     \
  int fxs_embedding_##w(const void* table, const int32_t* ids, void* y, int64_t n, int64_t D);
FXS_FOR_WIDTHS(FXS_DECL_LAYOUT)

#ifdef __cplusplus
}
#endif
