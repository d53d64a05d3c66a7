// The predictor: one profile (and the model's own LoRA) over a loaded model, and
// `predict(rawInput)` -> output files. The CLI, the HTTP server and (later) queue workers all go
// through this class, so validation, sizes, seeds, logs and output encoding behave the same
// everywhere.
//
// ModelHost owns what is loaded once: the four networks, the safety checker and the LoRA state.
// Several Predictors (the server's registered models: one per fine-tune) can share one host; each
// brings its profile and own LoRA, and the host runs their predictions one at a time, swapping
// LoRAs between them. A Predictor built without a host gets a private one (the CLI, most tests).

import { type LatentMask, type Resample, decodeRgb, inputBytes, prepareMask, resizeRgb, rgbToChw } from '../images/decode.js';
import { join } from 'node:path';
import { encodeImage, type OutputFormat, type RgbImage, pixelsToRgb } from '../images/encode.js';
import { type FluxModels, detectLayout, loadModels } from '../models/load.js';
import { img2img, inpaint } from '../sampling/img2img.js';
import { randomSeed } from '../sampling/noise.js';
import { ValidationError } from '../sampling/errors.js';
import { type ImageSizing, type Size, resolveSize, sizeFromImage } from '../sampling/sizes.js';
import { type DecodedImage, txt2img } from '../sampling/txt2img.js';
import type { Backend } from '../tensor/backend.js';
import { InputValidationError } from './errors.js';
import { type LoraStepOptions, type OwnLora, PredictorLoras } from './loras.js';
import { type Profile, getProfile, type ProfileName } from './profiles.js';
import { type ImageSafetyChecker, SafetyChecker, filterImages } from './safety.js';
import { LoraSourceError } from '../lora/source-errors.js';
import { parseLoraRef } from '../lora/sources.js';
import type { ValidationErrorItem } from './errors.js';
import { type ValidationResult, validateInput } from './validate.js';
import { GoFast } from '../models/fp8.js';

/** What a ModelHost loads and how it resolves LoRAs (loraMode, resolveLora, allowLocalLoras, ...: src/predictor/loras.ts). */
export interface HostOptions extends Omit<LoraStepOptions, 'ownLora'> {
  /** Model folder (diffusers or BFL layout). */
  modelDir: string;
  backend: Backend;
  /**
   * The output safety filter (src/predictor/safety.ts): a folder with safety_checker/ and
   * falconsai/ (default `<modelDir>/safety`), an already built checker, or 'disabled'
   * (--disable-safety-checker). setup() refuses to start when the weights are missing.
   */
  safety?: { dir: string } | { checker: ImageSafetyChecker } | 'disabled';
}

/** One model as served: its profile and own LoRA. */
export interface ViewOptions {
  profile?: ProfileName;
  /** hotswap only: false serves the fixed-weights schema (seed 003, no replicate_weights; the LoRA is `ownLora`). */
  replicateWeights?: boolean;
  /** The fine-tune's LoRA (applied when replicate_weights is empty), its scale and trigger word. */
  ownLora?: OwnLora | undefined;
}

/**
 * A private host's options plus the view's (the original single-model API). With `host`, the host
 * options given here are ignored: the shared host's apply.
 */
export interface PredictorOptions extends HostOptions, ViewOptions {
  host?: ModelHost;
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

/** One loaded model (networks, safety checker, LoRA state) shared by the Predictors built on it. */
export class ModelHost {
  private models: FluxModels | undefined;
  private safetyChecker: ImageSafetyChecker | undefined;
  private lorasState: PredictorLoras | undefined;
  private goFastState: GoFast | undefined;
  /** Tail of the chain that runs this host's predictions one at a time. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(readonly opts: HostOptions) {}

  /** Loads the weights (Cog's setup()); idempotent. */
  setup(log: (line: string) => void = () => {}): void {
    if (this.models) return;
    const t0 = performance.now();
    detectLayout(this.opts.modelDir); // a wrong model folder is named before anything else loads
    const safety = this.opts.safety ?? { dir: join(this.opts.modelDir, 'safety') };
    if (safety === 'disabled') log('The safety checker is disabled (--disable-safety-checker): outputs are not checked.');
    else if (!this.safetyChecker) this.safetyChecker = 'checker' in safety ? safety.checker : SafetyChecker.load(safety.dir, this.opts.backend, log);
    this.models = loadModels(this.opts.modelDir, this.opts.backend);
    this.lorasState = new PredictorLoras(this.models.flux, this.opts);
    log(
      `Loaded ${this.opts.modelDir} (${this.models.layout} layout, ${this.models.variant}) on ${this.opts.backend.name} in ${((performance.now() - t0) / 1000).toFixed(2)} s`,
    );
  }

  get loaded(): FluxModels | undefined {
    return this.models;
  }

  get safety(): ImageSafetyChecker | undefined {
    return this.safetyChecker;
  }

  get loras(): PredictorLoras | undefined {
    return this.lorasState;
  }

  /** go_fast's fp8 copies of the transformer (src/models/fp8.ts), created on first use. */
  get goFast(): GoFast | undefined {
    if (!this.goFastState && this.models) this.goFastState = new GoFast(this.models.flux);
    return this.goFastState;
  }

  /** A Predictor (one served model) on this host. */
  predictor(view: ViewOptions = {}): Predictor {
    return new Predictor({ ...this.opts, ...view, host: this });
  }

  /**
   * Runs `fn` when every earlier exclusive section of this host has finished: predictions on one
   * host are serialized (the LoRA state and the weights are shared).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  dispose(): void {
    this.goFastState?.dispose();
    this.goFastState = undefined;
    this.lorasState?.dispose();
    this.lorasState = undefined;
    this.models?.dispose();
    this.models = undefined;
    const s = this.opts.safety;
    if (!(typeof s === 'object' && 'checker' in s)) this.safetyChecker?.dispose(); // an injected checker belongs to the caller
    this.safetyChecker = undefined;
  }
}

export class Predictor {
  readonly profile: Profile;
  readonly host: ModelHost;
  /** True when this Predictor created its host (and disposes it). */
  private readonly ownsHost: boolean;

  constructor(readonly opts: PredictorOptions) {
    this.profile = getProfile(opts.profile ?? 'trainer', { replicateWeights: opts.replicateWeights !== false });
    this.ownsHost = opts.host === undefined;
    this.host = opts.host ?? new ModelHost(opts);
  }

  /** Loads the host's weights (Cog's setup()); a shared host loads once. */
  setup(log: (line: string) => void = () => {}): void {
    this.host.setup(log);
  }

  /** The host's LoRA state (tests). */
  get loras(): PredictorLoras | undefined {
    return this.host.loras;
  }

  /**
   * Validates an input like Cog does before predict() runs (throws InputValidationError with the
   * 422 body), including the syntax of LoRA references, so a bad `replicate_weights` is refused
   * before the prediction is queued rather than after it waited.
   */
  validate(raw: unknown): ValidationResult<unknown> {
    const validated = validateInput(this.profile, raw as Record<string, unknown>, { ownLora: this.opts.ownLora !== undefined });
    const input = validated.input as Record<string, unknown>;
    const errors: ValidationErrorItem[] = [];
    for (const field of ['replicate_weights', 'extra_lora'] as const) {
      const ref = input[field];
      if (typeof ref !== 'string' || ref === '') continue;
      try {
        parseLoraRef(ref, this.host.opts.allowLocalLoras === true);
      } catch (e) {
        if (!(e instanceof LoraSourceError)) throw e;
        errors.push({ loc: ['body', 'input', field], msg: `${field}: ${e.message}`, type: 'value_error' });
      }
    }
    if (errors.length) throw new InputValidationError(errors);
    return validated;
  }

  /** Validates like Cog (throws InputValidationError with the 422 body), then runs one prediction. */
  async predict(raw: Record<string, unknown>, cb: PredictCallbacks = {}): Promise<PredictionResult> {
    const models = this.host.loaded;
    if (!models) throw new Error('Predictor.predict() before setup()');
    const log = cb.log ?? (() => {});
    const validated = this.validate(raw);
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
    return this.host.exclusive(() => this.run(models, input, mode, format, size, source, seed, t0, cb, log));
  }

  private async run(
    models: FluxModels,
    input: Record<string, unknown>,
    _mode: string,
    format: OutputFormat,
    size: Size,
    source: { image: Float32Array; mask: LatentMask | undefined; width: number; height: number } | undefined,
    seed: number,
    t0: number,
    cb: PredictCallbacks,
    log: (line: string) => void,
  ): Promise<PredictionResult> {
    cb.signal?.throwIfAborted();
    // go_fast: fp8 block weights and inputs (src/models/fp8.ts); cog-flux runs custom sizes and
    // images in bf16 instead (validation already warned), and multiplies the main LoRA's strength by 1.5.
    const goFast = input['go_fast'] === true && !source && input['aspect_ratio'] !== 'custom';
    // LoRAs (main + extra) before sampling: resolved, parsed and fused (or attached) for this prediction.
    await this.host.loras?.apply(input, { log, signal: cb.signal, token: cb.loraToken, ownLora: this.opts.ownLora, goFast });
    cb.signal?.throwIfAborted();
    const fp8 = this.host.goFast;
    if (goFast && fp8) {
      const t = performance.now();
      const made = fp8.enable();
      log(
        `go_fast: fp8 (e4m3) block weights and activations${made > 0 ? ` (${made} layers quantised in ${((performance.now() - t) / 1000).toFixed(2)} s)` : ''}`,
      );
    } else fp8?.disable();
    const safety = this.host.safety;
    const checkSafety = safety !== undefined && !input['disable_safety_checker'];
    if (input['disable_safety_checker']) log('Safety checker disabled for this prediction (disable_safety_checker): outputs are not checked.');
    else if (!safety) log('The safety checker is disabled on this server: outputs are not checked.');
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
    const kept = checkSafety ? await filterImages(safety!, rgbs, log) : rgbs.map((_, i) => i);
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

  /** Frees the host when this Predictor created it; a shared host is disposed by its owner. */
  dispose(): void {
    if (this.ownsHost) this.host.dispose();
  }
}
