// fluxserve_cuda.h — the only interface between the N-API layer (addon.cc) and the kernels.
// A stable C ABI: every launcher is `extern "C"`, returns 0 or a cudaError_t code, takes raw
// device pointers, element counts/shapes as int64_t, and enqueues on the library's one stream.
// Names carry the dtype of the op's main tensor (its input x and output, which ops.ts makes the
// same): _f32, _bf16, _f16, _f8e4m3. Secondary operands (weights, biases, modulation vectors,
// the binary op's b) may have another float dtype and are passed with a FXS_DT_* code. Layout
// ops copy bits, so theirs carry the element width: _x32, _x16, _x8. cast carries the target.
// The launchers the addon exports, and the dtype/activation/op codes, are declared in ops.gen.h,
// generated from the op table (src/tensor/cuda/op-table.ts); the runtime calls below are the rest.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// attn_prep's segments (rope.cu): x_s [B, L_s, C_s], its q, k, v columns start at col_s; q/k
// RMSNorm scales [Dh] with their dtype codes.
typedef struct {
  const void* x;
  int64_t L, C, col;
  const void* qs;
  const void* ks;
  int qs_dtype, ks_dtype;
} FxsAttnSeg;

#include "ops.gen.h"

// --- device, stream, memory (device.cu, alloc.cu, transfers.cu, graphs.cu) ----------------------
// (malloc, free, empty_cache, synchronize, memset0, copy_bytes, mark, mark_wait and graph_* are in
// ops.gen.h)
int fxs_init(int device);
int fxs_device_count(int* count);
int fxs_device_info(char* name, int name_len, int* cc_major, int* cc_minor, size_t* total_mem);
int fxs_has_cublaslt(void);
const char* fxs_error_string(int code);
void* fxs_stream(void);
void fxs_mem_stats(size_t* allocated, size_t* reserved, size_t* peak_allocated);
void fxs_reset_peak(void);
// Host transfers from pageable memory (small uploads through the pinned staging ring).
int fxs_upload(void* dst, const void* src, size_t bytes);
int fxs_download(void* dst, const void* src, size_t bytes);
/** How many times the host has waited for the stream (synchronize, downloads, blocking uploads). */
uint64_t fxs_host_waits(void);
/** How many times the host has waited for a mark (fxs_mark_wait without release). */
uint64_t fxs_mark_waits(void);
/** CUDA graph replays enqueued (fxs_graph_launch). */
uint64_t fxs_graph_launches(void);

/**
 * The Hopper (wgmma) attention kernel's state after its self-check against the mma.sync kernel,
 * which this call runs first if no eligible attention call has yet: "on (...)" or "off (why)".
 */
const char* fxs_attention_wgmma_check(void);

#ifdef __cplusplus
}
#endif
