#!/usr/bin/env node
// Device-session helper (scripts/device.sh): runs the BFL reference check on the default backend
// (FLUXSERVE_BACKEND=cuda there) by importing dist/ directly, so it needs no node_modules (the
// `fluxserve` CLI imports sharp/fastify/tokenizers at startup). Then a bench placeholder: a few
// large bf16 linears and an attention on the backend, timed, with the allocator's peak memory.
// Usage: node scripts/gpu-check.mjs reference-check DIR | bench
import { resolve } from 'node:path';

const [cmd, arg] = process.argv.slice(2);
const reg = await import('../dist/src/tensor/registry.js');
const cuda = await import('../dist/src/tensor/cuda/index.js');
const be = reg.defaultBackend();
console.log(`backend: ${be.name}${cuda.cudaDeviceDescription() ? ` on ${cuda.cudaDeviceDescription()}; wgmma attention: ${cuda.cudaAttentionKernel()}` : ''}`);

if (cmd === 'reference-check') {
  const { referenceCheck } = await import('../dist/src/debug/reference-check.js');
  const { results, ok } = await referenceCheck(resolve(arg ?? 'test/fixtures/bfl-tiny-a'), { backend: be, log: (l) => console.log(l) });
  for (const r of results) {
    console.log(
      `${r.ok ? 'ok  ' : 'FAIL'} ${r.name}: relErr ${r.relErr.toExponential(3)} maxAbs ${r.maxAbsDiff.toExponential(3)} (${r.metric} <= ${r.tol})${r.note ? ` ${r.note}` : ''}`,
    );
  }
  console.log(ok ? 'reference-check: all within tolerance' : 'reference-check: FAILED');
  process.exit(ok ? 0 : 1);
} else if (cmd === 'bench') {
  // Placeholder until the full-size random-weight forward exists: FLUX-sized GEMMs and attention.
  const ops = await import('../dist/src/tensor/ops.js');
  const { randomBf16 } = {
    randomBf16: (shape) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const raw = new Uint16Array(n);
      for (let i = 0; i < n; i++) raw[i] = 0x3c00 + ((i * 2654435761) >>> 24) - 0x80; // small positive values near 2^-7
      return ops.fromRaw(be, shape, 'bf16', raw);
    },
  };
  const time = (label, flops, fn, reps = 10) => {
    fn();
    be.synchronize();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) fn();
    be.synchronize();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6 / reps;
    console.log(`${label}: ${ms.toFixed(3)} ms${flops ? `, ${(flops / ms / 1e9).toFixed(1)} TFLOP/s` : ''}`);
  };
  const L = 4096 + 512,
    Dm = 3072;
  const x = randomBf16([1, L, Dm]);
  const wqkv = randomBf16([3 * Dm, Dm]);
  const wmlp = randomBf16([4 * Dm, Dm]);
  time('linear qkv [4608x3072]·[9216x3072]ᵀ bf16', 2 * L * Dm * 3 * Dm, () => ops.linear(x, wqkv).dispose());
  time('linear mlp gelu_tanh [4608x3072]·[12288x3072]ᵀ bf16', 2 * L * Dm * 4 * Dm, () => ops.linear(x, wmlp, { act: 'gelu_tanh' }).dispose());
  const q = randomBf16([1, 24, L, 128]);
  time('attention [1,24,4608,128] bf16', 4 * 24 * L * L * 128, () => ops.attention(q, q, q).dispose(), 3);
  const m = cuda.cudaMemStats();
  if (m) console.log(`allocator: peak ${(m.peakAllocated / 2 ** 30).toFixed(2)} GiB, reserved ${(m.reserved / 2 ** 30).toFixed(2)} GiB`);
} else {
  console.error('usage: node scripts/gpu-check.mjs reference-check DIR | bench');
  process.exit(2);
}
