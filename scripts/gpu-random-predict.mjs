#!/usr/bin/env node
// Device-session step (scripts/device.sh, docs/gpu.md): a whole txt2img prediction (T5 + CLIP,
// 28 dev steps, VAE decode) at 1024x1024 with RANDOM full-size weights built in-process — no
// checkpoint files. Reports load time, encode time, per-step time, decode time, total, and on
// cuda the allocator's peak. Imports only dist/ (no node_modules): the tokenizers are stand-ins
// that return fixed ids inside the real vocab sizes (the @huggingface/tokenizers package is not on
// the device).
//
// Weights and tokenizers: src/debug/random-models.ts (random values at the real shapes).
//
// Usage: node scripts/gpu-random-predict.mjs [--size 1024] [--steps 28] [--small]
//   --small: a reduced config (hidden 256, 1+1 blocks, T5/CLIP 1 layer, VAE ch 32), for a CPU test.
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const small = args.includes('--small');
const size = Number(opt('--size', small ? '256' : '1024'));
const steps = Number(opt('--steps', small ? '3' : '28'));

const reg = await import('../dist/src/tensor/registry.js');
const cuda = await import('../dist/src/tensor/cuda/index.js');
const { randomModels } = await import('../dist/src/debug/random-models.js');
const { txt2img } = await import('../dist/src/sampling/txt2img.js');

const be = reg.defaultBackend();
const desc = cuda.cudaDeviceDescription();
console.log(
  `backend: ${be.name}${desc ? ` on ${desc}` : ''}; ${small ? 'SMALL config' : 'full-size FLUX.1-dev + T5-XXL + CLIP-L + AE'}; ${size}x${size}, ${steps} steps`,
);
const gib = (b) => (b / 2 ** 30).toFixed(2);
const mem = (label) => {
  const m = cuda.cudaMemStats();
  if (m) console.log(`${label}: allocated ${gib(m.allocated)} GiB, peak ${gib(m.peakAllocated)} GiB, reserved ${gib(m.reserved)} GiB`);
  return m;
};

// --- load (src/debug/random-models.ts) ------------------------------------------------------------
const t0 = performance.now();
console.log('building random weights on the host, uploading tensor by tensor:');
const { models, params: total } = randomModels(be, { variant: 'dev', small, log: (l) => console.log(`  ${l}`) });
console.log(`loaded ${(total / 1e9).toFixed(2)} B params in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
mem('after load (weights resident)');

// --- predict ------------------------------------------------------------------------------------
cuda.cudaResetPeak();
const tStart = performance.now();
let tEncoded;
const stepEnds = [];
const images = await txt2img(
  models,
  { prompt: 'random weights', width: size, height: size, steps, guidance: 3.5, seed: 0, numOutputs: 1 },
  {
    log: (l) => {
      if (l.startsWith('Sampling')) {
        be.synchronize();
        tEncoded = performance.now();
      }
      console.log(`  ${l}`);
    },
    onStep: (p) => {
      be.synchronize();
      stepEnds.push(performance.now());
      if (p.step === 1 || p.step === p.total || p.step % 7 === 0)
        console.log(`  step ${p.step}/${p.total}: ${((stepEnds.at(-1) - (stepEnds.at(-2) ?? tEncoded)) / 1e3).toFixed(3)} s`);
    },
  },
);
be.synchronize();
const tEnd = performance.now();
const stepS = stepEnds.map((t, i) => (t - (i ? stepEnds[i - 1] : tEncoded)) / 1e3);
const sorted = [...stepS].sort((a, b) => a - b);
const px = images[0].chw;
let finite = true;
let sum = 0;
for (const v of px) {
  if (!Number.isFinite(v)) finite = false;
  sum += v * v;
}
console.log(
  `text encode ${((tEncoded - tStart) / 1e3).toFixed(2)} s; denoise ${steps} steps ${((stepEnds.at(-1) - tEncoded) / 1e3).toFixed(2)} s ` +
    `(per step: first ${stepS[0].toFixed(3)} s, median ${sorted[Math.floor(sorted.length / 2)].toFixed(3)} s, min ${sorted[0].toFixed(3)} s); ` +
    `VAE decode ${((tEnd - stepEnds.at(-1)) / 1e3).toFixed(2)} s; total ${((tEnd - tStart) / 1e3).toFixed(2)} s`,
);
console.log(`image [3, ${images[0].height}, ${images[0].width}] finite ${finite}, rms ${Math.sqrt(sum / px.length).toPrecision(4)}`);
const m = mem('prediction (peak since after load; weights included)');
if (m) {
  // the loop's machinery on this device: CUDA graph replays (steps 2..n), the wgmma attention's self-check
  console.log(
    `graph replays ${m.graphLaunches}, host waits ${m.hostWaits} (this script synchronises every step to time it), wgmma attention: ${cuda.cudaAttentionKernel()}`,
  );
}
console.log(JSON.stringify({ backend: be.name, small, size, steps, params: total, stepS, totalS: (tEnd - tStart) / 1e3, finite, mem: m }));
models.dispose();
process.exit(finite ? 0 : 1);
