// Text to image on loaded models: tokenize -> encode (CLIP pooled, T5 sequence) -> seeded noise ->
// pack -> schedule -> Euler loop -> unpack -> VAE decode (BFL `cli.py` main, flux-spec §2-3).
// This file coordinates; every stage lives in its own module.

import { vaeAutocast } from '../models/autoencoder.js';
import type { FluxModels } from '../models/load.js';
import { fromArray } from '../tensor/ops.js';
import { Scope, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type DenoiseOptions, denoise } from './denoise.js';
import { imageIds, pack, textIds, unpack } from './latents.js';
import { randn } from './noise.js';
import { getSchedule } from './schedule.js';

export interface Txt2ImgRequest {
  prompt: string;
  /** Pixel size; multiples of 16 (callers round, see sizes.ts). */
  width: number;
  height: number;
  steps: number;
  /** Guidance for guidance-distilled (dev) models; ignored by schnell. */
  guidance: number;
  seed: number;
  numOutputs: number;
}

export interface DecodedImage {
  width: number;
  height: number;
  /** [3, H, W] in about [-1, 1]. */
  chw: Float32Array;
}

export interface Txt2ImgOptions extends DenoiseOptions {
  log?: (line: string) => void;
  /** Sees the final packed latents [B, L_img, 64] (as f32) before the VAE decode (benchmarks, quality checks). */
  onLatents?: (latents: Float32Array) => void;
}

/** Text conditioning for a batch: T5 sequence [B, L, ctx] and CLIP pooled [B, vec]. */
export function encodePrompt(models: FluxModels, prompt: string, batch: number, log: (l: string) => void): { txt: Tensor; vec: Tensor } {
  const c = models.clipTokenizer.encode(prompt);
  const t = models.t5Tokenizer.encode(prompt);
  if (c.truncated) log(`The prompt is longer than CLIP's ${models.clipTokenizer.maxLength} tokens (${c.tokenCount} tokens); the CLIP part was truncated.`);
  if (t.truncated) log(`The prompt is longer than T5's ${models.t5Tokenizer.maxLength} tokens (${t.tokenCount} tokens); it was truncated.`);
  const clipRows = Array.from({ length: batch }, () => c.ids);
  const t5Rows = Array.from({ length: batch }, () => t.ids);
  return tidy(() => {
    const { pooled } = models.clip.forward(clipRows); // [B, vec]
    const txt = models.t5.forward(t5Rows); // [B, L_txt, ctx]
    return { txt, vec: pooled };
  });
}

export async function txt2img(models: FluxModels, req: Txt2ImgRequest, opts: Txt2ImgOptions = {}): Promise<DecodedImage[]> {
  const log = opts.log ?? (() => {});
  const { width, height, numOutputs: B } = req;
  if (width % 16 !== 0 || height % 16 !== 0) throw new Error(`txt2img: width and height must be multiples of 16 (got ${width}x${height})`);
  const h = height / 8; // latent size (VAE factor 8, flux-spec §2)
  const w = width / 8;
  const be = models.flux.backend;
  using scope = new Scope('txt2img');
  const { txt, vec } = scope.run(() => encodePrompt(models, req.prompt, B, log));

  // Noise exactly like torch.randn((B, 16, h, w), generator=manual_seed(seed)) (flux-spec §3.6),
  // in the model's dtype: bf16 models draw bf16 noise as the references do.
  const noiseDtype = models.flux.dtype === 'f32' ? 'f32' : 'bf16';
  const noise = randn([B, 16, h, w], req.seed, noiseDtype); // [B, 16, h, w]
  const Li = (h / 2) * (w / 2);
  const img = scope.keep(fromArray(be, [B, Li, 64], pack(noise, B, 16, h, w), models.flux.dtype)); // [B, Li, 64]
  const timesteps = getSchedule(req.steps, Li, { shift: models.variant === 'dev' });
  log(`Sampling ${req.steps} steps at ${width}x${height} (${Li} image tokens, ${txt.shape[1]} text tokens), seed ${req.seed}`);

  const latents = scope.keep(
    await denoise(
      models.flux,
      { img, img_ids: imageIds(h, w), txt, txt_ids: textIds(txt.shape[1]!), vec, timesteps, guidance: req.guidance },
      { onStep: opts.onStep, signal: opts.signal },
    ),
  ); // [B, Li, 64]
  opts.signal?.throwIfAborted();
  opts.onLatents?.(latents.toFloat32());

  return decodeLatents(models, latents, width, height);
}

/** Packed latents [B, L_img, 64] -> unpack -> VAE decode -> one [3, H, W] image per batch row. */
export function decodeLatents(models: FluxModels, latents: Tensor, width: number, height: number): DecodedImage[] {
  const B = latents.shape[0]!;
  const h = height / 8;
  const w = width / 8;
  const z = unpack(latents.toFloat32(), B, 16, h, w); // [B, 16, h, w]
  const pixels = tidy(() => {
    const zt = fromArray(models.flux.backend, [B, 16, h, w], z, 'f32'); // the VAE runs on f32 latents (BFL: unpack(x.float()))
    return models.ae.decode(zt, { autocast: vaeAutocast(models.flux.backend) }).toFloat32(); // [B, 3, H, W]
  });
  const plane = 3 * width * height;
  return Array.from({ length: B }, (_, i) => ({ width, height, chw: pixels.slice(i * plane, (i + 1) * plane) }));
}
