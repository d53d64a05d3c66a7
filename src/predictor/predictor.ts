// The predictor: one loaded model, one profile, and `predict(rawInput)` -> output files. The CLI
// and (later) the HTTP server and queue workers all go through this class, so validation, sizes,
// seeds, logs and output encoding behave the same everywhere.

import { encodeImage, type OutputFormat, pixelsToRgb } from '../images/encode.js';
import { type FluxModels, loadModels } from '../models/load.js';
import { randomSeed } from '../sampling/noise.js';
import { ValidationError } from '../sampling/errors.js';
import { resolveSize } from '../sampling/sizes.js';
import { txt2img } from '../sampling/txt2img.js';
import type { Backend } from '../tensor/backend.js';
import { InputValidationError } from './errors.js';
import { type Profile, getProfile, type ProfileName } from './profiles.js';
import { validateInput } from './validate.js';

export interface PredictorOptions {
  /** Model folder (diffusers or BFL layout). */
  modelDir: string;
  backend: Backend;
  profile?: ProfileName;
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
}

const CONTENT_TYPES: Record<OutputFormat, string> = { webp: 'image/webp', jpg: 'image/jpeg', png: 'image/png' };

export class Predictor {
  readonly profile: Profile;
  private models: FluxModels | undefined;

  constructor(readonly opts: PredictorOptions) {
    this.profile = getProfile(opts.profile ?? 'trainer');
  }

  /** Loads the weights (Cog's setup()). */
  setup(log: (line: string) => void = () => {}): void {
    if (this.models) return;
    const t0 = performance.now();
    this.models = loadModels(this.opts.modelDir, this.opts.backend);
    log(`Loaded ${this.opts.modelDir} (${this.models.layout} layout, ${this.models.variant}) on ${this.opts.backend.name} in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  }

  /** Validates like Cog (throws InputValidationError with the 422 body), then runs one prediction. */
  async predict(raw: Record<string, unknown>, cb: PredictCallbacks = {}): Promise<PredictionResult> {
    const models = this.models;
    if (!models) throw new Error('Predictor.predict() before setup()');
    const log = cb.log ?? (() => {});
    const validated = validateInput(this.profile, raw);
    const input = validated.input as unknown as Record<string, unknown>;
    if (validated.mode !== 'txt2img') {
      throw new InputValidationError([{ loc: ['body', 'input', 'image'], msg: `image: ${validated.mode} is not implemented yet (only text-to-image)`, type: 'value_error' }]);
    }
    for (const k of ['replicate_weights', 'extra_lora'] as const) {
      if (input[k]) throw new InputValidationError([{ loc: ['body', 'input', k], msg: `${k}: LoRA loading is not implemented yet`, type: 'value_error' }]);
    }
    let size;
    try {
      size = resolveSize({
        aspectRatio: String(input['aspect_ratio']),
        megapixels: input['megapixels'] === undefined ? undefined : String(input['megapixels']),
        width: (input['width'] ?? undefined) as number | undefined,
        height: (input['height'] ?? undefined) as number | undefined,
      });
    } catch (e) {
      if (e instanceof ValidationError) throw InputValidationError.fromFieldError(e);
      throw e;
    }
    for (const w of validated.warnings) log(w);
    const t0 = performance.now();
    const seed = typeof input['seed'] === 'number' ? input['seed'] : randomSeed();
    log(`Using seed: ${seed}`);
    if (input['model'] !== undefined && input['model'] !== models.variant) {
      log(`model=${String(input['model'])} requested; the loaded model is ${models.variant} and serves it`);
    }
    log(`Mode: ${validated.mode}; size ${size.width}x${size.height} (aspect_ratio ${String(input['aspect_ratio'])})`);
    if (!input['disable_safety_checker']) log('The safety checker is not part of this build yet: outputs are not checked.');
    const images = await txt2img(
      models,
      {
        prompt: String(input['prompt']),
        width: size.width,
        height: size.height,
        steps: input['num_inference_steps'] as number,
        guidance: input['guidance_scale'] as number,
        seed,
        numOutputs: input['num_outputs'] as number,
      },
      {
        log,
        signal: cb.signal,
        onStep: (p) => {
          const itPerSec = (p.step * 1000) / (performance.now() - t0);
          log(`step ${p.step}/${p.total} (${itPerSec.toFixed(2)} it/s)`);
          cb.progress?.({ step: p.step, total: p.total, itPerSec });
        },
      },
    );
    const format = String(input['output_format']) as OutputFormat;
    const files: PredictionFile[] = [];
    for (let i = 0; i < images.length; i++) {
      const img = images[i]!;
      const data = await encodeImage(pixelsToRgb(img.chw, img.height, img.width), format, input['output_quality'] as number);
      files.push({ name: `out-${i}.${format}`, contentType: CONTENT_TYPES[format], data });
    }
    return { files, seed, predictTime: (performance.now() - t0) / 1000 };
  }

  dispose(): void {
    this.models?.dispose();
    this.models = undefined;
  }
}
