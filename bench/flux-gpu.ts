// FLUX.1 speed on the current backend (issue 7, docs/performance.md): per-step and end-to-end time,
// peak GPU memory, go_fast against bf16, and the PyTorch reference from the same run, as one table.
//
//   node dist/bench/flux-gpu.js [--small] [--runs 5] [--sizes 1024,512] [--variants dev,schnell]
//        [--torch FILE.jsonl] [--out FILE.md] [--json FILE.jsonl] [--no-e2e] [--budget SECONDS]
//
// Random full-size weights (src/debug/random-models.ts; real weights cannot be had on the device).
// For each variant (its own model, built then freed) and size, bf16 and go_fast:
//   step — one transformer forward (txt 512 tokens for dev, 256 for schnell as diffusers caps it),
//          median of --runs after one warm-up, each synchronised (wall clock around it)
//   e2e  — txt2img at 1024² (dev 28 steps, schnell 4 steps): stand-in tokenizers, both text
//          encoders, the loop, VAE decode, and PNG encode when sharp is importable; median of --runs
// Quality of go_fast (same seed as bf16, from the e2e runs): final latents and decoded pixels,
// mean abs error and PSNR (peak-to-peak of the bf16 result). --torch reads scripts/device/bench_torch.py's
// JSON lines (same GPU, same device run) and adds its rows and the ratios. --small builds a reduced
// model so the whole script can be checked on the CPU (test/bench/flux-gpu.test.ts).

import * as fs from 'node:fs';

import { randomModels } from '../src/debug/random-models.js';
import { LoraManager } from '../src/lora/apply.js';
import { RuntimeLoraManager } from '../src/lora/runtime.js';
import type { LowRankDelta, ParsedLora } from '../src/lora/types.js';
import type { Flux } from '../src/models/flux/model.js';
import { GoFast } from '../src/models/fp8.js';
import type { FluxModels } from '../src/models/load.js';
import { StepGraph } from '../src/sampling/denoise.js';
import { imageIds, textIds } from '../src/sampling/latents.js';
import { txt2img } from '../src/sampling/txt2img.js';
import type { Backend } from '../src/tensor/backend.js';
import { cudaAttentionKernel, cudaDeviceDescription, cudaEmptyCache, cudaMemStats, cudaResetPeak } from '../src/tensor/cuda/index.js';
import { fromArray } from '../src/tensor/ops.js';
import { defaultBackend } from '../src/tensor/registry.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const small = args.includes('--small');
const runs = Math.max(1, Number(opt('--runs', small ? '2' : '5')));
const sizes = opt('--sizes', small ? '128' : '1024,512')
  .split(',')
  .map(Number);
const variants = opt('--variants', 'dev,schnell').split(',') as ('dev' | 'schnell')[];
const e2eSize = small ? 128 : 1024;
const doE2e = !args.includes('--no-e2e');
const budgetS = Number(opt('--budget', '0'));
const tStart = performance.now();
const overBudget = () => budgetS > 0 && (performance.now() - tStart) / 1e3 > budgetS;

export interface Row {
  impl: string; // 'fluxserve' | 'torch-ref' | 'torch-bfl' ...
  mode: string; // 'bf16' | 'go_fast' | 'eager' | 'compile' ...
  variant: string;
  what: 'step' | 'e2e';
  size: number;
  steps?: number;
  ms: number; // median
  runs: number;
  peakGiB?: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const gib = (b: number) => b / 2 ** 30;

function timeIt(be: Backend, n: number, fn: () => void): number[] {
  fn(); // warm-up (plans, allocator, caches)
  be.synchronize();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    fn();
    be.synchronize();
    out.push(performance.now() - t);
  }
  return out;
}

/**
 * One transformer forward at `size`² with random inputs in the model dtype: `eager` issues its ops
 * from JS; `graph` (backends with CUDA graphs) replays the same forward captured once, as the
 * denoising loop does from its second step (src/sampling/denoise.ts StepGraph).
 */
function stepBench(be: Backend, models: FluxModels, size: number): { eager: () => void; graph: (() => void) | undefined; dispose(): void } {
  const flux = models.flux;
  const h = size / 8;
  const w = size / 8;
  const Li = (h / 2) * (w / 2);
  const Lt = models.t5Tokenizer.maxLength;
  const rnd = (n: number, seed: number) => {
    const a = new Float32Array(n);
    let s = seed;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      a[i] = (s / 2 ** 32) * 2 - 1;
    }
    return a;
  };
  const img = fromArray(be, [1, Li, 64], rnd(Li * 64, 1), flux.dtype);
  const txt = fromArray(be, [1, Lt, flux.params.context_in_dim], rnd(Lt * flux.params.context_in_dim, 2), flux.dtype);
  const vec = fromArray(be, [1, flux.params.vec_in_dim], rnd(flux.params.vec_in_dim, 3), flux.dtype);
  const iids = imageIds(h, w);
  const tids = textIds(Lt);
  const t = new Float32Array([0.75]);
  const g = flux.params.guidance_embed ? new Float32Array([3.5]) : undefined;
  const pe = flux.positionEmbedding(tids, iids, 1, Lt, Li); // once, like denoise
  const eager = () => flux.forward(img, iids, txt, tids, t, vec, g, { pe }).dispose();
  const graph = new StepGraph(flux, { img_ids: iids, txt, txt_ids: tids, vec }, g, pe);
  if (be.captureGraph) {
    eager(); // lazy set-up outside the capture, as denoise's eager first step
    graph.capture(img);
  }
  // a replay as the loop does it: the timestep embedding and the latents refreshed, then the graph
  const replay = () => void graph.replay(img, t);
  return {
    eager,
    graph: graph.captured ? replay : undefined,
    dispose: () => {
      graph.dispose();
      for (const x of [img, txt, vec, pe]) x.dispose();
    },
  };
}

/**
 * A random rank-16 LoRA on the layers fine-tunes train (ai-toolkit's FLUX targets: attention qkv and
 * proj, both MLP layers of every double block, linear1 and linear2 of every single block).
 */
function randomLora(flux: Flux, seed: number, rank = 16): ParsedLora {
  const deltas: LowRankDelta[] = [];
  let s = seed >>> 0;
  const rnd = (n: number, amp: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      a[i] = ((s / 2 ** 32) * 2 - 1) * amp;
    }
    return a;
  };
  const add = (key: string, lin: { weight: { shape: readonly number[] } }) => {
    const [out, inF] = lin.weight.shape as [number, number];
    deltas.push({
      kind: 'lowrank',
      module: key,
      rowStart: 0,
      rowEnd: out,
      cols: inF,
      scale: 1,
      source: key.slice(0, -7),
      rank,
      down: rnd(rank * inF, 0.01),
      up: rnd(out * rank, 0.01),
    });
  };
  flux.double_blocks.forEach((b, i) => {
    for (const side of ['img', 'txt'] as const) {
      const attn = side === 'img' ? b.img_attn : b.txt_attn;
      const mlp = side === 'img' ? b.img_mlp : b.txt_mlp;
      add(`double_blocks.${i}.${side}_attn.qkv.weight`, attn.qkv);
      add(`double_blocks.${i}.${side}_attn.proj.weight`, attn.proj);
      add(`double_blocks.${i}.${side}_mlp.0.weight`, mlp[0]);
      add(`double_blocks.${i}.${side}_mlp.2.weight`, mlp[2]);
    }
  });
  flux.single_blocks.forEach((b, i) => {
    add(`single_blocks.${i}.linear1.weight`, b.linear1);
    add(`single_blocks.${i}.linear2.weight`, b.linear2);
  });
  return { format: 'diffusers-peft', deltas, overrides: [], dropped: [], ranks: [rank], alphas: [], warnings: [], rank };
}

/** Time of switching between two (parsed, cached) LoRAs: runtime adapters, then fused weights. */
function loraSwitch(be: Backend, flux: Flux, lines: string[]): void {
  const A = { parsed: randomLora(flux, 11), scale: 1, id: 'A' };
  const B = { parsed: randomLora(flux, 22), scale: 1, id: 'B' };
  const params = (A.parsed.deltas as LowRankDelta[]).reduce((n, d) => n + d.down.length + d.up.length, 0);
  for (const mode of ['runtime', 'fused'] as const) {
    if (overBudget()) break;
    const mgr = mode === 'runtime' ? new RuntimeLoraManager(flux) : new LoraManager(flux);
    const times: number[] = [];
    const switches = mode === 'runtime' ? runs : 2; // the fused path is host work on every touched row
    for (let i = 0; i <= switches && !overBudget(); i++) {
      const t = performance.now();
      mgr.setLoras([i % 2 === 0 ? A : B]);
      be.synchronize();
      if (i > 0) times.push(performance.now() - t); // the first apply also saves the pristine rows
    }
    mgr.setLoras([]);
    be.synchronize();
    if ('dispose' in mgr && typeof mgr.dispose === 'function') mgr.dispose();
    if (times.length === 0) continue;
    lines.push(
      `LoRA switch (${mode}, rank 16 on ${A.parsed.deltas.length} layers, ${(params / 1e6).toFixed(1)} M params each): median ${median(times).toFixed(1)} ms over ${times.length} switches`,
    );
    console.log(`  ${lines.at(-1)}`);
  }
}

function psnr(a: Float32Array, ref: Float32Array): { mae: number; psnr: number } {
  let lo = Infinity;
  let hi = -Infinity;
  let se = 0;
  let ae = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = a[i]! - ref[i]!;
    se += d * d;
    ae += Math.abs(d);
    if (ref[i]! < lo) lo = ref[i]!;
    if (ref[i]! > hi) hi = ref[i]!;
  }
  const mse = se / ref.length;
  return { mae: ae / ref.length, psnr: mse > 0 ? 10 * Math.log10(((hi - lo) * (hi - lo)) / mse) : Infinity };
}

async function pngEncoder(): Promise<((chw: Float32Array, h: number, w: number) => Promise<unknown>) | undefined> {
  try {
    const enc = await import('../src/images/encode.js');
    return (chw, h, w) => enc.encodeImage(enc.pixelsToRgb(chw, h, w), 'png', 80);
  } catch {
    return undefined; // sharp is not on the device unless carried
  }
}

async function main(): Promise<void> {
  const be = defaultBackend();
  const desc = cudaDeviceDescription();
  const attn = cudaAttentionKernel();
  const device = `${be.name}${desc ? ` on ${desc}` : ''}${attn ? `; wgmma attention ${attn}` : ''}`;
  console.log(`flux-gpu bench: ${device}; ${small ? 'SMALL random model' : 'random full-size FLUX.1'}; runs ${runs}; sizes ${sizes.join(', ')}`);
  const rows: Row[] = [];
  const quality: string[] = [];
  const lines: string[] = [];
  const encode = await pngEncoder();
  if (!encode) console.log('note: sharp not importable; e2e excludes the image encode');
  for (const variant of variants) {
    if (overBudget()) break;
    cudaResetPeak();
    const t0 = performance.now();
    const { models, params } = randomModels(be, { variant, small, log: (l) => console.log(`  ${l}`) });
    console.log(`${variant}: ${(params / 1e9).toFixed(2)} B params built in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
    const gf = new GoFast(models.flux);
    for (const mode of ['bf16', 'go_fast'] as const) {
      if (mode === 'go_fast') {
        const t = performance.now();
        const n = gf.enable();
        be.synchronize();
        console.log(`  go_fast: ${n} layers quantised in ${((performance.now() - t) / 1e3).toFixed(2)} s`);
      } else gf.disable();
      for (const size of sizes) {
        if (overBudget()) break;
        const sb = stepBench(be, models, size);
        for (const [label, fn] of [
          [mode, sb.eager],
          [`${mode}+graph`, sb.graph],
        ] as const) {
          if (!fn) continue;
          const ms = timeIt(be, runs, fn);
          const m = cudaMemStats();
          rows.push({ impl: 'fluxserve', mode: label, variant, what: 'step', size, ms: median(ms), runs, ...(m ? { peakGiB: gib(m.peakAllocated) } : {}) });
          console.log(`  step ${variant} ${label} ${size}²: median ${median(ms).toFixed(1)} ms (${ms.map((x) => x.toFixed(1)).join(' ')})`);
        }
        sb.dispose();
      }
    }
    if (doE2e) {
      const steps = variant === 'dev' ? (small ? 3 : 28) : 4;
      const modes = variant === 'dev' ? (['bf16', 'go_fast'] as const) : (['go_fast', 'bf16'] as const);
      const results: Record<string, { latents: Float32Array; pixels: Float32Array }> = {};
      for (const mode of modes) {
        if (overBudget()) break;
        if (mode === 'go_fast') gf.enable();
        else gf.disable();
        const times: number[] = [];
        for (let r = 0; r < runs + 1; r++) {
          let latents: Float32Array | undefined;
          const t = performance.now();
          const [img] = await txt2img(
            models,
            { prompt: 'bench', width: e2eSize, height: e2eSize, steps, guidance: 3.5, seed: 0, numOutputs: 1 },
            {
              onLatents: (l) => (latents = l),
            },
          );
          if (encode) await encode(img!.chw, img!.height, img!.width);
          be.synchronize();
          if (r > 0) times.push(performance.now() - t); // run 0 is the warm-up
          results[mode] = { latents: latents!, pixels: img!.chw };
        }
        const m = cudaMemStats();
        rows.push({
          impl: 'fluxserve',
          mode,
          variant,
          what: 'e2e',
          size: e2eSize,
          steps,
          ms: median(times),
          runs,
          ...(m ? { peakGiB: gib(m.peakAllocated) } : {}),
        });
        console.log(`  e2e ${variant} ${mode} ${e2eSize}² ${steps} steps: median ${median(times).toFixed(0)} ms`);
      }
      if (results['bf16'] && results['go_fast']) {
        const l = psnr(results['go_fast'].latents, results['bf16'].latents);
        const p = psnr(results['go_fast'].pixels, results['bf16'].pixels);
        quality.push(
          `| ${variant} | ${e2eSize}² | ${steps} | ${l.mae.toExponential(3)} | ${l.psnr.toFixed(2)} | ${p.mae.toExponential(3)} | ${p.psnr.toFixed(2)} |`,
        );
      }
    }
    if (variant === 'dev' && !args.includes('--no-lora') && !overBudget()) {
      gf.disable();
      loraSwitch(be, models.flux, lines);
    }
    gf.dispose();
    models.dispose();
    cudaEmptyCache();
  }

  // the PyTorch reference rows from the same device run
  const torchFile = opt('--torch', '');
  if (torchFile && fs.existsSync(torchFile)) {
    for (const line of fs.readFileSync(torchFile, 'utf8').split('\n')) {
      if (!line.trim().startsWith('{')) continue;
      try {
        rows.push(JSON.parse(line) as Row);
      } catch {
        /* a partial line from a killed run */
      }
    }
  }
  const table = render(rows, quality, device) + (lines.length ? `\n${lines.join('\n')}\n` : '');
  console.log(table);
  const out = opt('--out', '');
  if (out) fs.writeFileSync(out, table);
  const json = opt('--json', '');
  if (json) fs.writeFileSync(json, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
}

function render(rows: Row[], quality: string[], device: string): string {
  const ref = (r: Row) =>
    rows.find((x) => x.impl !== 'fluxserve' && x.mode === 'compile' && x.variant === r.variant && x.what === r.what && x.size === r.size) ??
    rows.find((x) => x.impl !== 'fluxserve' && x.mode === 'eager' && x.variant === r.variant && x.what === r.what && x.size === r.size);
  const lines = [
    `Device: ${device}. Median of each row's runs after a warm-up; "vs ref" = the PyTorch reference's time / ours (> 1: we are faster).`,
    '',
    '| impl | mode | variant | what | size | steps | median ms | runs | peak GiB | vs ref |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of rows) {
    const rf = r.impl === 'fluxserve' ? ref(r) : undefined;
    lines.push(
      `| ${r.impl} | ${r.mode} | ${r.variant} | ${r.what} | ${r.size}² | ${r.steps ?? 1} | ${r.ms.toFixed(1)} | ${r.runs} | ${r.peakGiB !== undefined ? r.peakGiB.toFixed(1) : ''} | ${rf ? `${(rf.ms / r.ms).toFixed(2)}x (${rf.impl} ${rf.mode})` : ''} |`,
    );
  }
  if (quality.length > 0) {
    lines.push(
      '',
      'go_fast vs bf16, same seed:',
      '',
      '| variant | size | steps | latents MAE | latents PSNR dB | pixels MAE | pixels PSNR dB |',
      '| --- | --- | --- | --- | --- | --- | --- |',
      ...quality,
    );
  }
  return `${lines.join('\n')}\n`;
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
    process.exit(1);
  },
);
