// The two image safety classifiers cog-flux runs on its outputs (flux-spec §7,
// shared/reference/cog-flux-behaviour.md §6), fields spelled like their checkpoints:
//
// - `StableDiffusionSafetyChecker` (huggingface/diffusers
//   src/diffusers/pipelines/stable_diffusion/safety_checker.py; weights
//   CompVis/stable-diffusion-safety-checker): a `CLIPVisionModel` (transformers modeling_clip.py:
//   CLIPVisionEmbeddings, pre_layrnorm, pre-LN encoder, post_layernorm on the CLS token) +
//   `visual_projection` (no bias), then cosine similarities with 17 concept and 3 special-care
//   embeddings against thresholds stored in the file (`compvisDecision`).
// - `ViTForImageClassification` (transformers modeling_vit.py; weights Falconsai/nsfw_image_detection):
//   ViTEmbeddings (cls_token, patch projection with bias, position_embeddings), pre-LN ViTLayers,
//   `vit.layernorm`, `classifier` on the CLS token; labels from config.id2label.
//
// Both are sized from their config.json (so the tiny model's small versions load through the same
// code) and compute in f32 here; cog-flux runs CompVis in fp16 on the GPU and Falconsai in f32 on
// the CPU. Image preprocessing specs (the preprocessor_config.json files) are parsed here; the
// resizing itself (sharp) is in src/predictor/safety.ts.

import { CLIPEncoderLayer, type ClipLayerConfig, type LayerNormParams, isClipBufferKey, layerNormParams } from './clip.js';
import { Conv2d, Linear } from './nn.js';
import { type LoadOptions, Weights } from './weights.js';
import type { TensorSource } from '../io/source.js';
import type { Activation, Backend } from '../tensor/backend.js';
import { add, attention, concat, conv2d, layerNorm, permute, reshape, slice, splitHeads } from '../tensor/ops.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

export class SafetyConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetyConfigError';
  }
}

type Json = Record<string, unknown>;

function num(src: Json, key: string, what: string): number {
  const v = src[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new SafetyConfigError(`${what}: ${key} must be a number (got ${JSON.stringify(v)})`);
  return v;
}

const ACTIVATIONS: Record<string, Activation> = {
  quick_gelu: 'quick_gelu',
  gelu: 'gelu',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
};

function activationOf(name: unknown, what: string): Activation {
  if (typeof name !== 'string' || !(name in ACTIVATIONS)) {
    throw new SafetyConfigError(`${what}: hidden_act must be one of ${Object.keys(ACTIVATIONS).join(', ')} (got ${JSON.stringify(name)})`);
  }
  return ACTIVATIONS[name]!;
}

// ---------------------------------------------------------------------------------------------
// Configs

export interface ClipVisionConfig extends ClipLayerConfig {
  readonly num_hidden_layers: number;
  readonly image_size: number;
  readonly patch_size: number;
  readonly num_channels: number;
}

export interface SafetyCheckerConfig {
  readonly vision: ClipVisionConfig;
  /** visual_projection output size (CLIPConfig.projection_dim; 768 for CompVis). */
  readonly projection_dim: number;
}

/** CLIPVisionConfig's defaults (transformers configuration_clip.py). */
const CLIP_VISION_DEFAULTS: Json = {
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
};

/** 17 concepts and 3 special-care concepts: fixed by the diffusers class, not by the config. */
export const N_CONCEPTS = 17;
export const N_SPECIAL = 3;

/**
 * The safety checker's config.json (a CLIPConfig). As CLIPConfig.__init__ does, a legacy
 * `vision_config_dict` (present in CompVis's file) replaces `vision_config` entirely (both are
 * completed with CLIPVisionConfig's defaults); `projection_dim` defaults to 512.
 */
export function parseSafetyCheckerConfig(json: Json): SafetyCheckerConfig {
  const what = 'safety checker config';
  const dict = json.vision_config_dict && typeof json.vision_config_dict === 'object' ? (json.vision_config_dict as Json) : undefined;
  const vc = json.vision_config && typeof json.vision_config === 'object' ? (json.vision_config as Json) : {};
  const src: Json = { ...CLIP_VISION_DEFAULTS, ...(dict ?? vc) };
  const act = src.hidden_act;
  activationOf(act, what);
  if (act === 'gelu_pytorch_tanh') throw new SafetyConfigError(`${what}: hidden_act gelu_pytorch_tanh is not a CLIP activation`);
  const vision: ClipVisionConfig = Object.freeze({
    hidden_size: num(src, 'hidden_size', what),
    intermediate_size: num(src, 'intermediate_size', what),
    num_hidden_layers: num(src, 'num_hidden_layers', what),
    num_attention_heads: num(src, 'num_attention_heads', what),
    num_channels: num(src, 'num_channels', what),
    image_size: num(src, 'image_size', what),
    patch_size: num(src, 'patch_size', what),
    hidden_act: act as ClipVisionConfig['hidden_act'],
    layer_norm_eps: num(src, 'layer_norm_eps', what),
  });
  if (vision.image_size % vision.patch_size !== 0) throw new SafetyConfigError(`${what}: image_size ${vision.image_size} is not a multiple of patch_size ${vision.patch_size}`);
  return Object.freeze({ vision, projection_dim: num({ projection_dim: 512, ...json }, 'projection_dim', what) });
}

export interface VitConfig {
  readonly hidden_size: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  readonly intermediate_size: number;
  readonly hidden_act: Activation;
  readonly layer_norm_eps: number;
  readonly image_size: number;
  readonly patch_size: number;
  readonly num_channels: number;
  readonly qkv_bias: boolean;
  /** Labels by class index (config.id2label); Falconsai: ['normal', 'nsfw']. */
  readonly labels: readonly string[];
}

/** ViTConfig's defaults (transformers configuration_vit.py). */
const VIT_DEFAULTS: Json = {
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  hidden_act: 'gelu',
  layer_norm_eps: 1e-12,
  image_size: 224,
  patch_size: 16,
  num_channels: 3,
  qkv_bias: true,
};

/** A ViTForImageClassification config.json; id2label must name every class 0..n-1. */
export function parseVitConfig(json: Json): VitConfig {
  const what = 'ViT classifier config';
  const src: Json = { ...VIT_DEFAULTS, ...json };
  const id2label = src.id2label;
  if (!id2label || typeof id2label !== 'object') throw new SafetyConfigError(`${what}: id2label is required (e.g. {"0": "normal", "1": "nsfw"})`);
  const entries = Object.entries(id2label as Json);
  const labels: string[] = [];
  for (let i = 0; i < entries.length; i++) {
    const v = (id2label as Json)[String(i)];
    if (typeof v !== 'string') throw new SafetyConfigError(`${what}: id2label must map 0..${entries.length - 1} to label names (missing ${i})`);
    labels.push(v);
  }
  if (labels.length < 1) throw new SafetyConfigError(`${what}: id2label is empty`);
  const cfg: VitConfig = Object.freeze({
    hidden_size: num(src, 'hidden_size', what),
    num_hidden_layers: num(src, 'num_hidden_layers', what),
    num_attention_heads: num(src, 'num_attention_heads', what),
    intermediate_size: num(src, 'intermediate_size', what),
    hidden_act: activationOf(src.hidden_act, what),
    layer_norm_eps: num(src, 'layer_norm_eps', what),
    image_size: num(src, 'image_size', what),
    patch_size: num(src, 'patch_size', what),
    num_channels: num(src, 'num_channels', what),
    qkv_bias: src.qkv_bias !== false,
    labels: Object.freeze(labels),
  });
  if (cfg.hidden_size % cfg.num_attention_heads !== 0) throw new SafetyConfigError(`${what}: hidden_size not divisible by num_attention_heads`);
  if (cfg.image_size % cfg.patch_size !== 0) throw new SafetyConfigError(`${what}: image_size ${cfg.image_size} is not a multiple of patch_size ${cfg.patch_size}`);
  return cfg;
}

// ---------------------------------------------------------------------------------------------
// Preprocessing specs (preprocessor_config.json)

export type SafetyResample = 'nearest' | 'bilinear' | 'bicubic' | 'lanczos';
const PIL_RESAMPLE: Record<number, SafetyResample> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic' };

export interface ImagePreprocess {
  /** Resize so the shortest edge is this (CLIPImageProcessor), or to exactly height x width (ViTImageProcessor). */
  readonly resize: { readonly shortestEdge: number } | { readonly height: number; readonly width: number } | undefined;
  readonly resample: SafetyResample;
  readonly centerCrop: { readonly height: number; readonly width: number } | undefined;
  readonly rescale: number | undefined;
  readonly mean: readonly number[] | undefined;
  readonly std: readonly number[] | undefined;
}

/** CLIP's mean/std (flux-spec §7; CompVis's feature extractor). */
export const CLIP_MEAN = Object.freeze([0.48145466, 0.4578275, 0.40821073]);
export const CLIP_STD = Object.freeze([0.26862954, 0.26130258, 0.27577711]);

/** The CompVis checker's CLIPImageProcessor: shortest edge 224, bicubic, centre crop 224, /255, CLIP mean/std (flux-spec §7). */
export const COMPVIS_PREPROCESS: ImagePreprocess = Object.freeze({
  resize: { shortestEdge: 224 },
  resample: 'bicubic',
  centerCrop: { height: 224, width: 224 },
  rescale: 1 / 255,
  mean: CLIP_MEAN,
  std: CLIP_STD,
});

/** Falconsai's ViTImageProcessor: 224x224 bilinear, /255, mean/std 0.5. */
export const FALCONSAI_PREPROCESS: ImagePreprocess = Object.freeze({
  resize: { height: 224, width: 224 },
  resample: 'bilinear',
  centerCrop: undefined,
  rescale: 1 / 255,
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
});

function sizeSpec(v: unknown, what: string, key: string): { shortestEdge: number } | { height: number; width: number } {
  if (typeof v === 'number') return { shortestEdge: v };
  if (v && typeof v === 'object') {
    const o = v as Json;
    if (typeof o.shortest_edge === 'number') return { shortestEdge: o.shortest_edge };
    if (typeof o.height === 'number' && typeof o.width === 'number') return { height: o.height, width: o.width };
  }
  throw new SafetyConfigError(`${what}: ${key} must be a number, {shortest_edge} or {height, width} (got ${JSON.stringify(v)})`);
}

function triple(v: unknown, what: string, key: string): number[] {
  const a = typeof v === 'number' ? [v, v, v] : v;
  if (!Array.isArray(a) || a.length !== 3 || a.some((x) => typeof x !== 'number')) throw new SafetyConfigError(`${what}: ${key} must be 3 numbers`);
  return a as number[];
}

/**
 * A preprocessor_config.json over `defaults` (the processor class's defaults). A bare-number `size`
 * is a shortest edge for CLIPImageProcessor (its legacy form) and a square for ViTImageProcessor.
 */
export function parsePreprocessorConfig(json: Json, defaults: ImagePreprocess, kind: 'clip' | 'vit'): ImagePreprocess {
  const what = 'preprocessor_config.json';
  let resize = defaults.resize;
  if (json.do_resize === false) resize = undefined;
  else if (json.size !== undefined) {
    const s = sizeSpec(json.size, what, 'size');
    resize = kind === 'vit' && 'shortestEdge' in s ? { height: s.shortestEdge, width: s.shortestEdge } : s;
  }
  let centerCrop = defaults.centerCrop;
  if (json.do_center_crop === false) centerCrop = undefined;
  else if (json.crop_size !== undefined) {
    const s = sizeSpec(json.crop_size, what, 'crop_size');
    centerCrop = 'shortestEdge' in s ? { height: s.shortestEdge, width: s.shortestEdge } : s;
  } else if (json.do_center_crop === true && !centerCrop) throw new SafetyConfigError(`${what}: do_center_crop without crop_size`);
  let resample = defaults.resample;
  if (json.resample !== undefined) {
    const r = PIL_RESAMPLE[json.resample as number];
    if (!r) throw new SafetyConfigError(`${what}: resample ${JSON.stringify(json.resample)} is not supported (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic)`);
    resample = r;
  }
  const rescale = json.do_rescale === false ? undefined : typeof json.rescale_factor === 'number' ? json.rescale_factor : defaults.rescale ?? 1 / 255;
  const normalize = json.do_normalize !== false;
  const mean = normalize ? (json.image_mean !== undefined ? triple(json.image_mean, what, 'image_mean') : defaults.mean) : undefined;
  const std = normalize ? (json.image_std !== undefined ? triple(json.image_std, what, 'image_std') : defaults.std) : undefined;
  return Object.freeze({ resize, resample, centerCrop, rescale, mean, std });
}

/**
 * transformers' get_resize_output_image_size for a shortest-edge size (default_to_square=False):
 * the short side becomes `size`, the long side int(size · long / short).
 */
export function shortestEdgeSize(width: number, height: number, size: number): { width: number; height: number } {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const newLong = Math.trunc((size * long) / short);
  return width <= height ? { width: size, height: newLong } : { width: newLong, height: size };
}

/** transformers' center_crop offsets: top = (H - h) // 2, left = (W - w) // 2. */
export function centerCropBox(width: number, height: number, crop: { width: number; height: number }): { left: number; top: number } {
  return { left: Math.floor((width - crop.width) / 2), top: Math.floor((height - crop.height) / 2) };
}

/**
 * Interleaved RGB bytes (already resized and cropped) to the normalised CHW floats the model takes:
 * x·rescale, then (x - mean) / std per channel, in float32 like the processors.
 */
export function normalizePixels(rgb: Uint8Array, width: number, height: number, p: ImagePreprocess): Float32Array {
  const plane = width * height;
  if (rgb.length !== plane * 3) throw new Error(`normalizePixels: ${rgb.length} bytes for ${width}x${height}x3`);
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const m = p.mean?.[c] ?? 0;
    const s = p.std?.[c] ?? 1;
    for (let i = 0; i < plane; i++) {
      let v = Math.fround(rgb[i * 3 + c]! * (p.rescale ?? 1));
      if (p.mean) v = Math.fround(Math.fround(v - Math.fround(m)) / Math.fround(s));
      out[c * plane + i] = v;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// CompVis: CLIP vision tower + projection + concept decision

class CLIPVisionEmbeddings {
  readonly class_embedding: Tensor;
  readonly patch_embedding: { readonly weight: Tensor };
  readonly position_embedding: { readonly weight: Tensor };

  constructor(
    readonly cfg: ClipVisionConfig,
    w: Weights,
  ) {
    const D = cfg.hidden_size;
    const P = cfg.patch_size;
    const n = (cfg.image_size / P) ** 2 + 1;
    this.class_embedding = w.get('class_embedding', [D]);
    this.patch_embedding = { weight: w.get('patch_embedding.weight', [D, cfg.num_channels, P, P]) }; // bias=False
    this.position_embedding = { weight: w.get('position_embedding.weight', [n, D]) };
  }

  /** pixel_values [B, C, S, S] -> [B, 1 + (S/P)², D]: [class, patches] + positions. */
  forward(pixels: Tensor): Tensor {
    const cfg = this.cfg;
    const B = pixels.shape[0]!;
    const D = cfg.hidden_size;
    const patches = conv2d(pixels, this.patch_embedding.weight, { stride: cfg.patch_size }); // [B, D, g, g]
    const g2 = patches.shape[2]! * patches.shape[3]!;
    const seq = permute(reshape(patches, [B, D, g2]), [0, 2, 1]); // [B, g², D]
    const cls = reshape(this.class_embedding, [1, 1, D]);
    const clsB = B === 1 ? cls : concat(Array.from({ length: B }, () => cls), 0); // [B, 1, D]
    return add(concat([clsB, seq], 1), this.position_embedding.weight); // [B, 1+g², D]
  }
}

class CLIPVisionTransformer {
  readonly embeddings: CLIPVisionEmbeddings;
  readonly pre_layrnorm: LayerNormParams; // sic, as in the checkpoint
  readonly encoder: { readonly layers: readonly CLIPEncoderLayer[] };
  readonly post_layernorm: LayerNormParams;

  constructor(
    readonly cfg: ClipVisionConfig,
    w: Weights,
  ) {
    this.embeddings = new CLIPVisionEmbeddings(cfg, w.pp('embeddings'));
    this.pre_layrnorm = layerNormParams(w, 'pre_layrnorm', cfg.hidden_size);
    const layers = w.pp('encoder').pp('layers');
    this.encoder = { layers: Array.from({ length: cfg.num_hidden_layers }, (_, i) => new CLIPEncoderLayer(cfg, layers.pp(i), false)) };
    this.post_layernorm = layerNormParams(w, 'post_layernorm', cfg.hidden_size);
  }

  /** pixel_values [B, C, S, S] -> pooler_output [B, D] = post_layernorm(h[:, 0]). */
  forward(pixels: Tensor): Tensor {
    const eps = this.cfg.layer_norm_eps;
    return tidy(() => {
      let h = layerNorm(this.embeddings.forward(pixels), { ...this.pre_layrnorm, eps });
      for (const layer of this.encoder.layers) {
        const next = tidy(() => layer.forward(h));
        h.dispose();
        h = next;
      }
      const cls = reshape(slice(h, 1, 0, 1), [h.shape[0]!, this.cfg.hidden_size]); // [B, D]
      return layerNorm(cls, { ...this.post_layernorm, eps });
    });
  }
}

export interface CompVisScores {
  /** round(cos - threshold + adjustment, 3) per special-care concept (diffusers' special_scores). */
  readonly special: number[];
  /** The same per concept (concept_scores). */
  readonly concept: number[];
  readonly nsfw: boolean;
}

/** numpy's round(x, 3) on a float64: rint(x · 1000) / 1000, ties to even. */
export function roundNumpy3(x: number): number {
  const y = x * 1000;
  let r = Math.round(y);
  if (Math.abs(y % 1) === 0.5 && r % 2 !== 0) r -= 1;
  return r / 1000;
}

/** F.normalize(rows, dim=1) · F.normalize(others, dim=1)ᵀ for one row, rounded to float32 (`.float().numpy()`). */
function cosineRow(a: Float32Array, aOff: number, table: Float32Array, n: number, dim: number): number[] {
  const norm = (x: Float32Array, off: number) => {
    let s = 0;
    for (let i = 0; i < dim; i++) s += x[off + i]! * x[off + i]!;
    return Math.max(Math.sqrt(s), 1e-12);
  };
  const na = norm(a, aOff);
  const out: number[] = [];
  for (let j = 0; j < n; j++) {
    const nb = norm(table, j * dim);
    let d = 0;
    for (let i = 0; i < dim; i++) d += (a[aOff + i]! / na) * (table[j * dim + i]! / nb);
    out.push(Math.fround(d));
  }
  return out;
}

/**
 * The decision of `StableDiffusionSafetyChecker.forward` for one image (flux-spec §7), with
 * cog-flux's numpy<2: the float32 cosine minus the threshold's `.item()` is a float64, rounded by
 * numpy's round (rint(x·1000)/1000). A special-care score > 0 sets adjustment = 0.01 for the
 * remaining special checks and every concept check; the image is NSFW when any concept score > 0.
 */
export function compvisDecision(
  imageEmbed: Float32Array,
  embedOffset: number,
  dim: number,
  w: { concept_embeds: Float32Array; special_care_embeds: Float32Array; concept_embeds_weights: Float32Array; special_care_embeds_weights: Float32Array },
): CompVisScores {
  const nSpecial = w.special_care_embeds_weights.length;
  const nConcept = w.concept_embeds_weights.length;
  const specialCos = cosineRow(imageEmbed, embedOffset, w.special_care_embeds, nSpecial, dim);
  const conceptCos = cosineRow(imageEmbed, embedOffset, w.concept_embeds, nConcept, dim);
  let adjustment = 0.0;
  const special: number[] = [];
  for (let j = 0; j < nSpecial; j++) {
    const s = roundNumpy3(specialCos[j]! - w.special_care_embeds_weights[j]! + adjustment);
    special.push(s);
    if (s > 0) adjustment = 0.01;
  }
  const concept: number[] = [];
  for (let c = 0; c < nConcept; c++) concept.push(roundNumpy3(conceptCos[c]! - w.concept_embeds_weights[c]! + adjustment));
  return { special, concept, nsfw: concept.some((k) => k > 0) };
}

export class StableDiffusionSafetyChecker {
  readonly vision_model: { readonly vision_model: CLIPVisionTransformer };
  readonly visual_projection: Linear;
  readonly concept_embeds: Tensor;
  readonly special_care_embeds: Tensor;
  readonly concept_embeds_weights: Tensor;
  readonly special_care_embeds_weights: Tensor;
  private readonly owned: readonly Tensor[];

  constructor(
    readonly config: SafetyCheckerConfig,
    w: Weights,
  ) {
    const before = w.tensors.length;
    const P = config.projection_dim;
    this.vision_model = { vision_model: new CLIPVisionTransformer(config.vision, w.pp('vision_model').pp('vision_model')) };
    this.visual_projection = new Linear(w.pp('visual_projection'), config.vision.hidden_size, P, false);
    this.concept_embeds = w.get('concept_embeds', [N_CONCEPTS, P]);
    this.special_care_embeds = w.get('special_care_embeds', [N_SPECIAL, P]);
    this.concept_embeds_weights = w.get('concept_embeds_weights', [N_CONCEPTS]);
    this.special_care_embeds_weights = w.get('special_care_embeds_weights', [N_SPECIAL]);
    this.owned = w.tensors.slice(before);
  }

  /** Load and verify every key (an old file's `position_ids` buffer is ignored). */
  static load(source: TensorSource, backend: Backend, config: SafetyCheckerConfig, opts: LoadOptions = {}): StableDiffusionSafetyChecker {
    const outer = opts.ignoreUnused;
    const w = Weights.from(source, backend, { ...opts, ignoreUnused: (k) => isClipBufferKey(k) || (outer?.(k) ?? false) });
    const model = new StableDiffusionSafetyChecker(config, w);
    w.finish();
    return model;
  }

  /** clip_input [B, 3, S, S] -> image_embeds [B, projection_dim]. */
  imageEmbeds(pixels: Tensor): Tensor {
    return tidy(() => this.visual_projection.forward(this.vision_model.vision_model.forward(pixels)));
  }

  /** Scores and has_nsfw_concept per image of the batch. */
  forward(pixels: Tensor): CompVisScores[] {
    const emb = this.imageEmbeds(pixels);
    try {
      const data = emb.toFloat32();
      const P = this.config.projection_dim;
      const w = {
        concept_embeds: this.concept_embeds.toFloat32(),
        special_care_embeds: this.special_care_embeds.toFloat32(),
        concept_embeds_weights: this.concept_embeds_weights.toFloat32(),
        special_care_embeds_weights: this.special_care_embeds_weights.toFloat32(),
      };
      return Array.from({ length: emb.shape[0]! }, (_, b) => compvisDecision(data, b * P, P, w));
    } finally {
      emb.dispose();
    }
  }

  dispose(): void {
    for (const t of this.owned) t.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Falconsai: ViTForImageClassification

class ViTSelfAttention {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  constructor(cfg: VitConfig, w: Weights) {
    const D = cfg.hidden_size;
    this.query = new Linear(w.pp('query'), D, D, cfg.qkv_bias);
    this.key = new Linear(w.pp('key'), D, D, cfg.qkv_bias);
    this.value = new Linear(w.pp('value'), D, D, cfg.qkv_bias);
  }
}

class ViTLayer {
  readonly attention: { readonly attention: ViTSelfAttention; readonly output: { readonly dense: Linear } };
  readonly intermediate: { readonly dense: Linear };
  readonly output: { readonly dense: Linear };
  readonly layernorm_before: LayerNormParams;
  readonly layernorm_after: LayerNormParams;

  constructor(
    readonly cfg: VitConfig,
    w: Weights,
  ) {
    const D = cfg.hidden_size;
    this.attention = {
      attention: new ViTSelfAttention(cfg, w.pp('attention').pp('attention')),
      output: { dense: new Linear(w.pp('attention').pp('output').pp('dense'), D, D) },
    };
    this.intermediate = { dense: new Linear(w.pp('intermediate').pp('dense'), D, cfg.intermediate_size) };
    this.output = { dense: new Linear(w.pp('output').pp('dense'), cfg.intermediate_size, D) };
    this.layernorm_before = layerNormParams(w, 'layernorm_before', D);
    this.layernorm_after = layerNormParams(w, 'layernorm_after', D);
  }

  /** ViTLayer.forward: h += attn(layernorm_before h); h += output(intermediate(layernorm_after h)). */
  forward(h: Tensor): Tensor {
    const cfg = this.cfg;
    const eps = cfg.layer_norm_eps;
    const H = cfg.num_attention_heads;
    const n1 = layerNorm(h, { ...this.layernorm_before, eps });
    const a = this.attention.attention;
    const heads = (p: Linear) => splitHeads(p.forward(n1), 1, H)[0]!; // [B, H, L, hd]
    const ctx = attention(heads(a.query), heads(a.key), heads(a.value), { scale: 1 / Math.sqrt(cfg.hidden_size / H) }); // [B, L, D]
    const h1 = add(h, this.attention.output.dense.forward(ctx));
    const n2 = layerNorm(h1, { ...this.layernorm_after, eps });
    const mid = this.intermediate.dense.forward(n2, cfg.hidden_act);
    return add(h1, this.output.dense.forward(mid));
  }
}

class ViTEmbeddings {
  readonly cls_token: Tensor;
  readonly position_embeddings: Tensor;
  readonly patch_embeddings: { readonly projection: Conv2d };

  constructor(
    readonly cfg: VitConfig,
    w: Weights,
  ) {
    const D = cfg.hidden_size;
    const n = (cfg.image_size / cfg.patch_size) ** 2;
    this.cls_token = w.get('cls_token', [1, 1, D]);
    this.position_embeddings = w.get('position_embeddings', [1, n + 1, D]);
    this.patch_embeddings = { projection: new Conv2d(w.pp('patch_embeddings').pp('projection'), cfg.num_channels, D, cfg.patch_size, cfg.patch_size) };
  }

  forward(pixels: Tensor): Tensor {
    const B = pixels.shape[0]!;
    const D = this.cfg.hidden_size;
    const patches = this.patch_embeddings.projection.forward(pixels); // [B, D, g, g]
    const g2 = patches.shape[2]! * patches.shape[3]!;
    const seq = permute(reshape(patches, [B, D, g2]), [0, 2, 1]); // [B, g², D]
    const cls = B === 1 ? this.cls_token : concat(Array.from({ length: B }, () => this.cls_token), 0);
    return add(concat([cls, seq], 1), this.position_embeddings); // [B, 1+g², D]
  }
}

export class ViTForImageClassification {
  readonly vit: { readonly embeddings: ViTEmbeddings; readonly encoder: { readonly layer: readonly ViTLayer[] }; readonly layernorm: LayerNormParams };
  readonly classifier: Linear;
  private readonly owned: readonly Tensor[];

  constructor(
    readonly config: VitConfig,
    w: Weights,
  ) {
    const before = w.tensors.length;
    const v = w.pp('vit');
    const layers = v.pp('encoder').pp('layer');
    this.vit = {
      embeddings: new ViTEmbeddings(config, v.pp('embeddings')),
      encoder: { layer: Array.from({ length: config.num_hidden_layers }, (_, i) => new ViTLayer(config, layers.pp(i))) },
      layernorm: layerNormParams(v, 'layernorm', config.hidden_size),
    };
    this.classifier = new Linear(w.pp('classifier'), config.hidden_size, config.labels.length);
    this.owned = w.tensors.slice(before);
  }

  static load(source: TensorSource, backend: Backend, config: VitConfig, opts: LoadOptions = {}): ViTForImageClassification {
    const w = Weights.from(source, backend, opts);
    const model = new ViTForImageClassification(config, w);
    w.finish();
    return model;
  }

  /** pixel_values [B, C, S, S] -> logits [B, num_labels] (classifier on layernorm(h)[:, 0]). */
  forward(pixels: Tensor): Tensor {
    const cfg = this.config;
    return tidy(() => {
      let h = this.vit.embeddings.forward(pixels);
      for (const layer of this.vit.encoder.layer) {
        const next = tidy(() => layer.forward(h));
        h.dispose();
        h = next;
      }
      const cls = reshape(slice(h, 1, 0, 1), [h.shape[0]!, cfg.hidden_size]);
      return this.classifier.forward(layerNorm(cls, { ...this.vit.layernorm, eps: cfg.layer_norm_eps }));
    });
  }

  /** The argmax label per image (`logits.argmax(-1)` -> id2label; the first maximum wins, like torch). */
  labels(pixels: Tensor): string[] {
    const logits = this.forward(pixels);
    try {
      const v = logits.toFloat32();
      const n = this.config.labels.length;
      return Array.from({ length: logits.shape[0]! }, (_, b) => {
        let best = 0;
        for (let j = 1; j < n; j++) if (v[b * n + j]! > v[b * n + best]!) best = j;
        return this.config.labels[best]!;
      });
    } finally {
      logits.dispose();
    }
  }

  dispose(): void {
    for (const t of this.owned) t.dispose();
  }
}
