// The CUDA backend: every Backend method calls the Node-API addon build/fluxserve_cuda.node
// (native/, built by `npm run build:native`). Storage is a device pointer (BigInt) from the
// addon's caching allocator; ops enqueue kernels on one CUDA stream and return at once; `read`
// waits for the stream. The backend computes only shapes, strides and launch arguments — the math
// is in native/*.cu, whose semantics and rounding points follow ops.ts like the CPU reference.
// The addon's ops are declared once in op-table.ts; each op family fills its Backend methods in
// its own file (memory, gemm, attention, norms, elementwise, layout, conv).
//
// Loading: `loadCudaBackend()` returns undefined (and remembers why) when the addon is absent,
// fails to load, or finds no GPU. registry.ts calls it once; see docs/gpu.md for when the reason
// is printed.

import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import type { Backend } from '../backend.js';
import type { Addon, CudaMemStats } from './addon.js';
import { attentionMethods } from './attention.js';
import { bindOps } from './bind-ops.js';
import { convMethods } from './conv.js';
import { elementwiseMethods } from './elementwise.js';
import { gemmMethods } from './gemm.js';
import { layoutMethods } from './layout.js';
import { type CudaMemoryControls, memoryMethods } from './memory.js';
import { normMethods } from './norms.js';
import { ADDON_ABI_VERSION } from './op-table.js';
import { makeContext } from './storage.js';

export type { CudaMemStats } from './addon.js';
export { CudaStorage } from './storage.js';

type CudaBackend = Backend & CudaMemoryControls;

/** Build the Backend over a loaded, initialised addon. */
function makeBackend(A: Addon): CudaBackend {
  const ctx = makeContext(bindOps(A), A);
  return {
    name: 'cuda',
    fusedAmax: true, // modulatedLayerNorm and geluConcat raise amaxOut in their own pass
    ...memoryMethods(ctx),
    ...gemmMethods(ctx),
    ...attentionMethods(ctx),
    ...normMethods(ctx),
    ...elementwiseMethods(ctx),
    ...layoutMethods(ctx),
    ...convMethods(ctx),
  };
}

/** Where the addon is looked for: $FLUXSERVE_CUDA_ADDON, else build/ at the package root. */
export function cudaAddonPath(env: NodeJS.ProcessEnv = process.env): string {
  const override = env['FLUXSERVE_CUDA_ADDON'];
  if (override) return override;
  // this file is dist/src/tensor/cuda/index.js (built) or src/tensor/cuda/index.ts (sources)
  const candidates = ['../../../../', '../../../'].map((up) => fileURLToPath(new URL(`${up}build/fluxserve_cuda.node`, import.meta.url)));
  return candidates.find((c) => fs.existsSync(c)) ?? candidates[0]!;
}

let loaded: { addon?: Addon; backend: CudaBackend | undefined; reason: string; addonExists: boolean; device?: string } | undefined;

/**
 * Load the CUDA backend once: the addon must exist, load, match the ABI version and find a GPU.
 * Returns undefined otherwise; `cudaUnavailableReason()` then says why.
 */
export function loadCudaBackend(env: NodeJS.ProcessEnv = process.env): Backend | undefined {
  if (loaded) return loaded.backend;
  const path = cudaAddonPath(env);
  const addonExists = fs.existsSync(path);
  if (!addonExists) {
    loaded = { backend: undefined, reason: `no addon at ${path} (run npm run build:native on a machine with the CUDA toolkit)`, addonExists };
    return undefined;
  }
  try {
    const require = createRequire(import.meta.url);
    const addon = require(path) as Addon;
    if (addon.abiVersion !== ADDON_ABI_VERSION) throw new Error(`addon ABI version ${addon.abiVersion}, expected ${ADDON_ABI_VERSION} (rebuild it)`);
    const info = addon.init(Number(env['FLUXSERVE_CUDA_DEVICE'] ?? 0));
    loaded = {
      backend: makeBackend(addon),
      addon,
      reason: '',
      addonExists,
      device: `${info.name} (sm_${info.ccMajor}${info.ccMinor}, ${(info.totalMem / 2 ** 30).toFixed(1)} GiB, cuBLASLt ${info.cublasLt ? 'on' : 'off'})`,
    };
  } catch (e) {
    loaded = { backend: undefined, reason: (e as Error).message, addonExists };
  }
  return loaded.backend;
}

/** Why the CUDA backend is not available ('' when it is, undefined before the first attempt). */
export function cudaUnavailableReason(): string | undefined {
  return loaded?.reason;
}

/** The GPU the backend runs on, e.g. "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB, cuBLASLt on)". */
export function cudaDeviceDescription(): string | undefined {
  return loaded?.device;
}

/**
 * Whether the Hopper (wgmma) flash-attention kernel is in use: "on (self-check max diff ...)" or
 * "off (why)". Runs its one-time self-check against the mma.sync kernel if no attention call has.
 */
export function cudaAttentionKernel(): string | undefined {
  return loaded?.addon?.attentionKernel();
}

/** The caching allocator's counters (bytes), when the backend is loaded. */
export function cudaMemStats(): CudaMemStats | undefined {
  return loaded?.backend?.memStats();
}

export function cudaResetPeak(): void {
  loaded?.backend?.resetPeak();
}

/** Gives the allocator's cached free blocks back to the driver (between benchmark phases). */
export function cudaEmptyCache(): void {
  loaded?.backend?.emptyCache();
}

/** True when an addon file exists (so a failure to load it is worth telling the user about). */
export function cudaAddonWasBuilt(): boolean {
  return loaded?.addonExists ?? false;
}
