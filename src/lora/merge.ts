// `fluxserve lora merge`: a base transformer checkpoint + LoRAs -> one BFL-named checkpoint in the
// base's dtype, computed exactly like the fused path (apply.ts planLoras + fuseRows), so a model
// loaded from the merged file has bit-identical weights to the base model after LoraManager.setLoras.
// The base is streamed one tensor at a time (a lazy TensorSource view), never held whole.

import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { detectTransformerLayout, diffusersToBflTransformer, stripBflPrefix } from '../io/names.js';
import { SafetensorsFile, openSafetensors, writeSafetensors } from '../io/safetensors.js';
import type { TensorInfo, TensorSource } from '../io/source.js';
import type { RawArray } from '../tensor/dtype.js';
import { type ParamPlan, checkFusableDtype, fuseRows, planLoras } from './apply.js';
import { parseLora } from './formats.js';
import { loraTargetFromKeys } from './names.js';
import type { LoraTarget, ParsedLora } from './types.js';

/** A LoRA source and strength as given on the command line (`path[:scale]`). */
export interface LoraSpec {
  readonly src: string;
  readonly scale: number;
}

const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Parses `SRC[:SCALE]`: the scale is what follows the LAST colon, and only when that is a number
 * (so `C:\loras\a.safetensors` and `https://...` keep their colons); default 1. A string that is
 * itself an existing file is never split.
 */
export function parseLoraSpec(s: string): LoraSpec {
  const i = s.lastIndexOf(':');
  if (i > 0) {
    const tail = s.slice(i + 1);
    if (NUMBER.test(tail) && !existsSync(s)) {
      const scale = Number(tail);
      if (!Number.isFinite(scale)) throw new Error(`LoRA ${JSON.stringify(s)}: scale ${tail} is not a finite number`);
      return { src: s.slice(0, i), scale };
    }
  }
  if (s.length === 0) throw new Error('empty LoRA source');
  return { src: s, scale: 1 };
}

/** A transformer checkpoint under BFL names. */
export interface BaseTransformer {
  readonly source: TensorSource;
  /** 'bfl' or 'diffusers' (renamed to BFL on the fly). */
  readonly layout: 'bfl' | 'diffusers';
  close(): void;
}

function isTransformerFile(file: string): boolean {
  const f = SafetensorsFile.open(file);
  try {
    return f.keys().some((k) => /(^|\.)(double_blocks|transformer_blocks)\.0\./.test(k));
  } finally {
    f.close();
  }
}

/**
 * Opens a base transformer: a `.safetensors` file (BFL names, optionally `model.diffusion_model.`,
 * or diffusers names), a sharded index, or a model folder (diffusers `transformer/`, or a BFL
 * folder's one transformer file beside ae.safetensors).
 */
export function openBaseTransformer(p: string): BaseTransformer {
  let target = p;
  if (statSync(p).isDirectory()) {
    if (existsSync(join(p, 'transformer'))) {
      target = join(p, 'transformer');
    } else {
      const files = readdirSync(p)
        .filter((f) => f.endsWith('.safetensors') && f !== 'ae.safetensors' && !f.startsWith('.'))
        .sort()
        .map((f) => join(p, f));
      const tr = files.filter(isTransformerFile);
      if (tr.length === 1) target = tr[0]!;
      else if (tr.length > 1) throw new Error(`${p}: several transformer checkpoints (${tr.map((f) => basename(f)).join(', ')}); name one`);
      // else: a folder of shards, opened as a whole below
    }
  }
  const file = openSafetensors(target);
  try {
    const layout = detectTransformerLayout(file.keys());
    const source = layout === 'diffusers' ? diffusersToBflTransformer(file) : stripBflPrefix(file);
    return { source, layout, close: () => file.close() };
  } catch (e) {
    file.close();
    throw e;
  }
}

/** The LoRA target of a checkpoint (its BFL key list and shapes). */
export function loraTargetOfSource(src: TensorSource): LoraTarget {
  const keys = new Map<string, readonly number[]>();
  for (const k of src.keys()) keys.set(k, src.info(k)!.shape);
  return loraTargetFromKeys(keys);
}

/** Reads and parses a local LoRA file against `target`. */
export function readLoraFile(path: string, target: LoraTarget): ParsedLora {
  const f = SafetensorsFile.open(path);
  try {
    return parseLora(f, target);
  } finally {
    f.close();
  }
}

/** `base` with `loras` fused in, read lazily tensor by tensor; keys, names and dtypes are the base's. */
export class MergedSource implements TensorSource {
  readonly label: string;
  readonly plans: ReadonlyMap<string, ParamPlan>;

  constructor(
    private readonly base: TensorSource,
    loras: readonly { readonly parsed: ParsedLora; readonly scale: number; readonly id?: string }[],
  ) {
    this.label = `${base.label} + ${loras.length} LoRA(s)`;
    this.plans = planLoras(loras, (key) => base.info(key)?.shape);
    for (const key of this.plans.keys()) checkFusableDtype(key, base.info(key)!.dtype);
  }

  keys(): string[] {
    return this.base.keys();
  }

  info(name: string): TensorInfo | undefined {
    return this.base.info(name);
  }

  read(name: string): RawArray {
    const raw = this.base.read(name);
    const plan = this.plans.get(name);
    if (!plan) return raw;
    const dtype = this.base.info(name)!.dtype;
    const out = raw.slice();
    const lo = plan.rowStart * plan.cols;
    const hi = plan.rowEnd * plan.cols;
    // same typed-array class on both sides (the dtype's raw elements), so this copies bits
    (out as Float32Array).set(fuseRows(plan, dtype, raw.subarray(lo, hi)) as Float32Array, lo);
    return out;
  }
}

export interface MergeResult {
  readonly out: string;
  readonly layout: 'bfl' | 'diffusers';
  readonly loras: ReadonlyArray<{ readonly src: string; readonly scale: number; readonly parsed: ParsedLora }>;
  /** Parameters changed. */
  readonly params: number;
  /** Parameters in the checkpoint. */
  readonly total: number;
}

/** Merges local LoRA files into a base transformer and writes a BFL-named checkpoint to `out`. */
export function mergeLoraFiles(basePath: string, specs: readonly LoraSpec[], out: string): MergeResult {
  if (specs.length === 0) throw new Error('no LoRA to merge');
  const outAbs = resolve(out);
  const base = openBaseTransformer(basePath);
  try {
    for (const f of [basePath, ...specs.map((s) => s.src)]) {
      if (existsSync(outAbs) && existsSync(f) && realpathSync(f) === realpathSync(outAbs)) {
        throw new Error(`--out ${out} is one of the inputs`);
      }
    }
    const target = loraTargetOfSource(base.source);
    const loras = specs.map((s) => ({ src: s.src, scale: s.scale, id: s.src, parsed: readLoraFile(s.src, target) }));
    const merged = new MergedSource(base.source, loras);
    const meta = {
      format: 'pt',
      fluxserve_lora_merge: JSON.stringify(loras.map((l) => ({ file: basename(l.src), scale: l.scale, format: l.parsed.format }))),
    };
    writeSafetensors(outAbs, merged, meta);
    return { out: outAbs, layout: base.layout, loras, params: merged.plans.size, total: merged.keys().length };
  } finally {
    base.close();
  }
}
