// transfers.cu — copies on the stream: host uploads (small ones through a pinned staging ring,
// without a host wait), downloads, device copies and zeroing, and stream marks (the denoising
// loop's bounded run-ahead). Host transfers and marks are refused while a graph is captured.
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <vector>

#include "fluxserve_cuda.h"
#include "runtime.cuh"

namespace {

using namespace fxs_rt;

std::mutex g_staging_mu;
std::atomic<uint64_t> g_mark_waits{0};  // host waits for a mark (fxs_mark_wait)

// Pinned staging ring for small uploads. A copy from pageable JS memory must be waited for before
// the JS buffer may change, and each such wait drains the GPU's queue: the denoising loop uploads
// a timestep and a guidance value per step, so every step would start on an idle GPU (issue 7: no
// host synchronisation inside the loop). Small uploads are instead copied into pinned host memory
// and enqueued asynchronously; an event per chunk says when its bytes may be overwritten. Chunks
// are taken in ring order, so the chunks in the way of a new one are always the oldest; the host
// waits only when the stream lags more than the whole ring behind (FXS_STAGING_BYTES, default
// 4 MiB; uploads above a quarter of it, such as weights, take the blocking path).
struct StagingChunk {
  size_t begin, end;
  cudaEvent_t done;
};
char* g_staging = nullptr;
size_t g_staging_size = 0, g_staging_head = 0;
std::deque<StagingChunk> g_chunks;
std::vector<cudaEvent_t> g_spare_events;

size_t staging_size() {
  static const char* env = getenv("FXS_STAGING_BYTES");
  static const size_t n = env && *env ? strtoull(env, nullptr, 10) : (size_t(4) << 20);
  return n;
}

// Returns the staging offset for `bytes` after making that range free, or SIZE_MAX when staging is
// unavailable (no pinned memory); the caller then takes the blocking path.
size_t staging_take(size_t bytes, int* err) {
  *err = 0;
  if (!g_staging) {
    if (g_staging_size == SIZE_MAX) return SIZE_MAX;  // pinned allocation failed before
    if (cudaHostAlloc((void**)&g_staging, staging_size(), cudaHostAllocDefault) != cudaSuccess) {
      cudaGetLastError();
      g_staging = nullptr;
      g_staging_size = SIZE_MAX;
      return SIZE_MAX;
    }
    g_staging_size = staging_size();
  }
  size_t n = (bytes + 15) / 16 * 16;
  bool wrap = n > g_staging_size - g_staging_head;  // the tail [head, size) is skipped this lap
  size_t begin = wrap ? 0 : g_staging_head;
  size_t end = begin + n;
  // Retire the chunks in the way: those overlapping [begin, end), and on a wrap those in the skipped
  // tail too. They are the oldest ones, in ring order (tail first, then from offset 0 up).
  while (!g_chunks.empty()) {
    const StagingChunk& c = g_chunks.front();
    bool overlaps = (c.begin < end && begin < c.end) || (wrap && c.end > g_staging_head);
    const cudaError_t q = cudaEventQuery(c.done);
    if (q != cudaSuccess && q != cudaErrorNotReady) { *err = (int)q; return SIZE_MAX; }
    if (q == cudaErrorNotReady) cudaGetLastError();  // "not ready" is an answer, not an error to keep
    bool finished = q == cudaSuccess;
    if (!overlaps && !finished) break;
    if (!finished) {
      count_host_wait();
      cudaError_t e = cudaEventSynchronize(c.done);
      if (e != cudaSuccess) { *err = (int)e; return SIZE_MAX; }
    }
    g_spare_events.push_back(c.done);
    g_chunks.pop_front();
  }
  g_staging_head = end;
  return begin;
}

// An event (from the spare pool) recorded on the stream now. Call with g_staging_mu held.
cudaError_t record_event(cudaEvent_t* out) {
  cudaEvent_t ev = nullptr;
  cudaError_t e = cudaSuccess;
  if (!g_spare_events.empty()) {
    ev = g_spare_events.back();
    g_spare_events.pop_back();
  } else if ((e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming)) != cudaSuccess) {
    return e;
  }
  if ((e = cudaEventRecord(ev, g_stream)) != cudaSuccess) {
    g_spare_events.push_back(ev);
    return e;
  }
  *out = ev;
  return cudaSuccess;
}

int staged_upload(void* dst, const void* src, size_t bytes) {
  int err = 0;
  size_t off = staging_take(bytes, &err);
  if (err) return err;
  if (off == SIZE_MAX) return -1;
  memcpy(g_staging + off, src, bytes);
  cudaError_t e = cudaMemcpyAsync(dst, g_staging + off, bytes, cudaMemcpyHostToDevice, g_stream);
  if (e != cudaSuccess) return (int)e;
  cudaEvent_t ev = nullptr;
  if ((e = record_event(&ev)) != cudaSuccess) return (int)e;
  g_chunks.push_back({off, off + (bytes + 15) / 16 * 16, ev});
  return 0;
}

}  // namespace

extern "C" {

// Host transfers come from pageable JS memory. Small uploads go through the pinned staging ring
// without waiting; the rest (and every download) wait for their copy before returning.
int fxs_upload(void* dst, const void* src, size_t bytes) {
  if (g_capture_pool) return (int)cudaErrorStreamCaptureUnsupported;  // a graph would replay the host copy's source
  if (bytes == 0) return 0;
  std::lock_guard<std::mutex> lk(g_staging_mu);
  if (bytes <= staging_size() / 4) {
    int rc = staged_upload(dst, src, bytes);
    if (rc != -1) return rc;
  }
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g_stream);
  if (e != cudaSuccess) return (int)e;
  return stream_wait();
}

int fxs_download(void* dst, const void* src, size_t bytes) {
  if (g_capture_pool) return (int)cudaErrorStreamCaptureUnsupported;
  if (bytes == 0) return stream_wait();
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g_stream);
  if (e != cudaSuccess) return (int)e;
  return stream_wait();
}

// Stream marks: the host issues work ahead of the GPU; a mark (an event recorded on the stream) lets
// it wait until the work before the mark is done without draining what was queued after it. The
// denoising loop keeps at most two steps queued this way (progress and cancellation stay close to
// the GPU, which never runs dry).

int fxs_mark(void** out) {
  if (g_capture_pool) return (int)cudaErrorStreamCaptureUnsupported;
  std::lock_guard<std::mutex> lk(g_staging_mu);
  cudaEvent_t ev = nullptr;
  cudaError_t e = record_event(&ev);
  if (e == cudaSuccess) *out = (void*)ev;
  return (int)e;
}

int fxs_mark_wait(void* mark, int release) {
  if (!mark) return (int)cudaErrorInvalidValue;
  cudaError_t e = cudaSuccess;
  if (!release) {
    g_mark_waits++;
    e = cudaEventSynchronize((cudaEvent_t)mark);
  }
  std::lock_guard<std::mutex> lk(g_staging_mu);
  g_spare_events.push_back((cudaEvent_t)mark);
  return (int)e;
}

uint64_t fxs_mark_waits(void) { return g_mark_waits; }

int fxs_memset0(void* dst, size_t bytes) {
  if (bytes == 0) return 0;
  return (int)cudaMemsetAsync(dst, 0, bytes, g_stream);
}

int fxs_copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return 0;
  return (int)cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_stream);
}

}  // extern "C"
