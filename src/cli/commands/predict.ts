// `fluxserve predict -i key=value [-i image=@file.png] -o DIR [--model DIR]`: one prediction with
// the same inputs as the API, on the tiny model when no weights are configured; prints the paths.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { encodeImage, type OutputFormat, pixelsToRgb } from '../../images/encode.js';
import { loadModels } from '../../models/load.js';
import { randomSeed } from '../../sampling/noise.js';
import { txt2img } from '../../sampling/txt2img.js';
import { defaultBackend } from '../../tensor/registry.js';
import { ensureTinyModel } from '../../tiny/generate.js';
import { type FlagSpec, UsageError, flag, helpText, parseArgs } from '../args.js';

const FLAGS: FlagSpec[] = [
  { name: 'input', short: 'i', kind: 'string', repeat: true, help: 'an input as key=value (repeatable); key=@path reads a file' },
  { name: 'output', short: 'o', kind: 'string', help: 'output folder (default: ./out)' },
  { name: 'model', short: 'm', kind: 'string', help: 'model folder (diffusers or BFL layout); default: the built-in tiny model' },
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

export const PREDICT_USAGE = helpText('usage: fluxserve predict -i prompt="..." [-i key=value ...] [-o DIR] [--model DIR]', FLAGS);

/** key=value pairs with JSON-ish values: numbers and booleans typed, everything else a string. */
export function parseInputs(pairs: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`-i ${p}: expected key=value`);
    const key = p.slice(0, eq);
    const raw = p.slice(eq + 1);
    let value: unknown = raw;
    if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(raw)) value = Number(raw);
    else if (raw === 'true' || raw === 'false') value = raw === 'true';
    out[key] = value;
  }
  return out;
}

function intIn(inputs: Record<string, unknown>, key: string, dflt: number, min: number, max: number): number {
  const v = inputs[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new UsageError(`${key}: must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
  }
  return v;
}

export async function predictCommand(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const args = parseArgs(argv, FLAGS);
  if (args.bools.has('help')) {
    out(PREDICT_USAGE);
    return 0;
  }
  const inputs = parseInputs(args.flags.get('input') ?? []);
  const prompt = inputs['prompt'];
  if (typeof prompt !== 'string' || prompt.length === 0) throw new UsageError('prompt: required (-i prompt="...")');
  const outDir = resolve(flag(args, 'output') ?? 'out');
  const modelDir = flag(args, 'model') ?? ensureTinyModel();
  const backend = defaultBackend();
  const t0 = performance.now();
  const models = loadModels(modelDir, backend);
  try {
    const size = (key: string) => intIn(inputs, key, 512, 256, 1440);
    const width = Math.round(size('width') / 16) * 16;
    const height = Math.round(size('height') / 16) * 16;
    const steps = intIn(inputs, 'num_inference_steps', models.variant === 'dev' ? 28 : 4, 1, 50);
    const numOutputs = intIn(inputs, 'num_outputs', 1, 1, 4);
    const seed = inputs['seed'] === undefined ? randomSeed() : intIn(inputs, 'seed', 0, 0, 2 ** 32 - 1);
    const guidance = typeof inputs['guidance_scale'] === 'number' ? inputs['guidance_scale'] : 3.5;
    const format = (inputs['output_format'] ?? 'webp') as OutputFormat;
    if (!['webp', 'jpg', 'png'].includes(format)) throw new UsageError(`output_format: one of webp, jpg, png (got ${JSON.stringify(format)})`);
    const quality = intIn(inputs, 'output_quality', 80, 0, 100);
    err(`Using seed: ${seed}`);
    err(`Model: ${modelDir} (${models.layout} layout, ${models.variant}), backend ${backend.name}`);
    const images = await txt2img(
      models,
      { prompt, width, height, steps, guidance, seed, numOutputs },
      {
        log: err,
        onStep: (p) => err(`step ${p.step}/${p.total} (${((p.step * 1000) / (performance.now() - t0)).toFixed(2)} it/s)`),
      },
    );
    mkdirSync(outDir, { recursive: true });
    for (let i = 0; i < images.length; i++) {
      const img = images[i]!;
      const path = join(outDir, `out-${i}.${format}`);
      writeFileSync(path, await encodeImage(pixelsToRgb(img.chw, img.height, img.width), format, quality));
      out(path);
    }
    err(`Done in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    return 0;
  } finally {
    models.dispose();
  }
}
