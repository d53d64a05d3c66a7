// Composite ops: defined by their composition; a backend may run them fused.

import type { AttnPrepSegment, OutSpec } from '../backend.js';
import type { Tensor } from '../tensor.js';
import { checkAmax, raiseAmax } from './amax.js';
import { activation, rope } from './elementwise.js';
import { OpError, fail, requireFloat, sameBackend, wrap } from './guards.js';
import { concat, slice, splitHeads } from './layout.js';
import { rmsNorm } from './norm.js';

/**
 * Attention inputs of FLUX's blocks in one op (black-forest-labs/flux src/flux/modules/layers.py
 * DoubleStreamBlock.forward and SingleStreamBlock.forward with QKNorm, src/flux/math.py apply_rope):
 * for each segment, the q, k, v columns [colOffset, colOffset + 3·H·Dh) of x [B, L_s, C] split into heads
 * ("B L (K H D) -> K B H L D"), q and k RMS-normalised with their scales (BFL RMSNorm: two
 * roundings), the segments concatenated along L (text first in the double blocks), then RoPE on q
 * and k with pe f32 [B|1, ΣL_s, Dh/2, 2, 2]. Returns [q, k, v], each [B, H, ΣL_s, Dh]. Equal to
 * slice -> splitHeads -> rmsNorm -> concat -> rope; the CUDA backend does it in one pass over x
 * (instead of five passes and four intermediates).
 */
export function attnPrep(segments: readonly AttnPrepSegment[], opts: { heads: number; pe: Tensor; eps: number }): [Tensor, Tensor, Tensor] {
  const op = 'attnPrep';
  if (segments.length < 1) throw new OpError(op, 'needs at least one segment');
  const first = segments[0]!;
  const named: Record<string, Tensor | undefined> = { pe: opts.pe };
  segments.forEach((s, i) => Object.assign(named, { [`x${i}`]: s.x, [`qScale${i}`]: s.qScale, [`kScale${i}`]: s.kScale }));
  const be = sameBackend(op, named);
  const H = opts.heads;
  const Dh = first.qScale.shape[0]!;
  const B = first.x.shape[0]!;
  let Ltot = 0;
  for (const [i, s] of segments.entries()) {
    if (s.x.rank !== 3) fail(op, `segment ${i}: x must be [B, L, C]`, named);
    if (s.x.shape[0] !== B || s.x.dtype !== first.x.dtype) fail(op, `segment ${i}: batch and dtype must match segment 0`, named);
    if (s.qScale.rank !== 1 || s.kScale.rank !== 1 || s.qScale.shape[0] !== Dh || s.kScale.shape[0] !== Dh)
      fail(op, `segment ${i}: scales must be [${Dh}]`, named);
    if (!Number.isInteger(s.colOffset) || s.colOffset < 0 || s.colOffset + 3 * H * Dh > s.x.shape[2]!) {
      fail(op, `segment ${i}: columns [${s.colOffset}, ${s.colOffset + 3 * H * Dh}) do not fit C=${s.x.shape[2]}`, named);
    }
    Ltot += s.x.shape[1]!;
  }
  if (!Number.isInteger(H) || H < 1 || Dh % 2 !== 0) fail(op, `heads must be a positive integer and Dh (${Dh}) even`, named);
  const outs: OutSpec[] = Array.from({ length: 3 }, () => ({ shape: [B, H, Ltot, Dh], dtype: first.x.dtype }));
  if (be.attnPrep && segments.length <= 2 && Dh <= 256) {
    const p = opts.pe.shape;
    if (opts.pe.dtype !== 'f32' || opts.pe.rank !== 5 || (p[0] !== 1 && p[0] !== B) || p[1] !== Ltot || p[2] !== Dh / 2) {
      fail(op, `pe must be f32 [${B}|1, ${Ltot}, ${Dh / 2}, 2, 2]`, named);
    }
    const st = be.attnPrep(outs, segments, H, opts.pe, opts.eps);
    return st.map((s, i) => wrap(be, outs[i]!, s)) as [Tensor, Tensor, Tensor];
  }
  return attnPrepComposed(segments, opts);
}

/** attnPrep by its definition (slice -> splitHeads -> rmsNorm -> concat -> rope), whatever the backend has. */
export function attnPrepComposed(segments: readonly AttnPrepSegment[], opts: { heads: number; pe: Tensor; eps: number }): [Tensor, Tensor, Tensor] {
  const H = opts.heads;
  const Dh = segments[0]!.qScale.shape[0]!;
  const parts: [Tensor, Tensor, Tensor][] = segments.map((s) => {
    const C = s.x.shape[2]!;
    const cols = s.colOffset === 0 && C === 3 * H * Dh ? s.x : slice(s.x, 2, s.colOffset, s.colOffset + 3 * H * Dh);
    const [q, k, v] = splitHeads(cols, 3, H) as [Tensor, Tensor, Tensor];
    if (cols !== s.x) cols.dispose();
    const qn = rmsNorm(q, s.qScale, opts.eps);
    const kn = rmsNorm(k, s.kScale, opts.eps);
    q.dispose();
    k.dispose();
    return [qn, kn, v];
  });
  const cat = (i: 0 | 1 | 2): Tensor => {
    if (parts.length === 1) return parts[0]![i];
    const t = concat(
      parts.map((p) => p[i]),
      2,
    );
    for (const p of parts) p[i].dispose();
    return t;
  };
  const [q, k, v] = [cat(0), cat(1), cat(2)];
  const qr = rope(q, opts.pe);
  const kr = rope(k, opts.pe);
  q.dispose();
  k.dispose();
  return [qr, kr, v];
}

/**
 * concat([a, gelu_tanh(h[..., colOffset : colOffset + width])], -1) for FLUX's single blocks
 * (the input of linear2: attention output first, then the activated MLP half of linear1's output).
 * a [B, L, Da], h [B, L, C] -> [B, L, Da + width]; the GELU is rounded once (the activation op).
 * `amaxOut` (see newAmax) is raised to max|output| (linear2's inputAmax under go_fast).
 */
export function geluConcat(a: Tensor, h: Tensor, colOffset: number, width: number, amaxOut?: Tensor): Tensor {
  const op = 'geluConcat';
  const named = { a, h };
  const be = sameBackend(op, named);
  requireFloat(op, named);
  if (amaxOut) checkAmax(op, amaxOut, be);
  if (a.rank !== 3 || h.rank !== 3 || a.shape[0] !== h.shape[0] || a.shape[1] !== h.shape[1] || a.dtype !== h.dtype) {
    fail(op, 'a [B, L, Da] and h [B, L, C] must share B, L and dtype', named);
  }
  if (!Number.isInteger(colOffset) || !Number.isInteger(width) || colOffset < 0 || width < 1 || colOffset + width > h.shape[2]!) {
    fail(op, `columns [${colOffset}, ${colOffset + width}) do not fit C=${h.shape[2]}`, named);
  }
  const out = { shape: [a.shape[0]!, a.shape[1]!, a.shape[2]! + width], dtype: a.dtype };
  const fused = be.geluConcat && be.fusedAmax;
  const y = be.geluConcat ? wrap(be, out, be.geluConcat(out, a, h, colOffset, width, fused ? amaxOut : undefined)) : geluConcatComposed(a, h, colOffset, width);
  if (amaxOut && !fused) raiseAmax(amaxOut, y);
  return y;
}

/** geluConcat by its definition (slice -> activation -> concat), whatever the backend has. */
export function geluConcatComposed(a: Tensor, h: Tensor, colOffset: number, width: number): Tensor {
  const part = slice(h, 2, colOffset, colOffset + width);
  const act = activation(part, 'gelu_tanh');
  part.dispose();
  const y = concat([a, act], 2);
  act.dispose();
  return y;
}
