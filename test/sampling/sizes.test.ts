import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ValidationError } from '../../src/sampling/errors.js';
import { ASPECT_RATIO_CHOICES, makeMultipleOf16, resolveSize, sizeFromImage } from '../../src/sampling/sizes.js';

// cog-flux-behaviour.md §2.1 (replicate/cog-flux:predict.py ASPECT_RATIOS; 0.25 MP = width // 2, height // 2)
const TABLE: [string, number, number, number, number][] = [
  ['1:1', 1024, 1024, 512, 512],
  ['16:9', 1344, 768, 672, 384],
  ['21:9', 1536, 640, 768, 320],
  ['3:2', 1216, 832, 608, 416],
  ['2:3', 832, 1216, 416, 608],
  ['4:5', 896, 1088, 448, 544],
  ['5:4', 1088, 896, 544, 448],
  ['3:4', 896, 1152, 448, 576],
  ['4:3', 1152, 896, 576, 448],
  ['9:16', 768, 1344, 384, 672],
  ['9:21', 640, 1536, 320, 768],
];

function validationError(field: string, text?: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof ValidationError, `expected ValidationError, got ${String(e)}`);
    assert.equal(e.field, field);
    assert.ok(e.message.startsWith(`${field}: `), e.message);
    if (text) assert.match(e.message, text);
    return true;
  };
}

test('the aspect-ratio table at 1 and 0.25 megapixels, in schema order', () => {
  assert.deepEqual(
    [...ASPECT_RATIO_CHOICES],
    TABLE.map((r) => r[0]),
  );
  for (const [ar, w1, h1, wq, hq] of TABLE) {
    assert.deepEqual(resolveSize({ aspectRatio: ar }), { width: w1, height: h1 }, ar);
    assert.deepEqual(resolveSize({ aspectRatio: ar, megapixels: '1' }), { width: w1, height: h1 }, ar);
    assert.deepEqual(resolveSize({ aspectRatio: ar, megapixels: '0.25' }), { width: wq, height: hq }, ar);
    assert.deepEqual(resolveSize({ aspectRatio: ar, megapixels: 0.25 }), { width: wq, height: hq }, ar);
    for (const v of [w1, h1, wq, hq]) assert.equal(v % 16, 0);
    // width/height are ignored unless custom
    assert.deepEqual(resolveSize({ aspectRatio: ar, width: 300, height: 300 }), { width: w1, height: h1 });
  }
});

test('custom sizes round UP to a multiple of 16 (make_multiple_of_16), bounds 256..1440', () => {
  const cases: [number, number][] = [
    [256, 256],
    [257, 272],
    [271, 272],
    [272, 272],
    [1000, 1008],
    [1008, 1008],
    [1009, 1024],
    [1423, 1424],
    [1424, 1424],
    [1425, 1440],
    [1440, 1440],
  ];
  for (const [inp, out] of cases) {
    assert.equal(makeMultipleOf16(inp), out);
    assert.deepEqual(resolveSize({ aspectRatio: 'custom', width: inp, height: 512 }), { width: out, height: 512 });
    assert.deepEqual(resolveSize({ aspectRatio: 'custom', width: 512, height: inp, megapixels: '0.25' }), { width: 512, height: out });
  }
  assert.throws(() => resolveSize({ aspectRatio: 'custom', width: 255, height: 512 }), validationError('width', /256 and 1440/));
  assert.throws(() => resolveSize({ aspectRatio: 'custom', width: 512, height: 1441 }), validationError('height', /256 and 1440/));
  assert.throws(() => resolveSize({ aspectRatio: 'custom', width: 512.5, height: 512 }), validationError('width', /integer/));
  assert.throws(() => resolveSize({ aspectRatio: 'custom', height: 512 }), validationError('width', /must be defined/));
  assert.throws(() => resolveSize({ aspectRatio: 'custom', width: 512 }), validationError('height', /must be defined/));
});

test('invalid aspect_ratio / megapixels name the field and the choices', () => {
  assert.throws(() => resolveSize({ aspectRatio: '7:5' }), validationError('aspect_ratio', /1:1, 16:9, .*9:21, custom/));
  assert.throws(() => resolveSize({ aspectRatio: 'toString' }), validationError('aspect_ratio'));
  assert.throws(() => resolveSize({ aspectRatio: '1:1', megapixels: '2' }), validationError('megapixels', /"1", "0\.25"/));
});

// Expected values computed with the Python of replicate/cog-flux (bfl_predictor.py
// maybe_scale_to_closest_multiple; diffusers_predictor.py; flux-fine-tuner make_multiple_of_16).
const IMAGES: [number, number, [number, number] | null, [number, number], [number, number]][] = [
  // [w, h, cog-bfl, cog-diffusers, fine-tuner]
  [300, 300, [304, 304], [304, 304], [304, 304]],
  [4000, 3000, [1440, 1088], [1440, 1088], [4000, 3008]], // 1080/16 = 67.5 -> 68 (ties to even)
  [1024, 1024, [1024, 1024], [1024, 1024], [1024, 1024]],
  [1440, 1440, [1440, 1440], [1440, 1440], [1440, 1440]],
  [1441, 1441, [1440, 1440], [1440, 1440], [1456, 1456]],
  [2000, 1000, [1440, 720], [1440, 720], [2000, 1008]],
  [1000, 2000, [720, 1440], [720, 1440], [1008, 2000]],
  [24, 40, [32, 32], [32, 48], [32, 48]], // 1.5 -> 2, 2.5 -> 2
  [9, 9, [16, 16], [16, 16], [16, 16]],
  [1920, 1080, [1440, 816], [1440, 816], [1920, 1088]],
  [1080, 1920, [816, 1440], [816, 1440], [1088, 1920]],
  [3024, 4032, [1088, 1440], [1088, 1440], [3024, 4032]],
  [1439, 1000, [1440, 992], [1440, 1008], [1440, 1008]],
  [513, 767, [512, 768], [528, 768], [528, 768]],
  [1200, 1201, [1200, 1200], [1200, 1216], [1200, 1216]],
  [2880, 1621, [1440, 816], [1440, 816], [2880, 1632]],
  [8, 9, null, [16, 16], [16, 16]], // BFL: round(0.5) = 0 -> unusable
  [5000, 17, null, [1440, 16], [5008, 32]], // BFL: 17 * 0.288 -> 4 -> 0
];

test('img2img size from the input image: cog-bfl (default), cog-diffusers, fine-tuner', () => {
  for (const [w, h, bfl, diff, ft] of IMAGES) {
    if (bfl) assert.deepEqual(sizeFromImage(w, h), { width: bfl[0], height: bfl[1] }, `bfl ${w}x${h}`);
    else assert.throws(() => sizeFromImage(w, h), validationError('image', /too small/));
    assert.deepEqual(sizeFromImage(w, h, 'cog-diffusers'), { width: diff[0], height: diff[1] }, `diffusers ${w}x${h}`);
    assert.deepEqual(sizeFromImage(w, h, 'fine-tuner'), { width: ft[0], height: ft[1] }, `fine-tuner ${w}x${h}`);
  }
  assert.throws(() => sizeFromImage(0, 100), validationError('image'));
  assert.throws(() => sizeFromImage(100.5, 100), validationError('image'));
});
