// Input images for img2img and inpainting: file input -> bytes -> RGB -> resized -> [-1, 1] CHW,
// and masks -> binarised latent-resolution masks. The references (diffusers
// pipelines/flux/pipeline_flux_inpaint.py, image_processor.py), all PIL + `VaeImageProcessor`:
//
//   replicate/cog-flux:diffusers_predictor.py (hotswap) and replicate/flux-fine-tuner:predict.py:
//     input_image = Image.open(image).convert("RGB")            # alpha DROPPED, not flattened
//     input_image = input_image.resize(target_size, LANCZOS)    # fine-tuner: LANCZOS if png or
//                                                               #   quality 100, else BICUBIC
//     mask_image  = Image.open(mask).convert("RGB").resize(target_size, Image.NEAREST)
//   diffusers VaeImageProcessor.preprocess(image, H, W): resize to (W, H) (a no-op here: already
//     that size), np.array / 255 (float32), then 2x - 1.
//   mask_processor (do_normalize=False, do_binarize=True, do_convert_grayscale=True):
//     convert("L") (ITU-R 601-2 luma, PIL integer formula), / 255, x < 0.5 -> 0 else 1;
//     the pipeline then takes F.interpolate(mask, (H/8, W/8)) (mode 'nearest': pixel (8i, 8j)).
//
// What we do differently (docs/behaviour.md, "img2img and inpainting"):
// - the image resize runs in libvips (sharp) with the same kernel family (lanczos3 for PIL
//   LANCZOS, cubic = Catmull-Rom a=-0.5 for PIL BICUBIC); both are separable, antialiased
//   filters with the same support, but the fixed-point rounding differs, so pixels may differ by a
//   few levels from PIL's. The mask's NEAREST resize is exact PIL (ported below: source pixel
//   floor((x + 0.5)·in/out)).
// - EXIF orientation is ignored, as PIL's Image.open does. sharp converts images with an embedded
//   ICC profile (and CMYK) to sRGB; PIL's convert("RGB") ignores profiles.
// Fetching http(s) URLs is the server's job: here only data: URIs and raw bytes are accepted.

import sharp from 'sharp';

import { ValidationError } from '../sampling/errors.js';
import type { RgbImage } from './encode.js';

/** The resampling filters of the references (PIL names). */
export type Resample = 'lanczos' | 'bicubic';

const SHARP_KERNEL: Record<Resample, 'lanczos3' | 'cubic'> = { lanczos: 'lanczos3', bicubic: 'cubic' };

/** A file input that cannot be used (a 422 for the API: the message starts with the field). */
export class ImageInputError extends ValidationError {
  constructor(field: string, message: string) {
    super(field, message);
    this.name = 'ImageInputError';
  }
}

/** Bytes of a file input: a Buffer/Uint8Array as is, a data: URI decoded; http(s) URLs are refused here. */
export function inputBytes(input: string | Uint8Array, field = 'image'): Buffer {
  if (typeof input !== 'string') return Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(input)?.[1]?.toLowerCase();
  if (scheme === 'http' || scheme === 'https') {
    throw new ImageInputError(field, 'http(s) file inputs are fetched by the server; pass a data: URI or a local file with @path');
  }
  if (scheme !== 'data') throw new ImageInputError(field, `expected a data: URI (got ${scheme ? `a ${scheme}: URL` : 'no URL scheme'})`);
  const comma = input.indexOf(',');
  if (comma < 0) throw new ImageInputError(field, 'malformed data: URI (no comma)');
  const meta = input.slice(5, comma);
  const payload = input.slice(comma + 1);
  if (/;base64$/i.test(meta)) {
    const clean = payload.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(clean)) throw new ImageInputError(field, 'malformed data: URI (invalid base64)');
    return Buffer.from(clean, 'base64');
  }
  return Buffer.from(decodeURIComponent(payload), 'latin1');
}

/**
 * Decodes an image file to 8-bit RGB at its own size, like PIL `Image.open(f).convert("RGB")`:
 * an alpha channel is dropped (the colour values under transparent pixels are kept, nothing is
 * flattened onto a background), grayscale is replicated to three channels.
 */
export async function decodeRgb(bytes: Buffer, field = 'image'): Promise<RgbImage> {
  let out: { data: Buffer; info: sharp.OutputInfo };
  try {
    out = await sharp(bytes, { failOn: 'error' }).toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new ImageInputError(field, `cannot decode the image (${(e as Error).message})`);
  }
  const { width, height, channels } = out.info;
  const n = width * height;
  const data = new Uint8Array(n * 3);
  if (channels === 3) {
    data.set(out.data.subarray(0, n * 3));
  } else if (channels === 1 || channels === 2) {
    for (let i = 0; i < n; i++) data[3 * i] = data[3 * i + 1] = data[3 * i + 2] = out.data[i * channels]!;
  } else {
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) data[3 * i + c] = out.data[i * channels + c]!;
  }
  return { width, height, data };
}

/** PIL `resize((w, h), LANCZOS | BICUBIC)` on RGB, through sharp (see the header for the difference). */
export async function resizeRgb(img: RgbImage, width: number, height: number, resample: Resample): Promise<RgbImage> {
  if (img.width === width && img.height === height) return img; // PIL returns a copy at the same size
  const { data, info } = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  })
    .resize(width, height, { fit: 'fill', kernel: SHARP_KERNEL[resample], fastShrinkOnLoad: false })
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.width !== width || info.height !== height || info.channels !== 3) {
    throw new Error(`resizeRgb: sharp returned ${info.width}x${info.height}x${info.channels}, wanted ${width}x${height}x3`);
  }
  return { width, height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** PIL `resize(size, Image.NEAREST)`: output pixel x reads source floor((x + 0.5)·in/out) (Pillow's affine nearest). */
export function resizeNearest(img: RgbImage, width: number, height: number): RgbImage {
  if (img.width === width && img.height === height) return img;
  const sx = img.width / width;
  const sy = img.height / height;
  const xs = Int32Array.from({ length: width }, (_, x) => Math.min(img.width - 1, Math.floor((x + 0.5) * sx)));
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const srcRow = Math.min(img.height - 1, Math.floor((y + 0.5) * sy)) * img.width;
    for (let x = 0; x < width; x++) {
      const s = (srcRow + xs[x]!) * 3;
      const d = (y * width + x) * 3;
      data[d] = img.data[s]!;
      data[d + 1] = img.data[s + 1]!;
      data[d + 2] = img.data[s + 2]!;
    }
  }
  return { width, height, data };
}

/** diffusers preprocess: uint8 / 255 (float32), then 2x − 1; RGB interleaved -> [3, H, W]. */
export function rgbToChw(img: RgbImage): Float32Array {
  const plane = img.width * img.height;
  const lut = Float32Array.from({ length: 256 }, (_, b) => Math.fround(2 * Math.fround(b / 255) - 1));
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    out[i] = lut[img.data[3 * i]!]!;
    out[plane + i] = lut[img.data[3 * i + 1]!]!;
    out[2 * plane + i] = lut[img.data[3 * i + 2]!]!;
  }
  return out;
}

/** PIL convert("L") from RGB: L = (R·19595 + G·38470 + B·7471 + 0x8000) >> 16 (ITU-R 601-2). */
export function luma(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
}

export interface InputImage {
  /** The decoded file's size. */
  sourceWidth: number;
  sourceHeight: number;
  /** The size it was resized to (the output size). */
  width: number;
  height: number;
  /** [3, height, width] in [-1, 1]. */
  chw: Float32Array;
}

/** Decode + resize an img2img/inpaint image to the chosen size, as [-1, 1] CHW. */
export async function prepareImage(bytes: Buffer, size: { width: number; height: number }, resample: Resample, field = 'image'): Promise<InputImage> {
  const rgb = await decodeRgb(bytes, field);
  const resized = await resizeRgb(rgb, size.width, size.height, resample);
  return { sourceWidth: rgb.width, sourceHeight: rgb.height, width: size.width, height: size.height, chw: rgbToChw(resized) };
}

export interface LatentMask {
  /** Latent size: height/8 x width/8. */
  h: number;
  w: number;
  /** [h, w], exactly 0 (keep) or 1 (repaint). */
  data: Float32Array;
  /** How many latent positions are repainted. */
  repaint: number;
}

/**
 * The inpainting mask at latent resolution, as the references build it: RGB -> NEAREST resize to
 * the image size -> PIL "L" -> /255 -> binarise (< 0.5 -> 0, else 1; i.e. L >= 128 repaints)
 * -> nearest downsample by 8 (pixel (8i, 8j)). White repaints, black keeps.
 */
export async function prepareMask(bytes: Buffer, size: { width: number; height: number }, field = 'mask'): Promise<LatentMask> {
  const rgb = resizeNearest(await decodeRgb(bytes, field), size.width, size.height);
  return maskFromRgb(rgb);
}

/** The pure part of `prepareMask`, from an RGB image already at the output size. */
export function maskFromRgb(rgb: RgbImage, factor = 8): LatentMask {
  if (rgb.width % factor !== 0 || rgb.height % factor !== 0) {
    throw new RangeError(`mask: size ${rgb.width}x${rgb.height} is not a multiple of ${factor}`);
  }
  const h = rgb.height / factor;
  const w = rgb.width / factor;
  const data = new Float32Array(h * w);
  let repaint = 0;
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const s = (i * factor * rgb.width + j * factor) * 3;
      const l = luma(rgb.data[s]!, rgb.data[s + 1]!, rgb.data[s + 2]!);
      const v = Math.fround(l / 255) < 0.5 ? 0 : 1;
      data[i * w + j] = v;
      repaint += v;
    }
  }
  return { h, w, data, repaint };
}
