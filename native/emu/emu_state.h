// native/emu/emu_state.h — what the emulator's scheduler (emu.cc) and its runtime API
// (runtime_emu.cc) share: the sticky launch error and the open stream capture.
#pragma once
#include <functional>
#include <vector>

#include "cuda_runtime.h"

namespace fxs_emu {

/** The error cudaGetLastError returns and clears (a failed launch sets it). */
extern cudaError_t g_last;
/** The open stream capture, if any (ops recorded in order, replayed by cudaGraphLaunch). */
extern std::vector<std::function<cudaError_t()>>* g_capture;

}  // namespace fxs_emu
