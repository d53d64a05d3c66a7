// The predictor: one loaded model, one profile, and `predict(rawInput)` -> output files. The CLI
// and (later) the HTTP server and queue workers all go through this class, so validation, sizes,
// seeds, logs and output encoding behave the same everywhere.

import { type LatentMask, type Resample, decodeRgb, inputBytes, prepareMask, resizeRgb, rgbToChw } from '../images/decode.js';
import { join } from 'node:path';
import { encodeImage, type OutputFormat, type RgbImage, pixelsToRgb } from '../images/encode.js';
import { type FluxModels, loadModels } from '../models/load.js';
import { img2img, inpaint } from '../sampling/img2img.js';
import { randomSeed } from '../sampling/noise.js';
import { ValidationError } from '../sampling/errors.js';
import { type ImageSizing, type Size, resolveSize, sizeFromImage } from '../sampling/sizes.js';
import { type DecodedImage, txt2img } from '../sampling/txt2img.js';
import type { Backend } from '../tensor/backend.js';
import { InputValidationError } from './errors.js';
import { type LoraStepOptions, PredictorLoras } from './loras.js';
import { type Profile, getProfile, type ProfileName } from './profiles.js';
import { type ImageSafetyChecker, SafetyChecker, filterImages } from './safety.js';
import { validateInput } from './validate.js';

/** LoRA options (ownLora, resolveLora, allowLocalLoras, loraMode, loraToken, ...): src/predictor/loras.ts. */
export interface PredictorOptions extends LoraStepOptions {
  /** Model folder (diffusers or BFL layout). */
  modelDir: string;
  backend: Backend;
  profile?: ProfileName;
  /**
   * The output safety filter (src/predictor/safety.ts): a folder with safety_checker/ and
   * falconsai/ (default `<modelDir>/safety`), an already built checker, or 'disabled'
   * (--disable-safety-checker). setup() refuses to start when the weights are missing.
   */
  safety?: { dir: string } | { checker: ImageSafetyChecker } | 'disabled';
  /** hotswap only: false serves the fixed-weights schema (seed 003, no replicate_weights; the LoRA is `ownLora`). */
  replicateWeights?: boolean;
}

export interface PredictionFile {
  /** out-{i}.{ext}, as cog-flux names its outputs. */
  name: string;
  contentType: string;
  data: Buffer;
}

export interface PredictionResult {
  files: PredictionFile[];
  seed: number;
  /** Wall time of the prediction (not of setup), seconds. */
  predictTime: number;
}

export interface PredictCallbacks {
  log?: (line: string) => void;
  progress?: (p: { step: number; total: number; itPerSec: number }) => void;
  signal?: AbortSignal | undefined;
  /** A credential for gated LoRA downloads (passed to resolveLora, never logged). */
  loraToken?: string | undefined;
}

const CONTENT_TYPES: Record<OutputFormat, string> = { webp: 'image/webp', jpg: 'image/jpeg', png: 'image/png' };

export class Predictor {
  readonly profile: Profile;
  private models: FluxModels | undefined;
  private safety: ImageSafetyChecker | undefined;
  private loras: PredictorLoras | undefined;

  constructor(readonly opts: PredictorOptions) {
    this.profile = getProfile(opts.profile ?? 'trainer', { replicateWeights: opts.replicateWeights !== false });
  }

  /** Loads the weights (Cog's setup()). */
  setup(log: (line: string) => void = () => {}): void {
    if (this.models) return;
    const t0 = performance.now();
    const safety = this.opts.safety ?? { dir: join(this.opts.modelDir, 'safety') };
    if (safety === 'disabled') log('The safety checker is disabled (--disable-safety-checker): outputs are not checked.');
    else if (!this.safety) this.safety = 'checker' in safety ? safety.checker : SafetyChecker.load(safety.dir, this.opts.backend, log);
    this.models = loadModels(this.opts.modelDir, this.opts.backend);
    this.loras = new PredictorLoras(this.models.flux, this.opts);
    log(`Loaded ${this.opts.modelDir} (${this.models.layout} layout, ${this.models.variant}) on ${this.opts.backend.name} in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  }

  /** Validates like Cog (throws InputValidationError with the 422 body), then runs one prediction. */
  async predict(raw: Record<string, unknown>, cb: PredictCallbacks = {}): Promise<PredictionResult> {
    const models = this.models;
    if (!models) throw new Error('Predictor.predict() before setup()');
    const log = cb.log ?? (() => {});
    const validated = validateInput(this.profile, raw, { ownLora: this.opts.ownLora !== undefined });
    const input = validated.input as unknown as Record<string, unknown>;
    const mode = validated.mode;
    const format = String(input['output_format']) as OutputFormat;
    const t0 = performance.now();
    let size: Size;
    let source: { image: Float32Array; mask: LatentMask | undefined; width: number; height: number } | undefined;
    try {
      if (mode === 'txt2img') {
        size = resolveSize({
          aspectRatio: String(input['aspect_ratio']),
          megapixels: input['megapixels'] === undefined ? undefined : String(input['megapixels']),
          width: (input['width'] ?? undefined) as number | undefined,
          height: (input['height'] ?? undefined) as number | undefined,
        });
      } else {
        // Input files are decoded before anything runs, so a bad file is a 422 like a bad number.
        const rgb = await decodeRgb(inputBytes(input['image'] as string, 'image'), 'image');
        size = sizeFromImage(rgb.width, rgb.height, this.imageSizing());
        const resample = this.imageResample(format, input['output_quality'] as number);
        const image = rgbToChw(await resizeRgb(rgb, size.width, size.height, resample));
        const mask = mode === 'inpaint' ? await prepareMask(inputBytes(input['mask'] as string, 'mask'), size, 'mask') : undefined;
        source = { image, mask, width: rgb.width, height: rgb.height };
      }
    } catch (e) {
      if (e instanceof ValidationError) throw InputValidationError.fromFieldError(e);
      throw e;
    }
    cb.signal?.throwIfAborted();
    for (const w of validated.warnings) log(w);
    const seed = typeof input['seed'] === 'number' ? input['seed'] : randomSeed();
    log(`Using seed: ${seed}`);
    if (input['model'] !== undefined && input['model'] !== models.variant) {
      log(`model=${String(input['model'])} requested; the loaded model is ${models.variant} and serves it`);
    }
    if (source) {
      log(`Input image ${source.width}x${source.height} -> ${size.width}x${size.height} (${mode})`);
    } else {
      log(`Mode: ${mode}; size ${size.width}x${size.height} (aspect_ratio ${String(input['aspect_ratio'])})`);
    }
    // LoRAs (main + extra) before sampling: resolved, parsed and fused (or attached) for this prediction.
    await this.loras?.apply(input, { log, signal: cb.signal, token: cb.loraToken, backendName: this.opts.backend.name });
    cb.signal?.throwIfAborted();
    const checkSafety = this.safety !== undefined && !input['disable_safety_checker'];
    if (input['disable_safety_checker']) log('Safety checker disabled for this prediction (disable_safety_checker): outputs are not checked.');
    else if (!this.safety) log('The safety checker is disabled on this server: outputs are not checked.');
    const request = {
      prompt: String(input['prompt']),
      width: size.width,
      height: size.height,
      steps: input['num_inference_steps'] as number,
      guidance: input['guidance_scale'] as number,
      seed,
      numOutputs: input['num_outputs'] as number,
    };
    const opts = {
      log,
      signal: cb.signal,
      onStep: (p: { step: number; total: number }) => {
        const itPerSec = (p.step * 1000) / (performance.now() - t0);
        log(`step ${p.step}/${p.total} (${itPerSec.toFixed(2)} it/s)`);
        cb.progress?.({ step: p.step, total: p.total, itPerSec });
      },
    };
    let images: DecodedImage[];
    if (!source) {
      images = await txt2img(models, request, opts);
    } else {
      // Both profiles run img2img/inpainting on the diffusers engine (cog-flux-behaviour.md §0, §3.3).
      const req = { ...request, image: source.image, strength: input['prompt_strength'] as number, startRule: 'diffusers' as const };
      images = source.mask ? await inpaint(models, { ...req, mask: source.mask }, opts) : await img2img(models, req, opts);
    }
    const rgbs: RgbImage[] = images.map((img) => pixelsToRgb(img.chw, img.height, img.width));
    // cog-flux postprocess: CompVis + Falconsai; flagged images are dropped, names keep their index.
    const kept = checkSafety ? await filterImages(this.safety!, rgbs, log) : rgbs.map((_, i) => i);
    const files: PredictionFile[] = [];
    for (const i of kept) {
      const data = await encodeImage(rgbs[i]!, format, input['output_quality'] as number);
      files.push({ name: `out-${i}.${format}`, contentType: CONTENT_TYPES[format], data });
    }
    return { files, seed, predictTime: (performance.now() - t0) / 1000 };
  }

  /**
   * How img2img/inpaint inputs are sized (cog-flux-behaviour.md §2.3): the trainer profile is
   * replicate/flux-fine-tuner (no 1440 cap, round up to 16); hotswap is cog-flux's
   * diffusers_predictor.py (the engine HotswapPredictor forces for images: 1440 cap, round up).
   */
  imageSizing(): ImageSizing {
    return this.profile.name === 'trainer' ? 'fine-tuner' : 'cog-diffusers';
  }

  /**
   * The input image's resampling filter (§2.3): hotswap always LANCZOS; the fine-tuner LANCZOS
   * when `output_quality == 100 or output_format == "png"`, else BICUBIC.
   */
  imageResample(format: OutputFormat, quality: number): Resample {
    if (this.profile.name !== 'trainer') return 'lanczos';
    return quality === 100 || format === 'png' ? 'lanczos' : 'bicubic';
  }

  dispose(): void {
    this.loras?.dispose();
    this.loras = undefined;
    this.models?.dispose();
    this.models = undefined;
    const s = this.opts.safety;
    if (!(typeof s === 'object' && 'checker' in s)) this.safety?.dispose(); // an injected checker belongs to the caller
    this.safety = undefined;
  }
}
