// Both safety networks (src/models/safety/) on random tiny weights against naive float64
// implementations written from modeling_clip.py / modeling_vit.py (safety-reference64.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Weights } from '../../src/models/weights.js';
import { N_CONCEPTS, StableDiffusionSafetyChecker, ViTForImageClassification, parseSafetyCheckerConfig, parseVitConfig } from '../../src/models/safety.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { fromArray } from '../../src/tensor/ops.js';
import { FabricatingSource, TINY_FALCONSAI_JSON, TINY_SAFETY_CHECKER_JSON } from '../../src/tiny/generate.js';
import { encoder64, getter, layerNorm64, linear64, patches64, randomPixels, relErr } from './safety-reference64.js';

describe('safety networks vs naive float64 references', () => {
  it('CompVis: CLIP vision tower + visual_projection on the tiny config', () => {
    const cfg = parseSafetyCheckerConfig(TINY_SAFETY_CHECKER_JSON);
    const src = new FabricatingSource('safety-test', 7);
    const w = Weights.from(src, cpuBackend);
    const model = new StableDiffusionSafetyChecker(cfg, w);
    w.finish();
    const get = getter(src.made);
    const v = cfg.vision;
    const S = v.image_size;
    const B = 2;
    const pix = randomPixels(B * 3 * S * S, 11);
    const x = fromArray(cpuBackend, [B, 3, S, S], pix);
    const emb = model.imageEmbeds(x);
    const got = emb.toFloat32();
    emb.dispose();
    x.dispose();
    const want = new Float64Array(B * cfg.projection_dim);
    const pre = 'vision_model.vision_model.';
    for (let b = 0; b < B; b++) {
      const img = Float64Array.from(pix.subarray(b * 3 * S * S, (b + 1) * 3 * S * S));
      let h = [
        get(`${pre}embeddings.class_embedding`),
        ...patches64(img, S, v.patch_size, get(`${pre}embeddings.patch_embedding.weight`), undefined, v.hidden_size),
      ];
      const pos = get(`${pre}embeddings.position_embedding.weight`);
      h = h.map((t, i) => t.map((val, c) => val + pos[i * v.hidden_size + c]!));
      h = h.map((t) => layerNorm64(t, get(`${pre}pre_layrnorm.weight`), get(`${pre}pre_layrnorm.bias`), v.layer_norm_eps));
      h = encoder64(
        h,
        get,
        (i) => `${pre}encoder.layers.${i}.`,
        {
          ln1: 'layer_norm1',
          q: 'self_attn.q_proj',
          k: 'self_attn.k_proj',
          v: 'self_attn.v_proj',
          o: 'self_attn.out_proj',
          ln2: 'layer_norm2',
          fc1: 'mlp.fc1',
          fc2: 'mlp.fc2',
        },
        { layers: v.num_hidden_layers, heads: v.num_attention_heads, inter: v.intermediate_size, act: v.hidden_act, eps: v.layer_norm_eps },
      );
      const pooled = layerNorm64(h[0]!, get(`${pre}post_layernorm.weight`), get(`${pre}post_layernorm.bias`), v.layer_norm_eps);
      want.set(linear64(pooled, get('visual_projection.weight'), undefined, cfg.projection_dim), b * cfg.projection_dim);
    }
    const e = relErr(got, want);
    assert.ok(e < 1e-5, `rel err ${e}`);
    // and the decision runs on those embeddings with the stored thresholds
    const scores = model.forward(fromArray(cpuBackend, [1, 3, S, S], pix.subarray(0, 3 * S * S)));
    assert.equal(scores.length, 1);
    assert.equal(scores[0]!.concept.length, N_CONCEPTS);
    model.dispose();
  });

  it('Falconsai: ViTForImageClassification on the tiny config', () => {
    const cfg = parseVitConfig(TINY_FALCONSAI_JSON);
    assert.deepEqual(cfg.labels, ['normal', 'nsfw']);
    const src = new FabricatingSource('vit-test', 9);
    const w = Weights.from(src, cpuBackend);
    const model = new ViTForImageClassification(cfg, w);
    w.finish();
    const get = getter(src.made);
    const S = cfg.image_size;
    const D = cfg.hidden_size;
    const B = 2;
    const pix = randomPixels(B * 3 * S * S, 5);
    const x = fromArray(cpuBackend, [B, 3, S, S], pix);
    const logits = model.forward(x);
    const got = logits.toFloat32();
    logits.dispose();
    const want = new Float64Array(B * 2);
    for (let b = 0; b < B; b++) {
      const img = Float64Array.from(pix.subarray(b * 3 * S * S, (b + 1) * 3 * S * S));
      let h = [
        get('vit.embeddings.cls_token'),
        ...patches64(
          img,
          S,
          cfg.patch_size,
          get('vit.embeddings.patch_embeddings.projection.weight'),
          get('vit.embeddings.patch_embeddings.projection.bias'),
          D,
        ),
      ];
      const pos = get('vit.embeddings.position_embeddings');
      h = h.map((t, i) => t.map((val, c) => val + pos[i * D + c]!));
      h = encoder64(
        h,
        get,
        (i) => `vit.encoder.layer.${i}.`,
        {
          ln1: 'layernorm_before',
          q: 'attention.attention.query',
          k: 'attention.attention.key',
          v: 'attention.attention.value',
          o: 'attention.output.dense',
          ln2: 'layernorm_after',
          fc1: 'intermediate.dense',
          fc2: 'output.dense',
        },
        { layers: cfg.num_hidden_layers, heads: cfg.num_attention_heads, inter: cfg.intermediate_size, act: 'gelu', eps: cfg.layer_norm_eps },
      );
      const cls = layerNorm64(h[0]!, get('vit.layernorm.weight'), get('vit.layernorm.bias'), cfg.layer_norm_eps);
      want.set(linear64(cls, get('classifier.weight'), get('classifier.bias'), 2), b * 2);
    }
    const e = relErr(got, want);
    assert.ok(e < 1e-5, `rel err ${e}`);
    const labels = model.labels(x);
    x.dispose();
    assert.deepEqual(
      labels,
      [0, 1].map((b) => (want[b * 2 + 1]! > want[b * 2]! ? 'nsfw' : 'normal')),
    );
    model.dispose();
  });
});

// ---------------------------------------------------------------------------------------------
// Configs, preprocessing, loading
