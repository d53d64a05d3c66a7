// The output safety filter in the Predictor (cog-flux postprocess): all flagged -> the prediction
// fails with cog-flux's message; one flagged -> dropped, the others keep their index; CompVis alone
// does not drop an image Falconsai calls normal; disable_safety_checker skips it; setup refuses to
// start without the weights unless disabled.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import sharp from 'sharp';

import { Predictor } from '../../src/predictor/predictor.js';
import { ALL_NSFW_MESSAGE, AllImagesFlaggedError, type ImageSafetyChecker, SafetyChecker, SafetyWeightsError } from '../../src/predictor/safety.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { writeTinyModel, writeTinySafety } from '../../src/tiny/generate.js';

// img2img from a small image keeps the outputs (and the test) small: txt2img sizes start at 256.
let INPUT: Record<string, unknown>;

describe('Predictor safety filter (tiny model)', () => {
  let root: string;
  let flagAll: string;
  let compvisOnly: string;
  const predictors: Predictor[] = [];
  const make = (safety: ConstructorParameters<typeof Predictor>[0]['safety'], log?: (l: string) => void) => {
    const p = new Predictor({ modelDir: root, backend: cpuBackend, profile: 'trainer', safety });
    predictors.push(p);
    p.setup(log);
    return p;
  };

  before(async () => {
    const png = await sharp({ create: { width: 48, height: 32, channels: 3, background: { r: 120, g: 80, b: 200 } } })
      .png()
      .toBuffer();
    INPUT = {
      prompt: 'a fox',
      image: `data:image/png;base64,${png.toString('base64')}`,
      prompt_strength: 0.8,
      num_inference_steps: 2,
      seed: 7,
      output_format: 'png',
      num_outputs: 2,
    };
    root = mkdtempSync(join(tmpdir(), 'fluxserve-safety-'));
    writeTinyModel(root);
    flagAll = join(root, 'safety-flag-all');
    writeTinySafety(flagAll, { threshold: -1, nsfwBias: 100 }); // CompVis flags everything, Falconsai says nsfw
    compvisOnly = join(root, 'safety-compvis-only');
    writeTinySafety(compvisOnly, { threshold: -1, nsfwBias: -100 }); // CompVis flags, Falconsai says normal
  });
  after(() => {
    for (const p of predictors) p.dispose();
    rmSync(root, { recursive: true, force: true });
  });

  it('the tiny model ships a checker that flags nothing (default <model>/safety)', async () => {
    const lines: string[] = [];
    const p = make(undefined, (l) => lines.push(l));
    assert.ok(lines.includes('Loading Falcon safety checker...'), lines.join('\n'));
    const r = await p.predict(INPUT, { log: (l) => lines.push(l) });
    assert.deepEqual(
      r.files.map((f) => f.name),
      ['out-0.png', 'out-1.png'],
    );
    assert.ok(lines.includes('Total safe images: 2 out of 2'), lines.join('\n'));
  });

  it('every image flagged by both checkers: the prediction fails with the cog-flux message', async () => {
    const lines: string[] = [];
    const p = make({ dir: flagAll });
    await assert.rejects(p.predict(INPUT, { log: (l) => lines.push(l) }), (e: unknown) => e instanceof AllImagesFlaggedError && e.message === ALL_NSFW_MESSAGE);
    assert.equal(ALL_NSFW_MESSAGE, 'All generated images contained NSFW content. Try running it again with a different prompt.');
    assert.ok(lines.includes('NSFW content detected in image 0') && lines.includes('NSFW content detected in image 1'), lines.join('\n'));
    assert.ok(!lines.some((l) => l.startsWith('Total safe images')), lines.join('\n'));
  });

  it('CompVis flags but Falconsai says normal: the images are kept (both must flag)', async () => {
    const lines: string[] = [];
    const p = make({ dir: compvisOnly });
    const r = await p.predict(INPUT, { log: (l) => lines.push(l) });
    assert.equal(r.files.length, 2);
    assert.ok(!lines.some((l) => l.startsWith('NSFW content detected')), lines.join('\n'));
    assert.ok(lines.includes('Total safe images: 2 out of 2'), lines.join('\n'));
    // the stages themselves
    const checker = SafetyChecker.load(compvisOnly, cpuBackend);
    try {
      const img = { width: 64, height: 48, data: new Uint8Array(64 * 48 * 3).fill(90) };
      assert.equal((await checker.compvisScores([img]))[0]!.nsfw, true);
      assert.equal(await checker.falconLabel(img), 'normal');
    } finally {
      checker.dispose();
    }
  });

  it('one image flagged: it is dropped, the other keeps its index', async () => {
    const lines: string[] = [];
    let disposed = false;
    const checker: ImageSafetyChecker = {
      check: async (images) => ({ flagged: images.map((_, i) => i === 0) }),
      dispose: () => {
        disposed = true;
      },
    };
    const p = make({ checker });
    const r = await p.predict(INPUT, { log: (l) => lines.push(l) });
    assert.deepEqual(
      r.files.map((f) => f.name),
      ['out-1.png'],
    );
    assert.ok(lines.includes('NSFW content detected in image 0'), lines.join('\n'));
    assert.ok(lines.includes('Total safe images: 1 out of 2'), lines.join('\n'));
    p.dispose();
    assert.equal(disposed, false, 'an injected checker belongs to the caller');
  });

  it('disable_safety_checker skips the filter and says so', async () => {
    const lines: string[] = [];
    const p = make({ dir: flagAll });
    const r = await p.predict({ ...INPUT, disable_safety_checker: true }, { log: (l) => lines.push(l) });
    assert.equal(r.files.length, 2);
    assert.ok(
      lines.some((l) => l.startsWith('Safety checker disabled for this prediction')),
      lines.join('\n'),
    );
    assert.ok(!lines.some((l) => l.startsWith('NSFW') || l.startsWith('Total safe')), lines.join('\n'));
  });

  it('setup refuses to start without the weights, naming them and the way to disable', () => {
    const missing = join(root, 'no-safety');
    const p = new Predictor({ modelDir: root, backend: cpuBackend, safety: { dir: missing } });
    assert.throws(
      () => p.setup(),
      (e: unknown) =>
        e instanceof SafetyWeightsError &&
        e.message.includes(join(missing, 'safety_checker/config.json')) &&
        e.message.includes(join(missing, 'falconsai/model.safetensors')) &&
        e.message.includes('--disable-safety-checker'),
    );
    p.dispose();
  });

  it("safety: 'disabled' starts without weights and logs that outputs are not checked", async () => {
    const setupLines: string[] = [];
    const lines: string[] = [];
    const p = make('disabled', (l) => setupLines.push(l));
    assert.ok(
      setupLines.some((l) => l.includes('--disable-safety-checker')),
      setupLines.join('\n'),
    );
    const r = await p.predict({ ...INPUT, num_outputs: 1 }, { log: (l) => lines.push(l) });
    assert.equal(r.files.length, 1);
    assert.ok(lines.includes('The safety checker is disabled on this server: outputs are not checked.'), lines.join('\n'));
  });
});
