// Where a LoRA module name lands in the BFL-layout base model: the target index.
//
// From the base model's BFL key list we build every name under which a LoRA may address a Linear
// of the transformer, each resolved to a "slot" = (BFL weight key, row range, final-layer swap):
//   - BFL dotted names             double_blocks.0.img_attn.qkv           -> qkv rows [0, 3H)
//   - diffusers dotted names       transformer_blocks.0.attn.to_k          -> qkv rows [H, 2H)
//                                  single_transformer_blocks.0.proj_mlp    -> linear1 rows [3H, 3H+mlp)
//                                  norm_out.linear                         -> final_layer.adaLN_modulation.1, halves swapped
//   - both with '.' -> '_'         double_blocks_0_img_attn_qkv (kohya), transformer_blocks_0_attn_to_k (LyCORIS/SimpleTuner)
//   - XLabs processor names        double_blocks.0.processor.qkv_lora1    -> img_attn.qkv
// and the 1-D QK-norm scales (BFL and diffusers names) that BFL control LoRAs overwrite.
// (reference/flux-spec.md §1.11 for the diffusers <-> BFL mapping, §6.5 for XLabs.)

import { bflTransformerKeys, type FluxKeyConfig } from '../io/names.js';
import type { LoraTarget } from './types.js';

export interface Slot {
  /** BFL weight key ('double_blocks.0.img_attn.qkv.weight'). */
  readonly module: string;
  /** BFL bias key when the base model has one ('double_blocks.0.img_attn.qkv.bias'). */
  readonly bias?: string;
  readonly rowStart: number;
  readonly rowEnd: number;
  /** All rows of the BFL weight. */
  readonly rows: number;
  readonly cols: number;
  /** diffusers `norm_out.linear` = BFL final_layer.adaLN_modulation.1 with its two row halves swapped. */
  readonly swap: boolean;
}

export interface TargetIndex {
  readonly target: LoraTarget;
  /** BFL module name (no '.weight') -> whole-weight slot. */
  readonly bfl: ReadonlyMap<string, Slot>;
  /** diffusers module name -> slot (a row range of a fused BFL weight for q/k/v/proj_mlp). */
  readonly diffusers: ReadonlyMap<string, Slot>;
  /** Both of the above with '.' replaced by '_' (also lower-cased). */
  readonly underscore: ReadonlyMap<string, Slot>;
  /** XLabs `double_blocks.{i}.processor.qkv_lora1` etc. -> slot. */
  readonly xlabs: ReadonlyMap<string, Slot>;
  /** BFL or diffusers name of a QK-norm scale -> BFL key. */
  readonly norms: ReadonlyMap<string, string>;
}

const BLOCK = /^(double_blocks|single_blocks)\.(0|[1-9]\d*)\./;

/** Derives the LoRA target (hidden size, MLP width, depths) from a BFL transformer key list. */
export function loraTargetFromKeys(keys: ReadonlyMap<string, readonly number[]>): LoraTarget {
  const shape = (k: string): readonly number[] | undefined => keys.get(k);
  const proj = shape('final_layer.adaLN_modulation.1.weight') ?? shape('img_in.weight');
  let hidden: number | undefined;
  if (proj && proj.length === 2) hidden = keys.has('final_layer.adaLN_modulation.1.weight') ? proj[1] : proj[0];
  if (hidden === undefined) {
    const p = shape('double_blocks.0.img_attn.proj.weight') ?? shape('single_blocks.0.modulation.lin.weight');
    if (p && p.length === 2) hidden = p[1];
  }
  if (hidden === undefined || !(hidden > 0)) {
    throw new Error('lora target: cannot find the hidden size (no final_layer.adaLN_modulation.1.weight, img_in.weight or block weights)');
  }
  const doubles = new Set<number>();
  const singles = new Set<number>();
  for (const k of keys.keys()) {
    const m = BLOCK.exec(k);
    if (m) (m[1] === 'double_blocks' ? doubles : singles).add(Number(m[2]));
  }
  let mlpHidden: number | undefined;
  const mlp0 = shape('double_blocks.0.img_mlp.0.weight');
  const lin1 = shape('single_blocks.0.linear1.weight');
  if (mlp0 && mlp0.length === 2) mlpHidden = mlp0[0];
  else if (lin1 && lin1.length === 2) mlpHidden = lin1[0]! - 3 * hidden;
  if (mlpHidden === undefined) mlpHidden = 4 * hidden; // no blocks at all: nothing uses it
  return { hidden, mlpHidden, depth: doubles.size, depthSingle: singles.size, keys };
}

/** The LoRA target of a BFL config (bflTransformerKeys). */
export function loraTargetFromConfig(cfg: FluxKeyConfig): LoraTarget {
  return loraTargetFromKeys(bflTransformerKeys(cfg));
}

/** The diffusers names of a BFL module, with the rows of the BFL weight each one covers. */
function diffusersNames(bfl: string, rows: number, h: number, mlp: number): Array<[string, number, number, boolean]> {
  const whole = (d: string): Array<[string, number, number, boolean]> => [[d, 0, rows, false]];
  const fixed: Record<string, string> = {
    img_in: 'x_embedder',
    txt_in: 'context_embedder',
    'time_in.in_layer': 'time_text_embed.timestep_embedder.linear_1',
    'time_in.out_layer': 'time_text_embed.timestep_embedder.linear_2',
    'vector_in.in_layer': 'time_text_embed.text_embedder.linear_1',
    'vector_in.out_layer': 'time_text_embed.text_embedder.linear_2',
    'guidance_in.in_layer': 'time_text_embed.guidance_embedder.linear_1',
    'guidance_in.out_layer': 'time_text_embed.guidance_embedder.linear_2',
    'final_layer.linear': 'proj_out',
  };
  if (fixed[bfl]) return whole(fixed[bfl]);
  if (bfl === 'final_layer.adaLN_modulation.1') return [['norm_out.linear', 0, rows, true]];
  let m = /^double_blocks\.(\d+)\.(.+)$/.exec(bfl);
  if (m) {
    const p = `transformer_blocks.${m[1]}`;
    const qkv = (names: string[]): Array<[string, number, number, boolean]> =>
      rows === 3 * h ? names.map((n, k) => [`${p}.attn.${n}`, k * h, (k + 1) * h, false]) : [];
    switch (m[2]) {
      case 'img_mod.lin':
        return whole(`${p}.norm1.linear`);
      case 'txt_mod.lin':
        return whole(`${p}.norm1_context.linear`);
      case 'img_attn.qkv':
        return qkv(['to_q', 'to_k', 'to_v']);
      case 'txt_attn.qkv':
        return qkv(['add_q_proj', 'add_k_proj', 'add_v_proj']);
      case 'img_attn.proj':
        return whole(`${p}.attn.to_out.0`);
      case 'txt_attn.proj':
        return whole(`${p}.attn.to_add_out`);
      case 'img_mlp.0':
        return whole(`${p}.ff.net.0.proj`);
      case 'img_mlp.2':
        return whole(`${p}.ff.net.2`);
      case 'txt_mlp.0':
        return whole(`${p}.ff_context.net.0.proj`);
      case 'txt_mlp.2':
        return whole(`${p}.ff_context.net.2`);
    }
    return [];
  }
  m = /^single_blocks\.(\d+)\.(.+)$/.exec(bfl);
  if (m) {
    const p = `single_transformer_blocks.${m[1]}`;
    switch (m[2]) {
      case 'modulation.lin':
        return whole(`${p}.norm.linear`);
      case 'linear2':
        return whole(`${p}.proj_out`);
      case 'linear1':
        if (rows !== 3 * h + mlp) return [];
        return [
          [`${p}.attn.to_q`, 0, h, false],
          [`${p}.attn.to_k`, h, 2 * h, false],
          [`${p}.attn.to_v`, 2 * h, 3 * h, false],
          [`${p}.proj_mlp`, 3 * h, 3 * h + mlp, false],
        ];
    }
  }
  return [];
}

/** XLabs processor LoRA names of a BFL module (flux-spec §6.5). */
function xlabsNames(bfl: string, rows: number, h: number): Array<[string, number, number]> {
  let m = /^double_blocks\.(\d+)\.(img|txt)_attn\.(qkv|proj)$/.exec(bfl);
  if (m) {
    const n = m[2] === 'img' ? '1' : '2';
    return [[`double_blocks.${m[1]}.processor.${m[3]}_lora${n}`, 0, rows]];
  }
  m = /^single_blocks\.(\d+)\.(linear1|linear2)$/.exec(bfl);
  if (m) {
    // single-block qkv_lora adds to the qkv part of linear1 only (rows [0, 3H))
    return m[2] === 'linear1'
      ? [[`single_blocks.${m[1]}.processor.qkv_lora`, 0, Math.min(3 * h, rows)]]
      : [[`single_blocks.${m[1]}.processor.proj_lora`, 0, rows]];
  }
  return [];
}

/** diffusers names of the QK-norm scales (flux-spec §1.11). */
function diffusersNormName(bfl: string): string | undefined {
  let m = /^double_blocks\.(\d+)\.(img|txt)_attn\.norm\.(query|key)_norm\.scale$/.exec(bfl);
  if (m) {
    const qk = m[3] === 'query' ? 'q' : 'k';
    return `transformer_blocks.${m[1]}.attn.norm_${m[2] === 'img' ? '' : 'added_'}${qk}.weight`;
  }
  m = /^single_blocks\.(\d+)\.norm\.(query|key)_norm\.scale$/.exec(bfl);
  if (m) return `single_transformer_blocks.${m[1]}.attn.norm_${m[2] === 'query' ? 'q' : 'k'}.weight`;
  return undefined;
}

const indexCache = new WeakMap<LoraTarget, TargetIndex>();

/** Builds (once per target object) every name a LoRA may use for the base model's Linears. */
export function indexTarget(target: LoraTarget): TargetIndex {
  const cached = indexCache.get(target);
  if (cached) return cached;
  const h = target.hidden;
  const mlp = target.mlpHidden;
  if (!Number.isInteger(h) || h <= 0 || !Number.isInteger(mlp) || mlp <= 0) {
    throw new Error(`lora target: hidden ${h} and mlpHidden ${mlp} must be positive integers`);
  }
  const bfl = new Map<string, Slot>();
  const diffusers = new Map<string, Slot>();
  const underscore = new Map<string, Slot>();
  const xlabs = new Map<string, Slot>();
  const norms = new Map<string, string>();
  for (const [key, shape] of target.keys) {
    if (shape.length === 1 && /_norm\.scale$/.test(key)) {
      norms.set(key, key);
      const d = diffusersNormName(key);
      if (d) norms.set(d, key);
      continue;
    }
    if (!key.endsWith('.weight') || shape.length !== 2) continue;
    const name = key.slice(0, -'.weight'.length);
    const [rows, cols] = shape as [number, number];
    const biasKey = `${name}.bias`;
    const bias = target.keys.get(biasKey)?.length === 1 ? biasKey : undefined;
    const slot = (rowStart: number, rowEnd: number, swap: boolean): Slot => ({
      module: key,
      ...(bias ? { bias } : {}),
      rowStart,
      rowEnd,
      rows,
      cols,
      swap,
    });
    bfl.set(name, slot(0, rows, false));
    for (const [d, r0, r1, swap] of diffusersNames(name, rows, h, mlp)) diffusers.set(d, slot(r0, r1, swap));
    for (const [x, r0, r1] of xlabsNames(name, rows, h)) xlabs.set(x, slot(r0, r1, false));
  }
  for (const m of [bfl, diffusers]) {
    for (const [n, s] of m) {
      const u = n.replace(/\./g, '_');
      underscore.set(u, s);
      if (!underscore.has(u.toLowerCase())) underscore.set(u.toLowerCase(), s);
    }
  }
  const idx: TargetIndex = { target, bfl, diffusers, underscore, xlabs, norms };
  indexCache.set(target, idx);
  return idx;
}
