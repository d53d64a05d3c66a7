#!/usr/bin/env node
// Device-session step (scripts/device.sh, docs/gpu.md): our FLUX transformer forward on a random
// full-size checkpoint vs our own PyTorch implementation (scripts/device/flux_ref.py), both
// written by scripts/device/random_flux.py into DIR:
//   flux-random.safetensors (BFL names, bf16), inputs.safetensors, ref-bf16.safetensors,
//   ref-f32.safetensors (PyTorch f32 on the same bf16-valued weights), meta.json.
// Loads the checkpoint with Flux.load onto the backend FLUXSERVE_BACKEND picks (cuda on the
// device), runs forward twice (the second is timed) and prints the relative error
// ‖ours − ref‖/‖ref‖ vs both references, the forward time and, on cuda, the allocator's peak.
// Imports only dist/ (no node_modules).
// Usage: node scripts/gpu-compare.mjs DIR [--dtype bf16|f32] [--reps N]
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const dir = resolve(args.find((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--'))) ?? '/tmp/flux-random');
const dtype = opt('--dtype', 'bf16');
const reps = Number(opt('--reps', '1'));

const reg = await import('../dist/src/tensor/registry.js');
const cuda = await import('../dist/src/tensor/cuda/index.js');
const ops = await import('../dist/src/tensor/ops.js');
const { openSafetensors } = await import('../dist/src/io/safetensors.js');
const { Flux } = await import('../dist/src/models/flux/model.js');
const { FLUX_DEV } = await import('../dist/src/models/flux/config.js');

const be = reg.defaultBackend();
const desc = cuda.cudaDeviceDescription();
console.log(`backend: ${be.name}${desc ? ` on ${desc}` : ''}; model dtype ${dtype}; dir ${dir}`);
const gib = (b) => (b / 2 ** 30).toFixed(2);
const mem = (label) => {
  const m = cuda.cudaMemStats();
  if (m) console.log(`${label}: allocated ${gib(m.allocated)} GiB, peak ${gib(m.peakAllocated)} GiB, reserved ${gib(m.reserved)} GiB`);
};

const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
const params = { ...FLUX_DEV, depth: meta.depth, depth_single_blocks: meta.single };

let t0 = performance.now();
const wfile = openSafetensors(join(dir, 'flux-random.safetensors'));
const flux = Flux.load(params, wfile, be, dtype === 'bf16' ? {} : { dtype });
wfile.close();
be.synchronize();
console.log(`loaded ${meta.params / 1e9} B params (depth ${meta.depth}/${meta.single}) in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
mem('after load');

const inp = openSafetensors(join(dir, 'inputs.safetensors'));
const tensor = (name) => {
  const i = inp.info(name);
  return ops.fromRaw(be, i.shape, i.dtype, inp.read(name));
};
const host = (name) => {
  const i = inp.info(name);
  if (i.dtype !== 'f32') throw new Error(`${name}: expected f32, got ${i.dtype}`);
  return Float32Array.from(inp.read(name)); // ids, timesteps, guidance: host values
};
const img = tensor('img');
const txt = tensor('txt');
const y = tensor('y');
const imgIds = host('img_ids');
const txtIds = host('txt_ids');
const timesteps = host('timesteps');
const guidance = host('guidance');
inp.close();

const refOut = (file) => {
  const f = openSafetensors(join(dir, file));
  const i = f.info('out');
  const t = ops.fromRaw(be, i.shape, i.dtype, f.read('out'));
  f.close();
  const a = t.toFloat32();
  t.dispose();
  return a;
};
const relErr = (a, b) => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return Math.sqrt(num / den);
};

cuda.cudaResetPeak();
let out;
const times = [];
for (let r = 0; r < 1 + reps; r++) {
  out?.dispose();
  be.synchronize();
  t0 = performance.now();
  out = flux.forward(img, imgIds, txt, txtIds, timesteps, y, guidance);
  be.synchronize();
  times.push(performance.now() - t0);
}
console.log(
  `forward [1, ${img.shape[1]} + ${txt.shape[1]} tokens]: first ${(times[0] / 1e3).toFixed(3)} s, then ${times
    .slice(1)
    .map((t) => (t / 1e3).toFixed(3))
    .join(', ')} s`,
);
mem('forward');
const ours = out.toFloat32();
let finite = true;
for (const v of ours)
  if (!Number.isFinite(v)) {
    finite = false;
    break;
  }
const rms = Math.sqrt(ours.reduce((s, v) => s + v * v, 0) / ours.length);
console.log(`ours: shape [${out.shape.join(', ')}] ${out.dtype}, rms ${rms.toPrecision(4)}, finite ${finite}`);
const r16 = refOut('ref-bf16.safetensors');
const e16 = relErr(ours, r16);
console.log(`rel err vs PyTorch bf16 (flux_ref.py --dtype bf16):            ${e16.toExponential(3)}`);
let e32;
try {
  const r32 = refOut('ref-f32.safetensors');
  e32 = relErr(ours, r32);
  console.log(`rel err vs PyTorch f32 on the bf16 weights (flux_ref.py f32): ${e32.toExponential(3)}`);
  console.log(`(PyTorch bf16 vs its own f32: ${relErr(r16, r32).toExponential(3)} — the bf16 noise floor)`);
} catch (e) {
  console.log(`no f32 reference: ${e.message}`);
}
console.log(
  JSON.stringify({ backend: be.name, dtype, forwardS: times.slice(1).map((t) => t / 1e3), relErrBf16: e16, relErrF32: e32, finite, peak: cuda.cudaMemStats() }),
);
out.dispose();
for (const t of [img, txt, y]) t.dispose();
flux.dispose();
process.exit(finite ? 0 : 1);
