// mma.cuh — warp-level tensor-core building blocks (sm_80+: mma.sync m16n8k16 with bf16/f16
// inputs and fp32 accumulators, ldmatrix, cp.async) and, under the CPU emulator (FXS_EMU), exact
// emulations of the same instructions from the fragment layouts of the PTX ISA ("Matrix fragments
// for mma.m16n8k16 with floating point type", "ldmatrix"), so kernels written on them run and are
// checked on any machine.
//
// Fragment layouts (lane = 4·g + t, g = groupID 0..7, t = thread in group 0..3); a 32-bit register
// holds two 16-bit elements, the lower-indexed one in the low half:
//   A (16x16, row major), 4 regs: a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8, k x n),      2 regs: b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C/D (16x8, fp32),     4 floats: c0,c1 = (g, 2t, 2t+1), c2,c3 = (g+8, 2t, 2t+1)
// ldmatrix.x4: lanes 8j..8j+7 give the row addresses (16 bytes each) of 8x8 matrix j; register j of
// lane l receives row l/4, elements 2(l%4)..+1 of matrix j (.trans: rows 2(l%4)..+1, column l/4).
#pragma once
#include "common.cuh"

namespace fxs {

// Dynamic shared memory as a typed pointer (the emulator gives each launch its own buffer).
#ifdef FXS_EMU
#define FXS_DYNAMIC_SMEM(T, name) T* name = (T*)fxs_emu::dynamic_smem()
#else
#define FXS_DYNAMIC_SMEM(T, name)                                   \
  extern __shared__ __align__(16) unsigned char fxs_dyn_smem_[];    \
  T* name = reinterpret_cast<T*>(fxs_dyn_smem_)
#endif

template <int DT> struct Mma16;  // 16-bit element type of an mma: bf16 or f16
template <> struct Mma16<FXS_DT_BF16> {
  static __device__ __forceinline__ uint16_t enc(float x) { return bf16_enc(x); }
  static __device__ __forceinline__ float dec(uint16_t b) { return bf16_dec(b); }
};
template <> struct Mma16<FXS_DT_F16> {
  static __device__ __forceinline__ uint16_t enc(float x) { return f16_enc(x); }
  static __device__ __forceinline__ float dec(uint16_t b) { return f16_dec(b); }
};

template <int DT>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  return (uint32_t)Mma16<DT>::enc(lo) | ((uint32_t)Mma16<DT>::enc(hi) << 16);
}

#ifndef FXS_EMU

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

template <int DT>
__device__ __forceinline__ void mma16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  if constexpr (DT == FXS_DT_BF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* row_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(row_addr)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* row_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(row_addr)));
}

// 16-byte global -> shared copy that bypasses registers (sm_80+); zero-fills when !valid.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }


// ---- Hopper warpgroup MMA (sm_90a) ------------------------------------------------------------------
// wgmma.mma_async m64n128k16, fp32 accumulators, issued by a warpgroup (4 consecutive warps, the
// first warp index divisible by 4). Fragment layouts (PTX ISA "Register Fragments and Shared
// Memory Matrix Layouts" for wgmma .m64nNk16): warp w of the group owns rows 16w..16w+15 of the
// 64-row tile; the accumulator d[4i + e] holds (row 16w + g + 8·(e/2), column 8i + 2t + e%2), i.e.
// the mma.m16n8 C layout repeated along N, and a register A operand is the mma.m16n8k16 A fragment
// of the warp's 16 rows. Shared-memory operands use the no-swizzle K-major canonical layout: "core
// matrices" of 8 rows x 16 bytes stored as 128 contiguous bytes; the descriptor (PTX "Matrix
// Descriptor Format": bits 0-13 start address >> 4, 16-29 leading byte offset >> 4, 32-45 stride
// byte offset >> 4, 62-63 swizzle 0) gives the byte distance between core matrices adjacent in K
// (leading, LBO) and in M/N (stride, SBO).
__device__ __forceinline__ uint64_t wgmma_desc(const void* smem, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((smem_u32(smem) & 0x3FFFF) >> 4) | ((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) |
         ((uint64_t)((sbo & 0x3FFFF) >> 4) << 32);
}
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// shared memory written through the generic proxy (st.shared, cp.async) before the tensor cores read it
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#else
__device__ __forceinline__ void wgmma_fence() {}
__device__ __forceinline__ void wgmma_commit() {}
template <int N>
__device__ __forceinline__ void wgmma_wait() {}
__device__ __forceinline__ void fence_proxy_async() {}
#endif
// The accumulators are asm in/out operands: a wgmma_fence() must precede the first wgmma after
// they (or a register A operand) were written by other instructions, and wgmma_wait() must come
// before they are read.
// The 64 fp32 accumulators of an m64n128 tile as asm operands %0..%63, and the instruction for
// input type TY (bf16 or f16) with A from shared memory (SS) or registers (RS); scale-d is the
// predicate p (1: D += A·B), scale-a/b 1, no transposes (both operands K-major).
#define FXS_WGMMA_ACC_REGS "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define FXS_WGMMA_ACC_OPS(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define FXS_WGMMA_SS(TY)                                                                                    \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." #TY "." #TY " " FXS_WGMMA_ACC_REGS                \
               ", %64, %65, p, 1, 1, 0, 0;\n}\n"                                                            \
               : FXS_WGMMA_ACC_OPS(d)                                                                       \
               : "l"(desc_a), "l"(desc_b), "r"(1))
#define FXS_WGMMA_RS(TY)                                                                                    \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                                \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." #TY "." #TY " " FXS_WGMMA_ACC_REGS                \
               ", {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"                                             \
               : FXS_WGMMA_ACC_OPS(d)                                                                       \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1))

template <int DT>
__device__ __forceinline__ void wgmma_m64n128k16_ss(float d[64], uint64_t desc_a, uint64_t desc_b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (DT == FXS_DT_BF16) FXS_WGMMA_SS(bf16);
  else FXS_WGMMA_SS(f16);
#else
  (void)d;  // built without sm_90a: no tensor-core product (the self-check then turns the kernel off)
#endif
}

template <int DT>
__device__ __forceinline__ void wgmma_m64n128k16_rs(float d[64], const uint32_t a[4], uint64_t desc_b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (DT == FXS_DT_BF16) FXS_WGMMA_RS(bf16);
  else FXS_WGMMA_RS(f16);
#else
  (void)d;  // built without sm_90a: no tensor-core product (the self-check then turns the kernel off)
#endif
}

#else  // FXS_EMU: the same semantics, computed from the whole warp's registers

template <int DT>
inline void mma16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  uint32_t mine[10], all[32 * 10];
  for (int i = 0; i < 4; i++) mine[i] = a[i];
  mine[4] = b[0];
  mine[5] = b[1];
  for (int i = 0; i < 4; i++) memcpy(&mine[6 + i], &d[i], 4);
  fxs_emu::warp_gather(mine, 10, all);
  auto half = [](uint32_t w, int hi) { return (uint16_t)(hi ? w >> 16 : w & 0xffffu); };
  auto A = [&](int row, int k) {  // element (row, k) of the 16x16 A tile
    int lane = (row % 8) * 4 + (k % 8) / 2, reg = (row / 8) + 2 * (k / 8);
    return Mma16<DT>::dec(half(all[lane * 10 + reg], k & 1));
  };
  auto B = [&](int k, int n) {  // element (k, n) of the 16x8 B tile
    int lane = n * 4 + (k % 8) / 2, reg = 4 + k / 8;
    return Mma16<DT>::dec(half(all[lane * 10 + reg], k & 1));
  };
  int lane = fxs_emu::lane_id(), g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; i++) {
    int row = g + 8 * (i / 2), col = 2 * t + (i % 2);
    float acc = d[i];
    for (int k = 0; k < 16; k++) acc = fmaf(A(row, k), B(k, col), acc);
    d[i] = acc;
  }
}

inline void ldmatrix_x4_impl(uint32_t r[4], const void* row_addr, bool trans) {
  uint64_t p = (uint64_t)(uintptr_t)row_addr;
  uint32_t mine[2] = {(uint32_t)p, (uint32_t)(p >> 32)}, all[64];
  fxs_emu::warp_gather(mine, 2, all);
  auto row_ptr = [&](int lane) { return (const uint16_t*)(uintptr_t)((uint64_t)all[2 * lane] | ((uint64_t)all[2 * lane + 1] << 32)); };
  int l = fxs_emu::lane_id();
  for (int j = 0; j < 4; j++) {
    uint16_t lo, hi;
    if (!trans) {
      const uint16_t* rp = row_ptr(8 * j + l / 4);
      lo = rp[2 * (l % 4)];
      hi = rp[2 * (l % 4) + 1];
    } else {
      lo = row_ptr(8 * j + 2 * (l % 4))[l / 4];
      hi = row_ptr(8 * j + 2 * (l % 4) + 1)[l / 4];
    }
    r[j] = (uint32_t)lo | ((uint32_t)hi << 16);
  }
}
inline void ldmatrix_x4(uint32_t r[4], const void* row_addr) { ldmatrix_x4_impl(r, row_addr, false); }
inline void ldmatrix_x4_trans(uint32_t r[4], const void* row_addr) { ldmatrix_x4_impl(r, row_addr, true); }

inline void cp_async16(void* smem, const void* gmem, bool valid) { fxs_emu::cp_async(smem, gmem, valid); }
inline void cp_async_commit() { fxs_emu::cp_async_commit(); }
template <int N>
inline void cp_async_wait() { fxs_emu::cp_async_wait(N); }


// ---- Hopper warpgroup MMA, emulated. The descriptor holds the byte offset into the launch's
// dynamic shared memory (all our wgmma operands live there); the product is computed at issue
// from shared memory and the A registers, kept pending per thread, and written to the
// accumulators only at wgmma_wait (a kernel that reads them before waiting sees the old values,
// as it could on the GPU); a later wgmma into the same accumulators chains onto the pending sum.
inline uint64_t wgmma_desc(const void* smem, uint32_t lbo, uint32_t sbo) {
  ptrdiff_t off = (const char*)smem - (const char*)fxs_emu::dynamic_smem();
  if (off < 0 || off >= (1 << 18) || (off & 15)) fxs_emu::fail("wgmma_desc: operand not 16-byte aligned in dynamic shared memory");
  return (uint64_t)(off >> 4) | ((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) | ((uint64_t)((sbo & 0x3FFFF) >> 4) << 32);
}
inline void wgmma_fence() {}
inline void wgmma_commit() { fxs_emu::wgmma_commit(); }
template <int N>
inline void wgmma_wait() { fxs_emu::wgmma_wait(N); }
inline void fence_proxy_async() {}

// element (r, k) of a K-major no-swizzle operand (r: row of M or N; k: along K)
template <int DT>
inline float wgmma_smem_elem(uint64_t desc, int r, int k) {
  const uint8_t* base = (const uint8_t*)fxs_emu::dynamic_smem();
  size_t start = (size_t)(desc & 0x3FFF) << 4, lbo = (size_t)((desc >> 16) & 0x3FFF) << 4, sbo = (size_t)((desc >> 32) & 0x3FFF) << 4;
  // test hook: a GPU that reads the two offsets the other way round (the self-check must notice)
  static const bool swapped = getenv("FXS_EMU_WGMMA_SWAP") != nullptr;
  if (swapped) std::swap(lbo, sbo);
  if ((desc >> 62) != 0) fxs_emu::fail("wgmma: only the no-swizzle layout is emulated");
  size_t at = start + (size_t)(r / 8) * sbo + (size_t)(k / 8) * lbo + (size_t)(r % 8) * 16 + (size_t)(k % 8) * 2;
  uint16_t v;
  memcpy(&v, base + at, 2);
  return Mma16<DT>::dec(v);
}

// a(row, k) gives the warp's A element (row 0..15 of its 16, k 0..15); B from the descriptor
template <int DT, class AFn>
inline void wgmma_m64n128k16_emu(float d[64], AFn a, uint64_t desc_b) {
  const int lane = fxs_emu::lane_id(), g = lane >> 2, t = lane & 3;
  float* acc = fxs_emu::wgmma_acc(d, 64);
  static const bool broken = getenv("FXS_EMU_WGMMA_BREAK") != nullptr;  // test hook: wrong tensor cores
  for (int i = 0; i < 16; i++)
    for (int e = 0; e < 4; e++) {
      const int row = g + 8 * (e >> 1), col = 8 * i + 2 * t + (e & 1);
      float s = acc[4 * i + e];
      for (int k = 0; k < 16; k++) s = fmaf(a(row, k), wgmma_smem_elem<DT>(desc_b, col, k), s);
      acc[4 * i + e] = s + (broken ? 1.f : 0.f);
    }
}
template <int DT>
inline void wgmma_m64n128k16_ss(float d[64], uint64_t desc_a, uint64_t desc_b) {
  const int w = (int)(threadIdx.x >> 5) & 3;
  fxs_emu::syncwarp();  // a warp-collective instruction
  wgmma_m64n128k16_emu<DT>(d, [&](int row, int k) { return wgmma_smem_elem<DT>(desc_a, 16 * w + row, k); }, desc_b);
}
template <int DT>
inline void wgmma_m64n128k16_rs(float d[64], const uint32_t a[4], uint64_t desc_b) {
  uint32_t all[32 * 4];
  fxs_emu::warp_gather(a, 4, all);
  auto A = [&](int row, int k) {  // the mma.m16n8k16 A fragment
    int lane = (row % 8) * 4 + (k % 8) / 2, reg = (row / 8) + 2 * (k / 8);
    uint32_t wd = all[lane * 4 + reg];
    return Mma16<DT>::dec((uint16_t)((k & 1) ? wd >> 16 : wd & 0xffffu));
  };
  wgmma_m64n128k16_emu<DT>(d, A, desc_b);
}

#endif

}  // namespace fxs
