import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe, it } from 'node:test';

import { openSafetensors } from '../../src/io/safetensors.js';
import { AutoEncoder } from '../../src/models/autoencoder.js';
import { autoEncoderParamsFromBflConfig, fluxParamsFromBflConfig } from '../../src/models/flux/config.js';
import { Flux } from '../../src/models/flux/model.js';
import { denoise } from '../../src/sampling/denoise.js';
import { imageIds, textIds } from '../../src/sampling/latents.js';
import { rawToF32 } from '../../src/tensor/dtype.js';
import { fromRaw } from '../../src/tensor/ops.js';
import { BFL_TINY_A } from './fixture.js';
import { countingBackend } from '../helpers/counting.js';

function setup() {
  const { be, live } = countingBackend();
  const cfg = JSON.parse(fs.readFileSync(`${BFL_TINY_A}/config.json`, 'utf8'));
  const model = Flux.load(fluxParamsFromBflConfig(cfg), openSafetensors(`${BFL_TINY_A}/weights-flux.safetensors`), be);
  const ae = AutoEncoder.load(autoEncoderParamsFromBflConfig(cfg), openSafetensors(`${BFL_TINY_A}/weights-ae.safetensors`), be);
  const cases = openSafetensors(`${BFL_TINY_A}/cases.safetensors`);
  const tensor = (k: string) => fromRaw(be, cases.info(k)!.shape, cases.info(k)!.dtype, cases.read(k));
  const f32 = (k: string) => rawToF32(cases.info(k)!.dtype, cases.read(k));
  return { be, live, model, ae, tensor, f32 };
}

describe('FLUX memory ownership', () => {
  it('a forward frees every intermediate and taps see each block in order', () => {
    const { live, model, tensor, f32 } = setup();
    const img = tensor('forward.img');
    const txt = tensor('txt');
    const vec = tensor('vec');
    const before = live();
    const names: string[] = [];
    const out = model.forward(img, f32('forward.img_ids'), txt, f32('forward.txt_ids'), f32('forward.timesteps'), vec, f32('forward.guidance'), {
      taps: (n, t) => names.push(`${n} [${t.shape.join(', ')}]`),
    });
    assert.deepEqual(out.shape, [2, 15, 64]);
    assert.equal(live(), before + 1, 'only the output survives the forward');
    out.dispose();
    assert.equal(live(), before);
    const blocks = names.filter((n) => /^(double|single)_blocks\.\d+ |^(double_blocks\.\d+\.(img|txt)) /.test(n));
    assert.deepEqual(blocks, [
      'double_blocks.0.img [2, 15, 64]',
      'double_blocks.0.txt [2, 8, 64]',
      'double_blocks.1.img [2, 15, 64]',
      'double_blocks.1.txt [2, 8, 64]',
      'single_blocks.0 [2, 23, 64]',
      'single_blocks.1 [2, 23, 64]',
    ]);
    assert.ok(names.includes('double_blocks.0.img_attn [2, 15, 64]') && names.includes('single_blocks.1.attn [2, 23, 64]'));
  });

  it('denoise keeps only its result, and an abort frees everything', async () => {
    const { live, model, tensor } = setup();
    const img = tensor('forward.img');
    const txt = tensor('txt');
    const vec = tensor('vec');
    const inputs = { img, img_ids: imageIds(6, 10), txt, txt_ids: textIds(8), vec, timesteps: new Float32Array([1, 0.75, 0.5, 0]), guidance: 3.5 };
    const before = live();
    const steps: number[] = [];
    const out = await denoise(model, inputs, { onStep: (p) => steps.push(p.step) });
    assert.deepEqual(steps, [1, 2, 3]);
    assert.equal(live(), before + 1);
    out.dispose();
    assert.ok(!img.disposed, 'the input latents belong to the caller');

    const ac = new AbortController();
    await assert.rejects(denoise(model, inputs, { signal: ac.signal, onStep: () => ac.abort(new Error('cancelled')) }), /cancelled/);
    assert.equal(live(), before);
  });

  it('the autoencoder frees its intermediates', () => {
    const { live, ae, tensor } = setup();
    const image = tensor('vae.image');
    const before = live();
    const z = ae.encode(image);
    assert.deepEqual(z.shape, [2, 16, 6, 10]);
    const x = ae.decode(z);
    assert.deepEqual(x.shape, [2, 3, 48, 80]);
    assert.equal(live(), before + 2);
    z.dispose();
    x.dispose();
    assert.equal(live(), before);
  });
});
