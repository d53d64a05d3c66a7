// Latent packing and position ids (flux-spec §2; BFL src/flux/sampling.py `prepare` / `unpack`).
//
//   pack:   rearrange(x, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)
//   unpack: rearrange(x, "b (h w) (c ph pw) -> b c (h ph) (w pw)", ph=2, pw=2)
//
// Latent element (b, c, 2r+ph, 2q+pw) <-> packed token n = r·(w/2) + q, channel 4c + 2ph + pw.
// Arrays are plain row-major Float32Arrays; `h`, `w` are LATENT sizes (pixels / 8), both even.

function checkDims(fn: string, B: number, C: number, h: number, w: number, len: number): void {
  for (const [name, v] of [
    ['B', B],
    ['C', C],
    ['h', h],
    ['w', w],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${fn}: ${name} must be a positive integer, got ${v}`);
  }
  if (h % 2 !== 0 || w % 2 !== 0) throw new RangeError(`${fn}: latent h and w must be even, got ${h}x${w}`);
  if (len !== B * C * h * w) {
    throw new RangeError(`${fn}: array has ${len} elements, expected B·C·h·w = ${B}·${C}·${h}·${w} = ${B * C * h * w}`);
  }
}

/** [B, C, h, w] -> [B, (h/2)(w/2), 4C]. */
export function pack(x: Float32Array, B: number, C: number, h: number, w: number): Float32Array {
  checkDims('pack', B, C, h, w, x.length);
  const hh = h / 2;
  const ww = w / 2;
  const L = hh * ww;
  const D = 4 * C;
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < h; y++) {
        const r = y >> 1;
        const ph = y & 1;
        const src = ((b * C + c) * h + y) * w;
        const dstRow = (b * L + r * ww) * D + 4 * c + 2 * ph;
        for (let xx = 0; xx < w; xx++) {
          out[dstRow + (xx >> 1) * D + (xx & 1)] = x[src + xx]!;
        }
      }
    }
  }
  return out;
}

/** [B, (h/2)(w/2), 4C] -> [B, C, h, w] (exact inverse of `pack`). */
export function unpack(x: Float32Array, B: number, C: number, h: number, w: number): Float32Array {
  checkDims('unpack', B, C, h, w, x.length);
  const hh = h / 2;
  const ww = w / 2;
  const L = hh * ww;
  const D = 4 * C;
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < h; y++) {
        const r = y >> 1;
        const ph = y & 1;
        const dst = ((b * C + c) * h + y) * w;
        const srcRow = (b * L + r * ww) * D + 4 * c + 2 * ph;
        for (let xx = 0; xx < w; xx++) {
          out[dst + xx] = x[srcRow + (xx >> 1) * D + (xx & 1)]!;
        }
      }
    }
  }
  return out;
}

/**
 * Image position ids for latent size h×w: row-major over the (h/2)×(w/2) patches, each (0, row, col).
 * Shape [(h/2)(w/2), 3] (one copy; the batch shares it).
 */
export function imageIds(h: number, w: number): Float32Array {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h <= 0 || w <= 0 || h % 2 !== 0 || w % 2 !== 0) {
    throw new RangeError(`imageIds: latent h and w must be positive even integers, got ${h}x${w}`);
  }
  const hh = h / 2;
  const ww = w / 2;
  const out = new Float32Array(hh * ww * 3);
  for (let r = 0; r < hh; r++) {
    for (let q = 0; q < ww; q++) {
      const o = (r * ww + q) * 3;
      out[o + 1] = r;
      out[o + 2] = q;
    }
  }
  return out;
}

/** Text position ids: zeros, shape [L, 3]. */
export function textIds(L: number): Float32Array {
  if (!Number.isInteger(L) || L < 0) throw new RangeError(`textIds: L must be a non-negative integer, got ${L}`);
  return new Float32Array(L * 3);
}

/** Latent size (h, w) = (2·ceil(H/16), 2·ceil(W/16)) of a pixel size, as BFL `get_noise` computes it. */
export function latentSize(width: number, height: number): { h: number; w: number } {
  return { h: 2 * Math.ceil(height / 16), w: 2 * Math.ceil(width / 16) };
}
