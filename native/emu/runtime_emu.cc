// native/emu/runtime_emu.cc — the CUDA runtime API calls the library uses, on host memory: the
// one emulated device (reported as sm_90), errors, memory (fresh blocks filled with 0xff, an
// optional FXS_EMU_MEM_LIMIT), copies, events, the stream, and graphs that record the captured ops
// and replay them. Nothing here is used by the real CUDA build.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <vector>

#include "cuda_runtime.h"
#include "emu_state.h"

using fxs_emu::g_last;

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDevice(int* device) { *device = 0; return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int* count) { *count = 1; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int) {
  memset(prop, 0, sizeof *prop);
  snprintf(prop->name, sizeof prop->name, "fluxserve CPU emulator");
  prop->totalGlobalMem = (size_t)16 << 30;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 132;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->l2CacheSize = 50u << 20;
  return cudaSuccess;
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulator: see stderr)";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    default: return "unknown error";
  }
}
cudaError_t cudaGetLastError(void) {
  cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return g_last; }

static size_t g_in_use = 0;  // bytes held by cudaMalloc (FXS_EMU_MEM_LIMIT tests the allocator's retry)

// Fresh device memory is filled with 0xff bytes (NaN in f32/bf16/f16/e4m3) so that a kernel that
// reads what nothing wrote, or leaves part of its output unwritten, shows up as NaN.
cudaError_t cudaMalloc(void** p, size_t bytes) {
  static const size_t limit = getenv("FXS_EMU_MEM_LIMIT") ? strtoull(getenv("FXS_EMU_MEM_LIMIT"), nullptr, 10) : 0;
  if (limit && g_in_use + bytes > limit) {
    *p = nullptr;
    g_last = cudaErrorMemoryAllocation;
    return cudaErrorMemoryAllocation;
  }
  size_t* raw = (size_t*)malloc(bytes + 16);
  if (!raw) { *p = nullptr; return cudaErrorMemoryAllocation; }
  raw[0] = bytes;
  g_in_use += bytes;
  *p = (char*)raw + 16;
  memset(*p, 0xff, bytes);
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  size_t* raw = (size_t*)((char*)p - 16);
  g_in_use -= raw[0];
  free(raw);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t s) {
  if (fxs_emu::record_if_capturing([=]() { return cudaMemcpyAsync(dst, src, bytes, k, s); })) return cudaSuccess;
  if (bytes) memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind k) { return cudaMemcpyAsync(dst, src, bytes, k, nullptr); }
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s) {
  if (fxs_emu::record_if_capturing([=]() { return cudaMemsetAsync(dst, value, bytes, s); })) return cudaSuccess;
  if (bytes) memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  *p = malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void* p) {
  free(p);
  return cudaSuccess;
}
struct fxs_emu_event {
  bool recorded = false;
};
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new fxs_emu_event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  if (!e) return cudaErrorInvalidValue;
  e->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return e ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaEventSynchronize(cudaEvent_t e) { return e ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  static int token;
  *s = (cudaStream_t)&token;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return fxs_emu::g_capture ? cudaErrorStreamCaptureUnsupported : cudaSuccess; }

struct fxs_emu_graph {
  std::vector<std::function<cudaError_t()>> ops;
};
cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
  if (fxs_emu::g_capture) return cudaErrorInvalidValue;
  fxs_emu::g_capture = new std::vector<std::function<cudaError_t()>>();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t* g) {
  if (!fxs_emu::g_capture) return cudaErrorInvalidValue;
  *g = new fxs_emu_graph{std::move(*fxs_emu::g_capture)};
  delete fxs_emu::g_capture;
  fxs_emu::g_capture = nullptr;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  if (!g) return cudaErrorInvalidValue;
  *e = new fxs_emu_graph{g->ops};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
  if (!e || fxs_emu::g_capture) return cudaErrorInvalidValue;
  for (auto& op : e->ops) {
    cudaError_t r = op();
    if (r != cudaSuccess) return r;
  }
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaFuncSetAttribute(const void*, int, int) { return cudaSuccess; }
