// Shared by the img2img and inpainting tests: a test picture, requests, and the reference values
// (VAE round trip, packed x0 and noise) computed independently of src/sampling/img2img.ts's loop.
import type { FluxModels } from '../../src/models/load.js';
import { encodeImage, type Img2ImgRequest } from '../../src/sampling/img2img.js';
import { pack } from '../../src/sampling/latents.js';
import { randn } from '../../src/sampling/noise.js';
import { fromArray } from '../../src/tensor/ops.js';
import { tidy } from '../../src/tensor/scope.js';

const fr = Math.fround;
export const W = 64;
export const H = 48;

/** A smooth test picture in [-1, 1], [3, H, W]. */
export function testImage(width = W, height = H): Float32Array {
  const out = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) out[(c * height + y) * width + x] = fr(Math.sin(0.21 * x + 0.9 * c) * Math.cos(0.17 * y - 0.4 * c) * 0.9);
    }
  }
  return out;
}

export function baseRequest(over: Partial<Img2ImgRequest> = {}): Img2ImgRequest {
  return { prompt: 'a red fox in the snow', image: testImage(), width: W, height: H, steps: 4, guidance: 3.5, seed: 7, numOutputs: 1, strength: 0.6, ...over };
}

/** The VAE round trip decode(encode(image)), computed directly. */
export function vaeRoundTrip(models: FluxModels, chw: Float32Array, width = W, height = H): Float32Array {
  return tidy(() => models.ae.decode(models.ae.encode(fromArray(models.flux.backend, [1, 3, height, width], chw))).toFloat32());
}

/** Packed x0 [Li·64] and packed noise [B·Li·64] exactly as img2img builds them (f32 tiny model). */
export function x0AndNoise(models: FluxModels, req: Img2ImgRequest): { x0: Float32Array; noise: Float32Array } {
  const t = encodeImage(models, req.image, req.width, req.height, 'f32');
  const x0 = t.toFloat32();
  t.dispose();
  const h = req.height / 8;
  const w = req.width / 8;
  return { x0, noise: pack(randn([req.numOutputs, 16, h, w], req.seed, 'f32'), req.numOutputs, 16, h, w) };
}
