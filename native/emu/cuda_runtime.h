// native/emu/cuda_runtime.h — the CUDA runtime as seen by native/*.cu, emulated on the CPU.
//
// Why: the CUDA kernels can only run where a GPU is lent, which is rare. This header (with
// emu.cc) lets the very same kernel sources run on any machine: scripts/build-native-emu.mjs
// rewrites each `kernel<<<grid, block, smem, stream>>>(args)` into `fxs_emu::launch(...)`, compiles
// native/*.cu as C++ with this folder first on the include path, and links build/emu/fluxserve_cuda.node,
// which the TypeScript CUDA backend loads like the real addon (FLUXSERVE_CUDA_ADDON).
//
// Model: one CPU thread runs the blocks of a launch one after another; the threads of a block are
// fibers (ucontext) that switch only at __syncthreads, warp shuffles and __syncwarp, so a kernel
// sees real block-level concurrency (shared memory, barriers, lanes exchanging values) and a
// missing barrier or a shuffle from an exited lane is reported instead of silently passing.
// Device memory is host memory; streams are synchronous; errors are sticky per launch like CUDA's
// (cudaGetLastError returns and clears them). Not emulated: timing, memory coalescing, bank
// conflicts, races between blocks (blocks run in order), device limits beyond 1024 threads/block.
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <type_traits>

#define FXS_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
// Blocks run one at a time on one thread, so a function-local static is exactly one block's
// shared memory (and, unlike thread_local, AddressSanitizer puts redzones around it).
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};

typedef enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorNoDevice = 100,
  cudaErrorNotSupported = 801,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
  cudaErrorStreamCaptureUnsupported = 900,
} cudaError_t;
typedef struct fxs_emu_stream* cudaStream_t;
typedef struct fxs_emu_event* cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4 };
#define cudaStreamNonBlocking 0x01
typedef enum cudaDataType_t { CUDA_R_16F = 2, CUDA_R_32F = 0, CUDA_R_16BF = 14, CUDA_R_8F_E4M3 = 28 } cudaDataType;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor;
  int multiProcessorCount;
  size_t sharedMemPerBlock;
  size_t l2CacheSize;
};

cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s = nullptr);
#define cudaHostAllocDefault 0x00
#define cudaEventDisableTiming 0x02
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* p);
// Streams are synchronous here, so an event is complete as soon as it is recorded.
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
// Graphs: between Begin and EndCapture, launches, copies and memsets (and emulated cuBLASLt calls)
// are recorded instead of run; a launch of the instantiated graph runs them in order.
typedef struct fxs_emu_graph* cudaGraph_t;
typedef struct fxs_emu_graph* cudaGraphExec_t;
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1, cudaStreamCaptureModeRelaxed = 2 };
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaFuncSetAttribute(const void* f, int attr, int value);
template <class F>
cudaError_t cudaFuncSetAttribute(F* f, int attr, int value) { return cudaFuncSetAttribute((const void*)f, attr, value); }
#define cudaFuncAttributeMaxDynamicSharedMemorySize 8

// ---- the emulator's scheduler (emu.cc) -----------------------------------------------------------
namespace fxs_emu {

struct Thread;  // one fiber
extern thread_local Thread* cur;
const dim3& thread_idx();
const dim3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
int lane_id();
void syncthreads();
void syncwarp();
/** Deposit `bits` (up to 8 bytes) for this lane, wait for the warp, read lane `src`'s deposit. */
uint64_t warp_exchange(uint64_t bits, int src, unsigned mask);
/** Every lane of the warp deposits `n` 32-bit words; after the call `all[lane * n + i]` holds them. */
void warp_gather(const uint32_t* mine, int n, uint32_t* all);
/**
 * cp.async as the GPU does it: the 16-byte copy is only queued (per thread, in the open group);
 * cp_async_commit closes the group; cp_async_wait(n) performs every group but the n newest. A
 * kernel that reads shared memory before waiting sees the old contents, as it could on a GPU.
 */
void cp_async(void* dst, const void* src, bool valid);
void cp_async_commit();
void cp_async_wait(int n);
/**
 * wgmma as the GPU does it: results are pending per thread until wgmma_wait. wgmma_acc(d, n) gives
 * the buffer the next product into accumulators `d` (n floats) adds to: the pending sum when one
 * is open for `d`, else a copy of `d`; it joins the open group. wgmma_wait(n) writes back every
 * group but the n newest. A kernel that exits with results pending fails.
 */
float* wgmma_acc(float* d, int n);
/** While a stream capture is open: records `op` (run at each graph launch) and returns true. */
bool record_if_capturing(const std::function<cudaError_t()>& op);
void wgmma_commit();
void wgmma_wait(int n);
/** Kernel-side failure: report, stop the launch, make the launch's error sticky. */
[[noreturn]] void fail(const char* what);
/** Dynamic shared memory of the current launch. */
void* dynamic_smem();
cudaError_t run_launch(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body);

template <class F>
inline void launch(F&& f, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t = nullptr) {
  run_launch(grid, block, smem, std::function<void()>(std::forward<F>(f)));
}

}  // namespace fxs_emu

#define threadIdx (fxs_emu::thread_idx())
#define blockIdx (fxs_emu::block_idx())
#define blockDim (fxs_emu::block_dim())
#define gridDim (fxs_emu::grid_dim())
#define warpSize 32

inline void __syncthreads() { fxs_emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { fxs_emu::syncwarp(); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <class T>
inline uint64_t fxs_emu_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type wider than 8 bytes");
  uint64_t b = 0;
  memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
inline T fxs_emu_from_bits(uint64_t b) {
  T v;
  memcpy(&v, &b, sizeof(T));
  return v;
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  int lane = fxs_emu::lane_id();
  int s = (lane & ~(width - 1)) + (src & (width - 1));
  return fxs_emu_from_bits<T>(fxs_emu::warp_exchange(fxs_emu_bits(v), s, mask));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  int lane = fxs_emu::lane_id();
  int s = lane ^ lane_mask;
  if ((s & ~(width - 1)) != (lane & ~(width - 1))) s = lane;
  return fxs_emu_from_bits<T>(fxs_emu::warp_exchange(fxs_emu_bits(v), s, mask));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = fxs_emu::lane_id();
  int s = lane + (int)delta;
  if ((s & ~(width - 1)) != (lane & ~(width - 1))) s = lane;
  return fxs_emu_from_bits<T>(fxs_emu::warp_exchange(fxs_emu_bits(v), s, mask));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = fxs_emu::lane_id();
  int s = lane - (int)delta;
  if (s < (lane & ~(width - 1))) s = lane;
  return fxs_emu_from_bits<T>(fxs_emu::warp_exchange(fxs_emu_bits(v), s, mask));
}

inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
inline uint32_t __float_as_uint(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int32_t u) { float f; memcpy(&f, &u, 4); return f; }
inline int32_t __float_as_int(float f) { int32_t u; memcpy(&u, &f, 4); return u; }
inline float __expf(float x) { return expf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
template <class T>
inline T __ldg(const T* p) { return *p; }

// CUDA's device min/max accept mixed integer types; C++'s std::min does not.
template <class A, class B>
inline typename std::common_type<A, B>::type min(A a, B b) { return b < a ? b : a; }
template <class A, class B>
inline typename std::common_type<A, B>::type max(A a, B b) { return a < b ? b : a; }
using std::isnan;
using std::signbit;
using std::isinf;
using std::isfinite;

// vector types (plain structs; the GPU's alignment rules are not emulated)
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
struct int4 { int x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };
struct uint2 { unsigned x, y; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

// atomics: blocks run one at a time and fibers switch only at barriers, so a plain
// read-modify-write is atomic here
inline unsigned atomicMax(unsigned* p, unsigned v) { unsigned o = *p; if (v > o) *p = v; return o; }
inline int atomicMax(int* p, int v) { int o = *p; if (v > o) *p = v; return o; }
inline float atomicAdd(float* p, float v) { float o = *p; *p = o + v; return o; }
inline unsigned atomicAdd(unsigned* p, unsigned v) { unsigned o = *p; *p = o + v; return o; }
inline int atomicAdd(int* p, int v) { int o = *p; *p = o + v; return o; }
