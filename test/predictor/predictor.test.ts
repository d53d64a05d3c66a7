// The Predictor end to end on the tiny model: img2img and inpainting from data: URIs (sizes per
// profile, logs, seed), 422s for unusable files, and cancellation.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';

import { InputValidationError } from '../../src/predictor/errors.js';
import { Predictor } from '../../src/predictor/predictor.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { writeTinyModel } from '../../src/tiny/generate.js';

async function pngUri(width: number, height: number, px: (x: number, y: number) => number[]): Promise<string> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) raw.set(px(x, y), (y * width + x) * 3);
  const buf = await sharp(raw, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
  return `data:image/png;base64,${buf.toString('base64')}`;
}

describe('Predictor img2img / inpainting (tiny model)', () => {
  let root: string;
  let trainer: Predictor;
  let hotswap: Predictor;
  let image: string;
  let mask: string;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'fluxserve-predictor-'));
    writeTinyModel(root);
    trainer = new Predictor({ modelDir: root, backend: cpuBackend, profile: 'trainer' });
    trainer.setup();
    hotswap = new Predictor({ modelDir: root, backend: cpuBackend, profile: 'hotswap' });
    hotswap.setup();
    image = await pngUri(72, 40, (x, y) => [x * 3, y * 6, 128]);
    mask = await pngUri(72, 40, (x) => (x < 36 ? [255, 255, 255] : [0, 0, 0]));
  });
  after(() => {
    trainer?.dispose();
    hotswap?.dispose();
    rmSync(root, { recursive: true, force: true });
  });

  it('img2img: the output takes the image size rounded up to 16, logs sizes, mode and seed', async () => {
    const lines: string[] = [];
    const steps: number[] = [];
    const r = await trainer.predict(
      { prompt: 'a fox', image, num_inference_steps: 4, prompt_strength: 0.5, seed: 1234, output_format: 'png', aspect_ratio: '16:9' },
      { log: (l) => lines.push(l), progress: (p) => steps.push(p.step) },
    );
    assert.equal(r.seed, 1234);
    assert.equal(r.files.length, 1);
    assert.equal(r.files[0]!.name, 'out-0.png');
    const meta = await sharp(r.files[0]!.data).metadata();
    assert.deepEqual([meta.width, meta.height], [80, 48]);
    assert.ok(lines.includes('Using seed: 1234'), lines.join('\n'));
    assert.ok(lines.includes('Input image 72x40 -> 80x48 (img2img)'), lines.join('\n'));
    assert.ok(
      lines.some((l) => l === 'aspect_ratio is ignored in img2img mode'),
      lines.join('\n'),
    );
    assert.deepEqual(steps, [1, 2], 'strength 0.5 of 4 steps runs 2');
  });

  it('inpainting through the hotswap profile; a random seed is logged', async () => {
    const lines: string[] = [];
    const r = await hotswap.predict(
      { prompt: 'a fox', image, mask, num_inference_steps: 2, output_format: 'webp', num_outputs: 2 },
      { log: (l) => lines.push(l) },
    );
    assert.deepEqual(
      r.files.map((f) => f.name),
      ['out-0.webp', 'out-1.webp'],
    );
    for (const f of r.files) {
      const meta = await sharp(f.data).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['webp', 80, 48]);
    }
    assert.ok(lines.includes(`Using seed: ${r.seed}`));
    assert.ok(r.seed >= 0 && r.seed < 65536);
    assert.ok(lines.includes('Input image 72x40 -> 80x48 (inpaint)'), lines.join('\n'));
    assert.ok(
      lines.some((l) => /inpainting \d+ of 60 latent positions/.test(l)),
      lines.join('\n'),
    );
  });

  it('the same seed gives the same files; prompt_strength 0 still returns an image', async () => {
    const input = { prompt: 'a fox', image, num_inference_steps: 2, seed: 5, output_format: 'png' };
    const a = await trainer.predict(input);
    const b = await trainer.predict(input);
    assert.ok(a.files[0]!.data.equals(b.files[0]!.data));
    const z = await trainer.predict({ ...input, prompt_strength: 0 });
    assert.deepEqual([(await sharp(z.files[0]!.data).metadata()).width], [80]);
  });

  it('unusable files are 422s naming the field', async () => {
    const err = (e: unknown, field: string, re: RegExp) => e instanceof InputValidationError && e.fields[0] === field && re.test(e.message);
    await assert.rejects(trainer.predict({ prompt: 'x', image: 'https://example.com/a.png' }), (e) => err(e, 'image', /fetched by the server/));
    await assert.rejects(trainer.predict({ prompt: 'x', image: 'data:image/png;base64,AAAA' }), (e) => err(e, 'image', /cannot decode/));
    await assert.rejects(trainer.predict({ prompt: 'x', image, mask: 'data:image/png;base64,AAAA' }), (e) => err(e, 'mask', /cannot decode/));
    await assert.rejects(trainer.predict({ prompt: 'x', mask }), (e) => err(e, 'mask', /requires image/));
  });

  it('cancellation rejects with an AbortError within a step', async () => {
    const ac = new AbortController();
    const steps: number[] = [];
    await assert.rejects(
      trainer.predict(
        { prompt: 'a fox', image, num_inference_steps: 4, prompt_strength: 1, seed: 1 },
        {
          signal: ac.signal,
          progress: (p) => {
            steps.push(p.step);
            ac.abort();
          },
        },
      ),
      (e: Error) => e.name === 'AbortError',
    );
    assert.deepEqual(steps, [1]);
  });
});
