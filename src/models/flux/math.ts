// Host-side fp32 tables of the FLUX transformer: the sinusoidal timestep embedding (BFL
// modules/layers.py `timestep_embedding`) and the RoPE table (BFL layers.py `EmbedND`, math.py
// `rope`). Both are computed exactly as PyTorch does in float32: every intermediate is rounded with
// Math.fround at the point where a float32 tensor op would round it.

import type { Backend } from '../../tensor/backend.js';
import { type DType, roundToDtypeInPlace } from '../../tensor/dtype.js';
import { fromArray } from '../../tensor/ops.js';
import type { Tensor } from '../../tensor/tensor.js';

const f = Math.fround;

/** Rounds host values to `dtype` the way `torch.full(..., dtype=dtype)` stores them. */
export function roundTo(dtype: DType, values: ArrayLike<number>): Float32Array {
  const out = Float32Array.from(values);
  roundToDtypeInPlace(dtype, out);
  return out;
}

/**
 * timestep_embedding(t, dim, max_period, time_factor) -> [B, dim] in `dtype`.
 * `t` are the host values of a [B] tensor of dtype `dtype` (BFL creates t with the image's dtype,
 * so they are rounded to it first); `time_factor * t` is one op in that dtype (BFL sampling.py
 * denoise: bf16(bf16(t)·1000)); frequencies, arguments and cos/sin are fp32; [cos, sin] (cos
 * FIRST); the result is cast to `dtype`.
 */
export function timestepEmbedding(be: Backend, t: ArrayLike<number>, dtype: DType, dim = 256, maxPeriod = 10_000, timeFactor = 1000): Tensor {
  return fromArray(be, [t.length, dim], timestepEmbeddingF32(t, dtype, dim, maxPeriod, timeFactor), dtype); // [B, dim]; f32 values rounded once to dtype
}

/** timestepEmbedding's fp32 values [B, dim] before the final cast to `dtype` (host only). */
export function timestepEmbeddingF32(t: ArrayLike<number>, dtype: DType, dim = 256, maxPeriod = 10_000, timeFactor = 1000): Float32Array {
  const B = t.length;
  const tq = roundTo(dtype, t); // torch.full(..., dtype)
  for (let b = 0; b < B; b++) tq[b] = f(timeFactor * tq[b]!); // opmath is fp32 ...
  roundToDtypeInPlace(dtype, tq); // ... and the product is stored in t's dtype
  const half = Math.floor(dim / 2);
  const freqs = new Float32Array(half);
  const negLog = f(-Math.log(maxPeriod)); // the Python scalar enters the fp32 op as a float
  for (let i = 0; i < half; i++) freqs[i] = f(Math.exp(f(f(negLog * i) / half)));
  const emb = new Float32Array(B * dim); // odd dim: the last column stays 0 (BFL pads with zeros)
  for (let b = 0; b < B; b++) {
    const tb = tq[b]!;
    for (let i = 0; i < half; i++) {
      const arg = f(tb * freqs[i]!);
      emb[b * dim + i] = Math.cos(arg);
      emb[b * dim + half + i] = Math.sin(arg);
    }
  }
  return emb;
}

/**
 * EmbedND: the RoPE table for position ids [B, L, n_axes] (host, fp32) -> Float32Array laid out
 * [B, L, sum(axes_dim)/2, 2, 2], each 2x2 block [[cos φ, -sin φ], [sin φ, cos φ]], axes
 * concatenated along the pair dim in order (BFL EmbedND.forward).
 *
 * Per axis of dim d: scale_k = fp32(2k / d), ω_k = fp32(1 / fp32(theta^scale_k)),
 * φ = fp32(pos · ω_k), then fp32 cos/sin — BFL `rope` with pos in float32.
 */
export function ropeTable(ids: Float32Array, B: number, L: number, axesDim: readonly number[], theta: number): Float32Array {
  const nAxes = axesDim.length;
  if (ids.length !== B * L * nAxes) throw new Error(`ropeTable: ${ids.length} ids for [${B}, ${L}, ${nAxes}]`);
  const pairs = axesDim.reduce((a, d) => a + d / 2, 0);
  const omegas: Float32Array[] = axesDim.map((d) => {
    const om = new Float32Array(d / 2);
    for (let k = 0; k < d / 2; k++) {
      const scale = f((2 * k) / d); // torch.arange(0, d, 2, fp32) / d
      om[k] = f(1 / f(theta ** scale)); // 1.0 / (theta ** scale)
    }
    return om;
  });
  const out = new Float32Array(B * L * pairs * 4);
  for (let bl = 0; bl < B * L; bl++) {
    let o = bl * pairs * 4;
    for (let a = 0; a < nAxes; a++) {
      const pos = f(ids[bl * nAxes + a]!);
      const om = omegas[a]!;
      for (let k = 0; k < om.length; k++) {
        const phi = f(pos * om[k]!);
        const c = f(Math.cos(phi));
        const s = f(Math.sin(phi));
        out[o] = c;
        out[o + 1] = -s;
        out[o + 2] = s;
        out[o + 3] = c;
        o += 4;
      }
    }
  }
  return out;
}

/**
 * The RoPE table as an f32 tensor [B|1, L, D/2, 2, 2]: when every batch item has the same ids
 * (the usual case) one table [1, L, ...] serves the whole batch.
 */
export function embedND(be: Backend, ids: Float32Array, B: number, L: number, axesDim: readonly number[], theta: number): Tensor {
  const per = L * axesDim.length;
  let same = true;
  for (let b = 1; b < B && same; b++) {
    for (let i = 0; i < per; i++) {
      if (ids[b * per + i] !== ids[i]) {
        same = false;
        break;
      }
    }
  }
  const Bt = same ? 1 : B;
  const table = ropeTable(same ? ids.subarray(0, per) : ids, Bt, L, axesDim, theta);
  const pairs = axesDim.reduce((a, d) => a + d / 2, 0);
  return fromArray(be, [Bt, L, pairs, 2, 2], table, 'f32'); // [B|1, L, D/2, 2, 2]
}
