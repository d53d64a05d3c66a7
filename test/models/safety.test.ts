// The safety classifiers (src/models/safety.ts): the CompVis decision rule against hand-computed
// cases (rounding to 3 decimals, the special-care adjustment), both networks on random tiny weights
// against naive float64 implementations written from modeling_clip.py / modeling_vit.py, config and
// preprocessor parsing, and loading with a missing key.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { MapSource } from '../../src/io/source.js';
import { CheckpointError, Weights } from '../../src/models/weights.js';
import {
  COMPVIS_PREPROCESS,
  FALCONSAI_PREPROCESS,
  N_CONCEPTS,
  N_SPECIAL,
  StableDiffusionSafetyChecker,
  ViTForImageClassification,
  centerCropBox,
  compvisDecision,
  parsePreprocessorConfig,
  parseSafetyCheckerConfig,
  parseVitConfig,
  roundNumpy3,
  shortestEdgeSize,
} from '../../src/models/safety.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { fromArray } from '../../src/tensor/ops.js';
import {
  COMPVIS_PREPROCESSOR_JSON,
  FALCONSAI_PREPROCESSOR_JSON,
  FabricatingSource,
  TINY_FALCONSAI_JSON,
  TINY_SAFETY_CHECKER_JSON,
} from '../../src/tiny/generate.js';

// ---------------------------------------------------------------------------------------------
// The decision rule

const P = 4;

/** Concept tables for compvisDecision: every row orthogonal to the image (cos 0) with threshold 1 unless set. */
function tables() {
  const concept_embeds = new Float32Array(N_CONCEPTS * P);
  const special_care_embeds = new Float32Array(N_SPECIAL * P);
  for (let j = 0; j < N_CONCEPTS; j++) concept_embeds[j * P + 3] = 1;
  for (let j = 0; j < N_SPECIAL; j++) special_care_embeds[j * P + 3] = 1;
  return {
    concept_embeds,
    special_care_embeds,
    concept_embeds_weights: new Float32Array(N_CONCEPTS).fill(1),
    special_care_embeds_weights: new Float32Array(N_SPECIAL).fill(1),
  };
}

/** A row whose cosine with the image embedding [2, 0, 0, 0] is 0.6: [0.6, 0.8, 0, 0] scaled by 3. */
function setRow(table: Float32Array, j: number, row: number[]): void {
  table.set(row, j * P);
}
const IMAGE = new Float32Array([2, 0, 0, 0]);
const COS06 = [1.8, 2.4, 0, 0]; // cos ≈ 1.8 / 3 = 0.6 (normalised: 0.6, 0.8)
/** The cosine exactly as the checker gets it from the stored f32 row: f32(f32(1.8) / |row|) = 0.59999996423... */
const COS = Math.fround(Math.fround(1.8) / Math.hypot(Math.fround(1.8), Math.fround(2.4)));

describe('CompVis decision rule (flux-spec §7)', () => {
  it('numpy round(x, 3): rint(x·1000)/1000', () => {
    assert.equal(roundNumpy3(0.0004), 0);
    assert.equal(roundNumpy3(0.0006), 0.001);
    assert.equal(roundNumpy3(-0.0004), -0);
    assert.ok(!(roundNumpy3(-0.0004) > 0));
    assert.equal(roundNumpy3(0.0104), 0.01);
    assert.equal(roundNumpy3(0.0125), 0.012, 'a tie goes to even (12.5 -> 12)');
  });

  it('a concept 0.0004 above its threshold rounds to 0.0 and is not flagged', () => {
    const t = tables();
    setRow(t.concept_embeds, 5, COS06);
    t.concept_embeds_weights[5] = 0.5996;
    const r = compvisDecision(IMAGE, 0, P, t);
    // hand computation: COS = 0.59999996423..., minus f32(0.5996) = 0.59960001707...
    // -> 0.00039994717 -> x1000 = 0.39995 -> rint 0 -> 0.0, and 0.0 > 0 is false.
    const expectedRaw = COS - Math.fround(0.5996);
    assert.ok(expectedRaw > 0.00039 && expectedRaw < 0.0005, String(expectedRaw));
    assert.equal(r.concept[5], 0);
    assert.equal(r.nsfw, false);
    assert.deepEqual(r.special, [-1, -1, -1]);
    assert.equal(r.concept[0], -1);
  });

  it('a concept 0.0006 above rounds to 0.001 and is flagged', () => {
    const t = tables();
    setRow(t.concept_embeds, 16, COS06);
    t.concept_embeds_weights[16] = 0.5994;
    const r = compvisDecision(IMAGE, 0, P, t);
    assert.equal(r.concept[16], 0.001);
    assert.equal(r.nsfw, true);
  });

  it('a special-care hit adds 0.01 to the later special checks and to every concept check', () => {
    const t = tables();
    // special 0: cos 0.6 - 0.599 = 0.001 (> 0 after rounding) -> adjustment 0.01 from now on
    setRow(t.special_care_embeds, 0, COS06);
    t.special_care_embeds_weights[0] = 0.599;
    // special 1: cos 0.6 - 0.605 = -0.005, + 0.01 -> 0.005
    setRow(t.special_care_embeds, 1, COS06);
    t.special_care_embeds_weights[1] = 0.605;
    // special 2: cos 0 - 0.02 + 0.01 = -0.01
    t.special_care_embeds_weights[2] = 0.02;
    // concept 3: cos 0.6 - 0.6096 = -0.0096, + 0.01 = 0.0004 -> rounds to 0: not flagged alone
    setRow(t.concept_embeds, 3, COS06);
    t.concept_embeds_weights[3] = 0.6096;
    // concept 7: cos 0.6 - 0.6085 = -0.0085, + 0.01 = 0.0015 -> 0.002 (or 0.001): flagged only thanks to the adjustment
    setRow(t.concept_embeds, 7, COS06);
    t.concept_embeds_weights[7] = 0.6085;
    const r = compvisDecision(IMAGE, 0, P, t);
    assert.deepEqual(r.special, [0.001, 0.005, -0.01]);
    assert.equal(r.concept[3], 0);
    assert.ok(r.concept[7]! > 0, String(r.concept[7]));
    assert.equal(r.concept[0], -0.99, 'cos 0 - 1 + 0.01');
    assert.equal(r.nsfw, true);

    // Without the special-care hit the same concepts are not flagged.
    t.special_care_embeds_weights[0] = 0.6096; // 0.6 - 0.6096 = -0.0096 -> -0.01: no adjustment
    const r2 = compvisDecision(IMAGE, 0, P, t);
    assert.deepEqual(r2.special, [-0.01, -0.005, -0.02]);
    assert.equal(r2.concept[7], -0.009); // COS - f32(0.6085) = -0.0085000396 -> -8.50004 -> -9
    assert.equal(r2.nsfw, false);
  });

  it('a special score that rounds to 0 sets no adjustment', () => {
    const t = tables();
    setRow(t.special_care_embeds, 0, COS06);
    t.special_care_embeds_weights[0] = 0.5996; // +0.0004 -> 0.0
    setRow(t.concept_embeds, 0, COS06);
    t.concept_embeds_weights[0] = 0.6085; // -0.0085 -> would be > 0 with the adjustment
    const r = compvisDecision(IMAGE, 0, P, t);
    assert.equal(r.special[0], 0);
    assert.equal(r.concept[0], -0.009);
    assert.equal(r.nsfw, false);
  });

  it('reads the image row at its offset, and scale does not matter (cosine)', () => {
    const t = tables();
    setRow(t.concept_embeds, 0, COS06);
    t.concept_embeds_weights[0] = 0.5;
    const batch = new Float32Array([0, 0, 0, 5, 100, 0, 0, 0]);
    assert.equal(compvisDecision(batch, 0, P, t).nsfw, false);
    const r = compvisDecision(batch, P, P, t);
    assert.equal(r.concept[0], 0.1);
    assert.equal(r.nsfw, true);
  });
});

// ---------------------------------------------------------------------------------------------
// Naive float64 references

type Get = (name: string) => Float64Array;

function getter(src: MapSource): Get {
  return (name) => {
    const e = src.entries.get(name);
    if (!e) throw new Error(`reference: no weight ${name}`);
    return Float64Array.from(e.data as Float32Array);
  };
}

function layerNorm64(x: Float64Array, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const n = x.length;
  let mean = 0;
  for (const v of x) mean += v;
  mean /= n;
  let vr = 0;
  for (const v of x) vr += (v - mean) ** 2;
  vr /= n;
  const inv = 1 / Math.sqrt(vr + eps);
  return x.map((v, i) => (v - mean) * inv * w[i]! + b[i]!);
}

function linear64(x: Float64Array, w: Float64Array, b: Float64Array | undefined, out: number): Float64Array {
  const k = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o]! : 0;
    for (let i = 0; i < k; i++) s += w[o * k + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

/** erf by its everywhere-convergent positive series: 2/√π e^{-z²} Σ 2ⁿ z^{2n+1} / (2n+1)!!. */
function erf64(z: number): number {
  const a = Math.abs(z);
  if (a > 6) return Math.sign(z);
  let term = a;
  let sum = a;
  for (let n = 1; n < 400 && term > 1e-18 * sum; n++) {
    term *= (2 * a * a) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(z) * (2 / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum;
}

const ACT: Record<string, (x: number) => number> = {
  quick_gelu: (x) => x / (1 + Math.exp(-1.702 * x)),
  gelu: (x) => 0.5 * x * (1 + erf64(x / Math.SQRT2)),
};

interface EncoderNames {
  ln1: string;
  q: string;
  k: string;
  v: string;
  o: string;
  ln2: string;
  fc1: string;
  fc2: string;
}

/** A pre-LN transformer encoder over tokens (no mask), both models' layer structure. */
function encoder64(h: Float64Array[], get: Get, prefix: (i: number) => string, names: EncoderNames, cfg: { layers: number; heads: number; inter: number; act: string; eps: number }): Float64Array[] {
  const D = h[0]!.length;
  const hd = D / cfg.heads;
  const act = ACT[cfg.act]!;
  for (let l = 0; l < cfg.layers; l++) {
    const p = prefix(l);
    const n1 = h.map((x) => layerNorm64(x, get(`${p}${names.ln1}.weight`), get(`${p}${names.ln1}.bias`), cfg.eps));
    const proj = (nm: string) => n1.map((x) => linear64(x, get(`${p}${nm}.weight`), get(`${p}${nm}.bias`), D));
    const q = proj(names.q);
    const k = proj(names.k);
    const v = proj(names.v);
    const ctx = h.map(() => new Float64Array(D));
    for (let head = 0; head < cfg.heads; head++) {
      for (let i = 0; i < h.length; i++) {
        const s = k.map((kj) => {
          let d = 0;
          for (let c = 0; c < hd; c++) d += q[i]![head * hd + c]! * kj[head * hd + c]!;
          return d / Math.sqrt(hd);
        });
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j < h.length; j++) for (let c = 0; c < hd; c++) ctx[i]![head * hd + c]! += (e[j]! / z) * v[j]![head * hd + c]!;
      }
    }
    h = h.map((x, i) => {
      const a = linear64(ctx[i]!, get(`${p}${names.o}.weight`), get(`${p}${names.o}.bias`), D);
      return x.map((val, c) => val + a[c]!);
    });
    h = h.map((x) => {
      const n2 = layerNorm64(x, get(`${p}${names.ln2}.weight`), get(`${p}${names.ln2}.bias`), cfg.eps);
      const mid = linear64(n2, get(`${p}${names.fc1}.weight`), get(`${p}${names.fc1}.bias`), cfg.inter).map(act);
      const out = linear64(mid, get(`${p}${names.fc2}.weight`), get(`${p}${names.fc2}.bias`), D);
      return x.map((val, c) => val + out[c]!);
    });
  }
  return h;
}

/** Patch embedding: conv kernel = stride = patch over one CHW image -> g² tokens. */
function patches64(pix: Float64Array, S: number, patch: number, w: Float64Array, b: Float64Array | undefined, D: number): Float64Array[] {
  const g = S / patch;
  const out: Float64Array[] = [];
  for (let py = 0; py < g; py++) {
    for (let px = 0; px < g; px++) {
      const t = new Float64Array(D);
      for (let o = 0; o < D; o++) {
        let s = b ? b[o]! : 0;
        for (let c = 0; c < 3; c++) {
          for (let ky = 0; ky < patch; ky++) {
            for (let kx = 0; kx < patch; kx++) {
              s += w[((o * 3 + c) * patch + ky) * patch + kx]! * pix[(c * S + py * patch + ky) * S + px * patch + kx]!;
            }
          }
        }
        t[o] = s;
      }
      out.push(t);
    }
  }
  return out;
}

function relErr(got: Float32Array, want: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num = Math.max(num, Math.abs(got[i]! - want[i]!));
    den = Math.max(den, Math.abs(want[i]!));
  }
  return num / den;
}

function randomPixels(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = (a / 4294967296) * 4 - 2;
  }
  return out;
}

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
      let h = [get(`${pre}embeddings.class_embedding`), ...patches64(img, S, v.patch_size, get(`${pre}embeddings.patch_embedding.weight`), undefined, v.hidden_size)];
      const pos = get(`${pre}embeddings.position_embedding.weight`);
      h = h.map((t, i) => t.map((val, c) => val + pos[i * v.hidden_size + c]!));
      h = h.map((t) => layerNorm64(t, get(`${pre}pre_layrnorm.weight`), get(`${pre}pre_layrnorm.bias`), v.layer_norm_eps));
      h = encoder64(
        h,
        get,
        (i) => `${pre}encoder.layers.${i}.`,
        { ln1: 'layer_norm1', q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.out_proj', ln2: 'layer_norm2', fc1: 'mlp.fc1', fc2: 'mlp.fc2' },
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
      let h = [get('vit.embeddings.cls_token'), ...patches64(img, S, cfg.patch_size, get('vit.embeddings.patch_embeddings.projection.weight'), get('vit.embeddings.patch_embeddings.projection.bias'), D)];
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
    assert.deepEqual(labels, [0, 1].map((b) => (want[b * 2 + 1]! > want[b * 2]! ? 'nsfw' : 'normal')));
    model.dispose();
  });
});

// ---------------------------------------------------------------------------------------------
// Configs, preprocessing, loading

describe('safety configs and loading', () => {
  it('CompVis config: vision_config_dict replaces vision_config (CLIPConfig), real sizes', () => {
    const real = parseSafetyCheckerConfig({
      projection_dim: 768,
      vision_config: { hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24, patch_size: 14 },
      vision_config_dict: { hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24, patch_size: 14 },
    });
    assert.deepEqual(
      { ...real.vision },
      { hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 24, num_attention_heads: 16, num_channels: 3, image_size: 224, patch_size: 14, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5 },
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
    const file = new MapSource('safety_checker/model.safetensors', [...src.made.entries].filter(([k]) => k !== 'special_care_embeds_weights'));
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
    const vfile = new MapSource('falconsai', [...vsrc.made.entries].filter(([k]) => k !== 'vit.encoder.layer.1.attention.attention.key.bias'));
    assert.throws(() => ViTForImageClassification.load(vfile, cpuBackend, vcfg), /vit\.encoder\.layer\.1\.attention\.attention\.key\.bias/);
  });
});
