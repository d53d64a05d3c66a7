// native/emu/selftest.cu — checks of the CPU emulator itself (not part of the addon): built by
// scripts/build-native-emu.mjs into build/emu/emu-selftest and run by test/native/emulator.test.ts.
// Prints one line per case, "ok <name>" or "FAIL <name>: why", and exits 1 if any failed.
#include <stdio.h>

#include "mma.cuh"

static int g_failed = 0;
static void check(bool ok, const char* name, const char* why = "") {
  printf("%s %s%s%s\n", ok ? "ok" : "FAIL", name, ok ? "" : ": ", ok ? "" : why);
  if (!ok) g_failed = 1;
}

// Each block sums its 256 values through shared memory and warp shuffles (common.cuh block_sum).
__global__ void block_sum_kernel(const float* x, float* out) {
  __shared__ float sh[32];
  float v = x[blockIdx.x * blockDim.x + threadIdx.x];
  float s = fxs::block_sum(v, sh);
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

// Reverse through shared memory: wrong without the barrier between the write and the read.
__global__ void reverse_kernel(const int* x, int* y, int n) {
  __shared__ int t[1024];
  int i = threadIdx.x;
  t[i] = x[i];
  __syncthreads();
  y[i] = t[n - 1 - i];
}

// Lanes 0-15 wait at the block barrier, lanes 16-31 in a shuffle: neither can complete.
__global__ void deadlock_kernel(float* y) {
  float v = (float)threadIdx.x;
  if ((threadIdx.x & 31) < 16) __syncthreads();
  else v = __shfl_xor_sync(0xffffffffu, v, 1);
  y[threadIdx.x] = v;
}

// Half the warp returns, then the rest shuffles with the full mask: undefined on a GPU.
__global__ void exited_lane_kernel(float* y) {
  if (threadIdx.x >= 16) return;
  y[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

// Threads that exited early do not hold back a later barrier (as on Volta and newer GPUs).
__global__ void early_exit_kernel(int* y) {
  __shared__ int t[64];
  if (threadIdx.x >= 48) return;
  t[threadIdx.x] = (int)threadIdx.x * 2;
  __syncthreads();
  y[threadIdx.x] = t[47 - threadIdx.x];
}

// cp.async only queues the copy: shared memory changes at the wait, not before.
__global__ void cp_async_kernel(const int* src, int* out) {
  __shared__ __align__(16) int buf[4];
  if (threadIdx.x == 0) {
    buf[0] = -1;
    fxs::cp_async16(buf, src, true);
    fxs::cp_async_commit();
    out[0] = buf[0];
    fxs::cp_async16(buf, src, false);  // a second group: zero-fill
    fxs::cp_async_commit();
    fxs::cp_async_wait<1>();           // the first group only
    out[1] = buf[0];
    fxs::cp_async_wait<0>();
    out[2] = buf[0];
  }
}

int main() {
  {
    const int B = 3, T = 256;
    static float x[B * T], out[B];
    double want[B] = {0, 0, 0};
    for (int i = 0; i < B * T; i++) { x[i] = (float)((i * 37) % 101) - 50.f; want[i / T] += x[i]; }
    block_sum_kernel<<<B, T>>>(x, out);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int b = 0; b < B; b++) ok = ok && out[b] == (float)want[b];
    check(ok, "block_sum over 3 blocks of 256 threads (shared memory, barriers, shuffles)");
  }
  {
    const int n = 1000;
    static int x[n], y[n];
    for (int i = 0; i < n; i++) x[i] = i * 3 + 1;
    reverse_kernel<<<1, n>>>(x, y, n);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int i = 0; i < n; i++) ok = ok && y[i] == x[n - 1 - i];
    check(ok, "reverse through shared memory with 1000 threads (a partial last warp)");
  }
  {
    static float y[64];
    deadlock_kernel<<<1, 64>>>(y);
    check(cudaGetLastError() == cudaErrorLaunchFailure, "a deadlock is reported as a launch failure");
    check(cudaGetLastError() == cudaSuccess, "cudaGetLastError clears the error");
  }
  {
    static float y[32];
    exited_lane_kernel<<<1, 32>>>(y);
    check(cudaGetLastError() == cudaErrorLaunchFailure, "a full-mask shuffle after lanes exited is reported");
  }
  {
    static int y[64];
    early_exit_kernel<<<1, 64>>>(y);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int i = 0; i < 48; i++) ok = ok && y[i] == (47 - i) * 2;
    check(ok, "exited threads do not block a barrier");
  }
  {
    static float y[1];
    exited_lane_kernel<<<1, 2048>>>(y);
    check(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block is an invalid configuration");
  }
  {
    static int src[4] = {42, 1, 2, 3}, out[3];
    cp_async_kernel<<<1, 32>>>(src, out);
    bool ok = cudaGetLastError() == cudaSuccess && out[0] == -1 && out[1] == 42 && out[2] == 0;
    check(ok, "cp.async copies land at cp.async.wait_group, group by group");
  }
  printf(g_failed ? "emu-selftest: FAILED\n" : "emu-selftest: all ok\n");
  return g_failed;
}
