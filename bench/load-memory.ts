// Peak memory of streaming a transformer checkpoint into the CPU backend.
//
// Writes a synthetic BFL-named FLUX transformer checkpoint in bf16 with the real FLUX widths
// (hidden 3072, 24 heads, MLP 12288, T5 4096, CLIP 768) but fewer blocks (default 2 double +
// 2 single = 2.05 GB; the full dev model is 19 + 38 = 23.8 GB) into a temporary folder, one tensor
// at a time (random finite bf16 values made on demand, so the writer holds one tensor at most).
// Every step runs in its own child process, so that each measurement starts from a clean heap:
//   write     writes the checkpoint (writeSafetensors reading the synthetic source tensor by tensor)
//   baseline  imports the same modules and loads nothing (Node + the code)
//   load      Flux.load(params, SafetensorsFile.open(file), cpuBackend, { dtype: 'bf16' }) (spelled out)
// and each reports its peak resident set size: process.resourceUsage().maxRSS and, on Linux,
// VmHWM from /proc/self/status. (They agree here because this parent process stays small: on
// Linux a child's maxRSS starts at its parent's RSS at fork time, VmHWM does not.) The checkpoint
// is deleted at the end.
//
//   npx tsc -p . && node dist/bench/load-memory.js [--depth 2] [--single 2] [--dtype bf16] [--layout bfl] [--dir /tmp] [--forward]
//
// --layout diffusers writes diffusers names instead and loads them through diffusersToBflTransformer
// (q/k/v and MLP rows concatenated on read).
// --dtype is the LoadOptions.dtype of the load (bf16: kept as is; f32: converted at load).
// --forward also runs one forward on a toy input after the load and reports the peak again: the
// CPU backend then decodes bf16 weights to f32 and caches them (FLUXSERVE_CPU_DECODE_CACHE_MB).

import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { bflToDiffusersTransformer, bflTransformerKeys, diffusersToBflTransformer } from '../src/io/names.js';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import type { TensorInfo, TensorSource } from '../src/io/source.js';
import { FLUX_DEV, type FluxParams } from '../src/models/flux/config.js';
import { Flux } from '../src/models/flux/model.js';
import { Weights } from '../src/models/weights.js';
import { imageIds, textIds } from '../src/sampling/latents.js';
import { cpuBackend, decodeCacheBytes, shutdownCpuPool } from '../src/tensor/cpu/index.js';
import type { DType } from '../src/tensor/dtype.js';
import { fromArray } from '../src/tensor/ops.js';
import { numel } from '../src/tensor/tensor.js';

interface ChildReport {
  mode: 'baseline' | 'load' | 'write';
  /** Peak RSS of the child, bytes: process.resourceUsage().maxRSS. */
  maxRssBytes: number;
  /** Peak RSS of the child's own address space (Linux /proc/self/status VmHWM), bytes; -1 elsewhere. */
  hwmBytes: number;
  /** RSS when the child exits (after the load, model still held), bytes. */
  rssBytes: number;
  /** Bytes of the loaded weights (sum over the model's tensors). */
  weightBytes: number;
  tensors: number;
  loadSeconds: number;
  /** Peak RSS right after the load, before the optional forward, bytes. */
  maxRssAfterLoadBytes: number;
  /** VmHWM right after the load, before the optional forward, bytes. */
  hwmAfterLoadBytes: number;
  /** Seconds of the optional forward (0 when not run). */
  forwardSeconds: number;
  /** The CPU backend's f32 decode cache (filled by forward passes only, so 0 after a load). */
  decodeCacheBytes: number;
  arrayBuffersBytes: number;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

/** The checkpoint's names: BFL, or diffusers (renamed back to BFL by a lazy view at load). */
const LAYOUT = arg('layout', 'bfl');
if (LAYOUT !== 'bfl' && LAYOUT !== 'diffusers') throw new Error(`--layout must be bfl or diffusers, got ${LAYOUT}`);

function paramsFor(depth: number, single: number): FluxParams {
  return { ...FLUX_DEV, depth, depth_single_blocks: single };
}

/** Random finite bf16 values (sign random, magnitude in [2^-7, 2^-6)), made when read. */
class SyntheticCheckpoint implements TensorSource {
  readonly label = 'synthetic FLUX checkpoint';
  private readonly shapes: Map<string, number[]>;

  constructor(params: FluxParams) {
    this.shapes = bflTransformerKeys(params);
  }

  keys(): string[] {
    return [...this.shapes.keys()];
  }

  info(name: string): TensorInfo | undefined {
    const shape = this.shapes.get(name);
    return shape ? { dtype: 'bf16', shape } : undefined;
  }

  read(name: string): Uint16Array {
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`${this.label}: no tensor named ${name}`);
    const u = new Uint16Array(numel(shape));
    randomFillSync(u);
    for (let i = 0; i < u.length; i++) u[i] = (u[i]! & 0x807f) | 0x3c00;
    return u;
  }

  get bytes(): number {
    let n = 0;
    for (const s of this.shapes.values()) n += numel(s) * 2;
    return n;
  }
}

/** VmHWM: the peak RSS of this process's own memory map (Linux), or -1. */
function vmHwmBytes(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : -1;
  } catch {
    return -1;
  }
}

function child(mode: 'baseline' | 'load', file: string, depth: number, single: number, dtype: DType, forward: boolean): void {
  let weightBytes = 0;
  let tensors = 0;
  let loadSeconds = 0;
  let forwardSeconds = 0;
  let model: Flux | undefined;
  if (mode === 'load') {
    const t0 = performance.now();
    const src = SafetensorsFile.open(file);
    try {
      // Flux.load, spelled out to keep the builder's list of loaded tensors.
      const w = Weights.from(LAYOUT === 'diffusers' ? diffusersToBflTransformer(src) : src, cpuBackend, { dtype });
      model = new Flux(paramsFor(depth, single), w);
      w.finish();
      for (const t of w.tensors) {
        weightBytes += t.storage.byteLength;
        tensors++;
      }
    } finally {
      src.close();
    }
    loadSeconds = (performance.now() - t0) / 1000;
  }
  const maxRssAfterLoadBytes = process.resourceUsage().maxRSS * 1024;
  const hwmAfterLoadBytes = vmHwmBytes();
  if (model && forward) {
    // One forward on a toy input (16 image tokens, 8 text tokens): the weights are decoded once.
    const p = model.params;
    const t0 = performance.now();
    const rnd = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
    const img = fromArray(cpuBackend, [1, 16, p.in_channels], rnd(16 * p.in_channels));
    const txt = fromArray(cpuBackend, [1, 8, p.context_in_dim], rnd(8 * p.context_in_dim));
    const y = fromArray(cpuBackend, [1, p.vec_in_dim], rnd(p.vec_in_dim));
    const out = model.forward(img, imageIds(8, 8), txt, textIds(8), [0.5], y, p.guidance_embed ? [3.5] : undefined);
    out.toFloat32();
    for (const t of [img, txt, y, out]) t.dispose();
    forwardSeconds = (performance.now() - t0) / 1000;
  }
  const report: ChildReport = {
    mode,
    maxRssBytes: process.resourceUsage().maxRSS * 1024, // Linux/macOS: kilobytes
    hwmBytes: vmHwmBytes(),
    rssBytes: process.memoryUsage().rss,
    weightBytes,
    tensors,
    loadSeconds,
    maxRssAfterLoadBytes,
    hwmAfterLoadBytes,
    forwardSeconds,
    decodeCacheBytes: decodeCacheBytes(),
    arrayBuffersBytes: process.memoryUsage().arrayBuffers,
  };
  model?.dispose();
  shutdownCpuPool();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

function runChild(mode: 'baseline' | 'load' | 'write', file: string, depth: number, single: number, dtype: DType, forward = false): ChildReport {
  const script = fileURLToPath(import.meta.url);
  const r = spawnSync(
    process.execPath,
    [
      script,
      '--child',
      mode,
      '--file',
      file,
      '--depth',
      String(depth),
      '--single',
      String(single),
      '--dtype',
      dtype,
      '--layout',
      LAYOUT,
      ...(forward ? ['--forward'] : []),
    ],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  );
  if (r.status !== 0) throw new Error(`child ${mode} failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(line) as ChildReport;
}

const GB = 1e9;
const MB = 1e6;

function main(): void {
  const depth = Number(arg('depth', '2'));
  const single = Number(arg('single', '2'));
  const dtype = arg('dtype', 'bf16') as DType;
  const mode = arg('child', '');
  if (mode === 'baseline' || mode === 'load') {
    child(mode, arg('file', ''), depth, single, dtype, process.argv.includes('--forward'));
    return;
  }
  if (mode === 'write') {
    const synthetic = new SyntheticCheckpoint(paramsFor(depth, single));
    writeSafetensors(arg('file', ''), LAYOUT === 'diffusers' ? bflToDiffusersTransformer(synthetic) : synthetic);
    const report = { mode, maxRssBytes: process.resourceUsage().maxRSS * 1024, hwmBytes: vmHwmBytes() };
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return;
  }

  const params = paramsFor(depth, single);
  const ckpt = new SyntheticCheckpoint(params);
  const dir = fs.mkdtempSync(path.join(arg('dir', os.tmpdir()), 'fluxserve-load-memory-'));
  const file = path.join(dir, 'flux-synthetic-bf16.safetensors');
  try {
    console.log(
      `synthetic checkpoint: hidden ${params.hidden_size}, ${params.num_heads} heads, ${depth} double + ${single} single blocks, ` +
        `${ckpt.keys().length} tensors, ${(ckpt.bytes / GB).toFixed(3)} GB bf16, ${LAYOUT} names -> ${file}`,
    );
    // The writer runs in a child too. A child's maxRSS starts at its parent's RSS at fork time
    // (Linux carries the pre-exec hiwater mark over), so this process stays small.
    let t0 = performance.now();
    const writer = runChild('write', file, depth, single, dtype);
    const fileBytes = fs.statSync(file).size;
    console.log(
      `written in ${((performance.now() - t0) / 1000).toFixed(1)} s (${(fileBytes / GB).toFixed(3)} GB); writer peak RSS ${(writer.maxRssBytes / MB).toFixed(0)} MB`,
    );

    t0 = performance.now();
    const base = runChild('baseline', file, depth, single, dtype);
    const forward = process.argv.includes('--forward');
    const load = runChild('load', file, depth, single, dtype, forward);
    console.log(`loaded ${load.tensors} tensors (${(load.weightBytes / GB).toFixed(3)} GB as ${dtype}) in ${load.loadSeconds.toFixed(1)} s`);
    if (forward)
      console.log(`one forward (16 + 8 tokens) in ${load.forwardSeconds.toFixed(1)} s; CPU decode cache ${(load.decodeCacheBytes / MB).toFixed(0)} MB`);
    console.log('');

    const rows: [string, string][] = [
      ['checkpoint bytes (file)', `${fileBytes} (${(fileBytes / GB).toFixed(3)} GB)`],
      [`loaded weights (${dtype})`, `${load.weightBytes} (${(load.weightBytes / GB).toFixed(3)} GB)`],
      ['peak RSS, baseline child (no load)', `${(base.maxRssBytes / MB).toFixed(0)} MB (VmHWM ${(base.hwmBytes / MB).toFixed(0)} MB)`],
      ['peak RSS, load child (load only)', `${(load.maxRssAfterLoadBytes / MB).toFixed(0)} MB (VmHWM ${(load.hwmAfterLoadBytes / MB).toFixed(0)} MB)`],
      ['ratio peak RSS / checkpoint', (load.maxRssAfterLoadBytes / fileBytes).toFixed(3)],
      ['ratio peak RSS / loaded weights', (load.maxRssAfterLoadBytes / load.weightBytes).toFixed(3)],
      ['ratio (peak RSS − baseline) / checkpoint', ((load.maxRssAfterLoadBytes - base.maxRssBytes) / fileBytes).toFixed(3)],
    ];
    if (forward) {
      rows.push(
        ['peak RSS after one forward', `${(load.maxRssBytes / MB).toFixed(0)} MB (VmHWM ${(load.hwmBytes / MB).toFixed(0)} MB)`],
        ['  of which CPU f32 decode cache', `${(load.decodeCacheBytes / MB).toFixed(0)} MB`],
        ['ratio peak RSS (with forward) / checkpoint', (load.maxRssBytes / fileBytes).toFixed(3)],
      );
    } else {
      rows.push(['RSS at the end (model held)', `${(load.rssBytes / MB).toFixed(0)} MB`]);
    }
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log(`| ${'measure'.padEnd(w)} | value |`);
    console.log(`| ${'-'.repeat(w)} | ----- |`);
    for (const [k, v] of rows) console.log(`| ${k.padEnd(w)} | ${v} |`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main();
