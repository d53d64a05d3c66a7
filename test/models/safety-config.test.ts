// The safety checkers' config and preprocessor parsing (src/models/safety/config.ts, preprocess.ts)
// and loading with a missing key.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { MapSource } from '../../src/io/source.js';
import { CheckpointError, Weights } from '../../src/models/weights.js';
import {
  COMPVIS_PREPROCESS,
  FALCONSAI_PREPROCESS,
  StableDiffusionSafetyChecker,
  ViTForImageClassification,
  centerCropBox,
  parsePreprocessorConfig,
  parseSafetyCheckerConfig,
  parseVitConfig,
  shortestEdgeSize,
} from '../../src/models/safety.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import {
  COMPVIS_PREPROCESSOR_JSON,
  FALCONSAI_PREPROCESSOR_JSON,
  FabricatingSource,
  TINY_FALCONSAI_JSON,
  TINY_SAFETY_CHECKER_JSON,
} from '../../src/tiny/generate.js';

describe('safety configs and loading', () => {
  it('CompVis config: vision_config_dict replaces vision_config (CLIPConfig), real sizes', () => {
    const real = parseSafetyCheckerConfig({
      projection_dim: 768,
      vision_config: { hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24, patch_size: 14 },
      vision_config_dict: { hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24, patch_size: 14 },
    });
    assert.deepEqual(
      { ...real.vision },
      {
        hidden_size: 1024,
        intermediate_size: 4096,
        num_hidden_layers: 24,
        num_attention_heads: 16,
        num_channels: 3,
        image_size: 224,
        patch_size: 14,
        hidden_act: 'quick_gelu',
        layer_norm_eps: 1e-5,
      },
    );
    assert.equal(real.projection_dim, 768);
    const dictWins = parseSafetyCheckerConfig({ vision_config: { hidden_size: 64, patch_size: 16 }, vision_config_dict: { hidden_size: 32 } });
    assert.equal(dictWins.vision.hidden_size, 32);
    assert.equal(dictWins.vision.patch_size, 32, 'the dict is completed with the defaults, not with vision_config');
    assert.equal(dictWins.projection_dim, 512);
  });

  it('ViT config: id2label is required and ordered', () => {
    assert.throws(() => parseVitConfig({ hidden_size: 32 }), /id2label/);
    assert.throws(() => parseVitConfig({ id2label: { 1: 'nsfw' } }), /missing 0/);
    assert.equal(parseVitConfig({ id2label: { 1: 'nsfw', 0: 'normal' } }).labels[0], 'normal');
  });

  it('preprocessor configs: cog-flux CompVis and Falconsai files equal the built-in specs', () => {
    assert.deepEqual(parsePreprocessorConfig(COMPVIS_PREPROCESSOR_JSON, COMPVIS_PREPROCESS, 'clip'), COMPVIS_PREPROCESS);
    const fa = parsePreprocessorConfig(FALCONSAI_PREPROCESSOR_JSON, FALCONSAI_PREPROCESS, 'vit');
    assert.deepEqual(fa.resize, { height: 224, width: 224 });
    assert.equal(fa.resample, 'bilinear');
    assert.equal(fa.centerCrop, undefined);
    assert.deepEqual(fa.mean, [0.5, 0.5, 0.5]);
    const modern = parsePreprocessorConfig({ size: { shortest_edge: 224 }, crop_size: { height: 224, width: 224 } }, COMPVIS_PREPROCESS, 'clip');
    assert.deepEqual(modern.resize, { shortestEdge: 224 });
  });

  it('resize and crop geometry follow transformers', () => {
    assert.deepEqual(shortestEdgeSize(1024, 1024, 224), { width: 224, height: 224 });
    assert.deepEqual(shortestEdgeSize(1344, 768, 224), { width: 392, height: 224 });
    assert.deepEqual(shortestEdgeSize(768, 1360, 224), { width: 224, height: 396 }); // int(224·1360/768) = 396
    assert.deepEqual(centerCropBox(392, 224, { width: 224, height: 224 }), { left: 84, top: 0 });
    assert.deepEqual(centerCropBox(225, 227, { width: 224, height: 224 }), { left: 0, top: 1 });
  });

  it('loading with a missing key fails naming it', () => {
    const cfg = parseSafetyCheckerConfig(TINY_SAFETY_CHECKER_JSON);
    const src = new FabricatingSource('safety-load', 3);
    const w = Weights.from(src, cpuBackend);
    new StableDiffusionSafetyChecker(cfg, w).dispose();
    const file = new MapSource(
      'safety_checker/model.safetensors',
      [...src.made.entries].filter(([k]) => k !== 'special_care_embeds_weights'),
    );
    file.set('vision_model.vision_model.embeddings.position_ids', 'i32', [1, 257], new Int32Array(257)); // old files' buffer: ignored
    assert.throws(
      () => StableDiffusionSafetyChecker.load(file, cpuBackend, cfg),
      (e: unknown) => e instanceof CheckpointError && /special_care_embeds_weights \[3\]/.test(e.message) && e.missing.length === 1,
    );
    file.set('special_care_embeds_weights', 'f32', [3], new Float32Array(3));
    StableDiffusionSafetyChecker.load(file, cpuBackend, cfg).dispose();

    const vcfg = parseVitConfig(TINY_FALCONSAI_JSON);
    const vsrc = new FabricatingSource('vit-load', 3);
    const vw = Weights.from(vsrc, cpuBackend);
    new ViTForImageClassification(vcfg, vw).dispose();
    const vfile = new MapSource(
      'falconsai',
      [...vsrc.made.entries].filter(([k]) => k !== 'vit.encoder.layer.1.attention.attention.key.bias'),
    );
    assert.throws(() => ViTForImageClassification.load(vfile, cpuBackend, vcfg), /vit\.encoder\.layer\.1\.attention\.attention\.key\.bias/);
  });
});
