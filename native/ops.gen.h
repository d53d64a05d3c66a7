// Generated from src/tensor/cuda/op-table.ts by scripts/gen-addon-ops.ts; do not edit by hand.
// The codes and launcher declarations of the addon op table; included by fluxserve_cuda.h inside
// its extern "C" block, after FxsAttnSeg.
#pragma once

// dtype codes, in the order of src/tensor/dtype.ts DTYPES
enum { FXS_DT_F32 = 0, FXS_DT_BF16 = 1, FXS_DT_F16 = 2, FXS_DT_F8E4M3 = 3, FXS_DT_I32 = 4 };
// activation codes (backend.ts Activation)
enum { FXS_ACT_NONE = 0, FXS_ACT_GELU_TANH = 1, FXS_ACT_GELU = 2, FXS_ACT_SILU = 3, FXS_ACT_QUICK_GELU = 4 };
// binary op codes (backend.ts BinaryOp)
enum { FXS_OP_ADD = 0, FXS_OP_SUB = 1, FXS_OP_MUL = 2 };
#define FXS_MAX_RANK 8
#define FXS_FOR_FLOAT_DTYPES(X) X(f32) X(bf16) X(f16) X(f8e4m3)
#define FXS_FOR_WIDTHS(X) X(x32) X(x16) X(x8)

// malloc (alloc.cu): a block of the caching allocator
int fxs_malloc(size_t bytes, void** out);

// free (alloc.cu): back to the cache (stream-ordered reuse); null is a no-op
int fxs_free(void* p);

// emptyCache (alloc.cu): waits for the stream, gives the cached free blocks back to the driver
int fxs_empty_cache(void);

// synchronize (device.cu): waits for the stream (a host wait)
int fxs_synchronize(void);

// memset0 (transfers.cu): zeroes bytes on the stream
int fxs_memset0(void* dst, size_t bytes);

// copyBytes (transfers.cu): device-to-device copy on the stream
int fxs_copy_bytes(void* dst, const void* src, size_t bytes);

// mark (transfers.cu): records a mark (an event) on the stream
int fxs_mark(void** out);

// markWait (transfers.cu): waits for a mark (release = 1: only gives it back)
int fxs_mark_wait(void* mark, int release);

// graphBegin (graphs.cu): starts capturing the stream: allocations come from a pool of the graph's
// own; host transfers and waits fail with cudaErrorStreamCaptureUnsupported
int fxs_graph_begin(void);

// graphEnd (graphs.cu): instantiates what was captured (abort = 1 drops it; the graph is then null)
int fxs_graph_end(int abort, void** out);

// graphLaunch (graphs.cu): enqueues a replay
int fxs_graph_launch(void* graph);

// graphDestroy (graphs.cu): waits for the stream, frees the graph and returns its pool
int fxs_graph_destroy(void* graph);

// gemm (gemm.cu): C[b] = act(alpha · A[b]·op(B[b]) + bias). A [M,K] main dtype; B [N,K] when bNK
// else [K,N]; strides in elements between batch items (0 = broadcast). Rounding: once after the
// bias, and once more after the activation (ops.ts linear).
int fxs_gemm_f32(const void* a, const void* b, int b_dt, void* c, int64_t batch, int64_t M, int64_t N, int64_t K, int b_nk, int64_t stride_a, int64_t stride_b, int64_t stride_c, const void* bias, int bias_dt, float alpha, int act);
int fxs_gemm_bf16(const void* a, const void* b, int b_dt, void* c, int64_t batch, int64_t M, int64_t N, int64_t K, int b_nk, int64_t stride_a, int64_t stride_b, int64_t stride_c, const void* bias, int bias_dt, float alpha, int act);
int fxs_gemm_f16(const void* a, const void* b, int b_dt, void* c, int64_t batch, int64_t M, int64_t N, int64_t K, int b_nk, int64_t stride_a, int64_t stride_b, int64_t stride_c, const void* bias, int bias_dt, float alpha, int act);
int fxs_gemm_f8e4m3(const void* a, const void* b, int b_dt, void* c, int64_t batch, int64_t M, int64_t N, int64_t K, int b_nk, int64_t stride_a, int64_t stride_b, int64_t stride_c, const void* bias, int bias_dt, float alpha, int act);

// linearFp8In (gemm.cu): y[M,N] = act(wScale · s_x · e4m3(x / s_x)·w8ᵀ + bias) with s_x = max|x| /
// 448 computed on the device (ops.ts linear quantizeInput 'f8e4m3'); w8 e4m3 [N,K]. Not for an fp8
// x (invalid value). amax: null, or max|x| as float bits already computed by x's producer (ops.ts
// inputAmax).
int fxs_linear_fp8in_f32(const void* x, const void* w8, void* y, int64_t M, int64_t N, int64_t K, const void* bias, int bias_dt, float w_scale, int act, const void* amax);
int fxs_linear_fp8in_bf16(const void* x, const void* w8, void* y, int64_t M, int64_t N, int64_t K, const void* bias, int bias_dt, float w_scale, int act, const void* amax);
int fxs_linear_fp8in_f16(const void* x, const void* w8, void* y, int64_t M, int64_t N, int64_t K, const void* bias, int bias_dt, float w_scale, int act, const void* amax);
int fxs_linear_fp8in_f8e4m3(const void* x, const void* w8, void* y, int64_t M, int64_t N, int64_t K, const void* bias, int bias_dt, float w_scale, int act, const void* amax);

// absMax (gemm.cu): max |x[i]| (NaN ignored), read back to the host: waits for the stream.
int fxs_absmax_f32(const void* x, int64_t n, float* out);
int fxs_absmax_bf16(const void* x, int64_t n, float* out);
int fxs_absmax_f16(const void* x, int64_t n, float* out);
int fxs_absmax_f8e4m3(const void* x, int64_t n, float* out);

// attention (attention.cu): q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv] -> out [B,Lq,H*Dv]; bias
// element (b,h,i,j) at b*biasSB + h*biasSH + i*Lk + j. D, Dv <= 128.
int fxs_attention_f32(const void* q, const void* k, const void* v, const void* bias, int bias_dt, int64_t bias_sb, int64_t bias_sh, void* out, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, int64_t Dv, float scale, int causal);
int fxs_attention_bf16(const void* q, const void* k, const void* v, const void* bias, int bias_dt, int64_t bias_sb, int64_t bias_sh, void* out, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, int64_t Dv, float scale, int causal);
int fxs_attention_f16(const void* q, const void* k, const void* v, const void* bias, int bias_dt, int64_t bias_sb, int64_t bias_sh, void* out, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, int64_t Dv, float scale, int causal);
int fxs_attention_f8e4m3(const void* q, const void* k, const void* v, const void* bias, int bias_dt, int64_t bias_sb, int64_t bias_sh, void* out, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, int64_t Dv, float scale, int causal);

// rope (rope.cu): x [B,H,L,D], pe f32 [B|1, L, D/2, 2, 2] (peBatched = pe has B rows).
int fxs_rope_f32(const void* x, const float* pe, int pe_batched, void* y, int64_t B, int64_t H, int64_t L, int64_t D);
int fxs_rope_bf16(const void* x, const float* pe, int pe_batched, void* y, int64_t B, int64_t H, int64_t L, int64_t D);
int fxs_rope_f16(const void* x, const float* pe, int pe_batched, void* y, int64_t B, int64_t H, int64_t L, int64_t D);
int fxs_rope_f8e4m3(const void* x, const float* pe, int pe_batched, void* y, int64_t B, int64_t H, int64_t L, int64_t D);

// attnPrep (rope.cu): ops.ts attnPrep with one or two segments along L (FxsAttnSeg). pe f32 [B|1,
// ΣL, Dh/2, 2, 2]. q, k, v out [B, H, ΣL, Dh]. Dh even, <= 256.
int fxs_attn_prep_f32(FxsAttnSeg s0, FxsAttnSeg s1, int nseg, const float* pe, int pe_batched, void* q, void* k, void* v, int64_t B, int64_t H, int64_t Ltot, int64_t Dh, float eps);
int fxs_attn_prep_bf16(FxsAttnSeg s0, FxsAttnSeg s1, int nseg, const float* pe, int pe_batched, void* q, void* k, void* v, int64_t B, int64_t H, int64_t Ltot, int64_t Dh, float eps);
int fxs_attn_prep_f16(FxsAttnSeg s0, FxsAttnSeg s1, int nseg, const float* pe, int pe_batched, void* q, void* k, void* v, int64_t B, int64_t H, int64_t Ltot, int64_t Dh, float eps);
int fxs_attn_prep_f8e4m3(FxsAttnSeg s0, FxsAttnSeg s1, int nseg, const float* pe, int pe_batched, void* q, void* k, void* v, int64_t B, int64_t H, int64_t Ltot, int64_t Dh, float eps);

// layerNorm (norm.cu): y = layer_norm(x) over rows of D, optional weight and bias
int fxs_layer_norm_f32(const void* x, const void* w, int w_dt, const void* b, int b_dt, void* y, int64_t rows, int64_t D, float eps);
int fxs_layer_norm_bf16(const void* x, const void* w, int w_dt, const void* b, int b_dt, void* y, int64_t rows, int64_t D, float eps);
int fxs_layer_norm_f16(const void* x, const void* w, int w_dt, const void* b, int b_dt, void* y, int64_t rows, int64_t D, float eps);
int fxs_layer_norm_f8e4m3(const void* x, const void* w, int w_dt, const void* b, int b_dt, void* y, int64_t rows, int64_t D, float eps);

// rmsNorm (norm.cu): y = rms_norm(x) over rows of D, optional weight
int fxs_rms_norm_f32(const void* x, const void* w, int w_dt, void* y, int64_t rows, int64_t D, float eps);
int fxs_rms_norm_bf16(const void* x, const void* w, int w_dt, void* y, int64_t rows, int64_t D, float eps);
int fxs_rms_norm_f16(const void* x, const void* w, int w_dt, void* y, int64_t rows, int64_t D, float eps);
int fxs_rms_norm_f8e4m3(const void* x, const void* w, int w_dt, void* y, int64_t rows, int64_t D, float eps);

// groupNorm (norm.cu): y = act(group_norm(x)) for x [B, C, S], weight and bias [C]
int fxs_group_norm_f32(const void* x, const void* w, int w_dt, const void* b, int b_dt, void* y, int64_t B, int64_t C, int64_t S, int64_t groups, float eps, int act);
int fxs_group_norm_bf16(const void* x, const void* w, int w_dt, const void* b, int b_dt, void* y, int64_t B, int64_t C, int64_t S, int64_t groups, float eps, int act);
int fxs_group_norm_f16(const void* x, const void* w, int w_dt, const void* b, int b_dt, void* y, int64_t B, int64_t C, int64_t S, int64_t groups, float eps, int act);
int fxs_group_norm_f8e4m3(const void* x, const void* w, int w_dt, const void* b, int b_dt, void* y, int64_t B, int64_t C, int64_t S, int64_t groups, float eps, int act);

// modulatedLayerNorm (norm.cu): y = (1 + scale)·layer_norm(x) + shift for x [B, L, D], shift/scale
// [B, D]. amax: null, or float bits raised to max|y| (ops.ts amaxOut).
int fxs_modulated_layer_norm_f32(const void* x, const void* shift, int shift_dt, const void* scale, int scale_dt, void* y, int64_t B, int64_t L, int64_t D, float eps, void* amax);
int fxs_modulated_layer_norm_bf16(const void* x, const void* shift, int shift_dt, const void* scale, int scale_dt, void* y, int64_t B, int64_t L, int64_t D, float eps, void* amax);
int fxs_modulated_layer_norm_f16(const void* x, const void* shift, int shift_dt, const void* scale, int scale_dt, void* y, int64_t B, int64_t L, int64_t D, float eps, void* amax);
int fxs_modulated_layer_norm_f8e4m3(const void* x, const void* shift, int shift_dt, const void* scale, int scale_dt, void* y, int64_t B, int64_t L, int64_t D, float eps, void* amax);

// geluConcat (elementwise.cu): out [rows, Da + W] = [a | gelu_tanh(h[:, col : col + W])] with h
// [rows, C] (ops.ts geluConcat). amax: null, or float bits raised to max|out| (ops.ts amaxOut).
int fxs_gelu_concat_f32(const void* a, const void* h, void* out, int64_t rows, int64_t Da, int64_t C, int64_t col, int64_t W, void* amax);
int fxs_gelu_concat_bf16(const void* a, const void* h, void* out, int64_t rows, int64_t Da, int64_t C, int64_t col, int64_t W, void* amax);
int fxs_gelu_concat_f16(const void* a, const void* h, void* out, int64_t rows, int64_t Da, int64_t C, int64_t col, int64_t W, void* amax);
int fxs_gelu_concat_f8e4m3(const void* a, const void* h, void* out, int64_t rows, int64_t Da, int64_t C, int64_t col, int64_t W, void* amax);

// binary (elementwise.cu): out = a op b over out dims (collapsed by the caller) with element
// strides of a and b (0 = broadcast).
int fxs_binary_f32(int op, const void* a, const void* b, int b_dt, void* out, int rank, const int64_t* dims, const int64_t* stride_a, const int64_t* stride_b);
int fxs_binary_bf16(int op, const void* a, const void* b, int b_dt, void* out, int rank, const int64_t* dims, const int64_t* stride_a, const int64_t* stride_b);
int fxs_binary_f16(int op, const void* a, const void* b, int b_dt, void* out, int rank, const int64_t* dims, const int64_t* stride_a, const int64_t* stride_b);
int fxs_binary_f8e4m3(int op, const void* a, const void* b, int b_dt, void* out, int rank, const int64_t* dims, const int64_t* stride_a, const int64_t* stride_b);

// affine (elementwise.cu): y = x·mul + add
int fxs_affine_f32(const void* x, void* y, int64_t n, double mul, double add);
int fxs_affine_bf16(const void* x, void* y, int64_t n, double mul, double add);
int fxs_affine_f16(const void* x, void* y, int64_t n, double mul, double add);
int fxs_affine_f8e4m3(const void* x, void* y, int64_t n, double mul, double add);

// activation (elementwise.cu): y = act(x)
int fxs_activation_f32(const void* x, void* y, int64_t n, int act);
int fxs_activation_bf16(const void* x, void* y, int64_t n, int act);
int fxs_activation_f16(const void* x, void* y, int64_t n, int act);
int fxs_activation_f8e4m3(const void* x, void* y, int64_t n, int act);

// gatedResidual (elementwise.cu): out = x + gate·yin for x, yin [B, L, D], gate [B, D]
int fxs_gated_residual_f32(const void* x, const void* gate, int gate_dt, const void* yin, void* out, int64_t B, int64_t L, int64_t D);
int fxs_gated_residual_bf16(const void* x, const void* gate, int gate_dt, const void* yin, void* out, int64_t B, int64_t L, int64_t D);
int fxs_gated_residual_f16(const void* x, const void* gate, int gate_dt, const void* yin, void* out, int64_t B, int64_t L, int64_t D);
int fxs_gated_residual_f8e4m3(const void* x, const void* gate, int gate_dt, const void* yin, void* out, int64_t B, int64_t L, int64_t D);

// softmax (elementwise.cu): y = softmax(x) over rows of D
int fxs_softmax_f32(const void* x, void* y, int64_t rows, int64_t D);
int fxs_softmax_bf16(const void* x, void* y, int64_t rows, int64_t D);
int fxs_softmax_f16(const void* x, void* y, int64_t rows, int64_t D);
int fxs_softmax_f8e4m3(const void* x, void* y, int64_t rows, int64_t D);

// cast (elementwise.cu): any dtype -> the named dtype (RNE for bf16/f16/e4m3 exactly like dtype.ts;
// -> i32 truncates and wraps like a JS Int32Array store).
int fxs_cast_to_f32(const void* x, int x_dt, void* y, int64_t n);
int fxs_cast_to_bf16(const void* x, int x_dt, void* y, int64_t n);
int fxs_cast_to_f16(const void* x, int x_dt, void* y, int64_t n);
int fxs_cast_to_f8e4m3(const void* x, int x_dt, void* y, int64_t n);
int fxs_cast_to_i32(const void* x, int x_dt, void* y, int64_t n);

// conv2d (conv.cu): x [B,C,H,W], w [O,C,kh,kw], bias [O] -> y [B,O,Ho,Wo]; padding top/left given,
// bottom/right are implied by Ho/Wo.
int fxs_conv2d_f32(const void* x, const void* w, int w_dt, const void* bias, int bias_dt, void* y, int64_t B, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t Ho, int64_t Wo);
int fxs_conv2d_bf16(const void* x, const void* w, int w_dt, const void* bias, int bias_dt, void* y, int64_t B, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t Ho, int64_t Wo);
int fxs_conv2d_f16(const void* x, const void* w, int w_dt, const void* bias, int bias_dt, void* y, int64_t B, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t Ho, int64_t Wo);
int fxs_conv2d_f8e4m3(const void* x, const void* w, int w_dt, const void* bias, int bias_dt, void* y, int64_t B, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t Ho, int64_t Wo);

// copy2d (layout.cu): rows of rowLen elements from src (row stride, offset) to dst (row stride,
// offset)
int fxs_copy2d_x32(const void* src, int64_t src_stride, int64_t src_off, void* dst, int64_t dst_stride, int64_t dst_off, int64_t rows, int64_t row_len);
int fxs_copy2d_x16(const void* src, int64_t src_stride, int64_t src_off, void* dst, int64_t dst_stride, int64_t dst_off, int64_t rows, int64_t row_len);
int fxs_copy2d_x8(const void* src, int64_t src_stride, int64_t src_off, void* dst, int64_t dst_stride, int64_t dst_off, int64_t rows, int64_t row_len);

// permute (layout.cu): y (row-major over outDims) [i] = x[Σ index_d · inStrides[d]]
int fxs_permute_x32(const void* x, void* y, int64_t n, int rank, const int64_t* out_dims, const int64_t* in_strides);
int fxs_permute_x16(const void* x, void* y, int64_t n, int rank, const int64_t* out_dims, const int64_t* in_strides);
int fxs_permute_x8(const void* x, void* y, int64_t n, int rank, const int64_t* out_dims, const int64_t* in_strides);

// splitHeads (layout.cu): y [B, H, L, D] = part `part` of x [B, L, F] (ops.ts splitHeads: part p,
// head h is columns [(p·H + h)·D, (p·H + h + 1)·D))
int fxs_split_heads_x32(const void* x, void* y, int64_t B, int64_t L, int64_t F, int64_t H, int64_t D, int64_t part);
int fxs_split_heads_x16(const void* x, void* y, int64_t B, int64_t L, int64_t F, int64_t H, int64_t D, int64_t part);
int fxs_split_heads_x8(const void* x, void* y, int64_t B, int64_t L, int64_t F, int64_t H, int64_t D, int64_t part);

// upsampleNearest (layout.cu): y [BC, H·factor, W·factor] = nearest-neighbour upsampling of x [BC,
// H, W]
int fxs_upsample_nearest_x32(const void* x, void* y, int64_t BC, int64_t H, int64_t W, int64_t factor);
int fxs_upsample_nearest_x16(const void* x, void* y, int64_t BC, int64_t H, int64_t W, int64_t factor);
int fxs_upsample_nearest_x8(const void* x, void* y, int64_t BC, int64_t H, int64_t W, int64_t factor);

// embedding (layout.cu): y [n, D] = table rows ids[0..n)
int fxs_embedding_x32(const void* table, const int32_t* ids, void* y, int64_t n, int64_t D);
int fxs_embedding_x16(const void* table, const int32_t* ids, void* y, int64_t n, int64_t D);
int fxs_embedding_x8(const void* table, const int32_t* ids, void* y, int64_t n, int64_t D);
