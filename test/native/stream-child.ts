// Child process of emulator.test.ts ("no host waits in the loop"): runs on the CUDA backend that
// FLUXSERVE_CUDA_ADDON names and prints one JSON line.
//   ring:    many small uploads through the pinned staging ring (FXS_STAGING_BYTES small: it wraps)
//            downloaded again, and the host waits they cost
//   denoise [go_fast]: 4 Euler steps of a small random FLUX dev (go_fast: fp8 linears), the host waits counted after every step,
//            the waits for step marks (the loop's bounded run-ahead), CUDA graph replays, and the
//            output's bits
//   graph:   a captured graph replayed on changed inputs; a capture refused (an upload inside)

import { cudaAttentionKernel, cudaMemStats, loadCudaBackend } from '../../src/tensor/cuda/index.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { tidy } from '../../src/tensor/scope.js';
import { add, affine, fromArray } from '../../src/tensor/ops.js';
import { randomConfigs, RandomSource } from '../../src/debug/random-models.js';
import { Flux } from '../../src/models/flux/model.js';
import { GoFast } from '../../src/models/fp8.js';
import { randomValues } from '../helpers/backends.js';
import { denoise } from '../../src/sampling/denoise.js';
import { getSchedule } from '../../src/sampling/schedule.js';

const be = loadCudaBackend();
if (!be) throw new Error('stream-child: the CUDA backend did not load (FLUXSERVE_CUDA_ADDON)');
const waits = () => cudaMemStats()!.hostWaits;

const mode = process.argv[2];
if (mode === 'ring') {
  const before = waits();
  const sent: Float32Array[] = [];
  const ts: Tensor[] = [];
  for (let i = 0; i < 200; i++) {
    const n = 1 + ((i * 37) % 61); // 1..61 floats: chunks of 16..256 bytes
    const v = randomValues(n, i + 1);
    sent.push(v);
    ts.push(fromArray(be, [n], v, 'f32'));
  }
  const afterUploads = waits();
  let mismatches = 0;
  for (let i = 0; i < ts.length; i++) {
    const got = ts[i]!.toFloat32();
    if (got.length !== sent[i]!.length || got.some((x, j) => x !== sent[i]![j])) mismatches++;
    ts[i]!.dispose();
  }
  console.log(JSON.stringify({ uploads: ts.length, uploadWaits: afterUploads - before, mismatches }));
} else if (mode === 'denoise') {
  const cfg = randomConfigs({ variant: 'dev', small: true }).flux;
  const model = Flux.load(cfg, new RandomSource('transformer', 'bf16'), be);
  const goFast = process.argv[3] === 'go_fast' ? new GoFast(model) : undefined; // fp8 linears, fused amax
  goFast?.enable();
  const Li = 16;
  const Lt = 8;
  const img = fromArray(be, [1, Li, cfg.in_channels], randomValues(Li * cfg.in_channels, 7), 'bf16');
  const txt = fromArray(be, [1, Lt, cfg.context_in_dim], randomValues(Lt * cfg.context_in_dim, 8), 'bf16');
  const vec = fromArray(be, [1, cfg.vec_in_dim], randomValues(cfg.vec_in_dim, 9), 'bf16');
  const img_ids = new Float32Array(Li * 3).map((_, i) => (i % 3 === 0 ? 0 : Math.floor(i / 3) % 4));
  const txt_ids = new Float32Array(Lt * 3);
  cudaAttentionKernel(); // the wgmma kernel's one-time self-check (a host wait) before the loop, not in step 1
  be.synchronize();
  const perStep: number[] = [];
  const start = waits();
  const marks0 = cudaMemStats()!.markWaits;
  const graphs0 = cudaMemStats()!.graphLaunches;
  const out = await denoise(
    model,
    { img, img_ids, txt, txt_ids, vec, timesteps: getSchedule(4, Li, { shift: true }), guidance: 3.5 },
    { onStep: () => perStep.push(waits() - start) },
  );
  const markWaits = cudaMemStats()!.markWaits - marks0;
  const graphLaunches = cudaMemStats()!.graphLaunches - graphs0;
  const bits = Buffer.from(out.toRaw().buffer).toString('base64');
  console.log(JSON.stringify({ perStep, markWaits, graphLaunches, bits }));
  for (const t of [out, img, txt, vec]) t.dispose();
  goFast?.dispose();
  model.dispose();
} else if (mode === 'graph') {
  // a captured graph reads its inputs' contents at replay time; a capture that needs the host fails
  // cleanly and leaves the backend usable
  const a = fromArray(be, [5], [1, 2, 3, 4, 5], 'f32');
  const g = be.captureGraph!(() => tidy(() => add(affine(a, 2), a)));
  g.replay();
  const first = Array.from(g.output.toFloat32());
  be.write(a.storage, 'f32', new Float32Array([10, 20, 30, 40, 50]), 0);
  g.replay();
  const second = Array.from(g.output.toFloat32());
  g.dispose();
  // a tensor made before the capture, read by it and freed during it: its block stays the graph's
  // (an eager tensor made afterwards must not get it, or the next replay would read that one)
  const b = fromArray(be, [5], [100, 200, 300, 400, 500], 'f32');
  const g2 = be.captureGraph!(() =>
    tidy(() => {
      const y = add(a, b);
      b.dispose();
      return y;
    }),
  );
  const filler = fromArray(be, [5], [-1, -1, -1, -1, -1], 'f32');
  g2.replay();
  const held = Array.from(g2.output.toFloat32());
  g2.dispose();
  filler.dispose();
  let refused = '';
  try {
    be.captureGraph!(() => fromArray(be, [2], [1, 2], 'f32'));
  } catch (e) {
    refused = (e as Error).message;
  }
  const sum = add(a, a);
  const after = Array.from(sum.toFloat32());
  sum.dispose();
  a.dispose();
  be.synchronize();
  console.log(JSON.stringify({ first, second, held, refused, after, allocated: cudaMemStats()!.allocated }));
} else {
  throw new Error(`stream-child: unknown mode ${mode}`);
}
