// The built-in tiny model: FLUX's exact architecture at toy sizes, generated deterministically
// (seeded) so the demo and the whole test suite run offline on a CPU. It is written twice:
//
//   <dir>/                      the diffusers repo layout (model_index.json, transformer/, vae/,
//                               text_encoder/ = CLIP, text_encoder_2/ = T5 (sharded), tokenizer/,
//                               tokenizer_2/, scheduler/), each with its config.json
//   <dir>/bfl/                  the BFL single-file layout: flux1-tiny.safetensors + ae.safetensors
//                               + config.json ({flux, ae} like shared/fixtures/bfl-tiny-a), with the
//                               text encoders and tokenizers beside them
//   <dir>/safety/               tiny output safety checkers (safety_checker/ = CompVis layout,
//                               falconsai/ = ViTForImageClassification), each with config.json,
//                               model.safetensors and preprocessor_config.json; also in bfl/safety/.
//                               Their thresholds are above any cosine, so nothing is ever flagged.
//
// The weights come from the model constructors themselves: a FabricatingSource makes up each
// tensor a constructor asks for (name and shape), so the files always match the code.

import { cpSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { bflToDiffusersTransformer, bflToDiffusersVae } from '../io/names.js';
import { writeSafetensors, writeShardedSafetensors } from '../io/safetensors.js';
import { MapSource, type TensorInfo, type TensorSource } from '../io/source.js';
import { CLIPTextModel, type ClipTextConfig } from '../models/clip.js';
import { AutoEncoder } from '../models/autoencoder.js';
import type { AutoEncoderParams, FluxParams } from '../models/flux/config.js';
import { Flux } from '../models/flux/model.js';
import {
  N_CONCEPTS,
  N_SPECIAL,
  type SafetyCheckerConfig,
  StableDiffusionSafetyChecker,
  ViTForImageClassification,
  type VitConfig,
  parseSafetyCheckerConfig,
  parseVitConfig,
} from '../models/safety.js';
import { T5EncoderModel, type T5Config } from '../models/t5.js';
import { Weights } from '../models/weights.js';
import { cpuBackend } from '../tensor/cpu/index.js';
import type { RawArray } from '../tensor/dtype.js';
import { numel } from '../tensor/tensor.js';
import { type TinyTokenizerInfo, writeTinyTokenizers } from './tokenizers.js';

/** Bump when the generated files change; the cache folder is keyed by it. */
export const TINY_VERSION = 2;
const SEED = 20241121;

/** CLIP width of the tiny model (= the transformer's vec_in_dim). */
const CLIP_HIDDEN = 32;
/** T5 width of the tiny model (= the transformer's context_in_dim). */
const T5_D_MODEL = 64;

/** The tiny transformer: hidden 64, 2 heads (head dim 32 = 4 + 14 + 14 RoPE dims), 2 + 2 blocks. */
export const TINY_FLUX: FluxParams = Object.freeze({
  in_channels: 64,
  out_channels: 64,
  vec_in_dim: CLIP_HIDDEN,
  context_in_dim: T5_D_MODEL,
  hidden_size: 64,
  mlp_ratio: 4.0,
  num_heads: 2,
  depth: 2,
  depth_single_blocks: 2,
  axes_dim: Object.freeze([4, 14, 14]),
  theta: 10_000,
  qkv_bias: true,
  guidance_embed: true,
});

/**
 * The tiny VAE: 3 downsamples (scale factor 8, as FLUX), channels 32/32/64/64 — 32 is the least
 * width GroupNorm(32 groups) allows. Latent scale/shift are FLUX's (flux-spec §4.1).
 */
export const TINY_AE: AutoEncoderParams = Object.freeze({
  resolution: 256,
  in_channels: 3,
  ch: 32,
  out_ch: 3,
  ch_mult: Object.freeze([1, 1, 2, 2]),
  num_res_blocks: 1,
  z_channels: 16,
  scale_factor: 0.3611,
  shift_factor: 0.1159,
});

export function tinyT5Config(vocab: number): T5Config {
  return Object.freeze({
    vocab_size: vocab,
    d_model: T5_D_MODEL,
    d_kv: 16,
    d_ff: 128,
    num_layers: 2,
    num_heads: 4,
    relative_attention_num_buckets: 32,
    relative_attention_max_distance: 128,
    layer_norm_epsilon: 1e-6,
    feed_forward_proj: 'gated-gelu',
  });
}

export function tinyClipConfig(vocab: number): ClipTextConfig {
  return Object.freeze({
    vocab_size: vocab,
    hidden_size: CLIP_HIDDEN,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    max_position_embeddings: 77,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
    eos_token_id: 2, // the legacy value FLUX's CLIP config has: pooled token = the largest id (EOS)
    projection_dim: CLIP_HIDDEN,
  });
}

// ---------------------------------------------------------------------------------------------
// Deterministic weights

function hash32(s: string): number {
  let h = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** mulberry32 uniform in [0, 1). */
function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Values for one weight, from its name alone (so the order of requests does not matter). */
export function tinyWeightValues(name: string, shape: readonly number[], seed = SEED): Float32Array {
  const n = numel(shape);
  const u = uniform(hash32(name) ^ seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  const out = new Float32Array(n);
  const leaf = name.slice(name.lastIndexOf('.') + 1);
  let mean = 0;
  let std: number;
  if (shape.length >= 2) {
    const embeddingLike = /embedding|shared|embed_tokens|relative_attention_bias/.test(name);
    std = embeddingLike ? 0.5 : 1 / Math.sqrt(numel(shape.slice(1)));
  } else if (leaf === 'scale' || (leaf === 'weight' && /norm|layer_norm/.test(name))) {
    mean = 1; // norm gains around 1, randomised so a kernel that ignores them is caught
    std = 0.1;
  } else {
    std = 0.02; // biases
  }
  for (let i = 0; i < n; i++) out[i] = mean + std * normal();
  return out;
}

/** A TensorSource that makes up (and remembers) every f32 tensor a constructor asks for. */
export class FabricatingSource implements TensorSource {
  readonly made = new MapSource('tiny');

  constructor(
    readonly label: string,
    private readonly seed = SEED,
  ) {}

  keys(): string[] {
    return this.made.keys();
  }

  info(name: string): TensorInfo | undefined {
    return this.made.info(name);
  }

  read(name: string): RawArray {
    return this.made.read(name);
  }

  provide(name: string, shape: readonly number[]): TensorInfo | undefined {
    this.made.set(name, 'f32', shape, tinyWeightValues(`${this.label}/${name}`, shape, this.seed));
    return this.made.info(name);
  }
}

/** Builds a model from a FabricatingSource, frees the built tensors, returns the made weights. */
function fabricate(label: string, build: (w: Weights) => { dispose(): void }): MapSource {
  const src = new FabricatingSource(label);
  const w = Weights.from(src, cpuBackend);
  const model = build(w);
  w.finish();
  model.dispose();
  return src.made;
}

// ---------------------------------------------------------------------------------------------
// Writing the layouts

function writeJson(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

export function diffusersTransformerConfig(p: FluxParams): Record<string, unknown> {
  return {
    _class_name: 'FluxTransformer2DModel',
    _diffusers_version: '0.30.0',
    attention_head_dim: p.hidden_size / p.num_heads,
    axes_dims_rope: [...p.axes_dim],
    guidance_embeds: p.guidance_embed,
    in_channels: p.in_channels,
    joint_attention_dim: p.context_in_dim,
    num_attention_heads: p.num_heads,
    num_layers: p.depth,
    num_single_layers: p.depth_single_blocks,
    out_channels: null,
    patch_size: 1,
    pooled_projection_dim: p.vec_in_dim,
  };
}

export function diffusersVaeConfig(p: AutoEncoderParams): Record<string, unknown> {
  return {
    _class_name: 'AutoencoderKL',
    _diffusers_version: '0.30.0',
    act_fn: 'silu',
    block_out_channels: p.ch_mult.map((m) => m * p.ch),
    down_block_types: p.ch_mult.map(() => 'DownEncoderBlock2D'),
    force_upcast: true,
    in_channels: p.in_channels,
    latent_channels: p.z_channels,
    latents_mean: null,
    latents_std: null,
    layers_per_block: p.num_res_blocks,
    mid_block_add_attention: true,
    norm_num_groups: 32,
    out_channels: p.out_ch,
    sample_size: p.resolution,
    scaling_factor: p.scale_factor,
    shift_factor: p.shift_factor,
    up_block_types: p.ch_mult.map(() => 'UpDecoderBlock2D'),
    use_post_quant_conv: false,
    use_quant_conv: false,
  };
}

function t5ConfigJson(c: T5Config): Record<string, unknown> {
  return {
    architectures: ['T5EncoderModel'],
    d_ff: c.d_ff,
    d_kv: c.d_kv,
    d_model: c.d_model,
    decoder_start_token_id: 0,
    dense_act_fn: 'gelu_new',
    eos_token_id: 1,
    feed_forward_proj: c.feed_forward_proj,
    is_encoder_decoder: true,
    is_gated_act: true,
    layer_norm_epsilon: c.layer_norm_epsilon,
    model_type: 't5',
    num_heads: c.num_heads,
    num_layers: c.num_layers,
    pad_token_id: 0,
    relative_attention_max_distance: c.relative_attention_max_distance,
    relative_attention_num_buckets: c.relative_attention_num_buckets,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    vocab_size: c.vocab_size,
  };
}

function clipConfigJson(c: ClipTextConfig, tok: TinyTokenizerInfo): Record<string, unknown> {
  return {
    architectures: ['CLIPTextModel'],
    attention_dropout: 0.0,
    bos_token_id: 0,
    eos_token_id: c.eos_token_id,
    hidden_act: c.hidden_act,
    hidden_size: c.hidden_size,
    initializer_factor: 1.0,
    intermediate_size: c.intermediate_size,
    layer_norm_eps: c.layer_norm_eps,
    max_position_embeddings: c.max_position_embeddings,
    model_type: 'clip_text_model',
    num_attention_heads: c.num_attention_heads,
    num_hidden_layers: c.num_hidden_layers,
    pad_token_id: tok.clipEosId,
    projection_dim: c.projection_dim,
    torch_dtype: 'float32',
    vocab_size: c.vocab_size,
  };
}

const MODEL_INDEX = {
  _class_name: 'FluxPipeline',
  _diffusers_version: '0.30.0',
  scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  text_encoder: ['transformers', 'CLIPTextModel'],
  text_encoder_2: ['transformers', 'T5EncoderModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  tokenizer_2: ['transformers', 'T5TokenizerFast'],
  transformer: ['diffusers', 'FluxTransformer2DModel'],
  vae: ['diffusers', 'AutoencoderKL'],
};

// ---------------------------------------------------------------------------------------------
// Tiny safety checkers (src/models/safety.ts). The preprocessing stays at 224x224 like the real ones.

/** The tiny CompVis checker's config.json: a CLIPConfig with a 2-layer, 32-wide vision tower. */
export const TINY_SAFETY_CHECKER_JSON: Record<string, unknown> = Object.freeze({
  architectures: ['StableDiffusionSafetyChecker'],
  model_type: 'clip',
  projection_dim: 16,
  vision_config: {
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_channels: 3,
    image_size: 224,
    patch_size: 14,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
  },
});

/** The tiny Falconsai classifier's config.json (labels as the real one). */
export const TINY_FALCONSAI_JSON: Record<string, unknown> = Object.freeze({
  architectures: ['ViTForImageClassification'],
  model_type: 'vit',
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_channels: 3,
  image_size: 224,
  patch_size: 16,
  hidden_act: 'gelu',
  layer_norm_eps: 1e-12,
  qkv_bias: true,
  id2label: { '0': 'normal', '1': 'nsfw' },
  label2id: { normal: 0, nsfw: 1 },
});

/** CompVis's feature-extractor/preprocessor_config.json (as cog-flux ships it). */
export const COMPVIS_PREPROCESSOR_JSON: Record<string, unknown> = Object.freeze({
  crop_size: 224,
  do_center_crop: true,
  do_convert_rgb: true,
  do_normalize: true,
  do_resize: true,
  feature_extractor_type: 'CLIPFeatureExtractor',
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  resample: 3,
  size: 224,
});

/** Falconsai/nsfw_image_detection's preprocessor_config.json. */
export const FALCONSAI_PREPROCESSOR_JSON: Record<string, unknown> = Object.freeze({
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_processor_type: 'ViTImageProcessor',
  image_std: [0.5, 0.5, 0.5],
  resample: 2,
  rescale_factor: 0.00392156862745098,
  size: { height: 224, width: 224 },
});

export interface TinySafetyOptions {
  /** Every CompVis threshold (concept_embeds_weights, special_care_embeds_weights); default 1.5 (never flags: cos <= 1). */
  threshold?: number;
  /** Added to the Falconsai classifier's bias for label 1 (nsfw); default 0. */
  nsfwBias?: number;
}

/**
 * Write tiny safety checkers into `dir` (safety_checker/ and falconsai/). With the defaults nothing
 * is flagged; tests pass `threshold: -1` (every image flagged by CompVis) and a large `nsfwBias`.
 */
export function writeTinySafety(dir: string, opts: TinySafetyOptions = {}): void {
  const scCfg: SafetyCheckerConfig = parseSafetyCheckerConfig(TINY_SAFETY_CHECKER_JSON);
  const vitCfg: VitConfig = parseVitConfig(TINY_FALCONSAI_JSON);
  const sc = fabricate('safety_checker', (w) => new StableDiffusionSafetyChecker(scCfg, w));
  const threshold = opts.threshold ?? 1.5;
  sc.set('concept_embeds_weights', 'f32', [N_CONCEPTS], new Float32Array(N_CONCEPTS).fill(threshold));
  sc.set('special_care_embeds_weights', 'f32', [N_SPECIAL], new Float32Array(N_SPECIAL).fill(threshold));
  const fa = fabricate('falconsai', (w) => new ViTForImageClassification(vitCfg, w));
  if (opts.nsfwBias) {
    const b = Float32Array.from(fa.read('classifier.bias') as Float32Array);
    b[1] = b[1]! + opts.nsfwBias;
    fa.set('classifier.bias', 'f32', [b.length], b);
  }
  writeJson(join(dir, 'safety_checker', 'config.json'), TINY_SAFETY_CHECKER_JSON);
  writeJson(join(dir, 'safety_checker', 'preprocessor_config.json'), COMPVIS_PREPROCESSOR_JSON);
  writeSafetensors(join(dir, 'safety_checker', 'model.safetensors'), sc, { format: 'pt' });
  writeJson(join(dir, 'falconsai', 'config.json'), TINY_FALCONSAI_JSON);
  writeJson(join(dir, 'falconsai', 'preprocessor_config.json'), FALCONSAI_PREPROCESSOR_JSON);
  writeSafetensors(join(dir, 'falconsai', 'model.safetensors'), fa, { format: 'pt' });
}

/** FLUX.1-dev's scheduler_config.json values (flux-spec §3.1: dynamic shifting, mu from the token count). */
const SCHEDULER_CONFIG = {
  _class_name: 'FlowMatchEulerDiscreteScheduler',
  _diffusers_version: '0.30.0',
  base_image_seq_len: 256,
  base_shift: 0.5,
  max_image_seq_len: 4096,
  max_shift: 1.15,
  num_train_timesteps: 1000,
  shift: 3.0,
  use_dynamic_shifting: true,
};

/** Write the tiny model into `dir` (both layouts). Deterministic: the same bytes on every run. */
export function writeTinyModel(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const tok = writeTinyTokenizers(dir);
  const t5cfg = tinyT5Config(tok.t5VocabSize);
  const clipcfg = tinyClipConfig(tok.clipVocabSize);

  const flux = fabricate('transformer', (w) => new Flux(TINY_FLUX, w));
  const ae = fabricate('vae', (w) => new AutoEncoder(TINY_AE, w));
  const t5 = fabricate('text_encoder_2', (w) => new T5EncoderModel(t5cfg, w));
  const clip = fabricate('text_encoder', (w) => new CLIPTextModel(clipcfg, w));

  // diffusers layout
  writeJson(join(dir, 'model_index.json'), MODEL_INDEX);
  writeJson(join(dir, 'scheduler', 'scheduler_config.json'), SCHEDULER_CONFIG);
  writeJson(join(dir, 'transformer', 'config.json'), diffusersTransformerConfig(TINY_FLUX));
  writeSafetensors(join(dir, 'transformer', 'diffusion_pytorch_model.safetensors'), bflToDiffusersTransformer(flux), { format: 'pt' });
  writeJson(join(dir, 'vae', 'config.json'), diffusersVaeConfig(TINY_AE));
  writeSafetensors(join(dir, 'vae', 'diffusion_pytorch_model.safetensors'), bflToDiffusersVae(ae), { format: 'pt' });
  writeJson(join(dir, 'text_encoder', 'config.json'), clipConfigJson(clipcfg, tok));
  writeSafetensors(join(dir, 'text_encoder', 'model.safetensors'), clip, { format: 'pt' });
  writeJson(join(dir, 'text_encoder_2', 'config.json'), t5ConfigJson(t5cfg));
  // Sharded like the real T5-XXL (two shards + index), so the sharded path is always exercised.
  const t5Bytes = t5.keys().reduce((s, k) => s + numel(t5.info(k)!.shape) * 4, 0);
  writeShardedSafetensors(join(dir, 'text_encoder_2'), 'model', t5, Math.ceil(t5Bytes / 2), { format: 'pt' });

  // BFL single-file layout, with the same text encoders beside it.
  const bfl = join(dir, 'bfl');
  mkdirSync(bfl, { recursive: true });
  writeSafetensors(join(bfl, 'flux1-tiny.safetensors'), flux, { format: 'pt' });
  writeSafetensors(join(bfl, 'ae.safetensors'), ae, { format: 'pt' });
  writeJson(join(bfl, 'config.json'), { flux: TINY_FLUX, ae: TINY_AE });
  writeTinySafety(join(dir, 'safety'));
  for (const sub of ['text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2', 'safety']) {
    cpSync(join(dir, sub), join(bfl, sub), { recursive: true });
  }
  writeJson(join(dir, 'fluxserve-tiny.json'), { version: TINY_VERSION, seed: SEED });
}

/** The cache root: $FLUXSERVE_CACHE, else ~/.cache/fluxserve. */
export function cacheRoot(): string {
  return process.env['FLUXSERVE_CACHE'] || join(homedir(), '.cache', 'fluxserve');
}

/**
 * The tiny model's folder, generated on first use. Generation goes to a temporary folder that is
 * renamed into place, so an interrupted run never leaves a half-written model behind.
 */
export function ensureTinyModel(root = cacheRoot()): string {
  const dir = join(root, `tiny-v${TINY_VERSION}`);
  if (existsSync(join(dir, 'fluxserve-tiny.json'))) return dir;
  mkdirSync(root, { recursive: true });
  const tmp = mkdtempSync(join(root, '.tiny-tmp-'));
  try {
    writeTinyModel(tmp);
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // Another process finished first: its copy is as good as ours.
      if (!existsSync(join(dir, 'fluxserve-tiny.json'))) throw e;
    }
  } finally {
    if (existsSync(tmp)) rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}
