// native/emu/emu.cc — the CPU emulator behind native/emu/cuda_runtime.h: a fiber scheduler for
// kernel launches and host-memory versions of the runtime calls the addon uses (see the header for
// the model). Nothing here is used by the real CUDA build.
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <string>
#include <vector>

#include "cuda_runtime.h"

// Fiber switching. On x86-64 (without AddressSanitizer, which knows only ucontext's switches) a
// few instructions that save the callee-saved registers and the FP control words and swap stacks;
// glibc's swapcontext also makes a sigprocmask system call per switch, which made it the largest
// cost of an emulated launch. Elsewhere: ucontext.
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define FXS_EMU_ASM_SWITCH 1
extern "C" void fxs_emu_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.globl fxs_emu_switch
.type fxs_emu_switch,@function
fxs_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size fxs_emu_switch, .-fxs_emu_switch
.section .note.GNU-stack,"",@progbits
.text
)");
#endif

namespace fxs_emu {

struct Barrier {
  int arrived = 0;
  uint64_t gen = 0;
  uint64_t exit_released = ~0ull;  // the generation that exiting threads (not arrivals) completed
};

struct PendingCopy {
  void* dst;
  const void* src;  // null: zero-fill
};

struct PendingMma {
  float* d;
  std::vector<float> sum;
  uint64_t group;  // the wgmma group of its latest product
};

struct Thread {
  std::vector<PendingMma> mma;                    // wgmma results not yet waited for
  uint64_t mma_group = 0;                         // the open wgmma group
  std::vector<PendingCopy> open;                  // cp.async copies of the group not yet committed
  std::vector<std::vector<PendingCopy>> groups;   // committed groups, oldest first
#ifdef FXS_EMU_ASM_SWITCH
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
  dim3 tid;
  int lane = 0, warp = 0;
  bool done = false;
  // the barrier this fiber waits at and the generation that releases it (the scheduler skips it until then)
  const Barrier* wait_bar = nullptr;
  uint64_t wait_gen = 0;
  char* stack = nullptr;
};

namespace {

constexpr size_t kStack = 256 * 1024;  // per fiber; AddressSanitizer frames are large
constexpr int kMaxThreads = 1024;
constexpr int kGatherWords = 64;  // per lane, for warp_gather (matrix-fragment emulation)


struct Block {
  dim3 grid, block, bid;
  int nthreads = 0, live = 0;
  Barrier bar;
  std::vector<Barrier> warp_bar;
  std::vector<int> warp_size, warp_live;
  std::vector<uint64_t> slots;         // warp exchange: [warp][lane]
  std::vector<uint32_t> gather;        // warp gather: [warp][lane][word]
  uint64_t events = 0;                 // progress counter for deadlock detection
  bool aborted = false;
  std::string why;
  const std::function<void()>* body = nullptr;
  std::vector<uint8_t> smem;
};

thread_local Block* g_block = nullptr;
#ifdef FXS_EMU_ASM_SWITCH
void* g_sched_sp = nullptr;
#else
ucontext_t g_sched;
#endif

// from the current fiber to the scheduler, and back
inline void to_scheduler(Thread* me) {
#ifdef FXS_EMU_ASM_SWITCH
  fxs_emu_switch(&me->sp, g_sched_sp);
#else
  swapcontext(&me->ctx, &g_sched);
#endif
}
inline void to_fiber(Thread& t) {
#ifdef FXS_EMU_ASM_SWITCH
  fxs_emu_switch(&g_sched_sp, t.sp);
#else
  swapcontext(&g_sched, &t.ctx);
#endif
}
std::vector<Thread> g_threads;  // fiber pool, stacks reused across launches
cudaError_t g_last = cudaSuccess;

void ensure_pool(int n) {
  if ((int)g_threads.size() >= n) return;
  size_t old = g_threads.size();
  g_threads.resize(n);
  for (size_t i = old; i < (size_t)n; i++) {
    void* s = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s == MAP_FAILED) {
      fprintf(stderr, "fluxserve emu: cannot map a fiber stack\n");
      abort();
    }
    g_threads[i].stack = (char*)s;
  }
}

void yield() {
  Thread* me = cur;
  to_scheduler(me);  // an abandoned launch never resumes this fiber
  cur = me;
}

void arrive_and_wait(Barrier& b, int expected) {
  Block& B = *g_block;
  uint64_t gen = b.gen;
  B.events++;
  if (++b.arrived >= expected) {
    b.arrived = 0;
    b.gen++;
    return;
  }
  cur->wait_bar = &b;
  cur->wait_gen = gen;
  while (b.gen == gen) yield();
  cur->wait_bar = nullptr;
}

// A fiber finished: barriers now wait for fewer threads.
void release_after_exit(Thread& t) {
  Block& B = *g_block;
  B.live--;
  B.warp_live[t.warp]--;
  B.events++;
  if (B.bar.arrived > 0 && B.bar.arrived >= B.live) { B.bar.arrived = 0; B.bar.gen++; }
  Barrier& wb = B.warp_bar[t.warp];
  if (wb.arrived > 0 && wb.arrived >= B.warp_live[t.warp]) { wb.exit_released = wb.gen; wb.arrived = 0; wb.gen++; }
}

void trampoline() {
  Thread* t = cur;
  (*g_block->body)();
  if (!t->mma.empty()) fail("kernel exited with wgmma results never waited for (wgmma_wait)");
  t->done = true;
  release_after_exit(*t);
#ifdef FXS_EMU_ASM_SWITCH
  to_scheduler(t);  // never resumed
  abort();
#endif
  // (ucontext) returns to g_sched through uc_link
}

#ifdef FXS_EMU_ASM_SWITCH
// A fresh fiber's stack, laid out as fxs_emu_switch leaves a suspended one: the control words,
// six callee-saved registers, then the "return address" trampoline (entered with the stack
// aligned as after a call).
void* fresh_stack(char* base, size_t size) {
  uintptr_t top = ((uintptr_t)(base + size)) & ~(uintptr_t)15;
  uint64_t* p = (uint64_t*)top;
  *--p = 0;                                 // trampoline's own return address (never used)
  *--p = (uint64_t)(uintptr_t)&trampoline;  // where `ret` goes
  for (int i = 0; i < 6; i++) *--p = 0;     // rbp rbx r12 r13 r14 r15
  *--p = (uint64_t)0x1F80 | ((uint64_t)0x037F << 32);  // mxcsr, x87 control word
  return p;
}
#endif

}  // namespace

thread_local Thread* cur = nullptr;

const dim3& thread_idx() { return cur->tid; }
const dim3& block_idx() { return g_block->bid; }
const dim3& block_dim() { return g_block->block; }
const dim3& grid_dim() { return g_block->grid; }
int lane_id() { return cur->lane; }
void* dynamic_smem() { return g_block->smem.data(); }

void fail(const char* what) {
  Block& B = *g_block;
  if (!B.aborted) {
    B.aborted = true;
    char where[160];
    snprintf(where, sizeof where, " (block %u,%u,%u thread %u,%u,%u)", B.bid.x, B.bid.y, B.bid.z, cur->tid.x, cur->tid.y,
             cur->tid.z);
    B.why = std::string(what) + where;
  }
  to_scheduler(cur);
  abort();  // never resumed
}

void syncthreads() { arrive_and_wait(g_block->bar, g_block->live); }

void cp_async(void* dst, const void* src, bool valid) { cur->open.push_back({dst, valid ? src : nullptr}); }
void cp_async_commit() {
  cur->groups.push_back(std::move(cur->open));
  cur->open.clear();
}
void cp_async_wait(int n) {
  auto& g = cur->groups;
  while ((int)g.size() > n) {
    for (const PendingCopy& c : g.front()) {
      if (c.src) memcpy(c.dst, c.src, 16);
      else memset(c.dst, 0, 16);
    }
    g.erase(g.begin());
  }
}

float* wgmma_acc(float* d, int n) {
  for (PendingMma& m : cur->mma) {
    if (m.d == d) {
      if ((int)m.sum.size() != n) fail("wgmma: accumulators reused with another shape while pending");
      m.group = cur->mma_group;
      return m.sum.data();
    }
  }
  cur->mma.push_back({d, std::vector<float>(d, d + n), cur->mma_group});
  return cur->mma.back().sum.data();
}
void wgmma_commit() { cur->mma_group++; }
void wgmma_wait(int n) {
  auto& v = cur->mma;
  for (size_t i = 0; i < v.size();) {
    if (v[i].group + (uint64_t)n < cur->mma_group) {
      memcpy(v[i].d, v[i].sum.data(), v[i].sum.size() * sizeof(float));
      v.erase(v.begin() + (ptrdiff_t)i);
    } else {
      i++;
    }
  }
}

void syncwarp() {
  Block& B = *g_block;
  arrive_and_wait(B.warp_bar[cur->warp], B.warp_live[cur->warp]);
}

static void check_full_warp(unsigned mask) {
  Block& B = *g_block;
  int w = cur->warp;
  if (mask != 0xffffffffu) fail("warp collective with a partial mask is not emulated");
  if (B.warp_size[w] != 32) fail("full-mask warp collective in a partial warp (blockDim not a multiple of 32)");
  if (B.warp_live[w] != 32) fail("full-mask warp collective after some lanes of the warp exited");
}

uint64_t warp_exchange(uint64_t bits, int src, unsigned mask) {
  check_full_warp(mask);
  Block& B = *g_block;
  int w = cur->warp;
  // Two slot sets used alternately, so one barrier per exchange suffices: a lane can write the
  // same set again only after the next exchange's barrier, which every lane reaches after reading.
  const uint64_t gen = B.warp_bar[w].gen;
  const size_t set = (size_t)(gen & 1) * B.slots.size() / 2;
  B.slots[set + w * 32 + cur->lane] = bits;
  syncwarp();
  // lanes that exit while the others wait release the barrier early: still an error
  if (B.warp_bar[w].exit_released == gen) fail("full-mask warp collective after some lanes of the warp exited");
  return B.slots[set + w * 32 + (src & 31)];
}

void warp_gather(const uint32_t* mine, int n, uint32_t* all) {
  check_full_warp(0xffffffffu);
  Block& B = *g_block;
  int w = cur->warp;
  if (n > kGatherWords) fail("warp_gather of more than 64 words per lane");
  uint32_t* base = B.gather.data() + (size_t)w * 32 * kGatherWords;
  memcpy(base + cur->lane * kGatherWords, mine, n * 4);
  const uint64_t gen = B.warp_bar[w].gen;
  syncwarp();
  if (B.warp_bar[w].exit_released == gen) fail("full-mask warp collective after some lanes of the warp exited");
  for (int l = 0; l < 32; l++) memcpy(all + l * n, base + l * kGatherWords, n * 4);
  syncwarp();
}

// the open stream capture, if any (ops recorded in order)
std::vector<std::function<cudaError_t()>>* g_capture = nullptr;

bool record_if_capturing(const std::function<cudaError_t()>& op) {
  if (!g_capture) return false;
  g_capture->push_back(op);
  return true;
}

cudaError_t run_launch(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body) {
  if (g_capture) {
    std::function<void()> copy = body;
    g_capture->push_back([=]() { return run_launch(grid, block, smem, copy); });
    return cudaSuccess;
  }
  uint64_t nt = (uint64_t)block.x * block.y * block.z;
  if (nt == 0 || nt > kMaxThreads || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
      block.z > 64) {
    g_last = cudaErrorInvalidConfiguration;
    return g_last;
  }
  if (smem > 227 * 1024) {  // Hopper's per-block maximum
    g_last = cudaErrorInvalidValue;
    return g_last;
  }
  ensure_pool((int)nt);
  Block B;
  B.grid = grid;
  B.block = block;
  B.nthreads = (int)nt;
  B.body = &body;
  int nwarps = (int)((nt + 31) / 32);
  B.warp_bar.assign(nwarps, Barrier{});
  B.warp_size.assign(nwarps, 32);
  if (nt % 32) B.warp_size[nwarps - 1] = (int)(nt % 32);
  B.slots.assign((size_t)nwarps * 32 * 2, 0);
  B.gather.assign((size_t)nwarps * 32 * kGatherWords, 0);
  B.smem.assign(smem, 0xff);
  Block* saved = g_block;
  Thread* saved_cur = cur;
  g_block = &B;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        B.bid = dim3(bx, by, bz);
        B.live = (int)nt;
        B.bar = Barrier{};
        B.warp_bar.assign(nwarps, Barrier{});
        B.warp_live.assign(nwarps, 0);
        for (int i = 0; i < (int)nt; i++) {
          Thread& t = g_threads[i];
          t.tid = dim3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
          t.lane = i % 32;
          t.warp = i / 32;
          t.done = false;
          t.wait_bar = nullptr;
          t.open.clear();
          t.groups.clear();
          t.mma.clear();
          t.mma_group = 0;
          B.warp_live[t.warp]++;
#ifdef FXS_EMU_ASM_SWITCH
          t.sp = fresh_stack(t.stack, kStack);
#else
          getcontext(&t.ctx);
          t.ctx.uc_stack.ss_sp = t.stack;
          t.ctx.uc_stack.ss_size = kStack;
          t.ctx.uc_link = &g_sched;
          makecontext(&t.ctx, trampoline, 0);
#endif
        }
        // round-robin until every fiber is done; a full round without progress is a deadlock
        while (B.live > 0 && !B.aborted) {
          uint64_t before = B.events;
          for (int i = 0; i < (int)nt && !B.aborted; i++) {
            Thread& t = g_threads[i];
            if (t.done || (t.wait_bar && t.wait_bar->gen == t.wait_gen)) continue;  // finished, or still blocked
            cur = &t;
            to_fiber(t);
          }
          if (B.live > 0 && B.events == before && !B.aborted) {
            B.aborted = true;
            B.why = "deadlock: threads wait at barriers that can never complete (a __syncthreads or warp collective "
                    "not reached by every live thread)";
          }
        }
        if (B.aborted) {
          char where[96];
          snprintf(where, sizeof where, " [launch grid %u,%u,%u block %u,%u,%u]", grid.x, grid.y, grid.z, block.x, block.y,
                   block.z);
          fprintf(stderr, "fluxserve emu: kernel failed: %s%s\n", B.why.c_str(), where);
          g_block = saved;
          cur = saved_cur;
          g_last = cudaErrorLaunchFailure;
          return g_last;
        }
      }
  g_block = saved;
  cur = saved_cur;
  return cudaSuccess;
}

}  // namespace fxs_emu

// ---- runtime API ------------------------------------------------------------------------------------
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
