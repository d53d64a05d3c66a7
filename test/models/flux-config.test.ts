import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  FLUX_AE,
  FLUX_DEV,
  FLUX_SCHNELL,
  ModelConfigError,
  autoEncoderParamsFromDiffusersConfig,
  fluxParamsFromBflConfig,
  fluxParamsFromDiffusersConfig,
  validateFluxParams,
} from '../../src/models/flux/config.js';

// huggingface black-forest-labs/FLUX.1-dev transformer/config.json and vae/config.json (the fields
// the conversion reads; flux-spec §1.1, §4.1).
const DIFFUSERS_DEV = {
  _class_name: 'FluxTransformer2DModel',
  attention_head_dim: 128,
  axes_dims_rope: [16, 56, 56],
  guidance_embeds: true,
  in_channels: 64,
  joint_attention_dim: 4096,
  num_attention_heads: 24,
  num_layers: 19,
  num_single_layers: 38,
  out_channels: null,
  patch_size: 1,
  pooled_projection_dim: 768,
};
const DIFFUSERS_VAE = {
  _class_name: 'AutoencoderKL',
  act_fn: 'silu',
  block_out_channels: [128, 256, 512, 512],
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  in_channels: 3,
  latent_channels: 16,
  layers_per_block: 2,
  mid_block_add_attention: true,
  norm_num_groups: 32,
  out_channels: 3,
  sample_size: 1024,
  scaling_factor: 0.3611,
  shift_factor: 0.1159,
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  use_post_quant_conv: false,
  use_quant_conv: false,
};

describe('FLUX configs', () => {
  it('presets are frozen and differ only in the guidance embedder', () => {
    assert.ok(Object.isFrozen(FLUX_DEV) && Object.isFrozen(FLUX_DEV.axes_dim));
    assert.deepEqual({ ...FLUX_SCHNELL, guidance_embed: true }, { ...FLUX_DEV });
    assert.equal(FLUX_SCHNELL.guidance_embed, false);
  });

  it('reads a diffusers transformer config as the dev preset', () => {
    assert.deepEqual({ ...fluxParamsFromDiffusersConfig(DIFFUSERS_DEV) }, { ...FLUX_DEV });
    assert.equal(fluxParamsFromDiffusersConfig({ ...DIFFUSERS_DEV, guidance_embeds: false }).guidance_embed, false);
  });

  it('reads a diffusers vae config as the FLUX autoencoder', () => {
    const p = autoEncoderParamsFromDiffusersConfig(DIFFUSERS_VAE);
    assert.deepEqual({ ...p, resolution: 256 }, { ...FLUX_AE });
    assert.throws(() => autoEncoderParamsFromDiffusersConfig({ ...DIFFUSERS_VAE, use_quant_conv: true }), /use_quant_conv/);
  });

  it('reads a BFL-style config nested under "flux"', () => {
    assert.deepEqual({ ...fluxParamsFromBflConfig({ flux: FLUX_DEV }) }, { ...FLUX_DEV });
  });

  it('rejects inconsistent head and RoPE dims with BFL messages', () => {
    assert.throws(
      () => validateFluxParams({ ...FLUX_DEV, num_heads: 7 }),
      (e: unknown) => e instanceof ModelConfigError && /divisible by num_heads 7/.test(e.message),
    );
    assert.throws(() => validateFluxParams({ ...FLUX_DEV, axes_dim: [16, 56, 48] }), /expected positional dim 128/);
  });
});
