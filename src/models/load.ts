// Loading a whole FLUX model folder, in either layout (diffusers loaders/single_file_utils.py):
//
// - diffusers repo layout: model_index.json, transformer/, vae/, text_encoder/ (CLIP),
//   text_encoder_2/ (T5), tokenizer/, tokenizer_2/, each with its config.json; the transformer and
//   VAE are renamed to BFL names by src/io/names.ts (the only place that knows diffusers names).
// - BFL single files: one transformer file (flux1-dev.safetensors or any *.safetensors with
//   `double_blocks.*` keys, optionally `model.diffusion_model.`-prefixed) and ae.safetensors, with
//   an optional config.json {flux, ae} (else the dev/schnell preset, told apart by guidance_in);
//   text encoders and tokenizers from the same subfolders as the diffusers layout.
//
// Every checkpoint is checked key by key (missing, unexpected and mis-shaped keys fail, named).

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectTransformerLayout, diffusersToBflTransformer, diffusersToBflVae, stripBflPrefix } from '../io/names.js';
import { SafetensorsFile, openSafetensors } from '../io/safetensors.js';
import type { TensorSource } from '../io/source.js';
import type { Backend } from '../tensor/backend.js';
import type { DType } from '../tensor/dtype.js';
import { type TextTokenizer, loadClipTokenizer, loadT5Tokenizer } from '../text/index.js';
import { AutoEncoder } from './autoencoder.js';
import { CLIPTextModel, parseClipTextConfig } from './clip.js';
import {
  type AutoEncoderParams,
  FLUX_AE,
  FLUX_DEV,
  FLUX_SCHNELL,
  type FluxParams,
  ModelConfigError,
  autoEncoderParamsFromBflConfig,
  autoEncoderParamsFromDiffusersConfig,
  fluxParamsFromBflConfig,
  fluxParamsFromDiffusersConfig,
} from './flux/config.js';
import { Flux } from './flux/model.js';
import { T5EncoderModel, parseT5Config } from './t5.js';

export type Layout = 'diffusers' | 'bfl';

export interface LoadModelOptions {
  /** Convert float weights to this dtype (default: keep the checkpoint's). */
  dtype?: DType;
  /** T5 token length: 512 for dev, 256 for schnell (BFL cli.py); default by guidance_embed. */
  t5MaxLength?: number;
}

export interface FluxModels {
  readonly dir: string;
  readonly layout: Layout;
  /** 'dev' when the transformer is guidance-distilled (has guidance_in), else 'schnell'. */
  readonly variant: 'dev' | 'schnell';
  readonly flux: Flux;
  readonly ae: AutoEncoder;
  readonly t5: T5EncoderModel;
  readonly clip: CLIPTextModel;
  readonly clipTokenizer: TextTokenizer;
  readonly t5Tokenizer: TextTokenizer;
  dispose(): void;
}

function readJsonFile(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new ModelConfigError(`${path}: ${(e as Error).message}`);
  }
}

export function detectLayout(dir: string): Layout {
  if (existsSync(join(dir, 'model_index.json')) || existsSync(join(dir, 'transformer', 'config.json'))) return 'diffusers';
  if (existsSync(join(dir, 'ae.safetensors'))) return 'bfl';
  throw new ModelConfigError(
    `${dir}: not a FLUX model folder (expected model_index.json + transformer/ (diffusers layout) or a transformer .safetensors + ae.safetensors (BFL layout))`,
  );
}

/** The BFL transformer file of a folder: the one .safetensors (other than ae) with double_blocks keys. */
function findBflTransformer(dir: string): string {
  const candidates = readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors') && f !== 'ae.safetensors')
    .sort();
  const found: string[] = [];
  for (const f of candidates) {
    const file = SafetensorsFile.open(join(dir, f));
    try {
      if (file.keys().some((k) => /(^|\.)double_blocks\.0\./.test(k))) found.push(f);
    } finally {
      file.close();
    }
  }
  if (found.length !== 1) {
    throw new ModelConfigError(
      `${dir}: expected exactly one BFL transformer .safetensors (with double_blocks.* keys), found ${found.length ? found.join(', ') : 'none'}`,
    );
  }
  return join(dir, found[0]!);
}

interface Opened {
  source: TensorSource;
  close(): void;
}

function openTransformer(dir: string, layout: Layout): Opened & { params: FluxParams } {
  if (layout === 'diffusers') {
    const params = fluxParamsFromDiffusersConfig(readJsonFile(join(dir, 'transformer', 'config.json')));
    const file = openSafetensors(join(dir, 'transformer'));
    const keys = file.keys();
    const source = detectTransformerLayout(keys) === 'diffusers' ? diffusersToBflTransformer(file) : stripBflPrefix(file);
    return { params, source, close: () => file.close() };
  }
  const file = SafetensorsFile.open(findBflTransformer(dir));
  const source = stripBflPrefix(file);
  let params: FluxParams;
  if (existsSync(join(dir, 'config.json'))) params = fluxParamsFromBflConfig(readJsonFile(join(dir, 'config.json')));
  else params = source.keys().some((k) => k.startsWith('guidance_in.')) ? FLUX_DEV : FLUX_SCHNELL;
  return { params, source, close: () => file.close() };
}

function openAutoencoder(dir: string, layout: Layout): Opened & { params: AutoEncoderParams } {
  if (layout === 'diffusers') {
    const params = autoEncoderParamsFromDiffusersConfig(readJsonFile(join(dir, 'vae', 'config.json')));
    const file = openSafetensors(join(dir, 'vae'));
    return { params, source: diffusersToBflVae(file), close: () => file.close() };
  }
  const file = SafetensorsFile.open(join(dir, 'ae.safetensors'));
  const cfg = join(dir, 'config.json');
  const params = existsSync(cfg) ? autoEncoderParamsFromBflConfig(readJsonFile(cfg)) : FLUX_AE;
  return { params, source: file, close: () => file.close() };
}

function withSource<T>(opened: Opened, fn: (s: TensorSource) => T): T {
  try {
    return fn(opened.source);
  } finally {
    opened.close();
  }
}

/** Load the transformer, VAE, both text encoders and both tokenizers of a model folder. */
export function loadModels(dir: string, backend: Backend, opts: LoadModelOptions = {}): FluxModels {
  const layout = detectLayout(dir);
  const lo = { dtype: opts.dtype };
  const loaded: { dispose(): void }[] = [];
  try {
    const tr = openTransformer(dir, layout);
    const flux = withSource(tr, (s) => Flux.load(tr.params, s, backend, lo));
    loaded.push(flux);
    const aeOpen = openAutoencoder(dir, layout);
    const ae = withSource(aeOpen, (s) => AutoEncoder.load(aeOpen.params, s, backend, lo));
    loaded.push(ae);

    const clipCfg = parseClipTextConfig(readJsonFile(join(dir, 'text_encoder', 'config.json')));
    const clipFile = openSafetensors(join(dir, 'text_encoder'));
    const clip = withSource({ source: clipFile, close: () => clipFile.close() }, (s) => CLIPTextModel.load(s, backend, clipCfg, lo));
    loaded.push(clip);

    const t5Cfg = parseT5Config(readJsonFile(join(dir, 'text_encoder_2', 'config.json')));
    const t5File = openSafetensors(join(dir, 'text_encoder_2'));
    const t5 = withSource({ source: t5File, close: () => t5File.close() }, (s) => T5EncoderModel.load(s, backend, t5Cfg, lo));
    loaded.push(t5);

    const variant = tr.params.guidance_embed ? 'dev' : 'schnell';
    const clipTokenizer = loadClipTokenizer(join(dir, 'tokenizer'), { maxLength: 77 });
    // 512 T5 tokens for dev, 256 for schnell, as BFL src/flux/cli.py passes to load_t5.
    const t5Tokenizer = loadT5Tokenizer(join(dir, 'tokenizer_2'), { maxLength: opts.t5MaxLength ?? (variant === 'dev' ? 512 : 256) });
    for (const [tok, vocab, what] of [
      [clipTokenizer, clipCfg.vocab_size, 'text_encoder'],
      [t5Tokenizer, t5Cfg.vocab_size, 'text_encoder_2'],
    ] as const) {
      if (tok.maxId >= vocab) throw new ModelConfigError(`${dir}: the ${what} vocab_size ${vocab} is smaller than its tokenizer's largest id ${tok.maxId}`);
    }
    return {
      dir,
      layout,
      variant,
      flux,
      ae,
      t5,
      clip,
      clipTokenizer,
      t5Tokenizer,
      dispose: () => {
        for (const m of loaded) m.dispose();
      },
    };
  } catch (e) {
    for (const m of loaded) m.dispose();
    throw e;
  }
}
