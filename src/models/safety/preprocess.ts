// The safety checkers' image preprocessing specs (preprocessor_config.json) and the arithmetic of
// transformers' image processors: shortest-edge resize sizes, centre-crop offsets, rescale and
// normalise. The resizing itself (sharp) is in src/predictor/safety.ts.

import { type Json, SafetyConfigError } from './config.js';

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

/** CLIP's mean/std (transformers image_utils.py OPENAI_CLIP_MEAN / OPENAI_CLIP_STD; CompVis's feature extractor). */
export const CLIP_MEAN = Object.freeze([0.48145466, 0.4578275, 0.40821073]);
export const CLIP_STD = Object.freeze([0.26862954, 0.26130258, 0.27577711]);

/**
 * The CompVis checker's CLIPImageProcessor (the feature-extractor/preprocessor_config.json that
 * replicate/cog-flux ships): shortest edge 224, bicubic, centre crop 224, /255, CLIP mean/std.
 */
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
  const rescale = json.do_rescale === false ? undefined : typeof json.rescale_factor === 'number' ? json.rescale_factor : (defaults.rescale ?? 1 / 255);
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
