// The two input profiles fluxserve serves, field for field as the user's seed documents show them
// (shared/seeds, copied to test/fixtures/seeds): names, order, types and descriptions verbatim;
// defaults, bounds and choices from the seeds where the page shows them, otherwise from the
// predictor source as cog-flux-behaviour.md §1 records it (cited per field).
//
//   trainer  seeds 000 (ostris/flux-dev-lora-trainer) and 001 (jan890/flux_dev_ascii_art):
//            replicate/flux-fine-tuner:predict.py `Predictor` (§1.5). The source also has a
//            `replicate_weights` input between output_quality and disable_safety_checker
//            ("Leave blank to use the default weights"); neither seed shows it, so it is not an
//            input here: the fine-tune's own LoRA comes from the server's model config.
//   hotswap  seeds 002 (fofr/flux-dev-day), 004 (fofr/flux-handwriting-and-sketch): replicate/cog-flux
//            `HotswapPredictor` (§1.4), 21 inputs including `replicate_weights`.
//            Seed 003 is the same schema WITHOUT `replicate_weights` (20 inputs): the variant
//            `getProfile('hotswap', { replicateWeights: false })`, for a fine-tune whose LoRA is fixed.
//   Within each group the seeds agree on every name, order, type, description, default, bound
//   and choice; they differ only in page layout (and in which facts the page prints).

import { type FieldDef, type FieldSpec, type InputOf, resolveFields } from './fields.js';
import { IGNORE_RULES, type IgnoreRule } from './modes.js';

export type ProfileName = 'trainer' | 'hotswap';

/** The choices of `aspect_ratio`: the ASPECT_RATIOS table order (§2.1) plus "custom" (§1.4, §1.5). */
export const ASPECT_RATIO_CHOICES = ['1:1', '16:9', '21:9', '3:2', '2:3', '4:5', '5:4', '3:4', '4:3', '9:16', '9:21', 'custom'] as const;
export const MODEL_CHOICES = ['dev', 'schnell'] as const;
export const OUTPUT_FORMAT_CHOICES = ['webp', 'jpg', 'png'] as const;
/** §1.1 `Inputs.megapixels`. */
export const MEGAPIXELS_CHOICES = ['1', '0.25'] as const;

/** The seeds' output schema (all five agree): a list of file URLs. */
export const OUTPUT_SCHEMA = Object.freeze({ type: 'array', items: Object.freeze({ type: 'string', format: 'uri' }), title: 'Output' });
export type OutputSchema = typeof OUTPUT_SCHEMA;

// ---- Descriptions shared verbatim by both profiles ------------------------------------------

const PROMPT =
  'Prompt for generated image. If you include the `trigger_word` used in the training process you are more likely to activate the trained object, style, or concept in the resulting image.';
const GUIDANCE_SCALE = 'Guidance scale for the diffusion process. Lower values can give more realistic images. Good values to try are 2, 2.5, 3 and 3.5';
const OUTPUT_QUALITY = 'Quality when saving the output images, from 0 to 100. 100 is best quality, 0 is lowest quality. Not relevant for .png outputs';
const DISABLE_SAFETY_CHECKER = 'Disable safety checker for generated images.';
const LORA_URL_FORMS =
  "Supports Replicate models in the format <owner>/<username> or <owner>/<username>/<version>, HuggingFace URLs in the format huggingface.co/<owner>/<model-name>, CivitAI URLs in the format civitai.com/models/<id>[/<model-name>], or arbitrary .safetensors URLs from the Internet. For example, 'fofr/flux-pixar-cars'";

// ---- trainer (seeds 000, 001; flux-fine-tuner predict.py, §1.5) -------------------------------

const TRAINER_SPECS = [
  { name: 'prompt', type: 'string', required: true, description: PROMPT },
  {
    name: 'image',
    type: 'file',
    description: 'Input image for img2img or inpainting mode. If provided, aspect_ratio, width, and height inputs are ignored.',
  },
  {
    name: 'mask',
    type: 'file',
    description:
      "Input mask for inpainting mode. Black areas will be preserved, white areas will be inpainted. Must be provided along with 'image' for inpainting mode.",
  },
  {
    name: 'aspect_ratio',
    type: 'string',
    choices: ASPECT_RATIO_CHOICES,
    default: '1:1',
    description:
      "Aspect ratio for the generated image in text-to-image mode. The size will always be 1 megapixel, i.e. 1024x1024 if aspect ratio is 1:1. To use arbitrary width and height, set aspect ratio to 'custom'. Note: Ignored in img2img and inpainting modes.",
  },
  {
    name: 'width',
    type: 'integer',
    minimum: 256,
    maximum: 1440,
    description:
      "Width of the generated image in text-to-image mode. Only used when aspect_ratio=custom. Must be a multiple of 16 (if it's not, it will be rounded to nearest multiple of 16). Note: Ignored in img2img and inpainting modes.",
  },
  {
    name: 'height',
    type: 'integer',
    minimum: 256,
    maximum: 1440,
    description:
      "Height of the generated image in text-to-image mode. Only used when aspect_ratio=custom. Must be a multiple of 16 (if it's not, it will be rounded to nearest multiple of 16). Note: Ignored in img2img and inpainting modes.",
  },
  { name: 'num_outputs', type: 'integer', default: 1, minimum: 1, maximum: 4, description: 'Number of images to output.' },
  {
    name: 'lora_scale',
    type: 'number',
    default: 1,
    minimum: -1,
    maximum: 2,
    description: 'Determines how strongly the main LoRA should be applied. Sane results between 0 and 1.',
  },
  {
    name: 'num_inference_steps',
    type: 'integer',
    default: 28,
    minimum: 1,
    maximum: 50,
    description: 'Number of inference steps. More steps can give more detailed images, but take longer.',
  },
  {
    name: 'model',
    type: 'string',
    choices: MODEL_CHOICES,
    default: 'dev',
    description: 'Which model to run inferences with. The dev model needs around 28 steps but the schnell model only needs around 4 steps.',
  },
  // minimum 0: the page omits "Min: 0"; §1.5 (ge=0).
  { name: 'guidance_scale', type: 'number', default: 3.5, minimum: 0, maximum: 10, description: GUIDANCE_SCALE },
  // minimum 0: §1.5 (ge=0.0).
  {
    name: 'prompt_strength',
    type: 'number',
    default: 0.8,
    minimum: 0,
    maximum: 1,
    description: 'Prompt strength when using img2img / inpaint. 1.0 corresponds to full destruction of information in image',
  },
  { name: 'seed', type: 'integer', description: 'Random seed. Set for reproducible generation.' },
  { name: 'extra_lora', type: 'string', description: `Combine this fine-tune with another LoRA. ${LORA_URL_FORMS}` },
  {
    name: 'extra_lora_scale',
    type: 'number',
    default: 1,
    minimum: -1,
    maximum: 2,
    description: 'Determines how strongly the extra LoRA should be applied.',
  },
  { name: 'output_format', type: 'string', choices: OUTPUT_FORMAT_CHOICES, default: 'webp', description: 'Format of the output images.' },
  // minimum 0: §1.5 (0..100).
  { name: 'output_quality', type: 'integer', default: 90, minimum: 0, maximum: 100, description: OUTPUT_QUALITY },
  { name: 'disable_safety_checker', type: 'boolean', default: false, description: DISABLE_SAFETY_CHECKER },
] as const satisfies readonly FieldSpec[];

// ---- hotswap (seeds 002, 003, 004; cog-flux HotswapPredictor, §1.4) ---------------------------

const LORA_SCALE_HOTSWAP =
  "Sane results between 0 and 1 for base inference. For go_fast we apply a 1.5x multiplier to this value; we've generally seen good performance when scaling the base value by that amount. You may still need to experiment to find the best value for your particular lora.";

const HOTSWAP_SPECS = [
  { name: 'prompt', type: 'string', required: true, description: PROMPT },
  {
    name: 'image',
    type: 'file',
    description: 'Input image for image to image or inpainting mode. If provided, aspect_ratio, width, and height inputs are ignored.',
  },
  {
    name: 'mask',
    type: 'file',
    description: 'Image mask for image inpainting mode. If provided, aspect_ratio, width, and height inputs are ignored.',
  },
  {
    name: 'aspect_ratio',
    type: 'string',
    choices: ASPECT_RATIO_CHOICES,
    default: '1:1',
    description: 'Aspect ratio for the generated image. If custom is selected, uses height and width below & will run in bf16 mode',
  },
  {
    name: 'height',
    type: 'integer',
    minimum: 256,
    maximum: 1440,
    description:
      'Height of generated image. Only works if `aspect_ratio` is set to custom. Will be rounded to nearest multiple of 16. Incompatible with fast generation',
  },
  {
    name: 'width',
    type: 'integer',
    minimum: 256,
    maximum: 1440,
    description:
      'Width of generated image. Only works if `aspect_ratio` is set to custom. Will be rounded to nearest multiple of 16. Incompatible with fast generation',
  },
  // minimum 0: the page omits "Min: 0"; §1.4 (0..1).
  {
    name: 'prompt_strength',
    type: 'number',
    default: 0.8,
    minimum: 0,
    maximum: 1,
    description: 'Prompt strength when using img2img. 1.0 corresponds to full destruction of information in image',
  },
  {
    name: 'model',
    type: 'string',
    choices: MODEL_CHOICES,
    default: 'dev',
    description: 'Which model to run inference with. The dev model performs best with around 28 inference steps but the schnell model only needs 4 steps.',
  },
  { name: 'num_outputs', type: 'integer', default: 1, minimum: 1, maximum: 4, description: 'Number of outputs to generate' },
  {
    name: 'num_inference_steps',
    type: 'integer',
    default: 28,
    minimum: 1,
    maximum: 50,
    description: 'Number of denoising steps. More steps can give more detailed images, but take longer.',
  },
  // minimum 0: §1.4 (0..10).
  { name: 'guidance_scale', type: 'number', default: 3, minimum: 0, maximum: 10, description: GUIDANCE_SCALE },
  { name: 'seed', type: 'integer', description: 'Random seed. Set for reproducible generation' },
  { name: 'output_format', type: 'string', choices: OUTPUT_FORMAT_CHOICES, default: 'webp', description: 'Format of the output images' },
  // minimum 0: §1.1 `Inputs.output_quality` (ge=0).
  { name: 'output_quality', type: 'integer', default: 80, minimum: 0, maximum: 100, description: OUTPUT_QUALITY },
  { name: 'disable_safety_checker', type: 'boolean', default: false, description: DISABLE_SAFETY_CHECKER },
  // The seeds' text, without the determinism note the current cog-flux source appends (§1.1).
  {
    name: 'go_fast',
    type: 'boolean',
    default: false,
    description: 'Run faster predictions with model optimized for speed (currently fp8 quantized); disable to run in original bf16',
  },
  {
    name: 'megapixels',
    type: 'string',
    choices: MEGAPIXELS_CHOICES,
    default: '1',
    description: 'Approximate number of megapixels for generated image',
  },
  { name: 'replicate_weights', type: 'string', description: `Load LoRA weights. ${LORA_URL_FORMS}` },
  {
    name: 'lora_scale',
    type: 'number',
    default: 1,
    minimum: -1,
    maximum: 3,
    description: `Determines how strongly the main LoRA should be applied. ${LORA_SCALE_HOTSWAP}`,
  },
  { name: 'extra_lora', type: 'string', description: `Load LoRA weights. ${LORA_URL_FORMS}` },
  {
    name: 'extra_lora_scale',
    type: 'number',
    default: 1,
    minimum: -1,
    maximum: 3,
    description: `Determines how strongly the extra LoRA should be applied. ${LORA_SCALE_HOTSWAP}`,
  },
] as const satisfies readonly FieldSpec[];

// ---- Profiles ---------------------------------------------------------------------------------

export type TrainerInput = InputOf<(typeof TRAINER_SPECS)[number]>;
export type HotswapInput = InputOf<(typeof HOTSWAP_SPECS)[number]>;
/** Seed 003: hotswap without `replicate_weights`. */
export type HotswapFixedInput = InputOf<Exclude<(typeof HOTSWAP_SPECS)[number], { readonly name: 'replicate_weights' }>>;
/** Any validated input. */
export type TypedInput = TrainerInput | HotswapInput | HotswapFixedInput;

export interface Profile<I = TypedInput> {
  readonly name: ProfileName;
  /** "default", or "fixed-weights" for hotswap without replicate_weights (seed 003). */
  readonly variant: 'default' | 'fixed-weights';
  /** One line for docs and `fluxserve schema`. */
  readonly summary: string;
  /** The seed documents this profile reproduces. */
  readonly seeds: readonly string[];
  readonly fields: readonly FieldDef[];
  readonly output: OutputSchema;
  /** The §1.6 rules for the fields this profile has. */
  readonly ignoreRules: readonly IgnoreRule[];
  /**
   * Whether the model brings a LoRA of its own (the fine-tune's weights, from the server's model
   * config) that is applied when no `replicate_weights` input names one.
   */
  readonly ownLora: boolean;
  /** Phantom: carries the validated input type; never set. */
  readonly _input?: I;
}

function defineProfile<I>(p: Omit<Profile<I>, 'fields' | 'ignoreRules' | '_input'>, specs: readonly FieldSpec[]): Profile<I> {
  const fields = resolveFields(specs);
  const names = new Set(fields.map((f) => f.name));
  return Object.freeze({ ...p, fields: Object.freeze(fields), ignoreRules: IGNORE_RULES.filter((r) => names.has(r.field)) });
}

export const TRAINER: Profile<TrainerInput> = defineProfile<TrainerInput>(
  {
    name: 'trainer',
    variant: 'default',
    summary: 'ostris/flux-dev-lora-trainer fine-tunes (replicate/flux-fine-tuner predictor)',
    seeds: ['000_e5517e989040de79.txt', '001_7ea0495fc2fa6a7e.txt'],
    output: OUTPUT_SCHEMA,
    ownLora: true,
  },
  TRAINER_SPECS,
);

export const HOTSWAP: Profile<HotswapInput> = defineProfile<HotswapInput>(
  {
    name: 'hotswap',
    variant: 'default',
    summary: 'FLUX fine-tunes served by cog-flux HotswapPredictor (replicate_weights, go_fast, megapixels)',
    seeds: ['002_ce0de2fa46b5b8d3.txt', '004_83e19e2319904856.txt'],
    output: OUTPUT_SCHEMA,
    ownLora: false,
  },
  HOTSWAP_SPECS,
);

export const HOTSWAP_FIXED: Profile<HotswapFixedInput> = defineProfile<HotswapFixedInput>(
  {
    name: 'hotswap',
    variant: 'fixed-weights',
    summary: 'FLUX fine-tunes served by cog-flux HotswapPredictor, the fine-tune LoRA fixed (no replicate_weights input)',
    seeds: ['003_ce5e5830ef703dc5.txt'],
    output: OUTPUT_SCHEMA,
    ownLora: true,
  },
  HOTSWAP_SPECS.filter((s) => s.name !== 'replicate_weights'),
);

export interface ProfileOptions {
  /** hotswap only: expose `replicate_weights` (seeds 002, 004; the default) or not (seed 003). */
  readonly replicateWeights?: boolean;
}

export function getProfile(name: 'trainer', opts?: ProfileOptions): Profile<TrainerInput>;
export function getProfile(name: 'hotswap', opts?: ProfileOptions): Profile<HotswapInput> | Profile<HotswapFixedInput>;
export function getProfile(name: ProfileName, opts?: ProfileOptions): Profile;
export function getProfile(name: ProfileName, opts: ProfileOptions = {}): Profile {
  switch (name) {
    case 'trainer':
      return TRAINER;
    case 'hotswap':
      return opts.replicateWeights === false ? HOTSWAP_FIXED : HOTSWAP;
    default:
      throw new Error(`unknown profile ${JSON.stringify(name)}: expected trainer or hotswap`);
  }
}

export const PROFILES: readonly Profile[] = [TRAINER, HOTSWAP, HOTSWAP_FIXED];

export function isProfileName(s: string): s is ProfileName {
  return s === 'trainer' || s === 'hotswap';
}
