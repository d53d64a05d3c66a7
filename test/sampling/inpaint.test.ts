// Inpainting on the tiny model (diffusers FluxInpaintPipeline semantics, flux-spec §3.8): after
// every step the kept (black) latents equal the original re-noised at the next sigma with the
// same noise, and the clean original after the last step; white repaints.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type FluxModels, loadModels } from '../../src/models/load.js';
import { img2img, inpaint, type InpaintRequest } from '../../src/sampling/img2img.js';
import { pack } from '../../src/sampling/latents.js';
import { getSchedule, img2imgStart } from '../../src/sampling/schedule.js';
import { writeTinyModel } from '../../src/tiny/generate.js';
import { countingBackend, recordForwards } from '../helpers/counting.js';
import { H, W, baseRequest, vaeRoundTrip, x0AndNoise } from './img2img-helpers.js';

const fr = Math.fround;
const h = H / 8;
const w = W / 8;

/** Latent mask [h, w]: 1 (repaint) where fn(i, j). */
function latentMask(fn: (i: number, j: number) => boolean): InpaintRequest['mask'] {
  const data = new Float32Array(h * w);
  for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) data[i * w + j] = fn(i, j) ? 1 : 0;
  return { h, w, data };
}

/** The mask packed like the latents, [Li·64] (repeated over the 16 channels). */
function packedMask(m: InpaintRequest['mask']): Float32Array {
  const rep = new Float32Array(16 * h * w);
  for (let c = 0; c < 16; c++) rep.set(m.data, c * h * w);
  return pack(rep, 1, 16, h, w);
}

describe('inpainting (tiny model)', () => {
  let root: string;
  let models: FluxModels;
  let live: () => number;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'fluxserve-inpaint-'));
    writeTinyModel(root);
    const c = countingBackend();
    live = c.live;
    models = loadModels(root, c.be);
  });
  after(() => {
    models?.dispose();
    rmSync(root, { recursive: true, force: true });
  });

  for (const strength of [1, 0.6]) {
    it(`keeps black-masked latents equal to the original re-noised at the next sigma after every step (strength ${strength})`, async () => {
      const mask = latentMask((i, j) => j < w / 2 && i > 0); // left half repaints, except the top row
      const req: InpaintRequest = { ...baseRequest({ strength, numOutputs: 2 }), mask };
      const { x0, noise } = x0AndNoise(models, req);
      const sigmas = getSchedule(req.steps, (h / 2) * (w / 2), { shift: true });
      const tStart = img2imgStart(sigmas, strength, 'diffusers').startIndex;
      const ts = sigmas.slice(tStart);
      const pm = packedMask(mask);
      const D = x0.length; // Li·64 per batch row
      const seen: number[] = [];
      await inpaint(models, req, {
        onStep: (p) => {
          seen.push(p.step);
          const lat = p.latents.toFloat32();
          assert.equal(lat.length, 2 * D);
          const last = p.step === p.total;
          const s = ts[p.step]!; // σ_{i+1}
          assert.equal(s, p.t_prev);
          const c = fr(1 - s);
          let kept = 0;
          let changed = 0;
          for (let b = 0; b < 2; b++) {
            for (let k = 0; k < D; k++) {
              const v = lat[b * D + k]!;
              const ref = last ? x0[k]! : fr(fr(s * noise[b * D + k]!) + fr(c * x0[k]!));
              if (pm[k] === 0) {
                if (v !== ref) assert.fail(`step ${p.step}: kept latent ${b}/${k} is ${v}, expected ${ref}`);
                kept++;
              } else if (v !== ref) {
                changed++;
              }
            }
          }
          assert.ok(kept > 0 && changed > 0.9 * (2 * D - kept), `step ${p.step}: ${kept} kept, ${changed} repainted differ`);
        },
      });
      assert.deepEqual(
        seen,
        Array.from({ length: ts.length - 1 }, (_, i) => i + 1),
      );
    });
  }

  it('an all-white mask is exactly img2img (the blend selects the sampled latents)', async () => {
    const req = baseRequest({ strength: 0.6, steps: 3 });
    const a = await inpaint(models, { ...req, mask: latentMask(() => true) });
    const b = await img2img(models, req);
    assert.deepEqual(a[0]!.chw, b[0]!.chw);
  });

  it('an all-black mask returns the VAE round trip (the last blend restores the clean latents)', async () => {
    const req = baseRequest({ strength: 0.6, steps: 3 });
    const rec = recordForwards(models.flux);
    let out;
    try {
      out = await inpaint(models, { ...req, mask: latentMask(() => false) });
    } finally {
      rec.restore();
    }
    assert.equal(rec.calls.length, 2, 'the model still runs every step (the reference does too)');
    assert.deepEqual(out[0]!.chw, vaeRoundTrip(models, req.image));
  });

  it('the first step starts from σ·noise + (1 − σ)·x0 everywhere, as img2img', async () => {
    const req = baseRequest({ strength: 0.5 });
    const r1 = recordForwards(models.flux);
    try {
      await inpaint(models, { ...req, mask: latentMask((i) => i < 2) });
    } finally {
      r1.restore();
    }
    const r2 = recordForwards(models.flux);
    try {
      await img2img(models, req);
    } finally {
      r2.restore();
    }
    assert.equal(r1.calls.length, 2);
    assert.deepEqual(r1.calls[0]!.img, r2.calls[0]!.img);
    assert.notDeepEqual(r1.calls[1]!.img, r2.calls[1]!.img);
  });

  it('cancellation from step 1 stops within one step and frees everything', async () => {
    const before = live();
    const ac = new AbortController();
    const rec = recordForwards(models.flux);
    try {
      await assert.rejects(
        inpaint(models, { ...baseRequest({ strength: 1 }), mask: latentMask((i) => i < 3) }, { signal: ac.signal, onStep: (p) => p.step === 1 && ac.abort() }),
        (e: Error) => e.name === 'AbortError',
      );
    } finally {
      rec.restore();
    }
    assert.equal(rec.calls.length, 1);
    assert.equal(live(), before);
    await inpaint(models, { ...baseRequest({ strength: 0.6, steps: 2 }), mask: latentMask((i) => i < 3) });
    assert.equal(live(), before, 'a finished inpainting keeps nothing');
  });

  it('rejects a mask of the wrong size', async () => {
    await assert.rejects(inpaint(models, { ...baseRequest(), mask: { h: 2, w: 2, data: new Float32Array(4) } }), /latent size 8x6/);
  });
});
