// LoRA file formats -> canonical deltas on BFL parameter names (reference/flux-spec.md §6,
// reference/cog-flux-behaviour.md §4).
//
// parseLora reads a LoRA state dict (any TensorSource: a safetensors file, a MapSource), works out
// which base-model Linear every module addresses, validates every shape against the base model and
// returns LoraDelta[] (types.ts). Nothing is split or merged on the way: a fused kohya qkv LoRA
// stays one delta on the fused weight, a diffusers to_q/to_k/to_v set becomes three deltas on the
// three row ranges of that weight.
//
// Per key, in this order:
//   1. text-encoder keys (lora_te*_, text_encoder.*, text_encoders.*) -> dropped, one warning
//   2. the tensor role is split off the end: lora_A/lora_B(.adapter)(.weight|.bias),
//      lora_down/lora_up, lora.down/lora.up, XLabs/attn-processor down/up, alpha, dora_scale
//      (dropped, warning), lokr_*, hada_*, ComfyUI diff/diff_b, or a plain parameter
//   3. what is left (the module "stem") is resolved after stripping the wrapper prefixes
//      (model.diffusion_model., diffusion_model., transformer., base_model.model.) as a BFL name,
//      a diffusers name, an XLabs processor name, an old diffusers attention-processor name, or
//      an underscore name after lora_unet_ / lycoris_ / lora_transformer_ / lora_ (both BFL and
//      diffusers paths are accepted with '_' for '.', as kohya, LyCORIS and SimpleTuner write them)
// Keys that resolve nowhere make the whole file fail with a LoraFormatError listing them.

import type { TensorSource } from '../io/source.js';
import { rawToF32 } from '../tensor/dtype.js';
import { denseDelta, kron, matmul, swapRowHalves } from './delta.js';
import { indexTarget, type Slot, type TargetIndex } from './names.js';
import type { DroppedKey, FullDelta, LoraDelta, LoraFormat, LoraTarget, ParamOverride, ParsedLora } from './types.js';

export type * from './types.js';
export { applyDeltaTo, denseDelta } from './delta.js';
export { loraTargetFromConfig, loraTargetFromKeys } from './names.js';

// ---------------------------------------------------------------------------------------------
// Errors

export type LoraErrorKind =
  /** The file is a LoRA for another model (SD 1.x/2.x/SDXL UNet, SD3, ...) or has nothing FLUX in it. */
  | 'not-flux'
  /** The file is not a LoRA at all (a full checkpoint, an empty file). */
  | 'not-lora'
  /** Some keys address no module of the base model; `keys` lists them. */
  | 'unmapped'
  /** A tensor's shape does not fit (rank mismatch between A and B, in/out features of the base module). */
  | 'shape'
  /** A module has lora_A without lora_B (or similar). */
  | 'incomplete'
  /** Two entries of the file address the same rows of the same parameter. */
  | 'duplicate'
  /** A recognised but unsupported construct (Tucker LoKr/LoHa, a lora_A bias, mixed kinds on one module). */
  | 'unsupported';

export class LoraFormatError extends Error {
  constructor(
    readonly kind: LoraErrorKind,
    message: string,
    /** The keys the error is about (for 'unmapped': every one of them). */
    readonly keys: string[] = [],
  ) {
    super(message);
    this.name = 'LoraFormatError';
  }
}

function listKeys(keys: readonly string[], max = 20): string {
  const shown = keys.slice(0, max).join(', ');
  return keys.length > max ? `${shown}, ... (${keys.length - max} more)` : shown;
}

// ---------------------------------------------------------------------------------------------
// Key anatomy

type Role =
  | 'A'
  | 'B'
  | 'Abias'
  | 'Bbias'
  | 'alpha'
  | 'dora'
  | 'diff'
  | 'diff_b'
  | 'lokr_w1'
  | 'lokr_w1_a'
  | 'lokr_w1_b'
  | 'lokr_w2'
  | 'lokr_w2_a'
  | 'lokr_w2_b'
  | 'lokr_t2'
  | 'hada_w1_a'
  | 'hada_w1_b'
  | 'hada_w2_a'
  | 'hada_w2_b'
  | 'hada_t1'
  | 'hada_t2'
  | 'param';

/** How the low-rank pair is spelled (for format detection). */
type Spelling = 'AB' | 'downup' | 'dot' | 'proc' | 'other';

interface KeyParts {
  readonly stem: string;
  readonly role: Role;
  readonly spelling: Spelling;
}

const LYCORIS_ROLES = new Set([
  'lokr_w1',
  'lokr_w1_a',
  'lokr_w1_b',
  'lokr_w2',
  'lokr_w2_a',
  'lokr_w2_b',
  'lokr_t2',
  'hada_w1_a',
  'hada_w1_b',
  'hada_w2_a',
  'hada_w2_b',
  'hada_t1',
  'hada_t2',
]);

/** Splits `<stem>.<tensor role>`; undefined when the key has no recognisable role. */
function splitRole(key: string): KeyParts | undefined {
  let m = /^(.+)\.lora_([AB])(?:\.[^.]+)?\.(weight|bias)$/.exec(key); // PEFT (optionally .default.)
  if (m) return { stem: m[1]!, role: (m[2]! + (m[3] === 'bias' ? 'bias' : '')) as Role, spelling: 'AB' };
  m = /^(.+)\.lora_(down|up)\.(weight|bias)$/.exec(key); // kohya / LyCORIS LoCon
  if (m) {
    const ab = m[2] === 'down' ? 'A' : 'B';
    return { stem: m[1]!, role: (ab + (m[3] === 'bias' ? 'bias' : '')) as Role, spelling: 'downup' };
  }
  m = /^(.+)\.lora\.(down|up)\.weight$/.exec(key); // old diffusers LoRACompatibleLinear
  if (m) return { stem: m[1]!, role: m[2] === 'down' ? 'A' : 'B', spelling: 'dot' };
  m = /^(.+\.processor\..+|.+_lora)\.(down|up)\.weight$/.exec(key); // XLabs; old attention processors
  if (m) return { stem: m[1]!, role: m[2] === 'down' ? 'A' : 'B', spelling: 'proc' };
  m = /^(.+)\.(alpha|dora_scale|diff|diff_b)$/.exec(key);
  if (m) {
    const role: Role = m[2] === 'dora_scale' ? 'dora' : (m[2] as Role);
    return { stem: m[1]!, role, spelling: 'other' };
  }
  m = /^(.+)\.((?:lokr|hada)_[a-z0-9_]+)$/.exec(key);
  if (m && LYCORIS_ROLES.has(m[2]!)) return { stem: m[1]!, role: m[2] as Role, spelling: 'other' };
  if (/\.(weight|bias|scale)$/.test(key)) return { stem: key, role: 'param', spelling: 'other' };
  return undefined;
}

const WRAPPER_PREFIXES = ['model.diffusion_model.', 'diffusion_model.', 'transformer.', 'base_model.model.'];

function stripWrappers(stem: string): string {
  let s = stem;
  for (let again = true; again; ) {
    again = false;
    for (const p of WRAPPER_PREFIXES) {
      if (s.startsWith(p)) {
        s = s.slice(p.length);
        again = true;
      }
    }
  }
  return s;
}

const UNDERSCORE_PREFIXES = ['lora_unet_', 'lycoris_', 'lora_transformer_', 'lora_'];

const BFL_HEAD = /^(double_blocks|single_blocks|img_in|txt_in|time_in|vector_in|guidance_in|final_layer)(\.|$)/;
const DIFFUSERS_HEAD = /^(transformer_blocks|single_transformer_blocks|x_embedder|context_embedder|time_text_embed|norm_out|proj_out)(\.|$)/;
const UNDERSCORE_HEAD =
  /^(double_blocks|single_blocks|img_in|txt_in|time_in|vector_in|guidance_in|final_layer|transformer_blocks|single_transformer_blocks|x_embedder|context_embedder|time_text_embed|norm_out|proj_out)(_|$)/;
const XLABS_STEM = /^(double_blocks\.\d+\.processor\.(qkv|proj)_lora[12]|single_blocks\.\d+\.processor\.(qkv|proj)_lora)$/;

type Family = 'xlabs' | 'bfl' | 'diffusers' | 'underscore';

/** Which naming a module stem uses, judged by name alone (no base model needed). */
function familyOf(stem: string): Family | undefined {
  const s = stripWrappers(stem);
  if (XLABS_STEM.test(s)) return 'xlabs';
  if (BFL_HEAD.test(s)) return 'bfl';
  if (DIFFUSERS_HEAD.test(s)) return 'diffusers';
  for (const p of UNDERSCORE_PREFIXES) {
    if (s.startsWith(p) && UNDERSCORE_HEAD.test(s.slice(p.length))) return 'underscore';
  }
  return undefined;
}

interface Resolved {
  readonly slot: Slot;
  readonly family: Family;
  /** The module's name with wrappers stripped (PEFT alpha_pattern keys are matched against it). */
  readonly name: string;
}

function resolveStem(stem: string, idx: TargetIndex): Resolved | undefined {
  const s = stripWrappers(stem);
  let slot = idx.xlabs.get(s);
  if (slot) return { slot, family: 'xlabs', name: s };
  slot = idx.bfl.get(s);
  if (slot) return { slot, family: 'bfl', name: s };
  slot = idx.diffusers.get(s);
  if (slot) return { slot, family: 'diffusers', name: s };
  // old diffusers attention processors: attn.processor.to_q_lora -> attn.to_q, to_out_lora -> to_out.0
  const proc = /^(.+?)(?:\.processor)?\.(to_q|to_k|to_v|to_out|add_q_proj|add_k_proj|add_v_proj|to_add_out)_lora$/.exec(s);
  if (proc) {
    const n = `${proc[1]}.${proc[2] === 'to_out' ? 'to_out.0' : proc[2]}`;
    slot = idx.diffusers.get(n);
    if (slot) return { slot, family: 'diffusers', name: n };
  }
  for (const p of UNDERSCORE_PREFIXES) {
    if (!s.startsWith(p)) continue;
    const rest = s.slice(p.length);
    slot = idx.underscore.get(rest) ?? idx.underscore.get(rest.toLowerCase());
    if (slot) return { slot, family: 'underscore', name: rest };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Keys that are recognised and dropped

function textEncoderReason(key: string): string | undefined {
  if (/^lora_te1_|^lora_te_/.test(key)) return 'CLIP text-encoder LoRA (kohya lora_te1_/lora_te_): text-encoder LoRAs are not applied';
  if (/^lora_te3_/.test(key)) return 'T5 text-encoder LoRA (kohya lora_te3_): text-encoder LoRAs are not applied';
  if (/^lora_te\d+_/.test(key)) return 'text-encoder LoRA (kohya lora_teN_): text-encoder LoRAs are not applied';
  if (/^text_encoder\./.test(key)) return 'CLIP text-encoder LoRA (diffusers text_encoder.): text-encoder LoRAs are not applied';
  if (/^text_encoder_2\./.test(key)) return 'T5 text-encoder LoRA (diffusers text_encoder_2.): text-encoder LoRAs are not applied';
  if (/^text_encoders\./.test(key)) return 'text-encoder LoRA (ComfyUI text_encoders.): text-encoder LoRAs are not applied';
  return undefined;
}

/** Keys that identify a LoRA (or checkpoint) for another model family. */
const NOT_FLUX: Array<[RegExp, string]> = [
  [/^lora_unet_(down_blocks|up_blocks|mid_block)_/, 'a Stable Diffusion / SDXL UNet LoRA (kohya lora_unet_down_blocks_*)'],
  [/^lora_unet_(input_blocks|output_blocks|middle_block)_/, 'a Stable Diffusion / SDXL UNet LoRA (kohya lora_unet_input_blocks_*)'],
  [
    /^(unet\.|(.*\.)?(down_blocks|up_blocks)\.\d+\.(attentions|resnets)\.|(.*\.)?mid_block\.(attentions|resnets)\.)/,
    'a Stable Diffusion / SDXL UNet LoRA (diffusers unet.* names)',
  ],
  [/^(model\.diffusion_model\.|diffusion_model\.)?(input_blocks|output_blocks|middle_block)\./, 'a Stable Diffusion / SDXL UNet (LDM names)'],
  [/^lora_unet_joint_blocks_|^(model\.diffusion_model\.|diffusion_model\.|transformer\.)?joint_blocks\./, 'a Stable Diffusion 3 LoRA (joint_blocks)'],
  [/^lora_te2_/, 'an SDXL LoRA (second text encoder lora_te2_)'],
];

function notFluxReason(keys: readonly string[]): [string, string] | undefined {
  for (const k of keys) for (const [re, what] of NOT_FLUX) if (re.test(k)) return [k, what];
  return undefined;
}

const isLoraRole = (r: Role) => r !== 'alpha' && r !== 'dora' && r !== 'param';

// ---------------------------------------------------------------------------------------------
// Format detection

/**
 * The layout of a LoRA state dict, from its key names alone (flux-spec §6.9 order, extended).
 * Throws LoraFormatError 'not-flux' for a LoRA of another model family and 'not-lora' for a file
 * with no LoRA tensors (a full checkpoint, an empty file).
 */
export function detectLoraFormat(keys: readonly string[], label = 'LoRA'): LoraFormat {
  if (keys.length === 0) throw new LoraFormatError('not-lora', `${label}: has no tensors; not a LoRA`);
  const nf = notFluxReason(keys);
  if (nf) {
    throw new LoraFormatError('not-flux', `${label}: not a FLUX LoRA: it looks like ${nf[1]} (key "${nf[0]}")`, [nf[0]]);
  }
  let lokr = false;
  let loha = false;
  let xlabs = false;
  let control = false;
  let kohya = false;
  let diffusers = false;
  let bfl = false;
  let diff = false;
  let anyLora = false;
  let anyTe = false;
  let teKohya = false;
  const params: string[] = [];
  for (const key of keys) {
    const p = splitRole(key);
    if (textEncoderReason(key)) {
      anyTe = true;
      if (p?.spelling === 'downup') teKohya = true;
      continue;
    }
    if (!p) continue;
    if (p.role === 'param') {
      params.push(key);
      if (/_norm\.scale$|\.attn\.norm_(added_)?[qk]\.weight$/.test(key)) control = true;
      continue;
    }
    if (!isLoraRole(p.role)) continue;
    anyLora = true;
    const fam = familyOf(p.stem);
    if (p.role.startsWith('lokr_')) lokr = true;
    else if (p.role.startsWith('hada_')) loha = true;
    else if (p.role === 'diff' || p.role === 'diff_b') diff = true;
    else {
      if (p.role === 'Bbias') control = true;
      if (fam === 'xlabs') xlabs = true;
      else if (fam === 'underscore') kohya = true;
      else if (fam === 'diffusers')
        diffusers = true; // also lora_down/lora_up under transformer.
      else if (fam === 'bfl') {
        if (p.spelling === 'downup')
          kohya = true; // ComfyUI spelling of a kohya file
        else bfl = true;
      }
    }
  }
  if (!anyLora) {
    if (anyTe) return teKohya ? 'kohya' : 'diffusers-peft'; // a text-encoder-only LoRA: nothing for the transformer
    const modelish = params.filter((k) => familyOf(k.replace(/\.(weight|bias|scale)$/, '')) !== undefined);
    if (modelish.length > 0) {
      throw new LoraFormatError(
        'not-lora',
        `${label}: not a LoRA: it has no LoRA tensors (lora_A/lora_B, lora_down/lora_up, lokr_*, hada_*) and looks like a full model checkpoint (${listKeys(modelish, 3)})`,
        modelish.slice(0, 20),
      );
    }
    throw new LoraFormatError(
      'not-flux',
      `${label}: not a FLUX LoRA: no LoRA tensors for FLUX transformer modules found (${listKeys([...keys], 5)})`,
      keys.slice(0, 20),
    );
  }
  if (lokr) return 'lokr';
  if (loha) return 'loha';
  if (xlabs) return 'xlabs';
  if (control) return 'bfl-control';
  if (kohya) return 'kohya';
  if (diffusers) return 'diffusers-peft';
  if (bfl) return 'bfl-peft';
  if (diff) return 'diff';
  throw new LoraFormatError(
    'not-flux',
    `${label}: not a FLUX LoRA: its LoRA tensors name no FLUX transformer module (${listKeys([...keys], 5)})`,
    keys.slice(0, 20),
  );
}

// ---------------------------------------------------------------------------------------------
// Tensor reading

interface Tensor {
  readonly key: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

function readTensor(src: TensorSource, key: string): Tensor {
  const info = src.info(key);
  if (!info) throw new LoraFormatError('incomplete', `${src.label}: ${key} is listed but has no tensor info`, [key]);
  const raw = src.read(key);
  return { key, shape: [...info.shape], data: rawToF32(info.dtype, raw) };
}

/** A 2-D view of a tensor ([r, in, 1, 1] LoCon-style shapes are squeezed); throws naming the key. */
function matrix(src: TensorSource, t: Tensor, what: string): [number, number] {
  let s = [...t.shape];
  while (s.length > 2 && s[s.length - 1] === 1) s = s.slice(0, -1);
  if (s.length !== 2) {
    throw new LoraFormatError('shape', `${src.label}: ${t.key}: ${what} must be a matrix, got shape [${t.shape.join(', ')}]`, [t.key]);
  }
  return [s[0]!, s[1]!];
}

function scalar(src: TensorSource, t: Tensor): number {
  if (t.data.length !== 1) {
    throw new LoraFormatError('shape', `${src.label}: ${t.key}: alpha must be a single number, got shape [${t.shape.join(', ')}]`, [t.key]);
  }
  return t.data[0]!;
}

// ---------------------------------------------------------------------------------------------
// PEFT adapter metadata (`lora_adapter_metadata`, written by diffusers; flux-spec §6.2 (a))

interface PeftMeta {
  readonly r?: number;
  readonly alpha?: number;
  readonly alphaPattern: Array<[string, number]>;
  readonly rankPattern: Array<[string, number]>;
  readonly rslora: boolean;
}

function peftMetadata(meta: Record<string, string> | undefined, warnings: string[]): PeftMeta | undefined {
  const text = meta?.['lora_adapter_metadata'];
  if (!text) return undefined;
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    warnings.push('safetensors metadata lora_adapter_metadata is not valid JSON; ignored (alpha = rank)');
    return undefined;
  }
  if (typeof j !== 'object' || j === null) return undefined;
  const o = j as Record<string, unknown>;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  const pat = (v: unknown): Array<[string, number]> =>
    typeof v === 'object' && v !== null
      ? Object.entries(v as Record<string, unknown>).flatMap(([k, x]) => (num(x) !== undefined ? [[k, num(x)!] as [string, number]] : []))
      : [];
  return {
    ...(num(o['r']) !== undefined ? { r: num(o['r'])! } : {}),
    ...(num(o['lora_alpha']) !== undefined ? { alpha: num(o['lora_alpha'])! } : {}),
    alphaPattern: pat(o['alpha_pattern']),
    rankPattern: pat(o['rank_pattern']),
    rslora: o['use_rslora'] === true,
  };
}

/** PEFT pattern keys match a module name exactly or as a trailing '.'-separated part (or as a regex). */
function patternValue(patterns: Array<[string, number]>, name: string): number | undefined {
  for (const [p, v] of patterns) {
    if (name === p || name.endsWith(`.${p}`)) return v;
  }
  for (const [p, v] of patterns) {
    try {
      if (new RegExp(`^(?:.*\\.)?(?:${p})$`).test(name)) return v;
    } catch {
      // not a regex: exact/suffix match above was the whole test
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Parsing

export interface ParseLoraOptions {
  /** safetensors `__metadata__` (default: `src.metadata` when the source has one, as SafetensorsFile does). */
  readonly metadata?: Record<string, string>;
}

interface Group {
  readonly stem: string;
  readonly roles: Map<Role, string>;
}

/**
 * Parses a LoRA state dict into canonical deltas on the base model's BFL parameters. `target`
 * describes the base model (loraTargetFromConfig / loraTargetFromKeys). Throws LoraFormatError
 * (not-flux, not-lora, unmapped, shape, incomplete, duplicate, unsupported).
 */
export function parseLora(src: TensorSource, target: LoraTarget, opts: ParseLoraOptions = {}): ParsedLora {
  const idx = indexTarget(target);
  const label = src.label;
  const keys = src.keys();
  const format = detectLoraFormat(keys, label);
  const dropped: DroppedKey[] = [];
  const warnings: string[] = [];
  const unmapped: string[] = [];
  const groups = new Map<string, Group>();
  const params: string[] = [];

  for (const key of keys) {
    const te = textEncoderReason(key);
    if (te) {
      dropped.push({ key, reason: te });
      continue;
    }
    const p = splitRole(key);
    if (!p) {
      unmapped.push(key);
      continue;
    }
    if (p.role === 'dora') {
      dropped.push({ key, reason: 'DoRA magnitude vector (dora_scale): not supported, the module is applied as a plain LoRA' });
      continue;
    }
    if (p.role === 'param') {
      params.push(key);
      continue;
    }
    let g = groups.get(p.stem);
    if (!g) groups.set(p.stem, (g = { stem: p.stem, roles: new Map() }));
    const prev = g.roles.get(p.role);
    if (prev !== undefined) {
      throw new LoraFormatError('duplicate', `${label}: ${prev} and ${key} are the same tensor of module ${p.stem}`, [prev, key]);
    }
    g.roles.set(p.role, key);
  }

  const meta = peftMetadata(opts.metadata ?? sourceMetadata(src), warnings);
  const deltas: LoraDelta[] = [];
  const overrides: ParamOverride[] = [];
  const used = new Map<string, Array<[number, number, string]>>();
  const claim = (module: string, r0: number, r1: number, source: string) => {
    const list = used.get(module) ?? [];
    for (const [a, b, other] of list) {
      if (r0 < b && a < r1 && other !== source) {
        throw new LoraFormatError('duplicate', `${label}: ${source} and ${other} both modify rows [${Math.max(a, r0)}, ${Math.min(b, r1)}) of ${module}`, [
          source,
          other,
        ]);
      }
    }
    list.push([r0, r1, source]);
    used.set(module, list);
  };

  for (const g of groups.values()) {
    const res = resolveStem(g.stem, idx);
    if (!res) {
      // ComfyUI diffs of the QK-norm scales: a full delta on the 1-D parameter
      const bare = stripWrappers(g.stem);
      const norm = idx.norms.get(bare) ?? idx.norms.get(`${bare}.scale`) ?? idx.norms.get(`${bare}.weight`);
      const dk = g.roles.get('diff');
      if (norm && dk !== undefined && g.roles.size === 1) {
        const t = readTensor(src, dk);
        const n = target.keys.get(norm)!.reduce((a, b) => a * b, 1);
        if (t.data.length !== n) {
          throw new LoraFormatError('shape', `${label}: ${dk}: has ${t.data.length} elements, ${norm} has ${n}`, [dk]);
        }
        claim(norm, 0, n, g.stem);
        deltas.push({ kind: 'full', module: norm, rowStart: 0, rowEnd: n, cols: 1, scale: 1, source: g.stem, delta: t.data });
        continue;
      }
      unmapped.push(...g.roles.values());
      continue;
    }
    for (const d of buildDeltas(src, g, res, meta, warnings, dropped)) {
      claim(d.module, d.rowStart, d.rowEnd, g.stem);
      deltas.push(d);
    }
  }

  for (const key of params) {
    const name = stripWrappers(key);
    const bflKey = idx.norms.get(name);
    if (!bflKey) {
      unmapped.push(key);
      continue;
    }
    const t = readTensor(src, key);
    const shape = target.keys.get(bflKey)!;
    const n = shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) {
      throw new LoraFormatError('shape', `${label}: ${key}: shape [${t.shape.join(', ')}] does not fit ${bflKey} [${shape.join(', ')}] of the base model`, [
        key,
      ]);
    }
    if (overrides.some((o) => o.key === bflKey)) {
      throw new LoraFormatError('duplicate', `${label}: ${key} replaces ${bflKey} a second time`, [key]);
    }
    overrides.push({ key: bflKey, shape: [...shape], value: t.data, source: key });
  }

  if (unmapped.length > 0) {
    const fluxish = unmapped.some((k) => {
      const p = splitRole(k);
      return p !== undefined && familyOf(p.stem) !== undefined;
    });
    if (deltas.length === 0 && overrides.length === 0 && !fluxish) {
      throw new LoraFormatError(
        'not-flux',
        `${label}: not a FLUX LoRA: none of its keys addresses a FLUX transformer module (${listKeys(unmapped, 5)})`,
        unmapped,
      );
    }
    const t = idx.target;
    throw new LoraFormatError(
      'unmapped',
      `${label}: ${unmapped.length} key(s) address no module of the base model ` +
        `(hidden ${t.hidden}, ${t.depth} double / ${t.depthSingle} single blocks): ${listKeys(unmapped)}`,
      unmapped,
    );
  }

  const teDropped = dropped.filter((d) => textEncoderReason(d.key));
  if (teDropped.length > 0) {
    warnings.push(`${teDropped.length} text-encoder LoRA tensor(s) ignored (e.g. ${teDropped[0]!.key}): LoRAs are applied to the transformer only`);
  }
  const dora = dropped.filter((d) => d.key.endsWith('.dora_scale'));
  if (dora.length > 0) {
    warnings.push(`${dora.length} DoRA magnitude vector(s) (dora_scale) ignored: those modules are applied as plain LoRA, which differs from DoRA`);
  }
  if (deltas.length === 0 && overrides.length === 0) warnings.push(`${label}: the LoRA changes nothing in the transformer`);

  // summary over the factored deltas (those with a rank)
  const ranked = deltas.filter((d) => d.kind !== 'full' && d.rank !== undefined);
  const ranks = [...new Set(ranked.map((d) => (d as { rank: number }).rank))].sort((a, b) => a - b);
  const alphas = [...new Set(ranked.flatMap((d) => (d.alpha !== undefined ? [d.alpha] : [])))].sort((a, b) => a - b);
  const allHaveAlpha = ranked.length > 0 && ranked.every((d) => d.alpha !== undefined);
  return {
    format,
    deltas,
    overrides,
    dropped,
    ...(ranks.length === 1 ? { rank: ranks[0]! } : {}),
    ranks,
    ...(alphas.length === 1 && allHaveAlpha ? { alpha: alphas[0]! } : {}),
    alphas,
    warnings,
  };
}

function sourceMetadata(src: TensorSource): Record<string, string> | undefined {
  const m = (src as { metadata?: unknown }).metadata;
  return typeof m === 'object' && m !== null ? (m as Record<string, string>) : undefined;
}

/** The deltas of one module group (a LoRA pair, a LoKr/LoHa set, diffs), validated against its slot. */
function buildDeltas(src: TensorSource, g: Group, res: Resolved, meta: PeftMeta | undefined, warnings: string[], dropped: DroppedKey[]): LoraDelta[] {
  const label = src.label;
  const { slot } = res;
  const rows = slot.rowEnd - slot.rowStart;
  const where = `${slot.module}${rows === slot.rows ? '' : ` rows [${slot.rowStart}, ${slot.rowEnd})`}`;
  const roles = g.roles;
  const has = (r: Role) => roles.has(r);
  const get = (r: Role) => readTensor(src, roles.get(r)!);
  const kinds = [
    ['A', 'B', 'Abias', 'Bbias'].some((r) => has(r as Role)) ? 'LoRA' : '',
    [...roles.keys()].some((r) => r.startsWith('lokr_')) ? 'LoKr' : '',
    [...roles.keys()].some((r) => r.startsWith('hada_')) ? 'LoHa' : '',
  ].filter(Boolean);
  if (kinds.length > 1) {
    throw new LoraFormatError('unsupported', `${label}: module ${g.stem} mixes ${kinds.join(' and ')} tensors`, [...roles.values()]);
  }
  const alphaT = has('alpha') ? get('alpha') : undefined;
  let alpha = alphaT ? scalar(src, alphaT) : undefined;
  const base = { source: g.stem, cols: slot.cols };
  const out: LoraDelta[] = [];

  const shapeError = (key: string, msg: string) => new LoraFormatError('shape', `${label}: ${key}: ${msg}`, [key]);
  const checkRows = (key: string, n: number, what: string) => {
    if (n !== rows) throw shapeError(key, `${what} has ${n} output rows but ${where} of the base model has ${rows}`);
  };
  const checkCols = (key: string, n: number, what: string) => {
    if (n !== slot.cols) throw shapeError(key, `${what} has ${n} input features but ${slot.module} of the base model takes ${slot.cols}`);
  };
  const swapIf = (m: Float32Array, cols: number) => (slot.swap ? swapRowHalves(m, rows, cols) : m);
  const biasDelta = (key: string, t: Tensor, scale: number, a: number | undefined): FullDelta => {
    if (!slot.bias) throw shapeError(key, `a bias delta, but ${slot.module} has no bias in the base model`);
    if (t.data.length !== rows) throw shapeError(key, `bias delta has ${t.data.length} elements but ${where} has ${rows} rows`);
    return {
      kind: 'full',
      module: slot.bias,
      rowStart: slot.rowStart,
      rowEnd: slot.rowEnd,
      cols: 1,
      scale,
      source: g.stem,
      delta: swapIf(t.data, 1),
      ...(a !== undefined ? { alpha: a } : {}),
    };
  };

  if (kinds[0] === 'LoRA') {
    const kA = roles.get('A');
    const kB = roles.get('B');
    if (kA === undefined || kB === undefined) {
      const have = kA ?? kB ?? roles.get('Bbias') ?? roles.get('Abias')!;
      throw new LoraFormatError(
        'incomplete',
        `${label}: ${have}: module ${g.stem} has no ${kA === undefined ? 'lora_A / lora_down' : 'lora_B / lora_up'} tensor`,
        [have],
      );
    }
    if (has('Abias')) {
      throw new LoraFormatError('unsupported', `${label}: ${roles.get('Abias')}: a bias on lora_A / lora_down is not supported`, [roles.get('Abias')!]);
    }
    const A = get('A');
    const B = get('B');
    const [r, inA] = matrix(src, A, 'lora_A / lora_down');
    const [outB, rB] = matrix(src, B, 'lora_B / lora_up');
    if (rB !== r) throw shapeError(kB, `rank ${rB} does not match ${kA} (rank ${r})`);
    checkCols(kA, inA, 'lora_A / lora_down');
    checkRows(kB, outB, 'lora_B / lora_up');
    if (r === 0) throw shapeError(kA, 'rank 0');
    if (alpha === 0) alpha = r; // kohya: alpha 0 means "no scaling"
    let scale = 1;
    if (alpha !== undefined) {
      scale = alpha / r;
    } else if (meta) {
      const a = patternValue(meta.alphaPattern, res.name) ?? meta.alpha;
      const metaR = patternValue(meta.rankPattern, res.name) ?? meta.r;
      if (metaR !== undefined && metaR !== r) {
        warnings.push(`${g.stem}: adapter metadata says rank ${metaR} but the tensors have rank ${r}; using ${r}`);
      }
      if (a !== undefined) {
        alpha = a;
        scale = meta.rslora ? a / Math.sqrt(r) : a / r;
      }
    }
    out.push({
      kind: 'lowrank',
      module: slot.module,
      rowStart: slot.rowStart,
      rowEnd: slot.rowEnd,
      ...base,
      scale,
      down: A.data,
      up: swapIf(B.data, r),
      rank: r,
      ...(alpha !== undefined ? { alpha } : {}),
    });
    const kb = roles.get('Bbias');
    if (kb !== undefined) out.push(biasDelta(kb, get('Bbias'), scale, alpha));
  } else if (kinds[0] === 'LoKr') {
    if (has('lokr_t2')) {
      throw new LoraFormatError('unsupported', `${label}: ${roles.get('lokr_t2')}: Tucker LoKr (lokr_t2) is for conv layers; FLUX has none`, [
        roles.get('lokr_t2')!,
      ]);
    }
    const factor = (n: '1' | '2'): { m: Float32Array; shape: [number, number]; rank?: number } => {
      const full = roles.get(`lokr_w${n}` as Role);
      const ka = roles.get(`lokr_w${n}_a` as Role);
      const kb = roles.get(`lokr_w${n}_b` as Role);
      if (full !== undefined) {
        if (ka !== undefined || kb !== undefined) {
          throw new LoraFormatError('unsupported', `${label}: ${full}: module ${g.stem} has both lokr_w${n} and lokr_w${n}_a/_b`, [full]);
        }
        const t = get(`lokr_w${n}` as Role);
        return { m: t.data, shape: matrix(src, t, `lokr_w${n}`) };
      }
      if (ka === undefined || kb === undefined) {
        const have = ka ?? kb ?? [...roles.values()][0]!;
        throw new LoraFormatError('incomplete', `${label}: ${have}: module ${g.stem} has no lokr_w${n} (nor both lokr_w${n}_a and lokr_w${n}_b)`, [have]);
      }
      const a = get(`lokr_w${n}_a` as Role);
      const b = get(`lokr_w${n}_b` as Role);
      const [m, ra] = matrix(src, a, `lokr_w${n}_a`);
      const [rb, k] = matrix(src, b, `lokr_w${n}_b`);
      if (ra !== rb) throw shapeError(kb, `rank ${rb} does not match ${ka} (rank ${ra})`);
      return { m: matmul(a.data, b.data, m, ra, k), shape: [m, k], rank: ra };
    };
    const w1 = factor('1');
    const w2 = factor('2');
    const rank = w1.rank ?? w2.rank; // LyCORIS: lokr_w1_a.shape[1], else lokr_w2_a.shape[1]
    const key1 = roles.get('lokr_w1') ?? roles.get('lokr_w1_a')!;
    const [a, b] = w1.shape;
    const [c, d] = w2.shape;
    checkRows(key1, a * c, `kron(lokr_w1 [${a}, ${b}], lokr_w2 [${c}, ${d}])`);
    checkCols(key1, b * d, `kron(lokr_w1 [${a}, ${b}], lokr_w2 [${c}, ${d}])`);
    let scale = 1; // both factors full matrices: LyCORIS uses scale 1 whatever alpha says
    if (rank !== undefined) {
      if (alpha === 0) alpha = rank;
      scale = (alpha ?? rank) / rank;
    } else if (alpha !== undefined) {
      warnings.push(`${g.stem}: LoKr with two full factors ignores its alpha ${alpha} (scale 1, as LyCORIS)`);
    }
    const common = { module: slot.module, rowStart: slot.rowStart, rowEnd: slot.rowEnd, ...base, scale };
    const withAlpha = rank !== undefined && alpha !== undefined ? { alpha } : {};
    if (!slot.swap) {
      out.push({ kind: 'lokr', ...common, w1: w1.m, w1Shape: w1.shape, w2: w2.m, w2Shape: w2.shape, ...(rank !== undefined ? { rank } : {}), ...withAlpha });
    } else if (a % 2 === 0) {
      // swapping the row halves of kron(W1, W2) = kron(W1 with its row halves swapped, W2)
      out.push({
        kind: 'lokr',
        ...common,
        w1: swapRowHalves(w1.m, a, b),
        w1Shape: w1.shape,
        w2: w2.m,
        w2Shape: w2.shape,
        ...(rank !== undefined ? { rank } : {}),
        ...withAlpha,
      });
    } else {
      out.push({ kind: 'full', ...common, delta: swapRowHalves(kron(w1.m, w1.shape, w2.m, w2.shape), rows, slot.cols), ...withAlpha });
    }
  } else if (kinds[0] === 'LoHa') {
    for (const t of ['hada_t1', 'hada_t2'] as const) {
      if (has(t)) {
        throw new LoraFormatError('unsupported', `${label}: ${roles.get(t)}: Tucker LoHa (${t}) is for conv layers; FLUX has none`, [roles.get(t)!]);
      }
    }
    for (const r of ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b'] as const) {
      if (!has(r)) {
        const have = [...roles.values()][0]!;
        throw new LoraFormatError('incomplete', `${label}: ${have}: LoHa module ${g.stem} has no ${r}`, [have]);
      }
    }
    const [w1a, w1b, w2a, w2b] = (['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b'] as const).map((r) => get(r)) as [Tensor, Tensor, Tensor, Tensor];
    const [o1, r1] = matrix(src, w1a, 'hada_w1_a');
    const [r1b, i1] = matrix(src, w1b, 'hada_w1_b');
    const [o2, r2] = matrix(src, w2a, 'hada_w2_a');
    const [r2b, i2] = matrix(src, w2b, 'hada_w2_b');
    if (r1b !== r1) throw shapeError(w1b.key, `rank ${r1b} does not match ${w1a.key} (rank ${r1})`);
    if (r2b !== r2) throw shapeError(w2b.key, `rank ${r2b} does not match ${w2a.key} (rank ${r2})`);
    checkRows(w1a.key, o1, 'hada_w1_a');
    checkRows(w2a.key, o2, 'hada_w2_a');
    checkCols(w1b.key, i1, 'hada_w1_b');
    checkCols(w2b.key, i2, 'hada_w2_b');
    if (alpha === 0) alpha = r1;
    const scale = alpha !== undefined ? alpha / r1 : 1; // r = hada_w1_b.shape[0]
    out.push({
      kind: 'loha',
      module: slot.module,
      rowStart: slot.rowStart,
      rowEnd: slot.rowEnd,
      ...base,
      scale,
      w1a: swapIf(w1a.data, r1),
      w1b: w1b.data,
      w2a: swapIf(w2a.data, r2),
      w2b: w2b.data,
      rank: r1,
      rank2: r2,
      ...(alpha !== undefined ? { alpha } : {}),
    });
  }

  // ComfyUI full differences (may sit next to nothing else, or next to a LoRA's bias)
  const kd = roles.get('diff');
  if (kd !== undefined) {
    const t = get('diff');
    const [r, c] = matrix(src, t, 'diff');
    checkRows(kd, r, 'diff');
    checkCols(kd, c, 'diff');
    out.push({ kind: 'full', module: slot.module, rowStart: slot.rowStart, rowEnd: slot.rowEnd, ...base, scale: 1, delta: swapIf(t.data, c) });
  }
  const kdb = roles.get('diff_b');
  if (kdb !== undefined) out.push(biasDelta(kdb, get('diff_b'), 1, undefined));

  if (out.length === 0 && alphaT) {
    dropped.push({ key: alphaT.key, reason: `alpha of module ${g.stem}, which has no LoRA tensors` });
    warnings.push(`${alphaT.key}: an alpha without LoRA tensors; ignored`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Inspection

function fmtNum(x: number): string {
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(6)));
}

function deltaKindText(d: LoraDelta): string {
  switch (d.kind) {
    case 'lowrank':
      return `lowrank r=${d.rank}`;
    case 'full':
      return d.cols === 1 ? 'bias/1-D delta' : 'full delta';
    case 'lokr':
      return `lokr kron([${d.w1Shape.join('x')}], [${d.w2Shape.join('x')}])${d.rank !== undefined ? ` r=${d.rank}` : ''}`;
    case 'loha':
      return `loha r=${d.rank}`;
  }
}

/** A human-readable report for `fluxserve lora inspect`: format, rank, alpha, modules, dropped keys. */
export function describeLora(parsed: ParsedLora): string {
  const lines: string[] = [];
  lines.push(`format: ${parsed.format}`);
  const rank = parsed.rank !== undefined ? String(parsed.rank) : parsed.ranks.length > 0 ? `mixed (${parsed.ranks.join(', ')})` : 'n/a';
  const alpha =
    parsed.alpha !== undefined
      ? fmtNum(parsed.alpha)
      : parsed.alphas.length > 0
        ? `mixed (${parsed.alphas.map(fmtNum).join(', ')}${parsed.deltas.some((d) => d.kind !== 'full' && d.alpha === undefined) ? '; none (= rank) on some modules' : ''})`
        : 'none in file (alpha = rank, scale 1)';
  lines.push(`rank: ${rank}`);
  lines.push(`alpha: ${alpha}`);
  const scales = [...new Set(parsed.deltas.map((d) => d.scale))].sort((a, b) => a - b);
  if (scales.length > 0) lines.push(`scale (alpha/rank): ${scales.map(fmtNum).join(', ')}`);
  const modules = new Set(parsed.deltas.map((d) => d.module));
  lines.push(`targets: ${parsed.deltas.length} delta(s) on ${modules.size} base-model parameter(s)`);
  const byModule = [...parsed.deltas].sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : a.rowStart - b.rowStart));
  for (const d of byModule) {
    lines.push(`  ${d.module} rows [${d.rowStart}, ${d.rowEnd}) ${deltaKindText(d)} scale ${fmtNum(d.scale)}  <- ${d.source}`);
  }
  if (parsed.overrides.length > 0) {
    lines.push(`overrides: ${parsed.overrides.length} parameter(s) replaced`);
    for (const o of parsed.overrides) lines.push(`  ${o.key} [${o.shape.join(', ')}]  <- ${o.source}`);
  }
  lines.push(`dropped: ${parsed.dropped.length} key(s)`);
  for (const d of parsed.dropped) lines.push(`  ${d.key}: ${d.reason}`);
  if (parsed.warnings.length > 0) {
    lines.push('warnings:');
    for (const w of parsed.warnings) lines.push(`  ${w}`);
  }
  return lines.join('\n');
}

/** ΔW of every delta summed per BFL parameter (scale applied, user scale 1); for inspection and tests. */
export function sumDeltas(parsed: ParsedLora, target: LoraTarget): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const d of parsed.deltas) {
    const shape = target.keys.get(d.module);
    if (!shape) throw new Error(`sumDeltas: ${d.module} is not a parameter of the target`);
    let w = out.get(d.module);
    if (!w) out.set(d.module, (w = new Float32Array(shape.reduce((a, b) => a * b, 1))));
    const dense = denseDelta(d);
    const cols = d.cols;
    for (let i = 0; i < dense.length; i++) w[d.rowStart * cols + i] = w[d.rowStart * cols + i]! + d.scale * dense[i]!;
  }
  return out;
}
