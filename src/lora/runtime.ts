// Runtime (unfused) LoRAs: an alternative to fusing (apply.ts). Low-rank deltas on a Linear's
// weight become an adapter attached to that Linear (models/nn.ts `Linear.adapters`), which adds
// up(down(x)) to x·Wᵀ + b at forward time, before the Linear's activation:
//
//     y = act( linear(x, W, b) + linear(linear(x, D), U) )
//
// Every low-rank delta of every LoRA on one Linear is concatenated into ONE adapter: D [ΣR, in]
// stacks the deltas' `down` matrices, U [out, ΣR] holds each delta's `up` in its rows
// [rowStart, rowEnd) and its own columns (zeros elsewhere), multiplied by userScale · delta.scale.
// So a diffusers q/k/v triple on a fused qkv weight is one adapter (two GEMMs and an add per call).
//
// The weights themselves are never written for low-rank deltas, so switching LoRAs costs only the
// adapter uploads. Everything else — full/LoKr/LoHa deltas, bias deltas, norm-scale overrides, a
// delta on a parameter that is not a Linear weight — falls back to a LoraManager that fuses those
// parts (same ids and scales, so an unchanged list is a no-op there too).
//
// Numerics: in f32, runtime and fused outputs agree to rounding (~1e-6 relative); in bf16 the
// adapter's output is rounded to bf16 before the add, so they differ more than two fused runs do.

import type { Flux } from '../models/flux/model.js';
import { Linear, type LinearAdapter } from '../models/nn.js';
import { fromArray, linear } from '../tensor/ops.js';
import { untrack } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { LoraApplyError, LoraManager, planLoras, type LoraEntry } from './apply.js';
import type { LoraDelta, LowRankDelta, ParsedLora } from './types.js';
import { dtypeSize } from '../tensor/dtype.js';

/** up(down(x)) with the scales folded into `up`. Owns its two tensors. */
export class LowRankAdapter implements LinearAdapter {
  constructor(
    readonly down: Tensor,
    readonly up: Tensor,
    /** The deltas it holds, for logs ('double_blocks.0.img_attn.qkv.weight' x3 ...). */
    readonly sources: readonly string[],
  ) {}

  forward(x: Tensor): Tensor {
    const h = linear(x, this.down);
    try {
      return linear(h, this.up);
    } finally {
      h.dispose();
    }
  }

  get rank(): number {
    return this.down.shape[0]!;
  }

  dispose(): void {
    this.down.dispose();
    this.up.dispose();
  }
}

/** The Linear whose weight is the BFL parameter `key` ('x.y.weight'), or undefined. */
export function findLinear(model: Flux, key: string): Linear | undefined {
  if (!key.endsWith('.weight')) return undefined;
  let node: unknown = model;
  for (const part of key.slice(0, -'.weight'.length).split('.')) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, part)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node instanceof Linear ? node : undefined;
}

/** Splits a LoRA into what runs as adapters (low-rank deltas on Linear weights) and what must be fused. */
export function splitRuntime(model: Flux, parsed: ParsedLora): { runtime: LowRankDelta[]; fused: ParsedLora | undefined } {
  const runtime: LowRankDelta[] = [];
  const rest: LoraDelta[] = [];
  for (const d of parsed.deltas) {
    if (d.kind === 'lowrank' && findLinear(model, d.module)) runtime.push(d);
    else rest.push(d);
  }
  const fused = rest.length > 0 || parsed.overrides.length > 0 ? { ...parsed, deltas: rest } : undefined;
  return { runtime, fused };
}

/**
 * Keeps a loaded Flux model equal to "base + the current LoRA list" with adapters where possible.
 * Same contract as LoraManager.setLoras (validate everything first; an unchanged list does
 * nothing). Call between predictions only.
 */
type AdapterSet = { linear: Linear; adapter: LowRankAdapter }[];

/** Bytes of the adapter tensors of a set. */
function setBytes(set: AdapterSet): number {
  let n = 0;
  for (const { adapter } of set) n += (adapter.down.size + adapter.up.size) * dtypeSize(adapter.down.dtype);
  return n;
}

export class RuntimeLoraManager {
  readonly fused: LoraManager;
  private attached: AdapterSet = [];
  private attachedKey = '';
  private current: ReadonlyArray<{ readonly id: string; readonly scale: number }> = [];
  /**
   * Built adapter sets of recent lists (key: ids and scales), detached but kept in backend memory
   * up to `cacheBytes`, least recently used first out: switching back to a list re-attaches its
   * adapters without building or uploading anything (a GPU server alternating between
   * fine-tunes pays the uploads once per fine-tune).
   */
  private readonly cache = new Map<string, AdapterSet>();
  /** applies: setLoras calls that changed something; adapters / adapterRank: attached now; fallbackEntries: LoRAs with a fused part now; cacheHits: lists re-attached from the cache. */
  readonly stats = { applies: 0, adapters: 0, adapterRank: 0, fallbackEntries: 0, cacheHits: 0 };

  constructor(
    readonly model: Flux,
    /** Bound of the adapter cache, bytes of backend memory (0: no cache; default 2 GiB). */
    readonly cacheBytes = 2 * 1024 ** 3,
  ) {
    this.fused = new LoraManager(model);
  }

  get target() {
    return this.fused.target;
  }

  get loaded(): ReadonlyArray<{ readonly id: string; readonly scale: number }> {
    return this.current;
  }

  setLoras(list: readonly LoraEntry[]): boolean {
    if (list.length === this.current.length && list.every((l, i) => l.id === this.current[i]!.id && Object.is(l.scale, this.current[i]!.scale))) {
      return false;
    }
    // validate the whole list against the base model first (throws LoraApplyError, nothing changed)
    planLoras(list, (key) => this.fused.target.keys.get(key));

    // group the runtime deltas by Linear, in list order
    const byLinear = new Map<string, { linear: Linear; ops: { d: LowRankDelta; s: number }[] }>();
    const fallback: LoraEntry[] = [];
    for (const l of list) {
      const { runtime, fused } = splitRuntime(this.model, l.parsed);
      if (fused) fallback.push({ parsed: fused, scale: l.scale, id: l.id });
      for (const d of runtime) {
        const s = l.scale * d.scale;
        if (s === 0) continue;
        let g = byLinear.get(d.module);
        if (!g) byLinear.set(d.module, (g = { linear: findLinear(this.model, d.module)!, ops: [] }));
        g.ops.push({ d, s });
      }
    }

    const setKey = JSON.stringify(list.map((l) => [l.id, l.scale]));
    const cached = this.cache.get(setKey);
    let built: AdapterSet;
    if (cached) {
      this.cache.delete(setKey); // attached now; re-inserted (most recent) when detached
      built = cached;
      this.stats.cacheHits++;
      this.fused.setLoras(fallback);
    } else {
      built = [];
      try {
        for (const [key, g] of byLinear) built.push({ linear: g.linear, adapter: this.buildAdapter(key, g.linear, g.ops) });
        this.fused.setLoras(fallback);
      } catch (e) {
        for (const b of built) b.adapter.dispose();
        throw e;
      }
    }
    this.detach();
    this.attachedKey = setKey;
    for (const b of built) {
      b.linear.adapters = [...b.linear.adapters, b.adapter];
      this.stats.adapterRank += b.adapter.rank;
    }
    this.attached = built;
    this.stats.adapters = built.length;
    this.stats.fallbackEntries = fallback.length;
    this.stats.applies++;
    this.current = list.map((l) => ({ id: l.id, scale: l.scale }));
    return true;
  }

  clear(): boolean {
    return this.setLoras([]);
  }

  /** Removes every adapter and restores fused fallbacks; frees the adapter tensors and the cache. */
  dispose(): void {
    this.detach();
    for (const set of this.cache.values()) for (const { adapter } of set) adapter.dispose();
    this.cache.clear();
    this.fused.clear();
    this.current = [];
  }

  /** Bytes held by detached cached adapter sets. */
  get cachedBytes(): number {
    let n = 0;
    for (const set of this.cache.values()) n += setBytes(set);
    return n;
  }

  /** Takes the attached adapters off their Linears and keeps them in the cache (or frees them). */
  private detach(): void {
    for (const { linear: lin, adapter } of this.attached) lin.adapters = lin.adapters.filter((a) => a !== adapter);
    if (this.attached.length > 0) {
      this.cache.set(this.attachedKey, this.attached);
      let total = this.cachedBytes;
      for (const [key, set] of this.cache) {
        if (total <= this.cacheBytes) break;
        this.cache.delete(key);
        total -= setBytes(set);
        for (const { adapter } of set) adapter.dispose();
      }
    }
    this.attached = [];
    this.attachedKey = '';
    this.stats.adapters = 0;
    this.stats.adapterRank = 0;
  }

  private buildAdapter(key: string, lin: Linear, ops: readonly { d: LowRankDelta; s: number }[]): LowRankAdapter {
    const [N, K] = lin.weight.shape as [number, number];
    const R = ops.reduce((n, o) => n + o.d.rank, 0);
    const down = new Float32Array(R * K);
    const up = new Float32Array(N * R);
    let off = 0;
    for (const { d, s } of ops) {
      if (d.cols !== K || d.rowEnd > N) throw new LoraApplyError(`${d.source}: delta does not fit ${key} [${N}, ${K}]`);
      down.set(d.down, off * K);
      const rows = d.rowEnd - d.rowStart;
      for (let i = 0; i < rows; i++) {
        const o = (d.rowStart + i) * R + off;
        for (let p = 0; p < d.rank; p++) up[o + p] = s * d.up[i * d.rank + p]!;
      }
      off += d.rank;
    }
    const be = lin.weight.backend;
    const dtype = this.model.dtype;
    const dt = untrack(fromArray(be, [R, K], down, dtype));
    let ut: Tensor;
    try {
      ut = untrack(fromArray(be, [N, R], up, dtype));
    } catch (e) {
      dt.dispose();
      throw e;
    }
    return new LowRankAdapter(
      dt,
      ut,
      ops.map((o) => o.d.source),
    );
  }
}
