// Fusing LoRAs into a loaded transformer's weights, with exact restore (reference/flux-spec.md §6.1,
// reference/cog-flux-behaviour.md §4.3-§4.4, §4.7).
//
// A parameter touched by a set of LoRAs is computed as
//     W' = round_to_dtype( f32(W) (+ userScale_i · scale_d · ΔW_d for every delta d of LoRA i, in list order) )
// in float32 (applyDeltaTo), overrides (BFL control LoRAs' QK-norm scales) replacing the parameter
// at their place in the order, and a single rounding back to the parameter's dtype at the end.
// Unlike cog-flux, the strength is applied once (no lora_scale² from set_adapters + joint
// attention kwargs), and two LoRAs are rounded once, not once each.
//
// planLoras + fuseRows are the whole computation; LoraManager (weights in backend storage) and
// merge.ts (a checkpoint file) both use them, so a merged file holds exactly the fused weights.
//
// Restore is exact: before a parameter is first modified, its pristine rows (only the rows the
// LoRAs touch) are copied to the host, and every setLoras() writes them back before applying the
// new set. Saved rows that the new set does not need are dropped (the weight is pristine again),
// so host memory is the touched rows of the current set.
//
// fp8 checkpoint weights are refused. go_fast's fp8 copies (src/models/fp8.ts) are derived from the
// bf16 weights: every parameter write here is announced through Flux.paramWritten so they follow.

import type { Flux } from '../models/flux/model.js';
import { bflTransformerKeys } from '../io/names.js';
import { type DType, type RawArray, f32ToRaw, rawToF32 } from '../tensor/dtype.js';
import { Tensor } from '../tensor/tensor.js';
import { applyDeltaTo } from './delta.js';
import { loraTargetFromKeys } from './names.js';
import type { LoraDelta, LoraTarget, ParsedLora } from './types.js';

/** One LoRA to apply: its parsed deltas, the user's strength, and an id naming its contents. */
export interface LoraEntry {
  readonly parsed: ParsedLora;
  /** The user's LoRA strength (lora_scale); multiplies every delta's own scale. */
  readonly scale: number;
  /** Identifies the file (URL, path, content hash): an unchanged list of (id, scale) is a no-op. */
  readonly id: string;
}

/** One change to a parameter; applied in order. */
export type ParamOp =
  | { readonly kind: 'delta'; readonly delta: LoraDelta; readonly userScale: number; readonly lora: string }
  | { readonly kind: 'override'; readonly value: Float32Array; readonly lora: string };

/** Everything a set of LoRAs does to one parameter. */
export interface ParamPlan {
  readonly key: string;
  /** The parameter's whole shape. */
  readonly shape: readonly number[];
  /** Rows and columns of the parameter seen as a matrix (a 1-D parameter has 1 column). */
  readonly rows: number;
  readonly cols: number;
  /** The touched rows, [rowStart, rowEnd): the union of the ops' rows. */
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly ops: readonly ParamOp[];
}

export class LoraApplyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoraApplyError';
  }
}

function matrixShape(key: string, shape: readonly number[]): [number, number] {
  if (shape.length === 1) return [shape[0]!, 1];
  if (shape.length === 2) return [shape[0]!, shape[1]!];
  throw new LoraApplyError(`${key}: a LoRA cannot change a parameter of shape [${shape.join(', ')}] (not 1-D or 2-D)`);
}

/**
 * Groups every delta and override of `loras` by BFL parameter, validated against `shapeOf` (the
 * base model's parameter shapes). Throws LoraApplyError naming the LoRA and parameter when
 * something does not fit; nothing is applied then.
 */
export function planLoras(
  loras: readonly { readonly parsed: ParsedLora; readonly scale: number; readonly id?: string }[],
  shapeOf: (key: string) => readonly number[] | undefined,
): Map<string, ParamPlan> {
  const building = new Map<string, { shape: readonly number[]; rows: number; cols: number; r0: number; r1: number; ops: ParamOp[] }>();
  const entry = (key: string, lora: string) => {
    let e = building.get(key);
    if (!e) {
      const shape = shapeOf(key);
      if (!shape) throw new LoraApplyError(`${lora}: ${key} is not a parameter of the base model`);
      const [rows, cols] = matrixShape(key, shape);
      building.set(key, (e = { shape, rows, cols, r0: rows, r1: 0, ops: [] }));
    }
    return e;
  };
  loras.forEach((l, i) => {
    const name = l.id ?? `LoRA #${i + 1}`;
    if (!Number.isFinite(l.scale)) throw new LoraApplyError(`${name}: scale ${l.scale} is not a finite number`);
    for (const o of l.parsed.overrides) {
      const e = entry(o.key, name);
      if (o.value.length !== e.rows * e.cols) {
        throw new LoraApplyError(`${name}: override of ${o.key} has ${o.value.length} values, the parameter has ${e.rows * e.cols}`);
      }
      e.r0 = 0;
      e.r1 = e.rows;
      e.ops.push({ kind: 'override', value: o.value, lora: name });
    }
    for (const d of l.parsed.deltas) {
      const e = entry(d.module, name);
      if (d.cols !== e.cols || d.rowStart < 0 || d.rowEnd > e.rows || d.rowStart >= d.rowEnd) {
        throw new LoraApplyError(`${name}: delta ${d.source} (rows [${d.rowStart}, ${d.rowEnd}) x ${d.cols}) does not fit ${d.module} [${e.shape.join(', ')}]`);
      }
      e.r0 = Math.min(e.r0, d.rowStart);
      e.r1 = Math.max(e.r1, d.rowEnd);
      e.ops.push({ kind: 'delta', delta: d, userScale: l.scale, lora: name });
    }
  });
  const plans = new Map<string, ParamPlan>();
  for (const [key, e] of building) {
    plans.set(key, { key, shape: e.shape, rows: e.rows, cols: e.cols, rowStart: e.r0, rowEnd: e.r1, ops: e.ops });
  }
  return plans;
}

/** Throws unless LoRAs can be fused into parameters of `dtype`. */
export function checkFusableDtype(key: string, dtype: DType): void {
  if (dtype === 'f8e4m3') {
    throw new LoraApplyError(`${key}: fusing a LoRA into fp8 (go_fast) weights is not supported; load the model in bf16`);
  }
  if (dtype === 'i32') throw new LoraApplyError(`${key}: an integer parameter cannot take a LoRA`);
}

/**
 * The fused rows [plan.rowStart, plan.rowEnd) of a parameter from its pristine rows (raw elements
 * of `dtype`, the same rows): decoded to float32, every op applied in order (applyDeltaTo), rounded
 * back to `dtype` once. Returns new raw elements of `dtype`.
 */
export function fuseRows(plan: ParamPlan, dtype: DType, pristine: RawArray): RawArray {
  checkFusableDtype(plan.key, dtype);
  const n = plan.rowEnd - plan.rowStart;
  if (pristine.length !== n * plan.cols) {
    throw new LoraApplyError(`${plan.key}: ${pristine.length} pristine elements for rows [${plan.rowStart}, ${plan.rowEnd}) x ${plan.cols}`);
  }
  const w = rawToF32(dtype, pristine);
  const local = plan.shape.length === 1 ? [n] : [n, plan.cols];
  for (const op of plan.ops) {
    if (op.kind === 'override') {
      // overrides cover every row, so the plan's rows are the whole parameter
      w.set(op.value);
    } else {
      const d = op.delta;
      applyDeltaTo(w, local, { ...d, rowStart: d.rowStart - plan.rowStart, rowEnd: d.rowEnd - plan.rowStart }, op.userScale);
    }
  }
  return f32ToRaw(dtype, w);
}

/**
 * The parameter tensor of `model` under its BFL key ('double_blocks.0.img_attn.qkv.weight',
 * 'final_layer.adaLN_modulation.1.weight'): the model's fields are spelled like the checkpoint, so
 * the key is a path through them. Undefined when the path leads nowhere or not to a Tensor.
 */
export function findParam(model: Flux, key: string): Tensor | undefined {
  let node: unknown = model;
  for (const part of key.split('.')) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, part)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node instanceof Tensor ? node : undefined;
}

/** The LoRA target of a loaded transformer (its BFL key list). */
export function loraTargetOfModel(model: Flux): LoraTarget {
  return loraTargetFromKeys(bflTransformerKeys(model.params));
}

interface Saved {
  readonly rowStart: number;
  readonly rowEnd: number;
  /** Pristine raw elements of rows [rowStart, rowEnd). */
  readonly raw: RawArray;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Keeps a loaded Flux model's weights equal to "base + the current LoRA list". Call setLoras
 * between predictions only (it writes the weights the forward pass reads).
 */
export class LoraManager {
  readonly target: LoraTarget;
  private readonly saved = new Map<string, Saved>();
  /** Parameters that currently differ (or may differ) from their pristine values. */
  private readonly modified = new Set<string>();
  private current: ReadonlyArray<{ readonly id: string; readonly scale: number }> = [];
  /** Counters, for logs and tests: setLoras calls that changed something, parameters written / restored. */
  readonly stats = { applies: 0, paramsWritten: 0, paramsRestored: 0 };

  constructor(readonly model: Flux) {
    this.target = loraTargetOfModel(model);
  }

  /** The (id, scale) list now fused into the weights. */
  get loaded(): ReadonlyArray<{ readonly id: string; readonly scale: number }> {
    return this.current;
  }

  /** Bytes of pristine rows kept on the host. */
  get savedBytes(): number {
    let n = 0;
    for (const s of this.saved.values()) n += s.raw.byteLength;
    return n;
  }

  /**
   * Makes the weights base + `list` (in order, each with its scale). Returns false when the list
   * is unchanged (same ids and scales in the same order: nothing is done), true after re-applying.
   * A list that does not fit the model (unknown parameter, wrong shape, fp8 weight) throws before
   * anything is written, leaving the previous list in place; an error while writing leaves the
   * base weights and an empty list.
   */
  setLoras(list: readonly LoraEntry[]): boolean {
    if (list.length === this.current.length && list.every((l, i) => l.id === this.current[i]!.id && Object.is(l.scale, this.current[i]!.scale))) {
      return false;
    }
    // validate everything before touching a weight
    const plans = planLoras(list, (key) => this.target.keys.get(key));
    const tensors = new Map<string, Tensor>();
    for (const key of plans.keys()) {
      const t = findParam(this.model, key);
      if (!t) throw new LoraApplyError(`${key}: no such parameter in the loaded model`);
      const want = this.target.keys.get(key)!;
      if (!sameShape(t.shape, want)) {
        throw new LoraApplyError(`${key}: the loaded model has shape [${t.shape.join(', ')}], expected [${want.join(', ')}]`);
      }
      checkFusableDtype(key, t.dtype);
      tensors.set(key, t);
    }

    // every parameter rewritten by this call is announced once, after the writes (a key restored
    // and then fused again would otherwise make go_fast re-quantise it twice)
    const written = this.restore();
    this.stats.applies++;
    try {
      for (const key of [...this.saved.keys()]) if (!plans.has(key)) this.saved.delete(key);
      for (const [key, plan] of plans) {
        const t = tensors.get(key)!;
        const s = this.pristineRows(key, t, plan);
        const rows = s.raw.subarray((plan.rowStart - s.rowStart) * plan.cols, (plan.rowEnd - s.rowStart) * plan.cols);
        const fused = fuseRows(plan, t.dtype, rows);
        this.modified.add(key);
        t.backend.write(t.storage, t.dtype, fused, plan.rowStart * plan.cols);
        written.add(key);
        this.stats.paramsWritten++;
      }
    } catch (e) {
      for (const key of this.restore()) written.add(key);
      this.announce(written);
      throw e;
    }
    this.announce(written);
    this.current = list.map((l) => ({ id: l.id, scale: l.scale }));
    return true;
  }

  private announce(keys: Iterable<string>): void {
    for (const key of keys) this.model.paramWritten(key);
  }

  /** Back to the base weights (setLoras([])). */
  clear(): boolean {
    return this.setLoras([]);
  }

  /**
   * Writes back the pristine rows of every modified parameter; the list becomes empty. Returns the
   * keys written, for the caller to announce (Flux.paramWritten).
   */
  private restore(): Set<string> {
    const written = new Set<string>();
    for (const key of this.modified) {
      const s = this.saved.get(key)!;
      const t = findParam(this.model, key)!;
      const cols = matrixShape(key, t.shape)[1];
      t.backend.write(t.storage, t.dtype, s.raw, s.rowStart * cols);
      written.add(key);
      this.stats.paramsRestored++;
    }
    this.modified.clear();
    this.current = [];
    return written;
  }

  /** Saved pristine rows covering the plan's rows (read from the weight, which is pristine now). */
  private pristineRows(key: string, t: Tensor, plan: ParamPlan): Saved {
    const have = this.saved.get(key);
    if (have && have.rowStart <= plan.rowStart && have.rowEnd >= plan.rowEnd) return have;
    const r0 = Math.min(plan.rowStart, have?.rowStart ?? plan.rowStart);
    const r1 = Math.max(plan.rowEnd, have?.rowEnd ?? plan.rowEnd);
    const all = t.toRaw();
    const s: Saved = { rowStart: r0, rowEnd: r1, raw: all.slice(r0 * plan.cols, r1 * plan.cols) };
    this.saved.set(key, s);
    return s;
  }
}
