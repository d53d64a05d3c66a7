// alloc.cu — the device, the one stream every launcher enqueues on, and a caching allocator.
// Algorithm: size-bucketed free lists (sizes rounded up to 512 B below 1 MiB, then to one of 8
// classes per power of two, so at most 12.5% waste), reused stream-ordered: all work runs on one
// stream, so a block freed after its last use was enqueued can be handed to the next op at once,
// without a device sync. On cudaMalloc failure the cache is synchronised and released, and the
// allocation tried once more. Why: a denoising step allocates and frees a few hundred tensors;
// cudaMalloc/cudaFree each synchronise the device and would dominate a step.
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fluxserve_cuda.h"

namespace {

std::mutex g_mu;
std::mutex g_staging_mu;
cudaStream_t g_stream = nullptr;
using FreeLists = std::map<size_t, std::vector<void*>>;  // class size -> cached blocks
FreeLists g_free;                                       // the general pool
struct Live {
  size_t size;  // class size
  int pool;     // 0: general; else the graph pool it was taken from
};
std::unordered_map<void*, Live> g_live;
// CUDA graphs (fxs_graph_*): work captured while g_capture_pool != 0 allocates from that graph's
// own pool, whose blocks no one else gets while the graph lives (its replays write them).
std::unordered_map<int, FreeLists> g_pools;
// General blocks freed while a graph is being captured: the graph may read them at every replay,
// so nobody gets them (not even the graph's own allocations) until the graph is destroyed.
std::unordered_map<int, std::vector<std::pair<void*, size_t>>> g_pool_held;
int g_capture_pool = 0, g_next_pool = 1;
std::atomic<uint64_t> g_graph_launches{0};
size_t g_allocated = 0, g_reserved = 0, g_peak = 0;
std::atomic<uint64_t> g_host_waits{0};  // times the host waited for the stream (synchronize, download, blocking upload)

int stream_wait() {
  g_host_waits++;
  return (int)cudaStreamSynchronize(g_stream);
}

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
      g_host_waits++;
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

struct GraphExec {
  cudaGraphExec_t exec;
  int pool;
};
// The pool's free blocks join the general cache, its live blocks become general ones.
void pool_release_locked(int pool) {
  auto it = g_pools.find(pool);
  if (it == g_pools.end()) return;
  for (auto& kv : it->second)
    for (void* p : kv.second) g_free[kv.first].push_back(p);
  for (auto& kv : g_live)
    if (kv.second.pool == pool) kv.second.pool = 0;
  for (auto& h : g_pool_held[pool]) g_free[h.second].push_back(h.first);
  g_pool_held.erase(pool);
  g_pools.erase(it);
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

size_t size_class(size_t n) {
  if (n == 0) n = 1;
#ifdef FXS_EMU
  // The CPU emulator's AddressSanitizer build must see each tensor's exact end.
  static const bool exact = getenv("FXS_EMU_EXACT_ALLOC") != nullptr;
  if (exact) return n;
#endif
  if (n <= (1u << 20)) return (n + 511) & ~size_t(511);
  size_t p = size_t(1) << (63 - __builtin_clzll(n - 1));  // largest power of two < n
  size_t step = p >> 3;
  return (n + step - 1) / step * step;
}

void release_cache_locked() {
  for (auto& kv : g_free) {
    for (void* p : kv.second) {
      cudaFree(p);
      g_reserved -= kv.first;
    }
  }
  g_free.clear();
}

}  // namespace

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

int fxs_malloc(size_t bytes, void** out) {
  std::lock_guard<std::mutex> lk(g_mu);
  size_t c = size_class(bytes);
  FreeLists& lists = g_capture_pool ? g_pools[g_capture_pool] : g_free;
  auto it = lists.find(c);
  void* p = nullptr;
  if (it != lists.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
  } else {
    cudaError_t e = cudaMalloc(&p, c);
    if (e != cudaSuccess && g_capture_pool) {  // no waiting while capturing: fail, the caller runs eagerly
      cudaGetLastError();
      *out = nullptr;
      return (int)e;
    }
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error state of a failed allocation
      stream_wait();
      release_cache_locked();
      e = cudaMalloc(&p, c);
      if (e != cudaSuccess) {
        cudaGetLastError();
        *out = nullptr;
        return (int)e;
      }
    }
    g_reserved += c;
  }
  g_live[p] = {c, g_capture_pool};
  g_allocated += c;
  if (g_allocated > g_peak) g_peak = g_allocated;
  *out = p;
  return 0;
}

int fxs_free(void* p) {
  if (!p) return 0;
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_live.find(p);
  if (it == g_live.end()) return (int)cudaErrorInvalidDevicePointer;
  const Live l = it->second;
  g_live.erase(it);
  g_allocated -= l.size;
  auto pool = l.pool ? g_pools.find(l.pool) : g_pools.end();
  if (pool == g_pools.end() && g_capture_pool) {
    g_pool_held[g_capture_pool].push_back({p, l.size});
    return 0;
  }
  // stream-ordered reuse: later work on g_stream runs after earlier uses
  (pool != g_pools.end() ? pool->second : g_free)[l.size].push_back(p);
  return 0;
}

int fxs_empty_cache(void) {
  std::lock_guard<std::mutex> lk(g_mu);
  int e = stream_wait();
  release_cache_locked();
  return e;
}

void fxs_mem_stats(size_t* allocated, size_t* reserved, size_t* peak_allocated) {
  std::lock_guard<std::mutex> lk(g_mu);
  *allocated = g_allocated;
  *reserved = g_reserved;
  *peak_allocated = g_peak;
}

void fxs_reset_peak(void) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_peak = g_allocated;
}

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

uint64_t fxs_host_waits(void) { return g_host_waits; }

// Stream marks: the host issues work ahead of the GPU; a mark (an event recorded on the stream) lets
// it wait until the work before the mark is done without draining what was queued after it. The
// denoising loop keeps at most two steps queued this way (progress and cancellation stay close to
// the GPU, which never runs dry).
std::atomic<uint64_t> g_mark_waits{0};

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

int fxs_synchronize(void) { return g_capture_pool ? (int)cudaErrorStreamCaptureUnsupported : stream_wait(); }

// ---- CUDA graphs ------------------------------------------------------------------------------------
// A denoising step is ~1000 launches issued from JS; captured once, it is one cudaGraphLaunch per
// step. Capture mode "relaxed" lets the allocator cudaMalloc while capturing; host transfers and
// waits are refused while capturing (the graph would replay a stale host source).

int fxs_graph_begin(void) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g_capture_pool) return (int)cudaErrorInvalidValue;
  const int pool = g_next_pool++;
  g_pools[pool];
  cudaError_t e = cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    g_pools.erase(pool);
    return (int)e;
  }
  g_capture_pool = pool;
  return 0;
}

int fxs_graph_end(int abort, void** out) {
  *out = nullptr;
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_capture_pool) return (int)cudaErrorInvalidValue;
  const int pool = g_capture_pool;
  g_capture_pool = 0;
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(g_stream, &graph);
  cudaGraphExec_t exec = nullptr;
  if (e == cudaSuccess && !abort) e = cudaGraphInstantiate(&exec, graph, 0);
  if (graph) cudaGraphDestroy(graph);
  if (e != cudaSuccess || abort) {
    cudaGetLastError();
    pool_release_locked(pool);
    return abort ? 0 : (int)e;
  }
  *out = new GraphExec{exec, pool};
  return 0;
}

int fxs_graph_launch(void* graph) {
  if (!graph || g_capture_pool) return (int)cudaErrorInvalidValue;
  g_graph_launches++;
  return (int)cudaGraphLaunch(((GraphExec*)graph)->exec, g_stream);
}

int fxs_graph_destroy(void* graph) {
  if (!graph) return 0;
  GraphExec* g = (GraphExec*)graph;
  int e = stream_wait();  // no launch of it still pending
  cudaGraphExecDestroy(g->exec);
  std::lock_guard<std::mutex> lk(g_mu);
  pool_release_locked(g->pool);
  delete g;
  return e;
}

uint64_t fxs_graph_launches(void) { return g_graph_launches; }

}  // extern "C"
