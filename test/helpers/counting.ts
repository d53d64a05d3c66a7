// The CPU backend wrapped to count live storages (leak checks), and a
// model-evaluation counter for the transformer.

import type { Backend, Storage } from '../../src/tensor/backend.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import type { Flux } from '../../src/models/flux/model.js';

/** The CPU backend, counting the storages that are alive. */
export function countingBackend(): { be: Backend; live: () => number } {
  let live = 0;
  const isStorage = (v: unknown): v is Storage => typeof v === 'object' && v !== null && 'byteLength' in v;
  const be: Record<string, unknown> = { name: 'cpu-counting' };
  for (const [k, v] of Object.entries(cpuBackend)) {
    if (typeof v !== 'function') continue;
    be[k] = (...args: unknown[]) => {
      const r = (v as (...a: unknown[]) => unknown).apply(cpuBackend, args);
      if (k === 'free') live--;
      else if (k !== 'read' && isStorage(r)) live++;
      else if (Array.isArray(r)) live += r.filter(isStorage).length;
      return r;
    };
  }
  return { be: be as unknown as Backend, live: () => live };
}

/** Wraps `flux.forward` to record each call's timestep and input latents; `restore()` undoes it. */
export function recordForwards(flux: Flux): { calls: { t: number; img: Float32Array }[]; restore: () => void } {
  const calls: { t: number; img: Float32Array }[] = [];
  const orig = flux.forward;
  const wrapped = function (this: Flux, ...args: Parameters<Flux['forward']>) {
    calls.push({ t: args[4][0]!, img: args[0].toFloat32() });
    return orig.apply(this, args);
  };
  (flux as { forward: Flux['forward'] }).forward = wrapped as Flux['forward'];
  return { calls, restore: () => void ((flux as { forward: Flux['forward'] }).forward = orig) };
}
