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

#endif

}  // namespace fxs
