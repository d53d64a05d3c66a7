// The safety checkers' config.json files: the CompVis checker's CLIPConfig (its vision tower) and
// Falconsai's ViTConfig, completed with transformers' defaults and checked.

import type { ClipLayerConfig } from '../clip.js';
import type { Activation } from '../../tensor/backend.js';

export class SafetyConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetyConfigError';
  }
}

export type Json = Record<string, unknown>;

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
  if (vision.image_size % vision.patch_size !== 0)
    throw new SafetyConfigError(`${what}: image_size ${vision.image_size} is not a multiple of patch_size ${vision.patch_size}`);
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
  if (cfg.image_size % cfg.patch_size !== 0)
    throw new SafetyConfigError(`${what}: image_size ${cfg.image_size} is not a multiple of patch_size ${cfg.patch_size}`);
  return cfg;
}
