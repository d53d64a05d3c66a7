// alloc.cu — the caching allocator of device memory, and the graph pools it serves while capturing.
// Algorithm: size-bucketed free lists (sizes rounded up to 512 B below 1 MiB, then to one of 8
// classes per power of two, so at most 12.5% waste), reused stream-ordered: all work runs on one
// stream, so a block freed after its last use was enqueued can be handed to the next op at once,
// without a device sync. On cudaMalloc failure the cache is synchronised and released, and the
// allocation tried once more. Why: a denoising step allocates and frees a few hundred tensors;
// cudaMalloc/cudaFree each synchronise the device and would dominate a step.
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fluxserve_cuda.h"
#include "runtime.cuh"

namespace fxs_rt {
std::mutex g_mu;
int g_capture_pool = 0;
}  // namespace fxs_rt

namespace {

using namespace fxs_rt;

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
int g_next_pool = 1;
size_t g_allocated = 0, g_reserved = 0, g_peak = 0;

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

namespace fxs_rt {

int pool_new_locked() {
  const int pool = g_next_pool++;
  g_pools[pool];
  return pool;
}

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

}  // namespace fxs_rt

extern "C" {

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

}  // extern "C"
