// Convolution and resampling (NCHW): conv2d for the VAE and the safety checkers' patch embeddings,
// nearest-neighbour upsampling for the VAE decoder.

import type { Tensor } from '../tensor.js';
import { fail, requireFloat, sameBackend, wrap } from './guards.js';

function pair(v: number | readonly [number, number]): [number, number] {
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

/**
 * 2-D convolution, NCHW. w [O, C, kh, kw], bias [O]. padding: one number, [ph, pw], or the
 * asymmetric [top, bottom, left, right] (the VAE's downsample pads (0,1,0,1)).
 */
export function conv2d(
  x: Tensor,
  w: Tensor,
  opts: {
    bias?: Tensor | undefined;
    stride?: number | readonly [number, number];
    padding?: number | readonly [number, number] | readonly [number, number, number, number];
  } = {},
): Tensor {
  const op = 'conv2d';
  const named = { x, w, bias: opts.bias };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  if (x.rank !== 4 || w.rank !== 4) fail(op, 'x must be [B, C, H, W] and w [O, C, kh, kw]', named);
  const [B, C, H, W] = x.shape as [number, number, number, number];
  const [O, Cw, kh, kw] = w.shape as [number, number, number, number];
  if (C !== Cw) fail(op, `input channels differ (${C} vs ${Cw})`, named);
  if (opts.bias && (opts.bias.rank !== 1 || opts.bias.shape[0] !== O)) fail(op, `bias must be [${O}]`, named);
  const stride = pair(opts.stride ?? 1);
  const pad = opts.padding ?? 0;
  let padding: [number, number, number, number];
  if (typeof pad === 'number') padding = [pad, pad, pad, pad];
  else if (pad.length === 2) padding = [pad[0], pad[0], pad[1], pad[1]];
  else padding = [pad[0], pad[1], pad[2], pad[3]];
  if (stride.some((s) => !Number.isInteger(s) || s < 1) || padding.some((p) => !Number.isInteger(p) || p < 0)) {
    fail(op, `stride must be >= 1 and padding >= 0 (stride ${stride}, padding ${padding})`, named);
  }
  const Ho = Math.floor((H + padding[0] + padding[1] - kh) / stride[0]) + 1;
  const Wo = Math.floor((W + padding[2] + padding[3] - kw) / stride[1]) + 1;
  if (Ho < 1 || Wo < 1) fail(op, `kernel ${kh}x${kw} larger than the padded input`, named);
  const out = { shape: [B, O, Ho, Wo], dtype: x.dtype };
  return wrap(be, out, be.conv2d(out, x, w, { bias: opts.bias, stride, padding }));
}

/** Nearest-neighbour upsampling of [B, C, H, W] by an integer factor. */
export function upsampleNearest(x: Tensor, factor = 2): Tensor {
  const op = 'upsampleNearest';
  const named = { x };
  const be = sameBackend(op, named);
  if (x.rank !== 4) fail(op, 'x must be [B, C, H, W]', named);
  if (!Number.isInteger(factor) || factor < 1) fail(op, `factor must be a positive integer (got ${factor})`, named);
  const [B, C, H, W] = x.shape as [number, number, number, number];
  const out = { shape: [B, C, H * factor, W * factor], dtype: x.dtype };
  return wrap(be, out, be.upsampleNearest(out, x, factor));
}
