// img2img and inpainting on loaded models, as the diffusers engine behind both served profiles
// runs them (hotswap bf16 path and flux-fine-tuner: FluxImg2ImgPipeline / FluxInpaintPipeline;
// flux-spec §3.7, §3.8; cog-flux-behaviour.md §3.3):
//
//   x0        = VAE.encode(image)                       # scale·(mean − shift), packed
//   sigmas    = schedule(N, L_img, shift)               # the full N-step schedule
//   t_start   = img2imgStart(sigmas, strength, rule)    # FluxImg2ImgPipeline.get_timesteps
//   x         = σ_s·noise + (1 − σ_s)·x0                 # scheduler.scale_noise, σ_s = sigmas[t_start]
//   for i over the remaining steps:
//       x = euler_step(x)
//       inpainting only (mask: 1 = repaint, 0 = keep; packed like the latents):
//           init = scale_noise(x0, σ_{i+1}, noise) if i < last else x0     # the SAME noise
//           x    = (1 − mask)·init + mask·x
//   decode(x)
//
// scale_noise casts σ to the latents' dtype first (`self.sigmas.to(dtype=sample.dtype)`), then
// σ·noise, (1 − σ), (1 − σ)·x0 and the sum are one rounding each in that dtype; `renoise` does the
// same. The mask is exactly 0/1, so the blend is an exact selection in any dtype.
//
// Deliberate differences (docs/behaviour.md): x0 is the VAE mean, not `latent_dist.sample()`, and
// the noise is torch.randn on the CPU generator seeded with `seed` (the same noise as txt2img with
// that seed); a prompt_strength that leaves no step returns the VAE round trip instead of failing.

import { vaeAutocast } from '../models/autoencoder.js';
import type { FluxModels } from '../models/load.js';
import { roundToDtypeInPlace, type DType } from '../tensor/dtype.js';
import { add, affine, fromArray, mul } from '../tensor/ops.js';
import { Scope, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { denoise } from './denoise.js';
import { imageIds, pack, textIds } from './latents.js';
import { randn } from './noise.js';
import { getSchedule, type Img2ImgRule, img2imgStart } from './schedule.js';
import { type DecodedImage, type Txt2ImgOptions, decodeLatents, encodePrompt } from './txt2img.js';

export interface Img2ImgRequest {
  prompt: string;
  /** The input image at the output size: [3, height, width] in [-1, 1] (images/decode.ts). */
  image: Float32Array;
  /** Output size = the image's size; multiples of 16. */
  width: number;
  height: number;
  /** num_inference_steps: the length of the full schedule, of which only the tail runs. */
  steps: number;
  guidance: number;
  seed: number;
  numOutputs: number;
  /** prompt_strength in [0, 1]: 1 starts from pure noise, 0 runs no step. */
  strength: number;
  /** Start-step rule (schedule.ts `img2imgStart`); default 'diffusers', the engine of both profiles. */
  startRule?: Img2ImgRule;
}

export interface InpaintRequest extends Img2ImgRequest {
  /** The mask at latent resolution [height/8, width/8], exactly 0 (keep) or 1 (repaint). */
  mask: { h: number; w: number; data: Float32Array };
}

export type Img2ImgOptions = Txt2ImgOptions;

/** Rounds a host scalar to what a 0-dim tensor of `dtype` holds. */
function roundScalar(dtype: DType, v: number): number {
  const a = new Float32Array([v]);
  roundToDtypeInPlace(dtype, a);
  return a[0]!;
}

/**
 * diffusers `FlowMatchEulerDiscreteScheduler.scale_noise(x0, σ, noise)` = σ·noise + (1 − σ)·x0 in
 * the latents' dtype: σ rounded to that dtype, then one rounding per op. x0 may be [1, L, 64]
 * (broadcast over the batch of `noise` [B, L, 64]).
 */
export function renoise(x0: Tensor, noise: Tensor, sigma: number): Tensor {
  const s = roundScalar(noise.dtype, sigma);
  const c = roundScalar(noise.dtype, 1 - s);
  return tidy(() => add(affine(noise, s), affine(x0, c)));
}

/** The latents of an image in transformer space, packed: [1, L_img, 64] in `dtype`. */
export function encodeImage(models: FluxModels, chw: Float32Array, width: number, height: number, dtype: DType): Tensor {
  const h = height / 8;
  const w = width / 8;
  const be = models.flux.backend;
  const z = tidy(() => models.ae.encode(fromArray(be, [1, 3, height, width], chw, 'f32'), { autocast: vaeAutocast(be) }).toFloat32()); // [1, 16, h, w]
  return fromArray(models.flux.backend, [1, (h / 2) * (w / 2), 64], pack(z, 1, 16, h, w), dtype);
}

export async function img2img(models: FluxModels, req: Img2ImgRequest, opts: Img2ImgOptions = {}): Promise<DecodedImage[]> {
  return run(models, req, undefined, opts);
}

/** Inpainting with the base (64-channel) model: img2img plus the mask blend after every step. */
export async function inpaint(models: FluxModels, req: InpaintRequest, opts: Img2ImgOptions = {}): Promise<DecodedImage[]> {
  return run(models, req, req.mask, opts);
}

async function run(models: FluxModels, req: Img2ImgRequest, mask: InpaintRequest['mask'] | undefined, opts: Img2ImgOptions): Promise<DecodedImage[]> {
  const log = opts.log ?? (() => {});
  const { width, height, numOutputs: B } = req;
  if (width % 16 !== 0 || height % 16 !== 0) throw new Error(`img2img: width and height must be multiples of 16 (got ${width}x${height})`);
  if (req.image.length !== 3 * width * height) throw new Error(`img2img: image has ${req.image.length} values, expected 3x${height}x${width}`);
  const h = height / 8;
  const w = width / 8;
  if (mask && (mask.h !== h || mask.w !== w || mask.data.length !== h * w)) {
    throw new Error(`inpaint: mask is ${mask.w}x${mask.h} (${mask.data.length} values), expected the latent size ${w}x${h}`);
  }
  const Li = (h / 2) * (w / 2);
  const dtype = models.flux.dtype;
  const be = models.flux.backend;
  opts.signal?.throwIfAborted();

  // Where to start: the full schedule for N steps and L_img tokens, cut by prompt_strength.
  const sigmas = getSchedule(req.steps, Li, { shift: models.variant === 'dev' });
  const start = img2imgStart(sigmas, req.strength, req.startRule ?? 'diffusers', { allowNoSteps: true });

  using scope = new Scope(mask ? 'inpaint' : 'img2img');
  const x0 = scope.keep(encodeImage(models, req.image, width, height, dtype)); // [1, Li, 64]
  const noiseDtype = dtype === 'f32' ? 'f32' : 'bf16';
  const noise = scope.keep(fromArray(be, [B, Li, 64], pack(randn([B, 16, h, w], req.seed, noiseDtype), B, 16, h, w), dtype)); // [B, Li, 64]
  const img = scope.keep(renoise(x0, noise, start.startSigma)); // [B, Li, 64]
  log(
    `Sampling ${start.stepsToRun} of ${req.steps} steps (prompt_strength ${req.strength}, from sigma ${start.startSigma.toFixed(4)}) ` +
      `at ${width}x${height} (${Li} image tokens), seed ${req.seed}` +
      (mask ? `; inpainting ${maskCount(mask.data)} of ${h * w} latent positions` : ''),
  );
  if (start.stepsToRun === 0) {
    log('prompt_strength leaves no denoising step: the output is the VAE round trip of the input image');
    return decodeLatents(models, img, width, height);
  }

  const { txt, vec } = scope.run(() => encodePrompt(models, req.prompt, B, log));
  let afterStep: ((x: Tensor, i: number) => Tensor) | undefined;
  if (mask) {
    const packed = pack(repeat16(mask.data), 1, 16, h, w); // [1, Li, 64]
    const repaint = scope.keep(fromArray(be, [1, Li, 64], packed, dtype));
    const keep = scope.keep(
      fromArray(
        be,
        [1, Li, 64],
        packed.map((v) => 1 - v),
        dtype,
      ),
    );
    const ts = start.sigmas;
    afterStep = (x, i) => {
      const last = i === ts.length - 2;
      const init = last ? x0 : renoise(x0, noise, ts[i + 1]!); // [B|1, Li, 64]
      return add(mul(keep, init), mul(repaint, x)); // (1 − mask)·init + mask·x
    };
  }
  const latents = scope.keep(
    await denoise(
      models.flux,
      { img, img_ids: imageIds(h, w), txt, txt_ids: textIds(txt.shape[1]!), vec, timesteps: start.sigmas, guidance: req.guidance },
      { onStep: opts.onStep, signal: opts.signal, afterStep },
    ),
  ); // [B, Li, 64]
  opts.signal?.throwIfAborted();
  return decodeLatents(models, latents, width, height);
}

/** [h, w] -> [16, h, w] (the mask repeated over the latent channels). */
function repeat16(m: Float32Array): Float32Array {
  const out = new Float32Array(16 * m.length);
  for (let c = 0; c < 16; c++) out.set(m, c * m.length);
  return out;
}

function maskCount(m: Float32Array): number {
  let n = 0;
  for (const v of m) n += v;
  return n;
}
