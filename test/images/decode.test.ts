// Input images and masks: data: URIs, PIL-like RGB conversion (alpha dropped), NEAREST resize,
// diffusers' [-1, 1] conversion, and the mask's luma / binarisation / latent downsampling.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';

import {
  ImageInputError,
  decodeRgb,
  inputBytes,
  luma,
  maskFromRgb,
  prepareImage,
  prepareMask,
  resizeNearest,
  resizeRgb,
  rgbToChw,
} from '../../src/images/decode.js';
import { ValidationError } from '../../src/sampling/errors.js';

async function png(width: number, height: number, channels: 1 | 3 | 4, px: (x: number, y: number) => number[]): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) raw.set(px(x, y), (y * width + x) * channels);
  return sharp(raw, { raw: { width, height, channels } }).png().toBuffer();
}

describe('input image decoding', () => {
  it('accepts data: URIs and bytes; refuses http(s) URLs with a pointer to @path', async () => {
    const bytes = await png(2, 2, 3, () => [1, 2, 3]);
    assert.ok(inputBytes(`data:image/png;base64,${bytes.toString('base64')}`).equals(bytes));
    assert.ok(inputBytes(`data:application/octet-stream;base64,${bytes.toString('base64')}`).equals(bytes));
    assert.ok(inputBytes(new Uint8Array(bytes)).equals(bytes));
    assert.throws(
      () => inputBytes('https://example.com/a.png'),
      /image: http\(s\) file inputs are fetched by the server; pass a data: URI or a local file with @path/,
    );
    assert.throws(
      () => inputBytes('http://example.com/a.png', 'mask'),
      (e: Error) => e instanceof ImageInputError && e instanceof ValidationError && e.message.startsWith('mask:'),
    );
    assert.throws(() => inputBytes('data:image/png;base64'), /malformed/);
    assert.throws(() => inputBytes('/tmp/x.png'), /expected a data: URI/);
  });

  it('decodes to RGB like PIL convert("RGB"): alpha is dropped, not flattened; gray is replicated', async () => {
    const rgba = await png(3, 1, 4, (x) => [200, 10 * x, 30, x === 0 ? 0 : 255]); // pixel 0 fully transparent
    const a = await decodeRgb(rgba);
    assert.deepEqual([a.width, a.height], [3, 1]);
    assert.deepEqual([...a.data], [200, 0, 30, 200, 10, 30, 200, 20, 30]);
    const gray = await decodeRgb(await png(2, 1, 1, (x) => [x ? 255 : 7]));
    assert.deepEqual([...gray.data], [7, 7, 7, 255, 255, 255]);
    await assert.rejects(decodeRgb(Buffer.from('not an image')), (e: Error) => e instanceof ImageInputError && /cannot decode/.test(e.message));
  });

  it('converts to [-1, 1] like diffusers (x/255·2 − 1 in float32), CHW', () => {
    const chw = rgbToChw({ width: 2, height: 1, data: new Uint8Array([0, 128, 255, 255, 0, 1]) });
    const f = (b: number) => Math.fround(2 * Math.fround(b / 255) - 1);
    assert.deepEqual([...chw], [-1, 1, f(128), -1, 1, f(1)]);
  });

  it('resizes with sharp to the exact size (stretching, no crop), and keeps an image already at size', async () => {
    const img = await decodeRgb(await png(50, 30, 3, (x, y) => [x * 5, y * 8, 100]));
    for (const k of ['lanczos', 'bicubic'] as const) {
      const r = await resizeRgb(img, 64, 32, k);
      assert.deepEqual([r.width, r.height, r.data.length], [64, 32, 64 * 32 * 3]);
      assert.ok(Math.abs(r.data[(16 * 64 + 32) * 3]! - 32 * 5 * (50 / 64)) < 6, 'a smooth ramp stays a ramp');
    }
    assert.equal(await resizeRgb(img, 50, 30, 'lanczos'), img);
    const p = await prepareImage(await png(50, 30, 3, () => [255, 0, 0]), { width: 64, height: 32 }, 'lanczos');
    assert.deepEqual([p.sourceWidth, p.sourceHeight, p.width, p.height, p.chw.length], [50, 30, 64, 32, 3 * 64 * 32]);
    assert.equal(p.chw[0], 1);
    assert.equal(p.chw[64 * 32], -1);
  });

  it('NEAREST resize reads source pixel floor((x + 0.5)·in/out), as Pillow', () => {
    const src = { width: 5, height: 1, data: new Uint8Array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]) };
    assert.deepEqual(
      [...resizeNearest(src, 2, 1).data].filter((_, i) => i % 3 === 0),
      [1, 3],
    ); // 1.25, 3.75
    assert.deepEqual(
      [...resizeNearest(src, 8, 1).data].filter((_, i) => i % 3 === 0),
      [0, 0, 1, 2, 2, 3, 4, 4],
    );
  });
});

describe('inpainting masks', () => {
  it('uses PIL "L" luma and binarises at 0.5 (L >= 128 repaints)', () => {
    assert.equal(luma(255, 0, 0), 76);
    assert.equal(luma(0, 255, 0), 150);
    assert.equal(luma(255, 255, 255), 255);
    const px = (v: number[]) => ({ width: 8, height: 8, data: new Uint8Array(64 * 3).map((_, i) => v[i % 3]!) });
    assert.deepEqual([...maskFromRgb(px([127, 127, 127])).data], [0]);
    assert.deepEqual([...maskFromRgb(px([128, 128, 128])).data], [1]);
    assert.deepEqual([...maskFromRgb(px([255, 0, 0])).data], [0]); // red: L = 76, kept
    assert.deepEqual([...maskFromRgb(px([0, 255, 0])).data], [1]); // green: L = 150, repainted
  });

  it('downsamples to latent resolution by taking pixel (8i, 8j) (F.interpolate nearest)', () => {
    const rgb = { width: 16, height: 16, data: new Uint8Array(16 * 16 * 3) };
    const set = (x: number, y: number) => rgb.data.fill(255, (y * 16 + x) * 3, (y * 16 + x) * 3 + 3);
    set(8, 0); // picked: latent (0, 1)
    set(1, 9); // not picked
    const m = maskFromRgb(rgb);
    assert.deepEqual([m.h, m.w, m.repaint], [2, 2, 1]);
    assert.deepEqual([...m.data], [0, 1, 0, 0]);
  });

  it('prepareMask: decode, NEAREST resize to the image size, binarise, downsample', async () => {
    // 20x10, white on the left half; resized to 32x16 -> latent 4x2
    const bytes = await png(20, 10, 3, (x) => (x < 10 ? [255, 255, 255] : [0, 0, 0]));
    const m = await prepareMask(bytes, { width: 32, height: 16 });
    assert.deepEqual([m.w, m.h], [4, 2]);
    assert.deepEqual([...m.data], [1, 1, 0, 0, 1, 1, 0, 0]);
  });
});
