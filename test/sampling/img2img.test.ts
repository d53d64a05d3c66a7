// img2img on the tiny model: where sampling starts for a prompt_strength, how many model
// evaluations run, the start latents σ·noise + (1 − σ)·x0, the no-step VAE round trip,
// strength 1 = txt2img, cancellation and memory ownership.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type FluxModels, loadModels } from '../../src/models/load.js';
import { img2img } from '../../src/sampling/img2img.js';
import { getSchedule, img2imgStart } from '../../src/sampling/schedule.js';
import { txt2img } from '../../src/sampling/txt2img.js';
import { writeTinyModel } from '../../src/tiny/generate.js';
import { countingBackend, recordForwards } from '../helpers/counting.js';
import { H, W, baseRequest, vaeRoundTrip, x0AndNoise } from './img2img-helpers.js';

const fr = Math.fround;

describe('img2img (tiny model)', () => {
  let root: string;
  let models: FluxModels;
  let live: () => number;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'fluxserve-img2img-'));
    writeTinyModel(root);
    const c = countingBackend();
    live = c.live;
    models = loadModels(root, c.be);
    assert.equal(models.flux.dtype, 'f32');
  });
  after(() => {
    models?.dispose();
    rmSync(root, { recursive: true, force: true });
  });

  it('starts at sigmas[t_start] with t_start = int(N − N·strength) and runs N − t_start evaluations', async () => {
    const Li = (H / 16) * (W / 16);
    const sigmas = getSchedule(4, Li, { shift: true });
    // strength -> [t_start, evaluations] under the diffusers rule, N = 4
    const cases: [number, number, number][] = [
      [1, 0, 4],
      [0.8, 0, 4], // 4 − 3.2 = 0.8 -> 0
      [0.6, 1, 3], // 1.6 -> 1
      [0.5, 2, 2],
      [0.3, 2, 2], // 2.8 -> 2
      [0.25, 3, 1],
      [0.1, 3, 1], // 3.6 -> 3
    ];
    for (const [strength, tStart, evals] of cases) {
      assert.equal(img2imgStart(sigmas, strength, 'diffusers').startIndex, tStart, `strength ${strength}`);
      const req = baseRequest({ strength });
      const rec = recordForwards(models.flux);
      const firstT: number[] = [];
      try {
        await img2img(models, req, { onStep: (p) => firstT.push(p.t_curr) });
      } finally {
        rec.restore();
      }
      assert.equal(rec.calls.length, evals, `strength ${strength}: model evaluations`);
      assert.equal(firstT[0], sigmas[tStart], `strength ${strength}: first sigma`);
      assert.deepEqual(
        rec.calls.map((c) => c.t),
        Array.from(sigmas.slice(tStart, 4)),
        `strength ${strength}: timesteps fed`,
      );
      // the first model input is σ·noise + (1 − σ)·x0 (one f32 rounding per op, like scale_noise)
      const { x0, noise } = x0AndNoise(models, req);
      const s = sigmas[tStart]!;
      const c = fr(1 - s);
      const expected = noise.map((n, i) => fr(fr(s * n) + fr(c * x0[i]!)));
      assert.deepEqual(rec.calls[0]!.img, expected, `strength ${strength}: start latents`);
    }
  });

  it('prompt_strength 0 runs no step and returns the VAE round trip (for every output)', async () => {
    const req = baseRequest({ strength: 0, numOutputs: 2 });
    const rec = recordForwards(models.flux);
    let out;
    try {
      out = await img2img(models, req);
    } finally {
      rec.restore();
    }
    assert.equal(rec.calls.length, 0);
    const rt = vaeRoundTrip(models, req.image);
    assert.equal(out.length, 2);
    for (const o of out) {
      assert.equal(o.width, W);
      assert.equal(o.height, H);
      assert.deepEqual(o.chw, rt);
    }
  });

  it('a strength so small that N·strength truncates to no step also gives the round trip', async () => {
    const req = baseRequest({ strength: 1e-17 }); // 4 − 4e-17 == 4 in doubles
    const out = await img2img(models, req);
    assert.deepEqual(out[0]!.chw, vaeRoundTrip(models, req.image));
  });

  it('prompt_strength 1 starts at sigmas[0], which the dev shift makes 1 − 2^-24: txt2img up to rounding', async () => {
    const req = baseRequest({ strength: 1, steps: 3 });
    const sigmas = getSchedule(3, (H / 16) * (W / 16), { shift: true });
    assert.equal(sigmas[0], fr(1 - 2 ** -24)); // exp(mu)/(exp(mu) + 0) in float32
    const a = await img2img(models, req);
    const b = await txt2img(models, { prompt: req.prompt, width: W, height: H, steps: 3, guidance: 3.5, seed: 7, numOutputs: 1 });
    let d = 0;
    for (let i = 0; i < a[0]!.chw.length; i++) d = Math.max(d, Math.abs(a[0]!.chw[i]! - b[0]!.chw[i]!));
    assert.ok(d > 0 && d < 1e-5, `max difference ${d}`);
  });

  it('is deterministic for a seed and differs between seeds', async () => {
    const a = await img2img(models, baseRequest({ steps: 2, strength: 1 }));
    const b = await img2img(models, baseRequest({ steps: 2, strength: 1 }));
    const c = await img2img(models, baseRequest({ steps: 2, strength: 1, seed: 8 }));
    assert.deepEqual(a[0]!.chw, b[0]!.chw);
    assert.notDeepEqual(a[0]!.chw, c[0]!.chw);
  });

  it('frees everything it held, after a run and after a cancellation within one step', async () => {
    const before = live();
    await img2img(models, baseRequest({ strength: 1 }));
    assert.equal(live(), before, 'a finished prediction keeps nothing');

    const ac = new AbortController();
    const rec = recordForwards(models.flux);
    const steps: number[] = [];
    try {
      await assert.rejects(
        img2img(models, baseRequest({ strength: 1 }), {
          signal: ac.signal,
          onStep: (p) => {
            steps.push(p.step);
            if (p.step === 1) ac.abort();
          },
        }),
        (e: Error) => e.name === 'AbortError',
      );
    } finally {
      rec.restore();
    }
    assert.deepEqual(steps, [1]);
    assert.ok(rec.calls.length <= 2, `at most one more model evaluation after the abort (ran ${rec.calls.length})`);
    assert.equal(rec.calls.length, 1);
    assert.equal(live(), before, 'a cancelled prediction keeps nothing');

    const pre = new AbortController();
    pre.abort();
    await assert.rejects(img2img(models, baseRequest(), { signal: pre.signal }), (e: Error) => e.name === 'AbortError');
    assert.equal(live(), before);
  });

  it('rejects images whose size does not match', async () => {
    await assert.rejects(img2img(models, baseRequest({ width: 60 })), /multiples of 16/);
    await assert.rejects(img2img(models, baseRequest({ image: new Float32Array(10) })), /expected 3x48x64/);
  });
});
