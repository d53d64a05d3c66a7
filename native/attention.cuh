// attention.cuh — the attention kernels' entry points inside the library (not the C ABI):
// attention.cu dispatches each call to one of them, wgmma_check.cu checks the Hopper kernel
// against the mma.sync one. dt is FXS_DT_BF16 or FXS_DT_F16 for the tensor-core kernels.
#pragma once
#include <stdint.h>

namespace fxs {

/** The Hopper kernel's head dim (D = Dv). */
constexpr int WG_D = 128;

/** The mma.sync flash kernel (flash_mma.cu): D = Dv = 64 or 128, any bias broadcast, optional causal mask. */
int flash_mma_attention(int dt, int64_t D, const void* q, const void* k, const void* v, const void* bias, int bdt, int64_t bsb,
                        int64_t bsh, void* out, int64_t B, int64_t H, int64_t Lq, int64_t Lk, float scale, int causal);

/** The Hopper wgmma flash kernel (flash_wgmma.cu): D = Dv = 128, no bias, no mask; swap: LBO/SBO read the other way. */
int flash_wgmma_attention(int dt, bool swap, const void* q, const void* k, const void* v, void* out, int64_t B, int64_t H,
                          int64_t Lq, int64_t Lk, float scale);

/** Whether the wgmma kernel is used (wgmma_check.cu): 0 off, 1 on, 2 on with LBO/SBO swapped; checks it the first time. */
int wgmma_mode();

}  // namespace fxs
