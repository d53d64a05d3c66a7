// graphs.cu — CUDA graph capture and replay of the one stream. While a graph is captured the
// allocator serves it from a pool of the graph's own (alloc.cu), which returns to the general
// cache when the graph is destroyed.
// Why: a denoising step is ~1000 launches issued from JS; captured once, it is one cudaGraphLaunch
// per step. Capture mode "relaxed" lets the allocator cudaMalloc while capturing; host transfers
// and waits are refused while capturing (the graph would replay a stale host source).
#include <cuda_runtime.h>
#include <stdint.h>

#include <atomic>
#include <mutex>

#include "fluxserve_cuda.h"
#include "runtime.cuh"

namespace {

using namespace fxs_rt;

std::atomic<uint64_t> g_graph_launches{0};

struct GraphExec {
  cudaGraphExec_t exec;
  int pool;
};

}  // namespace

extern "C" {

int fxs_graph_begin(void) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g_capture_pool) return (int)cudaErrorInvalidValue;
  const int pool = pool_new_locked();
  cudaError_t e = cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    pool_release_locked(pool);  // empty: only forgets it
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
