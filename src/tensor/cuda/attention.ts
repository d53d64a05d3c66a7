// The CUDA backend's attention family: fused attention (native/attention.cu, head dims <= 128),
// an unfused fallback for wider heads (the VAE's single 512-wide head), rope and attnPrep (the
// fused split / RMSNorm / rope of q and k before attention).

import type { AttentionArgs, AttnPrepSegment, Backend, OutSpec, Storage } from '../backend.js';
import { broadcastStrides, collapseBroadcast as collapse } from '../broadcast.js';
import type { Tensor } from '../tensor.js';
import { type CudaContext, optPtr, ptrOf, rowMajorStrides } from './storage.js';

/** The fused attention kernel's head-dim limit (native/attention.cu AT_DMAX). */
const ATTN_DMAX = 128;

export function attentionMethods(ctx: CudaContext): Pick<Backend, 'attention' | 'rope'> & Required<Pick<Backend, 'attnPrep'>> {
  const { ops, alloc, out1 } = ctx;

  /**
   * Attention for head dims the fused kernel does not take (the VAE's single 512-wide head):
   * f32 copies of q/k/v, S = scale·q·kᵀ (+ bias) with the f32 GEMM, a row softmax, P·v, then
   * merge heads and one rounding to the output dtype. Materialises [B·H, Lq, Lk] f32 scores.
   */
  const attentionUnfused = (out: OutSpec, q: Tensor, k: Tensor, v: Tensor, args: AttentionArgs): Storage => {
    const [B, H, Lq, D] = q.shape as [number, number, number, number];
    const Lk = k.shape[2]!;
    const Dv = v.shape[3]!;
    if (args.causal) throw new Error(`cuda attention: causal masking needs head dims <= ${ATTN_DMAX} (got ${D}, ${Dv})`);
    const qf = ctx.castTo(q, 'f32');
    const kf = ctx.castTo(k, 'f32');
    const vf = ctx.castTo(v, 'f32');
    const BH = B * H;
    const S = alloc('f32', BH * Lq * Lk); // [B·H, Lq, Lk]
    ops.gemm({
      dt: 'f32',
      a: qf.ptr,
      b: kf.ptr,
      bDt: 'f32',
      c: S.ptr,
      batch: BH,
      M: Lq,
      N: Lk,
      K: D,
      bNK: true,
      strideA: Lq * D,
      strideB: Lk * D,
      strideC: Lq * Lk,
      alpha: args.scale,
      act: 'none',
    });
    if (args.bias) {
      const bs = args.bias.shape;
      const os = [B, H, Lq, Lk];
      const c = collapse(os, rowMajorStrides(os), broadcastStrides(bs, os));
      ops.binary({ dt: 'f32', op: 'add', a: S.ptr, b: ptrOf(args.bias), bDt: args.bias.dtype, out: S.ptr, dims: c.dims, strideA: c.sa, strideB: c.sb });
    }
    ops.softmax({ dt: 'f32', x: S.ptr, y: S.ptr, rows: BH * Lq, D: Lk });
    const O = alloc('f32', BH * Lq * Dv); // [B, H, Lq, Dv]
    ops.gemm({
      dt: 'f32',
      a: S.ptr,
      b: vf.ptr,
      bDt: 'f32',
      c: O.ptr,
      batch: BH,
      M: Lq,
      N: Dv,
      K: Lk,
      bNK: false,
      strideA: Lq * Lk,
      strideB: Lk * Dv,
      strideC: Lq * Dv,
      alpha: 1,
      act: 'none',
    });
    const merged = alloc('f32', BH * Lq * Dv); // [B, Lq, H, Dv]
    const inShape = [B, H, Lq, Dv];
    const st = rowMajorStrides(inShape);
    const perm = [0, 2, 1, 3];
    ops.permute({ elem: 'f32', x: O.ptr, y: merged.ptr, n: BH * Lq * Dv, outDims: perm.map((p) => inShape[p]!), inStrides: perm.map((p) => st[p]!) });
    const y = out1(out);
    if (out.dtype === 'f32') ops.copyBytes({ dst: y.ptr, src: merged.ptr, bytes: BH * Lq * Dv * 4 });
    else ops.cast({ to: out.dtype, x: merged.ptr, xDt: 'f32', y: y.ptr, n: BH * Lq * Dv });
    ctx.freeAll(qf, kf, vf, S, O, merged);
    return y;
  };

  return {
    attention(out: OutSpec, q: Tensor, k: Tensor, v: Tensor, args: AttentionArgs): Storage {
      const [B, H, Lq, D] = q.shape as [number, number, number, number];
      const Lk = k.shape[2]!;
      const Dv = v.shape[3]!;
      if (D > ATTN_DMAX || Dv > ATTN_DMAX) return attentionUnfused(out, q, k, v, args);
      const bias = args.bias;
      const bs = bias?.shape;
      const y = out1(out);
      ops.attention({
        dt: q.dtype,
        q: ptrOf(q),
        k: ptrOf(k),
        v: ptrOf(v),
        bias: optPtr(bias),
        biasDt: bias?.dtype,
        // element strides of the bias's batch and head dims (0 = broadcast)
        biasSB: bs && bs[0] !== 1 ? bs[1]! * Lq * Lk : 0,
        biasSH: bs && bs[1] !== 1 ? Lq * Lk : 0,
        out: y.ptr,
        B,
        H,
        Lq,
        Lk,
        D,
        Dv,
        scale: args.scale,
        causal: args.causal,
      });
      return y;
    },

    rope(out: OutSpec, x: Tensor, pe: Tensor): Storage {
      const [B, H, L, D] = x.shape as [number, number, number, number];
      const y = out1(out);
      ops.rope({ dt: x.dtype, x: ptrOf(x), pe: ptrOf(pe), peBatched: pe.shape[0] !== 1, y: y.ptr, B, H, L, D });
      return y;
    },

    attnPrep(outs: readonly OutSpec[], segments: readonly AttnPrepSegment[], _heads: number, pe: Tensor, eps: number): Storage[] {
      const [B, H, Ltot, Dh] = outs[0]!.shape as [number, number, number, number];
      const ys = outs.map((o) => out1(o));
      ops.attnPrep({
        dt: outs[0]!.dtype,
        segments: segments.map((s) => ({
          x: ptrOf(s.x),
          L: s.x.shape[1]!,
          C: s.x.shape[2]!,
          col: s.colOffset,
          qScale: ptrOf(s.qScale),
          qScaleDt: s.qScale.dtype,
          kScale: ptrOf(s.kScale),
          kScaleDt: s.kScale.dtype,
        })),
        pe: ptrOf(pe),
        peBatched: pe.shape[0] !== 1,
        q: ys[0]!.ptr,
        k: ys[1]!.ptr,
        v: ys[2]!.ptr,
        B,
        H,
        Ltot,
        Dh,
        eps,
      });
      return ys;
    },
  };
}
