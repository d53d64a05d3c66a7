// Which backends exist in this process, and which one to use by default.
// The CPU backend is always there; the CUDA backend registers itself when its addon loads.

import type { Backend } from './backend.js';
import { cpuBackend } from './cpu/index.js';

const BACKEND_NAMES = ['cpu', 'cuda'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

const extra: Backend[] = [];

/** Add a backend (the CUDA module calls this once its addon has loaded and found a GPU). */
export function registerBackend(be: Backend): void {
  if (be.name === 'cpu') throw new Error('registerBackend: the cpu backend is built in');
  if (!extra.some((b) => b.name === be.name)) extra.push(be);
}

/** Every usable backend, CPU first. */
export function availableBackends(): Backend[] {
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
    throw new Error(
      `FLUXSERVE_BACKEND=${want}, but the ${want} backend is not available in this process (available: ${all.map((b) => b.name).join(', ')})`,
    );
  }
  return be;
}
