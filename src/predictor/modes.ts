// Which generation mode a request runs in, and which inputs that mode (or another input) makes
// irrelevant (cog-flux-behaviour.md §1.6). The rules are data: validate.ts turns the ones that
// fire on inputs the caller actually sent into warnings, docs.ts prints their `doc` text.

export type Mode = 'txt2img' | 'img2img' | 'inpaint';

/** The words used in messages ("aspect_ratio is ignored in img2img mode"). */
export const MODE_NAMES: Readonly<Record<Mode, string>> = { txt2img: 'text-to-image', img2img: 'img2img', inpaint: 'inpainting' };

/** A validated input, read loosely: the rules work for every profile. */
export type InputValues = Readonly<Record<string, unknown>>;

/**
 * Mode detection as in cog-flux (`is_inpaint = image is not None and mask is not None`,
 * diffusers_predictor.py and flux-fine-tuner predict.py). A mask without an image is rejected by
 * validation before this runs, so it never silently means txt2img here.
 */
export function detectMode(input: InputValues): Mode {
  if (!present(input['image'])) return 'txt2img';
  return present(input['mask']) ? 'inpaint' : 'img2img';
}

export interface RuleContext {
  readonly mode: Mode;
  /** Whether a main LoRA will be applied: `replicate_weights` given, or the model has LoRA weights of its own. */
  readonly mainLora: boolean;
  /** Whether the profile exposes `replicate_weights` (for the wording only). */
  readonly hasReplicateWeights: boolean;
}

export interface IgnoreRule {
  readonly field: string;
  /** When the field is ignored, for docs/inputs.md. */
  readonly doc: string;
  /** The reason phrase ("in img2img mode") when the field is ignored for this input, else null. */
  readonly check: (input: InputValues, ctx: RuleContext) => string | null;
}

function present(v: unknown): boolean {
  return v !== null && v !== undefined && v !== '';
}

const notTxt2img = (ctx: RuleContext): string | null => (ctx.mode === 'txt2img' ? null : `in ${MODE_NAMES[ctx.mode]} mode`);

/** Every rule; a profile keeps the ones whose field it has. Order: the order warnings appear in. */
export const IGNORE_RULES: readonly IgnoreRule[] = [
  { field: 'aspect_ratio', doc: 'ignored in img2img/inpainting mode (the output size follows the image)', check: (_, ctx) => notTxt2img(ctx) },
  {
    field: 'width',
    doc: 'ignored unless aspect_ratio=custom, and in img2img/inpainting mode',
    check: (i, ctx) => notTxt2img(ctx) ?? (i['aspect_ratio'] === 'custom' ? null : 'unless aspect_ratio=custom'),
  },
  {
    field: 'height',
    doc: 'ignored unless aspect_ratio=custom, and in img2img/inpainting mode',
    check: (i, ctx) => notTxt2img(ctx) ?? (i['aspect_ratio'] === 'custom' ? null : 'unless aspect_ratio=custom'),
  },
  {
    field: 'megapixels',
    doc: 'ignored with aspect_ratio=custom and in img2img/inpainting mode',
    check: (i, ctx) => notTxt2img(ctx) ?? (i['aspect_ratio'] === 'custom' ? 'with aspect_ratio=custom' : null),
  },
  {
    field: 'prompt_strength',
    doc: 'only used with an image (img2img/inpainting)',
    check: (_, ctx) => (ctx.mode === 'txt2img' ? 'in text-to-image mode (no image)' : null),
  },
  {
    field: 'guidance_scale',
    doc: 'ignored with model=schnell (schnell has no guidance embedding)',
    check: (i) => (i['model'] === 'schnell' ? 'with model=schnell (schnell has no guidance embedding)' : null),
  },
  {
    // cog-flux forces go_fast off for custom sizes and images ("... will run in bf16"); only a `true` is ignored.
    field: 'go_fast',
    doc: 'go_fast=true is ignored with aspect_ratio=custom and in img2img/inpainting mode (runs in bf16)',
    check: (i, ctx) => {
      if (i['go_fast'] !== true) return null;
      if (ctx.mode !== 'txt2img') return `in ${MODE_NAMES[ctx.mode]} mode (runs in bf16)`;
      return i['aspect_ratio'] === 'custom' ? 'with aspect_ratio=custom (runs in bf16)' : null;
    },
  },
  {
    field: 'lora_scale',
    doc: 'ignored when no main LoRA is applied',
    check: (_, ctx) => (ctx.mainLora ? null : ctx.hasReplicateWeights ? 'without replicate_weights' : 'because this model has no LoRA weights'),
  },
  { field: 'extra_lora_scale', doc: 'ignored without extra_lora', check: (i) => (present(i['extra_lora']) ? null : 'without extra_lora') },
  { field: 'output_quality', doc: 'ignored for png output', check: (i) => (i['output_format'] === 'png' ? 'for png output' : null) },
];
