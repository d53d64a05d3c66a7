// A diffusers/PEFT LoRA file for the built-in tiny model (hidden 64, 2 heads, depth 2 + 2 single),
// as safetensors bytes, for tests that need a real LoRA to apply.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors } from '../../src/io/safetensors.js';

/** A diffusers PEFT LoRA for the tiny transformer (hidden 64, heads 2, depth 2, single 2). */
export function tinyLora(seed: number, modules: readonly (readonly [string, number, number])[], rank = 4, amp = 0.6): Buffer {
  let s = seed >>> 0;
  const next = () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
  const r = (n: number) => Float32Array.from({ length: n }, () => amp * next());
  const tensors: [string, { dtype: 'f32'; shape: number[]; data: Float32Array }][] = [];
  for (const [m, inF, out] of modules) {
    tensors.push([`transformer.${m}.lora_A.weight`, { dtype: 'f32', shape: [rank, inF], data: r(rank * inF) }]);
    tensors.push([`transformer.${m}.lora_B.weight`, { dtype: 'f32', shape: [out, rank], data: r(out * rank) }]);
  }
  const dir = mkdtempSync(join(tmpdir(), 'fluxserve-reg-lora-'));
  const p = join(dir, 'l.safetensors');
  writeSafetensors(p, tensors);
  const b = readFileSync(p);
  rmSync(dir, { recursive: true, force: true });
  return b;
}
