// runtime.cuh — what the runtime files (device.cu, alloc.cu, transfers.cu, graphs.cu) share
// inside the library: the one stream, host-wait counting, and the allocator's lock and capture
// state (graphs.cu switches allocations to a graph's own pool). Not part of the C ABI.
#pragma once
#include <cuda_runtime.h>

#include <mutex>

namespace fxs_rt {

/** The stream every launcher enqueues on (device.cu). */
extern cudaStream_t g_stream;
/** Waits for the stream and counts the host wait (device.cu). */
int stream_wait();
/** Counts a host wait that is not a stream wait (a staging event, transfers.cu). */
void count_host_wait();

/** The allocator's lock (alloc.cu). */
extern std::mutex g_mu;
/** The graph pool allocations come from while a graph is being captured; 0: none (alloc.cu). */
extern int g_capture_pool;
/** A new, empty graph pool (call with g_mu held). */
int pool_new_locked();
/** The pool's free blocks join the general cache, its live blocks become general ones (g_mu held). */
void pool_release_locked(int pool);

}  // namespace fxs_rt
