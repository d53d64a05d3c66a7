// Output sizes exactly as Replicate's cog-flux computes them (replicate/cog-flux predict.py):
// - the aspect-ratio table (replicate/cog-flux:predict.py `ASPECT_RATIOS`, same in
//   replicate/flux-fine-tuner), `megapixels="0.25"` halving both sides
//   (`size_from_aspect_megapixels`: `width // 2, height // 2`);
// - `aspect_ratio="custom"`: width/height in 256..1440 (Cog schema bounds, checked on the raw
//   value), then `make_multiple_of_16(n) = ((n + 15) // 16) * 16`, i.e. rounded UP
//   (the schema text says "nearest", the code rounds up: 1000 -> 1008, 257 -> 272);
// - img2img/inpaint: the output size comes from the input image (`sizeFromImage`).

import { ValidationError } from './errors.js';

export interface Size {
  width: number;
  height: number;
}

/** The 1-megapixel table, in the schema's choice order. All entries are multiples of 16 (and of 32). */
export const ASPECT_RATIOS: Readonly<Record<string, Readonly<Size>>> = Object.freeze({
  '1:1': { width: 1024, height: 1024 },
  '16:9': { width: 1344, height: 768 },
  '21:9': { width: 1536, height: 640 },
  '3:2': { width: 1216, height: 832 },
  '2:3': { width: 832, height: 1216 },
  '4:5': { width: 896, height: 1088 },
  '5:4': { width: 1088, height: 896 },
  '3:4': { width: 896, height: 1152 },
  '4:3': { width: 1152, height: 896 },
  '9:16': { width: 768, height: 1344 },
  '9:21': { width: 640, height: 1536 },
});

export const ASPECT_RATIO_CHOICES: readonly string[] = Object.freeze(Object.keys(ASPECT_RATIOS));
export const MEGAPIXELS_CHOICES: readonly string[] = Object.freeze(['1', '0.25']);
export const CUSTOM_MIN = 256;
export const CUSTOM_MAX = 1440;
/** img2img/inpaint inputs are scaled down to fit this many pixels per side (cog-flux PR #74). */
export const MAX_IMAGE_SIDE = 1440;

/** cog-flux `make_multiple_of_16`: round up to a multiple of 16. */
export function makeMultipleOf16(n: number): number {
  return Math.floor((n + 15) / 16) * 16;
}

export interface SizeInput {
  aspectRatio: string;
  /** "1" (default) or "0.25"; ignored for custom sizes. */
  megapixels?: string | number;
  /** Only for aspectRatio "custom". */
  width?: number;
  height?: number;
}

function checkCustomSide(field: 'width' | 'height', v: number | undefined): number {
  if (v === undefined || v === null) {
    throw new ValidationError(field, "width and height must be defined if aspect ratio is 'custom'");
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new ValidationError(field, `must be an integer between ${CUSTOM_MIN} and ${CUSTOM_MAX}, got ${String(v)}`);
  }
  if (v < CUSTOM_MIN || v > CUSTOM_MAX) {
    throw new ValidationError(field, `must be between ${CUSTOM_MIN} and ${CUSTOM_MAX}, got ${v}`);
  }
  return makeMultipleOf16(v);
}

/**
 * Text-to-image output size from `aspect_ratio` (+ `megapixels`, or `width`/`height` for "custom").
 * width/height are ignored unless aspectRatio is "custom"; megapixels is ignored for "custom".
 */
export function resolveSize(input: SizeInput): Size {
  const ar = input.aspectRatio;
  if (ar === 'custom') {
    return { width: checkCustomSide('width', input.width), height: checkCustomSide('height', input.height) };
  }
  const entry = Object.hasOwn(ASPECT_RATIOS, ar) ? ASPECT_RATIOS[ar] : undefined;
  if (entry === undefined) {
    throw new ValidationError('aspect_ratio', `must be one of ${[...ASPECT_RATIO_CHOICES, 'custom'].join(', ')}; got ${JSON.stringify(ar)}`);
  }
  const mp = input.megapixels === undefined ? '1' : String(input.megapixels);
  if (mp === '1') return { width: entry.width, height: entry.height };
  if (mp === '0.25') return { width: Math.floor(entry.width / 2), height: Math.floor(entry.height / 2) };
  throw new ValidationError('megapixels', `must be one of ${MEGAPIXELS_CHOICES.map((c) => `"${c}"`).join(', ')}; got ${JSON.stringify(input.megapixels)}`);
}

/** Python 3 `round()` on a float: nearest integer, ties to even. */
function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Which predictor's resizing to reproduce:
 * - 'cog-bfl' (default): replicate/cog-flux:bfl_predictor.py `maybe_scale_to_closest_multiple`
 *   (flux-dev-lora img2img): scale = min(1440/w, 1440/h, 1); if scale < 1: w, h = int(w·scale),
 *   int(h·scale); then round(w/16)·16 (nearest, ties to even), same for h.
 * - 'cog-diffusers': replicate/cog-flux:diffusers_predictor.py (hotswap img2img/inpaint): same
 *   1440 cap, then make_multiple_of_16 (round up).
 * - 'fine-tuner': replicate/flux-fine-tuner:predict.py: no cap, make_multiple_of_16.
 */
export type ImageSizing = 'cog-bfl' | 'cog-diffusers' | 'fine-tuner';

/** img2img/inpaint output size from the input image's pixel size (aspect_ratio/megapixels are ignored). */
export function sizeFromImage(width: number, height: number, sizing: ImageSizing = 'cog-bfl'): Size {
  for (const [name, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0) {
      throw new ValidationError('image', `image ${name} must be a positive integer number of pixels, got ${v}`);
    }
  }
  let w = width;
  let h = height;
  if (sizing !== 'fine-tuner') {
    const scale = Math.min(MAX_IMAGE_SIDE / w, MAX_IMAGE_SIDE / h, 1);
    if (scale < 1) {
      w = Math.trunc(w * scale);
      h = Math.trunc(h * scale);
    }
  }
  if (sizing === 'cog-bfl') {
    w = pyRound(w / 16) * 16;
    h = pyRound(h / 16) * 16;
  } else {
    w = makeMultipleOf16(w);
    h = makeMultipleOf16(h);
  }
  if (w === 0 || h === 0) {
    throw new ValidationError('image', `input image ${width}x${height} is too small: each side must come out as at least 16 pixels (got ${w}x${h})`);
  }
  return { width: w, height: h };
}
