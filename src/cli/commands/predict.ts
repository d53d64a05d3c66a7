// `fluxserve predict -i key=value [-i image=@file.png] -o DIR [--model DIR]`: one prediction with
// the same inputs as the API, on the tiny model when no weights are configured; prints the paths.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { InputValidationError } from '../../predictor/errors.js';
import { downloadingLoraResolver } from '../../predictor/lora-sources.js';
import { detectLayout } from '../../models/load.js';
import type { LoraMode } from '../../predictor/loras.js';
import { Predictor } from '../../predictor/predictor.js';
import { assertSafetyFiles } from '../../predictor/safety.js';
import { defaultBackend } from '../../tensor/registry.js';
import { ensureTinyModel } from '../../tiny/generate.js';
import { type FlagSpec, UsageError, flag, helpText, parseArgs } from '../args.js';

/** --disable-safety-checker / --safety-checker DIR -> the Predictor's `safety` option (shared with serve). */
export function safetyOption(args: ReturnType<typeof parseArgs>, modelDir: string): { dir: string } | 'disabled' {
  if (args.bools.has('disable-safety-checker')) {
    if (flag(args, 'safety-checker') !== undefined) throw new UsageError('--safety-checker and --disable-safety-checker exclude each other');
    return 'disabled';
  }
  const flagged = flag(args, 'safety-checker');
  const dir = flagged ? resolve(flagged) : resolve(modelDir, 'safety');
  assertSafetyFiles(dir); // refuse before loading anything (serve would otherwise listen with a failed setup)
  return { dir };
}

/** --lora-mode, shared with serve (docs/behaviour.md "Runtime (unfused) mode"). */
export const LORA_MODE_FLAG: FlagSpec = {
  name: 'lora-mode',
  kind: 'string',
  help: 'fused (LoRAs merged into the weights) or runtime (low-rank adapters); default: runtime on the CUDA backend, else fused',
};

/** --lora-mode -> the Predictor's loraMode option (undefined: the backend's default). */
export function loraModeOption(args: ReturnType<typeof parseArgs>): LoraMode | undefined {
  const m = flag(args, 'lora-mode');
  if (m === undefined) return undefined;
  if (m !== 'fused' && m !== 'runtime') throw new UsageError(`--lora-mode must be fused or runtime (got ${m})`);
  return m;
}

const FLAGS: FlagSpec[] = [
  { name: 'input', short: 'i', kind: 'string', repeat: true, help: 'an input as key=value (repeatable); key=@path reads a file' },
  { name: 'output', short: 'o', kind: 'string', help: 'output folder (default: ./out)' },
  { name: 'model', short: 'm', kind: 'string', help: 'model folder (diffusers or BFL layout); default: the built-in tiny model' },
  { name: 'profile', short: 'p', kind: 'string', help: 'input profile: trainer (default) or hotswap' },
  { name: 'safety-checker', kind: 'string', help: 'safety checker folder (safety_checker/ + falconsai/); default: <model>/safety' },
  { name: 'disable-safety-checker', kind: 'bool', help: 'run without the output safety checker (outputs are not checked)' },
  { name: 'lora-cache', kind: 'string', help: 'LoRA download cache folder (default: $FLUXSERVE_CACHE/loras, else ~/.cache/fluxserve/loras)' },
  LORA_MODE_FLAG,
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
  const profile = flag(args, 'profile') ?? 'trainer';
  if (profile !== 'trainer' && profile !== 'hotswap') throw new UsageError(`--profile must be trainer or hotswap (got ${profile})`);
  const raw = parseInputs(args.flags.get('input') ?? []);
  const outDir = resolve(flag(args, 'output') ?? 'out');
  const modelDir = flag(args, 'model') ?? ensureTinyModel();
  detectLayout(modelDir); // a wrong --model is the first thing to report
  // replicate_weights / extra_lora: every source form (HF, CivitAI, Replicate, URLs, data:, and local
  // paths: this is the user's own machine); tokens from HF_TOKEN / REPLICATE_API_TOKEN / CIVITAI_API_TOKEN.
  const cacheDir = flag(args, 'lora-cache');
  const { resolver } = downloadingLoraResolver({ cache: cacheDir !== undefined ? { dir: resolve(cacheDir) } : {}, allowLocal: true });
  const predictor = new Predictor({
    modelDir,
    backend: defaultBackend(),
    profile,
    safety: safetyOption(args, modelDir),
    resolveLora: resolver,
    allowLocalLoras: true,
    loraMode: loraModeOption(args),
  });
  const usage = (e: unknown): unknown => (e instanceof InputValidationError ? new UsageError(e.body.detail.map((d) => d.msg).join('; ')) : e);
  try {
    try {
      predictor.validate(raw); // bad inputs are reported before the weights load
    } catch (e) {
      throw usage(e);
    }
    predictor.setup(err);
    let result;
    try {
      result = await predictor.predict(raw, { log: err });
    } catch (e) {
      throw usage(e);
    }
    mkdirSync(outDir, { recursive: true });
    for (const f of result.files) {
      const path = join(outDir, f.name);
      writeFileSync(path, f.data);
      out(path);
    }
    err(`Done in ${result.predictTime.toFixed(2)} s`);
    return 0;
  } finally {
    predictor.dispose();
  }
}
