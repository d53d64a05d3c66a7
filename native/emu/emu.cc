// native/emu/emu.cc — the CPU emulator behind native/emu/cuda_runtime.h: the fiber scheduler that
// runs kernel launches (block by block, threads as fibers: barriers, warp shuffles, cp.async and
// wgmma groups, deadlock and launch-limit checks; see the header for the model). The runtime API
// calls are in runtime_emu.cc. Nothing here is used by the real CUDA build.
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <string>
#include <vector>

#include "cuda_runtime.h"
#include "emu_state.h"

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

cudaError_t g_last = cudaSuccess;
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
