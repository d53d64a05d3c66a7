// The parameterised layers that every network here is built from, each asking the prefix
// builder for its weights by name and shape (PyTorch layouts and key names: `weight`, `bias`).

import type { Activation } from '../tensor/backend.js';
import { activation, add, cast, conv2d, groupNorm, linear, newAmax } from '../tensor/ops.js';
import { tidy, untrack } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Weights } from './weights.js';

/** A term added to a Linear's output at forward time, before its activation (runtime LoRAs, src/lora/runtime.ts). */
export interface LinearAdapter {
  /** x [..., in] -> [..., out], in x's dtype. */
  forward(x: Tensor): Tensor;
}

/** nn.Linear: weight [out, in], bias [out]. */
export class Linear {
  readonly weight: Tensor;
  readonly bias: Tensor | undefined;
  /** Runtime adapters, added in order to x·Wᵀ + b before the activation; empty unless runtime LoRAs are attached. */
  adapters: readonly LinearAdapter[] = [];
  /**
   * go_fast (src/models/fp8.ts): when set, forward runs the fp8 path instead of `weight` — an e4m3
   * copy of it with its per-tensor scale, and the input quantised to e4m3 on the fly.
   */
  fp8: { readonly weight: Tensor; readonly scale: number } | undefined = undefined;

  constructor(w: Weights, inDim: number, outDim: number, bias = true) {
    this.weight = w.get('weight', [outDim, inDim]);
    this.bias = bias ? w.get('bias', [outDim]) : undefined;
  }

  /**
   * [..., in] -> [..., out], with an optional fused activation (rounded after the GEMM).
   * `inputAmax`: max|x| from x's producer (ops.ts newAmax), used by the fp8 path only.
   */
  forward(x: Tensor, act: Activation = 'none', inputAmax?: Tensor): Tensor {
    if (this.adapters.length === 0) return this.product(x, act, inputAmax);
    return tidy(() => {
      let y = this.product(x, 'none', inputAmax);
      for (const a of this.adapters) y = add(y, a.forward(x));
      return act === 'none' ? y : activation(y, act);
    });
  }

  /** An amax accumulator for this layer's input when its fp8 path would use one, else undefined. */
  inputAmaxSlot(): Tensor | undefined {
    return this.fp8 && this.weight.backend.fusedAmax ? newAmax(this.weight.backend) : undefined;
  }

  private product(x: Tensor, act: Activation, inputAmax: Tensor | undefined): Tensor {
    const q = this.fp8;
    if (q) return linear(x, q.weight, { bias: this.bias, act, weightScale: q.scale, quantizeInput: 'f8e4m3', inputAmax });
    return linear(x, this.weight, { bias: this.bias, act });
  }
}

/**
 * torch.autocast(dtype) for a module's forward (the VAE decode under BFL/cog-flux, flux-spec §8):
 * convolutions and linears run in `dtype` on inputs and fp32 parameters cast to it (the casts of
 * parameters are cached: the same values every call), GroupNorm runs in fp32; everything else keeps
 * its input dtype. Owns the cached copies: dispose() frees them.
 */
export class Autocast {
  private readonly params = new Map<Tensor, Tensor>();

  constructor(readonly dtype: 'bf16') {}

  /** A parameter in the autocast dtype (cast once, then cached). */
  param(p: Tensor): Tensor {
    if (p.dtype === this.dtype) return p;
    let c = this.params.get(p);
    if (!c) {
      c = untrack(cast(p, this.dtype)); // outlives the tidy() of the call that made it
      this.params.set(p, c);
    }
    return c;
  }

  /** An activation entering a lower-precision op: cast (a new tensor) unless it already is. */
  input(x: Tensor): Tensor {
    return x.dtype === this.dtype ? x : cast(x, this.dtype);
  }

  dispose(): void {
    for (const c of this.params.values()) c.dispose();
    this.params.clear();
  }
}

/** nn.Conv2d: weight [O, C, k, k], bias [O]. */
export class Conv2d {
  readonly weight: Tensor;
  readonly bias: Tensor;

  constructor(
    w: Weights,
    inCh: number,
    outCh: number,
    readonly kernel: number,
    readonly stride = 1,
    readonly padding: number | readonly [number, number, number, number] = 0,
  ) {
    this.weight = w.get('weight', [outCh, inCh, kernel, kernel]);
    this.bias = w.get('bias', [outCh]);
  }

  /** [B, C, H, W] -> [B, O, H', W']; under `ac` in its dtype. */
  forward(x: Tensor, ac?: Autocast): Tensor {
    if (ac) return conv2d(ac.input(x), ac.param(this.weight), { bias: ac.param(this.bias), stride: this.stride, padding: this.padding });
    return conv2d(x, this.weight, { bias: this.bias, stride: this.stride, padding: this.padding });
  }
}

/** nn.GroupNorm(num_groups, C, eps, affine=True), optionally followed by a fused SiLU (swish). */
export class GroupNorm {
  readonly weight: Tensor;
  readonly bias: Tensor;

  constructor(
    w: Weights,
    channels: number,
    readonly groups: number,
    readonly eps: number,
  ) {
    this.weight = w.get('weight', [channels]);
    this.bias = w.get('bias', [channels]);
  }

  /** [B, C, ...] -> same shape; under autocast in fp32 (the input cast to it, the output fp32). */
  forward(x: Tensor, act: 'none' | 'silu' = 'none', ac?: Autocast): Tensor {
    const xf = ac && x.dtype !== 'f32' ? cast(x, 'f32') : x;
    return groupNorm(xf, { groups: this.groups, weight: this.weight, bias: this.bias, eps: this.eps, act });
  }
}
