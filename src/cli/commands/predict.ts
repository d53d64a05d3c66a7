// `fluxserve predict -i key=value [-i image=@file.png] -o DIR [--model DIR]`: one prediction with
// the same inputs as the API, on the tiny model when no weights are configured; prints the paths.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { encodeImage, type OutputFormat, pixelsToRgb } from '../../images/encode.js';
import { loadModels } from '../../models/load.js';
import { InputValidationError, getProfile, validateInput } from '../../predictor/index.js';
import { ValidationError } from '../../sampling/errors.js';
import { randomSeed } from '../../sampling/noise.js';
import { resolveSize } from '../../sampling/sizes.js';
import { txt2img } from '../../sampling/txt2img.js';
import { defaultBackend } from '../../tensor/registry.js';
import { ensureTinyModel } from '../../tiny/generate.js';
import { type FlagSpec, UsageError, flag, helpText, parseArgs } from '../args.js';

const FLAGS: FlagSpec[] = [
  { name: 'input', short: 'i', kind: 'string', repeat: true, help: 'an input as key=value (repeatable); key=@path reads a file' },
  { name: 'output', short: 'o', kind: 'string', help: 'output folder (default: ./out)' },
  { name: 'model', short: 'm', kind: 'string', help: 'model folder (diffusers or BFL layout); default: the built-in tiny model' },
  { name: 'profile', short: 'p', kind: 'string', help: 'input profile: trainer (default) or hotswap' },
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

export const PREDICT_USAGE = helpText('usage: fluxserve predict -i prompt="..." [-i key=value ...] [-o DIR] [--model DIR]', FLAGS);

/** key=value pairs as raw strings (the profile's validation coerces them like Cog); key=@path reads a file. */
export function parseInputs(pairs: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`-i ${p}: expected key=value`);
    const key = p.slice(0, eq);
    const raw = p.slice(eq + 1);
    out[key] = raw.startsWith('@') ? fileToDataUri(raw.slice(1)) : raw;
  }
  return out;
}

function fileToDataUri(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new UsageError(`cannot read ${path}: ${(e as Error).message}`);
  }
  const ext = extname(path).toLowerCase().slice(1);
  const mime = ext === 'jpg' || ext === 'jpeg' ? 'image/jpeg' : ext === 'webp' ? 'image/webp' : ext === 'png' ? 'image/png' : 'application/octet-stream';
  return `data:${mime};base64,${bytes.toString('base64')}`;
}

export async function predictCommand(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const args = parseArgs(argv, FLAGS);
  if (args.bools.has('help')) {
    out(PREDICT_USAGE);
    return 0;
  }
  const profileName = flag(args, 'profile') ?? 'trainer';
  if (profileName !== 'trainer' && profileName !== 'hotswap') throw new UsageError(`--profile must be trainer or hotswap (got ${profileName})`);
  const profile = getProfile(profileName);
  let validated;
  try {
    validated = validateInput(profile, parseInputs(args.flags.get('input') ?? []));
  } catch (e) {
    if (e instanceof InputValidationError) throw new UsageError(e.body.detail.map((d) => d.msg).join('; '));
    throw e;
  }
  const input = validated.input as unknown as Record<string, unknown>;
  for (const w of validated.warnings) err(w);
  if (validated.mode !== 'txt2img') throw new UsageError(`${validated.mode} is not implemented yet (only text-to-image)`);
  for (const k of ['replicate_weights', 'extra_lora'] as const) {
    if (input[k]) throw new UsageError(`${k}: LoRA loading is not implemented yet`);
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
    if (e instanceof ValidationError) throw new UsageError(e.message);
    throw e;
  }
  const outDir = resolve(flag(args, 'output') ?? 'out');
  const modelDir = flag(args, 'model') ?? ensureTinyModel();
  const backend = defaultBackend();
  const t0 = performance.now();
  const models = loadModels(modelDir, backend);
  try {
    const seed = typeof input['seed'] === 'number' ? input['seed'] : randomSeed();
    const format = String(input['output_format']) as OutputFormat;
    err(`Using seed: ${seed}`);
    err(`Model: ${modelDir} (${models.layout} layout, ${models.variant}), backend ${backend.name}`);
    if (input['model'] !== undefined && input['model'] !== models.variant) {
      err(`model=${String(input['model'])} requested; the loaded model is ${models.variant} and serves it`);
    }
    err(`Mode: ${validated.mode}, size ${size.width}x${size.height} (aspect_ratio ${String(input['aspect_ratio'])})`);
    if (!input['disable_safety_checker']) err('The safety checker is not part of this build yet: outputs are not checked.');
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
        log: err,
        onStep: (p) => err(`step ${p.step}/${p.total} (${((p.step * 1000) / (performance.now() - t0)).toFixed(2)} it/s)`),
      },
    );
    mkdirSync(outDir, { recursive: true });
    for (let i = 0; i < images.length; i++) {
      const img = images[i]!;
      const path = join(outDir, `out-${i}.${format}`);
      writeFileSync(path, await encodeImage(pixelsToRgb(img.chw, img.height, img.width), format, input['output_quality'] as number));
      out(path);
    }
    err(`Done in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    return 0;
  } finally {
    models.dispose();
  }
}
