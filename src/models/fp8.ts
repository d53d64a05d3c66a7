// go_fast: the transformer's block Linears in fp8 (e4m3), derived from its bf16 weights.
//
// Which layers (cog-flux-behaviour.md §5.1, cog-flux's fp8 path with quantize_modulation=True):
// every Linear of the double blocks (img/txt attention qkv and proj, both MLP layers, img_mod and
// txt_mod) and of the single blocks (linear1, linear2, modulation); img_in, txt_in, the embedders,
// the final layer, norms and RoPE stay in the model dtype. Weights: per-tensor scale
// s_w = max|W| / 448 and W8 = e4m3(bf16(W · 448 / max|W|)) (cog-flux's F8Linear also multiplies in
// bf16 before the cast). Activations: quantised per tensor and per call (ops.ts linear
// quantizeInput), where cog-flux uses a static input scale calibrated on 12 forward calls and e5m2;
// dynamic scales need no calibration and keep the result a pure function of the inputs, so a
// fixed seed gives the same image (cog-flux documents its go_fast as non-deterministic).
//
// The fp8 copies are built on first use and kept (about half the bf16 block weights' bytes); a LoRA
// fused into the bf16 weights (Flux.paramWritten) drops the copies of the layers it touched, which
// are re-quantised from the fused weights at the next enable(). cog-flux's 1.5x LoRA strength on
// its fp8 path is the predictor's business (src/predictor/loras.ts), not this module's.

import { absMax, affine, cast } from '../tensor/ops.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Flux } from './flux/model.js';
import type { Linear } from './nn.js';

/** e4m3's largest finite value. */
export const E4M3_MAX = 448;

/** The BFL weight keys of the Linears go_fast runs in fp8, with the layers themselves. */
export function fp8Linears(flux: Flux): Map<string, Linear> {
  const out = new Map<string, Linear>();
  flux.double_blocks.forEach((b, i) => {
    const p = `double_blocks.${i}`;
    for (const side of ['img', 'txt'] as const) {
      const attn = side === 'img' ? b.img_attn : b.txt_attn;
      const mlp = side === 'img' ? b.img_mlp : b.txt_mlp;
      const mod = side === 'img' ? b.img_mod : b.txt_mod;
      out.set(`${p}.${side}_attn.qkv.weight`, attn.qkv);
      out.set(`${p}.${side}_attn.proj.weight`, attn.proj);
      out.set(`${p}.${side}_mlp.0.weight`, mlp[0]);
      out.set(`${p}.${side}_mlp.2.weight`, mlp[2]);
      out.set(`${p}.${side}_mod.lin.weight`, mod.lin);
    }
  });
  flux.single_blocks.forEach((b, i) => {
    const p = `single_blocks.${i}`;
    out.set(`${p}.linear1.weight`, b.linear1);
    out.set(`${p}.linear2.weight`, b.linear2);
    out.set(`${p}.modulation.lin.weight`, b.modulation.lin);
  });
  return out;
}

/** W -> (e4m3 copy, per-tensor dequantisation scale), on W's backend. */
export function quantizeWeightE4m3(w: Tensor): { weight: Tensor; scale: number } {
  const amax = absMax(w);
  if (!(amax > 0) || !Number.isFinite(amax)) {
    // all zero (or not finite: leave the values to the cast, scale 1)
    return { weight: cast(w, 'f8e4m3'), scale: 1 };
  }
  const weight = tidy(() => cast(affine(w, E4M3_MAX / amax), 'f8e4m3'));
  return { weight, scale: amax / E4M3_MAX };
}

/** The fp8 state of one loaded transformer. */
export class GoFast {
  private readonly layers: Map<string, Linear>;
  private readonly copies = new Map<string, { weight: Tensor; scale: number }>();
  private readonly unsubscribe: () => void;
  private on = false;
  /** Counters for logs and tests. */
  readonly stats = { quantized: 0, invalidated: 0 };

  constructor(readonly flux: Flux) {
    this.layers = fp8Linears(flux);
    this.unsubscribe = flux.onParamWritten((key) => this.invalidate(key));
  }

  get enabled(): boolean {
    return this.on;
  }

  /** Bytes held by the fp8 copies. */
  get bytes(): number {
    let n = 0;
    for (const c of this.copies.values()) n += c.weight.size;
    return n;
  }

  /** Every covered Linear runs in fp8 from now on; missing copies are quantised first. Returns how many were. */
  enable(): number {
    let made = 0;
    for (const [key, lin] of this.layers) {
      let c = this.copies.get(key);
      if (!c) {
        c = quantizeWeightE4m3(lin.weight);
        this.copies.set(key, c);
        this.stats.quantized++;
        made++;
      }
      lin.fp8 = c;
    }
    this.on = true;
    return made;
  }

  /** Back to the model dtype (the copies are kept for the next enable()). */
  disable(): void {
    for (const lin of this.layers.values()) lin.fp8 = undefined;
    this.on = false;
  }

  /** The bf16 weight under `key` changed: its fp8 copy is stale. */
  invalidate(key: string): void {
    const c = this.copies.get(key);
    if (!c) return;
    this.copies.delete(key);
    this.stats.invalidated++;
    const lin = this.layers.get(key)!;
    if (this.on) {
      // keep running in fp8: quantise the new weights now
      const fresh = quantizeWeightE4m3(lin.weight);
      this.copies.set(key, fresh);
      this.stats.quantized++;
      lin.fp8 = fresh;
    } else if (lin.fp8 === c) lin.fp8 = undefined;
    c.weight.dispose();
  }

  dispose(): void {
    this.disable();
    this.unsubscribe();
    for (const c of this.copies.values()) c.weight.dispose();
    this.copies.clear();
  }
}
