// Which backends exist in this process, and which one to use by default.
// The CPU backend is always there; the CUDA backend registers itself when its addon loads.

import type { Backend } from './backend.js';
import { cpuBackend } from './cpu/index.js';
import { cudaAddonWasBuilt, cudaUnavailableReason, loadCudaBackend } from './cuda/index.js';

const BACKEND_NAMES = ['cpu', 'cuda'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

const extra: Backend[] = [];

/** Add a backend (the CUDA module calls this once its addon has loaded and found a GPU). */
export function registerBackend(be: Backend): void {
  if (be.name === 'cpu') throw new Error('registerBackend: the cpu backend is built in');
  if (!extra.some((b) => b.name === be.name)) extra.push(be);
}

let cudaTried = false;

/**
 * Try the CUDA addon once (not when FLUXSERVE_BACKEND=cpu). Silent when no addon was built; when
 * one was built but cannot be used and the backend is chosen automatically, says once why, except
 * under the test runner (docs/gpu.md).
 */
function tryCuda(): void {
  if (cudaTried) return;
  cudaTried = true;
  if (process.env['FLUXSERVE_BACKEND'] === 'cpu') return;
  const be = loadCudaBackend();
  if (be) {
    registerBackend(be);
    return;
  }
  const auto = (process.env['FLUXSERVE_BACKEND'] ?? '') === '';
  if (auto && cudaAddonWasBuilt() && process.env['NODE_TEST_CONTEXT'] === undefined) {
    process.stderr.write(`CUDA backend unavailable: ${cudaUnavailableReason()}; using the CPU backend\n`);
  }
}

/** Every usable backend, CPU first. */
export function availableBackends(): Backend[] {
  tryCuda();
  return [cpuBackend, ...extra];
}

/**
 * The backend to use: FLUXSERVE_BACKEND=cpu|cuda when set, else CUDA when available, else CPU.
 */
export function defaultBackend(env: NodeJS.ProcessEnv = process.env): Backend {
  const want = env['FLUXSERVE_BACKEND'];
  const all = availableBackends();
  if (want === undefined || want === '') return all.find((b) => b.name === 'cuda') ?? cpuBackend;
  if (!(BACKEND_NAMES as readonly string[]).includes(want)) {
    throw new Error(`FLUXSERVE_BACKEND must be one of ${BACKEND_NAMES.join(', ')} (got '${want}')`);
  }
  const be = all.find((b) => b.name === want);
  if (!be) {
    const why = want === 'cuda' ? `: CUDA backend unavailable: ${cudaUnavailableReason() ?? 'not loaded'}` : '';
    throw new Error(
      `FLUXSERVE_BACKEND=${want}, but the ${want} backend is not available in this process (available: ${all.map((b) => b.name).join(', ')})${why}`,
    );
  }
  return be;
}
