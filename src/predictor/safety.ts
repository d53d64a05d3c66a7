// The output safety filter, as cog-flux runs it (replicate/cog-flux predict.py at 51e81e0,
// `Predictor.postprocess`, lines 227-266; shared/reference/cog-flux-behaviour.md §6):
//
//   has_nsfw_content = [False] * n
//   if not disable_safety_checker: _, has_nsfw_content = self.run_safety_checker(images, np_images)  # CompVis, whole batch
//   for i, (img, is_nsfw) in enumerate(zip(images, has_nsfw_content)):
//       if is_nsfw:
//           try: falcon_is_safe = self.run_falcon_safety_checker(img)       # Falconsai: argmax label == "normal"
//           except Exception as e: print(f"Error running safety checker: {e}"); falcon_is_safe = False
//           if not falcon_is_safe: print(f"NSFW content detected in image {i}"); continue   # dropped
//       ... save out-{i}
//   if not output_paths: raise Exception("All generated images contained NSFW content. Try running it again with a different prompt.")
//   print(f"Total safe images: {len(output_paths)} out of {len(images)}")
//
// So an image is dropped only when BOTH flag it (CompVis first, Falconsai as the double check), or
// when CompVis flags it and Falconsai fails. The weights folder holds `safety_checker/` (CompVis:
// config.json, model.safetensors, optional preprocessor_config.json — cog-flux takes its
// CLIPImageProcessor config from feature-extractor/) and `falconsai/` (config.json,
// model.safetensors, optional preprocessor_config.json).

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

import type { RgbImage } from '../images/encode.js';
import { openSafetensors } from '../io/safetensors.js';
import {
  COMPVIS_PREPROCESS,
  type CompVisScores,
  FALCONSAI_PREPROCESS,
  type ImagePreprocess,
  type SafetyResample,
  StableDiffusionSafetyChecker,
  ViTForImageClassification,
  centerCropBox,
  normalizePixels,
  parsePreprocessorConfig,
  parseSafetyCheckerConfig,
  parseVitConfig,
  shortestEdgeSize,
} from '../models/safety.js';
import type { Backend } from '../tensor/backend.js';
import { fromArray } from '../tensor/ops.js';

/** cog-flux's message when every image was dropped (predict.py line 263). */
export const ALL_NSFW_MESSAGE = 'All generated images contained NSFW content. Try running it again with a different prompt.';

/** The prediction failed because the filter dropped every output (cog-flux raises a plain Exception). */
export class AllImagesFlaggedError extends Error {
  constructor() {
    super(ALL_NSFW_MESSAGE);
    this.name = 'AllImagesFlaggedError';
  }
}

/** Missing or unusable safety weights: setup() refuses to start. */
export class SafetyWeightsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetyWeightsError';
  }
}

export interface SafetyResult {
  /** true = drop the image. */
  readonly flagged: boolean[];
}

/** What the predictor needs of a checker (tests inject their own). */
export interface ImageSafetyChecker {
  check(images: readonly RgbImage[], log?: (line: string) => void): Promise<SafetyResult>;
  dispose(): void;
}

const SHARP_KERNEL: Record<SafetyResample, 'nearest' | 'linear' | 'cubic' | 'lanczos3'> = {
  nearest: 'nearest',
  bilinear: 'linear',
  bicubic: 'cubic',
  lanczos: 'lanczos3',
};

/**
 * One image through a CLIPImageProcessor/ViTImageProcessor spec: resize (sharp, the PIL filter's
 * kernel family; see src/images/decode.ts for how it differs from PIL), centre crop, then
 * rescale/normalise to CHW float32.
 */
export async function preprocessImage(img: RgbImage, p: ImagePreprocess): Promise<{ chw: Float32Array; width: number; height: number }> {
  let { width, height } = img;
  let data = img.data;
  if (p.resize) {
    const target = 'shortestEdge' in p.resize ? shortestEdgeSize(width, height, p.resize.shortestEdge) : p.resize;
    if (target.width !== width || target.height !== height) {
      const out = await sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width, height, channels: 3 } })
        .resize(target.width, target.height, { fit: 'fill', kernel: SHARP_KERNEL[p.resample], fastShrinkOnLoad: false })
        .raw()
        .toBuffer({ resolveWithObject: true });
      data = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength);
      width = target.width;
      height = target.height;
    }
  }
  if (p.centerCrop && (p.centerCrop.width !== width || p.centerCrop.height !== height)) {
    const c = p.centerCrop;
    if (c.width > width || c.height > height)
      throw new Error(`safety preprocessing: crop ${c.width}x${c.height} larger than the resized ${width}x${height} image`);
    const { left, top } = centerCropBox(width, height, c);
    const cropped = new Uint8Array(c.width * c.height * 3);
    for (let y = 0; y < c.height; y++) cropped.set(data.subarray(((top + y) * width + left) * 3, ((top + y) * width + left + c.width) * 3), y * c.width * 3);
    data = cropped;
    width = c.width;
    height = c.height;
  }
  return { chw: normalizePixels(data, width, height, p), width, height };
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new SafetyWeightsError(`${path}: ${(e as Error).message}`);
  }
}

const HOW_TO_DISABLE = 'pass --disable-safety-checker to run without it (outputs are then not checked)';

/** The files a safety folder must hold; returns the absent ones. */
export function missingSafetyFiles(dir: string): string[] {
  const need = ['safety_checker/config.json', 'safety_checker/model.safetensors', 'falconsai/config.json', 'falconsai/model.safetensors'];
  if (!existsSync(dir)) return need.map((f) => join(dir, f));
  return need.filter((f) => !existsSync(join(dir, f))).map((f) => join(dir, f));
}

/** Throws a SafetyWeightsError naming every missing file and how to run without the checker. */
export function assertSafetyFiles(dir: string): void {
  const missing = missingSafetyFiles(dir);
  if (missing.length) {
    throw new SafetyWeightsError(
      `the safety checker weights are missing: ${missing.join(', ')}. Put the CompVis checker (CompVis/stable-diffusion-safety-checker) in ${join(dir, 'safety_checker')} and Falconsai/nsfw_image_detection in ${join(dir, 'falconsai')}, or ${HOW_TO_DISABLE}`,
    );
  }
}

/** CompVis, then Falconsai on the images CompVis flags (cog-flux's two-stage filter). */
export class SafetyChecker implements ImageSafetyChecker {
  private constructor(
    readonly compvis: StableDiffusionSafetyChecker,
    readonly compvisPreprocess: ImagePreprocess,
    readonly falcon: ViTForImageClassification,
    readonly falconPreprocess: ImagePreprocess,
    readonly backend: Backend,
  ) {}

  /** Loads `dir/safety_checker/` and `dir/falconsai/`; a missing file is a SafetyWeightsError naming it. */
  static load(dir: string, backend: Backend, log: (line: string) => void = () => {}): SafetyChecker {
    assertSafetyFiles(dir);
    const sc = join(dir, 'safety_checker');
    const fa = join(dir, 'falconsai');
    log('Loading Safety Checker');
    const cfg = parseSafetyCheckerConfig(readJson(join(sc, 'config.json')));
    const scPre = existsSync(join(sc, 'preprocessor_config.json'))
      ? parsePreprocessorConfig(readJson(join(sc, 'preprocessor_config.json')), COMPVIS_PREPROCESS, 'clip')
      : COMPVIS_PREPROCESS;
    const file = openSafetensors(join(sc, 'model.safetensors'));
    let compvis: StableDiffusionSafetyChecker;
    try {
      compvis = StableDiffusionSafetyChecker.load(file, backend, cfg, { dtype: 'f32' });
    } finally {
      file.close();
    }
    try {
      log('Loading Falcon safety checker...');
      const vcfg = parseVitConfig(readJson(join(fa, 'config.json')));
      if (!vcfg.labels.includes('normal'))
        throw new SafetyWeightsError(`${join(fa, 'config.json')}: id2label has no "normal" label (got ${vcfg.labels.join(', ')})`);
      const faPre = existsSync(join(fa, 'preprocessor_config.json'))
        ? parsePreprocessorConfig(readJson(join(fa, 'preprocessor_config.json')), FALCONSAI_PREPROCESS, 'vit')
        : FALCONSAI_PREPROCESS;
      const ffile = openSafetensors(join(fa, 'model.safetensors'));
      let falcon: ViTForImageClassification;
      try {
        falcon = ViTForImageClassification.load(ffile, backend, vcfg, { dtype: 'f32' });
      } finally {
        ffile.close();
      }
      for (const [pre, size, what] of [
        [scPre, cfg.vision.image_size, 'safety_checker'],
        [faPre, vcfg.image_size, 'falconsai'],
      ] as const) {
        const out = pre.centerCrop ?? (pre.resize && !('shortestEdge' in pre.resize) ? pre.resize : undefined);
        if (!out || out.width !== size || out.height !== size) {
          throw new SafetyWeightsError(`${join(dir, what)}: the preprocessor does not produce ${size}x${size} images (the model's image_size)`);
        }
      }
      return new SafetyChecker(compvis, scPre, falcon, faPre, backend);
    } catch (e) {
      compvis.dispose();
      throw e;
    }
  }

  /** CompVis scores of a batch of RGB images. */
  async compvisScores(images: readonly RgbImage[]): Promise<CompVisScores[]> {
    if (images.length === 0) return [];
    const pre = await Promise.all(images.map((img) => preprocessImage(img, this.compvisPreprocess)));
    const { width, height } = pre[0]!;
    const flat = new Float32Array(pre.length * 3 * width * height);
    pre.forEach((p, i) => flat.set(p.chw, i * p.chw.length));
    const pixels = fromArray(this.backend, [pre.length, 3, height, width], flat);
    try {
      return this.compvis.forward(pixels);
    } finally {
      pixels.dispose();
    }
  }

  /** Falconsai's label for one image (`logits.argmax(-1)` -> id2label). */
  async falconLabel(image: RgbImage): Promise<string> {
    const p = await preprocessImage(image, this.falconPreprocess);
    const pixels = fromArray(this.backend, [1, 3, p.height, p.width], p.chw);
    try {
      return this.falcon.labels(pixels)[0]!;
    } finally {
      pixels.dispose();
    }
  }

  async check(images: readonly RgbImage[], log: (line: string) => void = () => {}): Promise<SafetyResult> {
    const scores = await this.compvisScores(images);
    const flagged: boolean[] = [];
    for (let i = 0; i < images.length; i++) {
      if (!scores[i]!.nsfw) {
        flagged.push(false);
        continue;
      }
      let safe: boolean;
      try {
        safe = (await this.falconLabel(images[i]!)) === 'normal';
      } catch (e) {
        log(`Error running safety checker: ${(e as Error).message}`);
        safe = false;
      }
      flagged.push(!safe);
    }
    return { flagged };
  }

  dispose(): void {
    this.compvis.dispose();
    this.falcon.dispose();
  }
}

/**
 * The filter step of a prediction: drops flagged images with cog-flux's log lines, throws
 * AllImagesFlaggedError when none is left. Returns the kept indices (file names keep them: out-0, out-2).
 */
export async function filterImages(checker: ImageSafetyChecker, images: readonly RgbImage[], log: (line: string) => void): Promise<number[]> {
  const { flagged } = await checker.check(images, log);
  if (flagged.length !== images.length) throw new Error(`safety checker returned ${flagged.length} results for ${images.length} images`);
  const kept: number[] = [];
  for (let i = 0; i < images.length; i++) {
    if (flagged[i]) log(`NSFW content detected in image ${i}`);
    else kept.push(i);
  }
  if (kept.length === 0) throw new AllImagesFlaggedError();
  log(`Total safe images: ${kept.length} out of ${images.length}`);
  return kept;
}
