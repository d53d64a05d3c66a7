// device.cu — the device and the one stream every launcher enqueues on: init, device info,
// error strings, and the host's waits for the stream (counted: the denoising loop must not drain
// the GPU, and the tests check that it does not).
#include <cuda_runtime.h>
#include <stdint.h>

#include <atomic>
#include <mutex>

#include "fluxserve_cuda.h"
#include "runtime.cuh"

namespace {
std::atomic<uint64_t> g_host_waits{0};  // times the host waited for the stream (synchronize, download, blocking upload)
}  // namespace

namespace fxs_rt {

cudaStream_t g_stream = nullptr;

int stream_wait() {
  g_host_waits++;
  return (int)cudaStreamSynchronize(g_stream);
}

void count_host_wait() { g_host_waits++; }

}  // namespace fxs_rt

using namespace fxs_rt;

extern "C" {

int fxs_init(int device) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g_stream) return 0;
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) return (int)e;
  e = cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking);
  return (int)e;
}

int fxs_device_count(int* count) {
  *count = 0;
  return (int)cudaGetDeviceCount(count);
}

int fxs_device_info(char* name, int name_len, int* cc_major, int* cc_minor, size_t* total_mem) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return (int)e;
  cudaDeviceProp prop;
  e = cudaGetDeviceProperties(&prop, dev);
  if (e != cudaSuccess) return (int)e;
  int i = 0;
  for (; i < name_len - 1 && prop.name[i]; i++) name[i] = prop.name[i];
  if (name_len > 0) name[i] = 0;
  *cc_major = prop.major;
  *cc_minor = prop.minor;
  *total_mem = prop.totalGlobalMem;
  return 0;
}

const char* fxs_error_string(int code) { return cudaGetErrorString((cudaError_t)code); }

void* fxs_stream(void) { return (void*)g_stream; }

int fxs_synchronize(void) { return g_capture_pool ? (int)cudaErrorStreamCaptureUnsupported : stream_wait(); }

uint64_t fxs_host_waits(void) { return g_host_waits; }

}  // extern "C"
