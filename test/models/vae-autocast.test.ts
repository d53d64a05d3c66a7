// The VAE decode under autocast bf16 (AutoEncoder.decode({ autocast: 'bf16' }), src/models/nn.ts
// Autocast; encode likewise for the image modes): what BFL and cog-flux run (BFL src/flux/cli.py
// under torch.autocast(bf16): convs, linears and attention in bf16 from the fp32 weights, GroupNorm
// in fp32). On the BFL tiny fixture's real latents: a bf16 image close to the fp32 decode and to
// the oracle's, but not the fp32 computation; repeatable; and the policy that picks it per backend.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as path from 'node:path';

import { openSafetensors } from '../../src/io/safetensors.js';
import { AutoEncoder, vaeAutocast } from '../../src/models/autoencoder.js';
import { autoEncoderParamsFromBflConfig } from '../../src/models/flux/config.js';
import type { Backend } from '../../src/tensor/backend.js';
import { rawToF32 } from '../../src/tensor/dtype.js';
import { fromArray } from '../../src/tensor/ops.js';
import { errors, forEachBackend } from '../helpers/backends.js';
import { BFL_TINY_A } from './fixture.js';
import * as fs from 'node:fs';

function fixtureF32(name: string): { values: Float32Array; shape: number[] } {
  const src = openSafetensors(path.join(BFL_TINY_A, 'cases.safetensors'));
  try {
    const info = src.info(name)!;
    return { values: rawToF32(info.dtype, src.read(name)), shape: [...info.shape] };
  } finally {
    src.close();
  }
}

describe('VAE under autocast bf16', () => {
  forEachBackend('decode and encode: bf16 outputs near the fp32 ones and the BFL oracle, not the fp32 computation; repeatable', (be) => {
    const params = autoEncoderParamsFromBflConfig(JSON.parse(fs.readFileSync(path.join(BFL_TINY_A, 'config.json'), 'utf8')));
    const src = openSafetensors(path.join(BFL_TINY_A, 'weights-ae.safetensors'));
    const ae = AutoEncoder.load(params, src, be);
    try {
      const lat = fixtureF32('sample.latents'); // [B, 16, h, w]
      const oracle = fixtureF32('sample.decoded').values; // fp32 BFL decode
      const z = fromArray(be, lat.shape, lat.values, 'f32');
      const f32 = ae.decode(z);
      const bf = ae.decode(z, { autocast: 'bf16' });
      const again = ae.decode(z, { autocast: 'bf16' });
      assert.equal(f32.dtype, 'f32');
      assert.equal(bf.dtype, 'bf16');
      const vb = bf.toFloat32();
      const vf = f32.toFloat32();
      const vsF32 = errors(vb, vf);
      const vsOracle = errors(vb, oracle);
      // bf16 activations and weights: ~2^-8 relative per op, a few dozen ops deep (1.6% measured on the CPU)
      assert.ok(vsF32.rel < 3e-2 && vsOracle.rel < 3e-2, `rel err vs fp32 ${vsF32.rel}, vs oracle ${vsOracle.rel}`);
      assert.ok(vsF32.maxAbs > 0, 'the autocast decode must not be the fp32 computation');
      assert.ok(errors(vf, oracle).rel < 1e-4, 'the fp32 decode stays the reference one');
      assert.deepEqual(again.toRaw(), bf.toRaw(), 'cached bf16 parameters: the same bits every call');
      for (const t of [z, f32, bf, again]) t.dispose();

      // encode (the image modes): bf16 moments near the fp32 ones and the oracle's
      const img = fixtureF32('vae.image');
      const x = fromArray(be, img.shape, img.values, 'f32');
      const e32 = ae.encode(x);
      const ebf = ae.encode(x, { autocast: 'bf16' });
      assert.equal(ebf.dtype, 'bf16');
      const eo = errors(ebf.toFloat32(), fixtureF32('vae.encoded').values);
      const ef = errors(ebf.toFloat32(), e32.toFloat32());
      assert.ok(eo.rel < 3e-2 && ef.rel < 3e-2 && ef.maxAbs > 0, `encode rel err vs oracle ${eo.rel}, vs fp32 ${ef.rel}`);
      for (const t of [x, e32, ebf]) t.dispose();
    } finally {
      ae.dispose();
      src.close();
    }
  });

  test('FLUXSERVE_VAE_AUTOCAST: bf16 on CUDA and off on the CPU by default; bf16/off override; anything else is an error', () => {
    const cuda = { name: 'cuda' } as Backend;
    const cpu = { name: 'cpu' } as Backend;
    assert.equal(vaeAutocast(cuda, {}), 'bf16');
    assert.equal(vaeAutocast(cpu, {}), undefined);
    assert.equal(vaeAutocast(cpu, { FLUXSERVE_VAE_AUTOCAST: 'bf16' }), 'bf16');
    assert.equal(vaeAutocast(cuda, { FLUXSERVE_VAE_AUTOCAST: 'off' }), undefined);
    assert.throws(() => vaeAutocast(cuda, { FLUXSERVE_VAE_AUTOCAST: 'fp16' }), /FLUXSERVE_VAE_AUTOCAST must be bf16 or off/);
  });
});
