// Micro benchmark of the CPU backend's heavy ops at the tiny FLUX model's sizes (hidden 64,
// 1024 image + 512 text tokens at 512x512; VAE decoder with 32-64 channels up to 512x512):
// GFLOP/s single-threaded vs split across the worker pool.
//
//   npx tsc -p . && node dist/bench/cpu-ops.js [--quick]

import { loadavg } from 'node:os';

import { configureCpuPool, cpuBackend as be, cpuPoolInfo, shutdownCpuPool } from '../src/tensor/cpu/index.js';
import type { DType } from '../src/tensor/dtype.js';
import { attention, conv2d, fromArray, groupNorm, linear } from '../src/tensor/ops.js';
import { type Shape, type Tensor, numel } from '../src/tensor/tensor.js';

const quick = process.argv.includes('--quick');

function rand(shape: Shape, dtype: DType = 'f32', scale = 1): Tensor {
  const a = new Float32Array(numel(shape));
  let s = 12345;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return fromArray(be, shape, a, dtype);
}

interface Case {
  name: string;
  flops: number;
  run: () => Tensor;
}

function linearCase(name: string, M: number, K: number, N: number, dtype: DType = 'f32'): Case {
  const x = rand([M, K], dtype);
  const w = rand([N, K], dtype, 0.1);
  const b = rand([N], dtype);
  return { name: `linear ${name} [${M},${K}]x[${N},${K}]ᵀ ${dtype}`, flops: 2 * M * N * K, run: () => linear(x, w, { bias: b }) };
}

function convCase(name: string, C: number, H: number, O: number, k: number, stride = 1): Case {
  const x = rand([1, C, H, H]);
  const w = rand([O, C, k, k], 'f32', 0.1);
  const b = rand([O]);
  const pad = k === 3 ? (stride === 2 ? ([0, 1, 0, 1] as const) : 1) : 0;
  const Ho = stride === 2 ? H / 2 : H;
  return {
    name: `conv2d ${name} ${C}->${O} ${k}x${k}${stride === 2 ? ' s2' : ''} @${H}²`,
    flops: 2 * O * Ho * Ho * C * k * k,
    run: () => conv2d(x, w, { bias: b, stride, padding: pad }),
  };
}

function attentionCase(L: number, H: number, D: number, dtype: DType = 'f32'): Case {
  const q = rand([1, H, L, D], dtype);
  const k = rand([1, H, L, D], dtype);
  const v = rand([1, H, L, D], dtype);
  return { name: `attention B1 H${H} L${L} D${D} ${dtype}`, flops: 4 * H * L * L * D, run: () => attention(q, k, v) };
}

function groupNormCase(C: number, H: number): Case {
  const x = rand([1, C, H, H]);
  const w = rand([C]);
  const b = rand([C]);
  // counted as 10 flops per element, as the pool's split threshold does (+20 for the SiLU)
  return {
    name: `groupNorm+silu 32 groups ${C}ch @${H}²`,
    flops: 30 * C * H * H,
    run: () => groupNorm(x, { groups: 32, weight: w, bias: b, eps: 1e-6, act: 'silu' }),
  };
}

/**
 * Best wall-clock seconds per run over about `budget` seconds (at least 3 runs): the minimum is
 * the least disturbed by other processes on a shared machine.
 */
function time(c: Case, budget: number): number {
  c.run().dispose(); // warm-up (JIT, pool start, weight decode cache)
  let best = Infinity;
  let runs = 0;
  const start = performance.now();
  while (runs < 3 || (performance.now() - start < budget * 1000 && runs < 50)) {
    const t0 = performance.now();
    c.run().dispose();
    best = Math.min(best, (performance.now() - t0) / 1000);
    runs++;
  }
  return best;
}

const cases: Case[] = [
  linearCase('img qkv', 1024, 64, 192),
  linearCase('mlp in', 1024, 64, 256),
  linearCase('mlp out', 1024, 256, 64),
  linearCase('single linear1', 1536, 64, 448),
  linearCase('single linear1', 1536, 64, 448, 'bf16'),
  linearCase('single linear2', 1536, 320, 64),
  linearCase('modulation', 1, 64, 384),
  attentionCase(1536, 2, 32),
  attentionCase(1536, 2, 32, 'bf16'),
  attentionCase(4096, 1, 64), // VAE mid-block attention at 512² (64x64 latent)
  convCase('dec mid', 64, 64, 64, 3),
  convCase('dec up', 64, 128, 64, 3),
  convCase('dec up', 32, 256, 32, 3),
  convCase('nin_shortcut', 64, 256, 32, 1),
  convCase('enc down', 32, 512, 32, 3, 2),
  ...(quick ? [] : [convCase('dec top', 32, 512, 32, 3), convCase('conv_out', 32, 512, 3, 3)]),
  groupNormCase(32, 512),
];

const threads = cpuPoolInfo().threads;
const load0 = loadavg()[0]!;
const budget = quick ? 0.3 : 1;
const rows: string[][] = [['op', 'GFLOP', `1 thread ms`, '1 thread GFLOP/s', `${threads} threads ms`, `${threads} threads GFLOP/s`, 'speedup']];
for (const c of cases) {
  configureCpuPool({ threads: 1 });
  const t1 = time(c, budget);
  configureCpuPool({ threads });
  const tn = time(c, budget);
  rows.push([
    c.name,
    (c.flops / 1e9).toFixed(3),
    (t1 * 1000).toFixed(2),
    (c.flops / t1 / 1e9).toFixed(2),
    (tn * 1000).toFixed(2),
    (c.flops / tn / 1e9).toFixed(2),
    `${(t1 / tn).toFixed(2)}x`,
  ]);
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
console.log(
  `cpu backend, node ${process.version}, pool threads ${threads} (FLUXSERVE_CPU_THREADS to change), best of runs, 1-min load average ${load0.toFixed(2)} at start`,
);
for (const [i, r] of rows.entries()) {
  console.log(r.map((v, j) => (j === 0 ? v.padEnd(widths[j]!) : v.padStart(widths[j]!))).join('  '));
  if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
}
await shutdownCpuPool();
