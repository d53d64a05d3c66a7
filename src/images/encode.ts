// Image outputs through sharp: webp/jpg with a quality, png lossless (cog-flux's output_format /
// output_quality; replicate/cog-flux predict.py Predictor.postprocess).

import sharp from 'sharp';

export type OutputFormat = 'webp' | 'jpg' | 'png';

export interface RgbImage {
  width: number;
  height: number;
  /** Interleaved RGB bytes, row-major, length width*height*3. */
  data: Uint8Array;
}

/**
 * Decoded pixels in [-1, 1], NCHW for one image [3, H, W], to RGB bytes with BFL's conversion
 * `127.5 * (clamp(x, -1, 1) + 1)` truncated to uint8 (BFL src/flux/cli.py, util.py `.byte()`).
 */
export function pixelsToRgb(chw: Float32Array, height: number, width: number): RgbImage {
  const plane = height * width;
  if (chw.length !== 3 * plane) throw new Error(`pixelsToRgb: ${chw.length} values for 3x${height}x${width}`);
  const data = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const v = Math.min(1, Math.max(-1, chw[c * plane + i]!));
      data[i * 3 + c] = Math.trunc(127.5 * (v + 1));
    }
  }
  return { width, height, data };
}

export async function encodeImage(img: RgbImage, format: OutputFormat, quality = 80): Promise<Buffer> {
  if (!Number.isInteger(quality) || quality < 0 || quality > 100) {
    throw new Error(`output_quality must be an integer from 0 to 100 (got ${quality})`);
  }
  const s = sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  });
  switch (format) {
    case 'png':
      return s.png().toBuffer();
    case 'jpg':
      return s.jpeg({ quality: Math.max(1, quality) }).toBuffer();
    case 'webp':
      return s.webp({ quality }).toBuffer();
  }
}
