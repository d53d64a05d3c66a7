// Checkpoint name layouts: BFL (canonical, `double_blocks.0.img_attn.qkv.weight`) and diffusers
// (`transformer_blocks.0.attn.to_q.weight`), for the FLUX transformer and its VAE. This is the only
// module that knows diffusers names (reference/flux-spec.md §1.11, §4.6).
//
// - Key-list generators give every parameter name and shape for a config, in either layout.
// - Converters are lazy renamed views over a TensorSource: listing keys and shapes reads nothing,
//   and reading one output tensor reads only the source tensors it is made from.
// - Keys a converter does not recognise pass through under their own name, so that the loader
//   reports them as unexpected instead of them silently vanishing.

import { allocRaw, bytesOf, dtypeSize, rawFromBytes, type RawArray } from '../tensor/dtype.js';
import { numel, shapeStr } from '../tensor/tensor.js';
import type { TensorInfo, TensorSource } from './source.js';

// ---------------------------------------------------------------------------------------------
// Configs (the fields of BFL's FluxParams / AutoEncoderParams that decide parameter names/shapes)

/** BFL `FluxParams` (flux-spec §1.1). `axes_dim` and `theta` do not affect parameters. */
export interface FluxKeyConfig {
  readonly in_channels: number;
  readonly out_channels: number;
  readonly vec_in_dim: number;
  readonly context_in_dim: number;
  readonly hidden_size: number;
  readonly mlp_ratio: number;
  readonly num_heads: number;
  readonly depth: number;
  readonly depth_single_blocks: number;
  readonly axes_dim?: readonly number[];
  readonly theta?: number;
  readonly qkv_bias: boolean;
  readonly guidance_embed: boolean;
}

/** BFL `AutoEncoderParams` (flux-spec §4.1). `resolution` and the latent scale/shift have no parameters. */
export interface AutoencoderKeyConfig {
  readonly resolution?: number;
  readonly in_channels: number;
  readonly ch: number;
  readonly out_ch: number;
  readonly ch_mult: readonly number[];
  readonly num_res_blocks: number;
  readonly z_channels: number;
  readonly scale_factor?: number;
  readonly shift_factor?: number;
}

export type KeyShapes = Map<string, number[]>;

/** The BFL prefix of ComfyUI-style single files (`model.diffusion_model.double_blocks.0...`). */
export const BFL_PREFIX = 'model.diffusion_model.';

// ---------------------------------------------------------------------------------------------
// Transformer key lists

interface FluxDims {
  readonly h: number; // hidden size
  readonly mlp: number; // MLP hidden width, int(h * mlp_ratio)
  readonly headDim: number;
}

function fluxDims(cfg: FluxKeyConfig): FluxDims {
  const h = cfg.hidden_size;
  if (!Number.isInteger(h) || h <= 0 || !Number.isInteger(cfg.num_heads) || cfg.num_heads <= 0 || h % cfg.num_heads !== 0) {
    throw new Error(`flux config: hidden_size ${h} must be a positive multiple of num_heads ${cfg.num_heads}`);
  }
  const mlp = Math.trunc(h * cfg.mlp_ratio); // BFL: int(hidden_size * mlp_ratio)
  if (mlp <= 0) throw new Error(`flux config: mlp_ratio ${cfg.mlp_ratio} gives an empty MLP`);
  return { h, mlp, headDim: h / cfg.num_heads };
}

/** Adds `${name}.weight` [out, inp] and (when `bias`) `${name}.bias` [out]. */
function linear(m: KeyShapes, name: string, inp: number, out: number, bias = true): void {
  m.set(`${name}.weight`, [out, inp]);
  if (bias) m.set(`${name}.bias`, [out]);
}

/** Every parameter of BFL's `Flux` (model.py / layers.py), name -> shape, in state_dict order. */
export function bflTransformerKeys(cfg: FluxKeyConfig): KeyShapes {
  const { h, mlp, headDim } = fluxDims(cfg);
  const m: KeyShapes = new Map();
  const mlpEmbedder = (name: string, inp: number) => {
    linear(m, `${name}.in_layer`, inp, h);
    linear(m, `${name}.out_layer`, h, h);
  };
  linear(m, 'img_in', cfg.in_channels, h);
  mlpEmbedder('time_in', 256); // timestep_embedding(t, 256)
  mlpEmbedder('vector_in', cfg.vec_in_dim);
  if (cfg.guidance_embed) mlpEmbedder('guidance_in', 256);
  linear(m, 'txt_in', cfg.context_in_dim, h);
  for (let i = 0; i < cfg.depth; i++) {
    const p = `double_blocks.${i}`;
    for (const s of ['img', 'txt']) {
      linear(m, `${p}.${s}_mod.lin`, h, 6 * h); // Modulation(double=True)
      linear(m, `${p}.${s}_attn.qkv`, h, 3 * h, cfg.qkv_bias);
      m.set(`${p}.${s}_attn.norm.query_norm.scale`, [headDim]);
      m.set(`${p}.${s}_attn.norm.key_norm.scale`, [headDim]);
      linear(m, `${p}.${s}_attn.proj`, h, h);
      linear(m, `${p}.${s}_mlp.0`, h, mlp);
      linear(m, `${p}.${s}_mlp.2`, mlp, h);
    }
  }
  for (let j = 0; j < cfg.depth_single_blocks; j++) {
    const p = `single_blocks.${j}`;
    linear(m, `${p}.linear1`, h, 3 * h + mlp); // qkv and MLP input in one GEMM
    linear(m, `${p}.linear2`, h + mlp, h); // attention output and MLP activation in one GEMM
    m.set(`${p}.norm.query_norm.scale`, [headDim]);
    m.set(`${p}.norm.key_norm.scale`, [headDim]);
    linear(m, `${p}.modulation.lin`, h, 3 * h); // Modulation(double=False)
  }
  linear(m, 'final_layer.linear', h, cfg.out_channels); // patch size 1
  linear(m, 'final_layer.adaLN_modulation.1', h, 2 * h);
  return m;
}

/**
 * Every parameter of diffusers' `FluxTransformer2DModel` for the same config, name -> shape.
 * (qkv_bias false, which no released model uses, drops the double blocks' q/k/v biases here too,
 * so that both layouts describe the same model.)
 */
export function diffusersTransformerKeys(cfg: FluxKeyConfig): KeyShapes {
  const { h, mlp, headDim } = fluxDims(cfg);
  const m: KeyShapes = new Map();
  const tte = 'time_text_embed';
  linear(m, `${tte}.timestep_embedder.linear_1`, 256, h);
  linear(m, `${tte}.timestep_embedder.linear_2`, h, h);
  if (cfg.guidance_embed) {
    linear(m, `${tte}.guidance_embedder.linear_1`, 256, h);
    linear(m, `${tte}.guidance_embedder.linear_2`, h, h);
  }
  linear(m, `${tte}.text_embedder.linear_1`, cfg.vec_in_dim, h);
  linear(m, `${tte}.text_embedder.linear_2`, h, h);
  linear(m, 'context_embedder', cfg.context_in_dim, h);
  linear(m, 'x_embedder', cfg.in_channels, h);
  for (let i = 0; i < cfg.depth; i++) {
    const p = `transformer_blocks.${i}`;
    linear(m, `${p}.norm1.linear`, h, 6 * h);
    linear(m, `${p}.norm1_context.linear`, h, 6 * h);
    m.set(`${p}.attn.norm_q.weight`, [headDim]);
    m.set(`${p}.attn.norm_k.weight`, [headDim]);
    for (const n of ['to_q', 'to_k', 'to_v']) linear(m, `${p}.attn.${n}`, h, h, cfg.qkv_bias);
    linear(m, `${p}.attn.to_out.0`, h, h);
    m.set(`${p}.attn.norm_added_q.weight`, [headDim]);
    m.set(`${p}.attn.norm_added_k.weight`, [headDim]);
    for (const n of ['add_q_proj', 'add_k_proj', 'add_v_proj']) linear(m, `${p}.attn.${n}`, h, h, cfg.qkv_bias);
    linear(m, `${p}.attn.to_add_out`, h, h);
    linear(m, `${p}.ff.net.0.proj`, h, mlp);
    linear(m, `${p}.ff.net.2`, mlp, h);
    linear(m, `${p}.ff_context.net.0.proj`, h, mlp);
    linear(m, `${p}.ff_context.net.2`, mlp, h);
  }
  for (let j = 0; j < cfg.depth_single_blocks; j++) {
    const p = `single_transformer_blocks.${j}`;
    linear(m, `${p}.norm.linear`, h, 3 * h);
    linear(m, `${p}.proj_mlp`, h, mlp);
    linear(m, `${p}.proj_out`, h + mlp, h);
    m.set(`${p}.attn.norm_q.weight`, [headDim]);
    m.set(`${p}.attn.norm_k.weight`, [headDim]);
    for (const n of ['to_q', 'to_k', 'to_v']) linear(m, `${p}.attn.${n}`, h, h);
  }
  linear(m, 'norm_out.linear', h, 2 * h);
  linear(m, 'proj_out', h, cfg.out_channels);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Autoencoder key lists

function checkAe(cfg: AutoencoderKeyConfig): void {
  if (cfg.ch_mult.length === 0) throw new Error('autoencoder config: ch_mult is empty');
  if (!Number.isInteger(cfg.num_res_blocks) || cfg.num_res_blocks < 1) {
    throw new Error(`autoencoder config: num_res_blocks ${cfg.num_res_blocks} must be >= 1`);
  }
}

/** Conv2d weight [out, in, k, k] and bias [out]. */
function conv(m: KeyShapes, name: string, inp: number, out: number, k: number): void {
  m.set(`${name}.weight`, [out, inp, k, k]);
  m.set(`${name}.bias`, [out]);
}

function groupNorm(m: KeyShapes, name: string, c: number): void {
  m.set(`${name}.weight`, [c]);
  m.set(`${name}.bias`, [c]);
}

/** BFL `ResnetBlock(in, out)`; `shortcut` is `nin_shortcut` (BFL) or `conv_shortcut` (diffusers). */
function resnet(m: KeyShapes, p: string, inp: number, out: number, shortcut: string): void {
  groupNorm(m, `${p}.norm1`, inp);
  conv(m, `${p}.conv1`, inp, out, 3);
  groupNorm(m, `${p}.norm2`, out);
  conv(m, `${p}.conv2`, out, out, 3);
  if (inp !== out) conv(m, `${p}.${shortcut}`, inp, out, 1);
}

/** Every parameter of BFL's `AutoEncoder` (modules/autoencoder.py), name -> shape. */
export function bflAutoencoderKeys(cfg: AutoencoderKeyConfig): KeyShapes {
  checkAe(cfg);
  const m: KeyShapes = new Map();
  const n = cfg.ch_mult.length;
  const mid = (p: string, c: number) => {
    resnet(m, `${p}.mid.block_1`, c, c, 'nin_shortcut');
    groupNorm(m, `${p}.mid.attn_1.norm`, c);
    for (const x of ['q', 'k', 'v', 'proj_out']) conv(m, `${p}.mid.attn_1.${x}`, c, c, 1);
    resnet(m, `${p}.mid.block_2`, c, c, 'nin_shortcut');
  };
  // Encoder
  conv(m, 'encoder.conv_in', cfg.in_channels, cfg.ch, 3);
  let c = cfg.ch; // in_ch_mult = (1,) + ch_mult
  for (let i = 0; i < n; i++) {
    const out = cfg.ch * cfg.ch_mult[i]!;
    for (let j = 0; j < cfg.num_res_blocks; j++) {
      resnet(m, `encoder.down.${i}.block.${j}`, c, out, 'nin_shortcut');
      c = out;
    }
    if (i !== n - 1) conv(m, `encoder.down.${i}.downsample.conv`, c, c, 3);
  }
  mid('encoder', c);
  groupNorm(m, 'encoder.norm_out', c);
  conv(m, 'encoder.conv_out', c, 2 * cfg.z_channels, 3); // mean and logvar
  // Decoder
  c = cfg.ch * cfg.ch_mult[n - 1]!;
  conv(m, 'decoder.conv_in', cfg.z_channels, c, 3);
  mid('decoder', c);
  // BFL registers up.0 .. up.{n-1} (the ModuleList is filled by insert(0, ...)) but builds them
  // from the deepest level down; the shapes depend on that build order.
  const up = new Map<number, KeyShapes>();
  for (let i = n - 1; i >= 0; i--) {
    const lm: KeyShapes = new Map();
    const out = cfg.ch * cfg.ch_mult[i]!;
    for (let j = 0; j <= cfg.num_res_blocks; j++) {
      resnet(lm, `decoder.up.${i}.block.${j}`, c, out, 'nin_shortcut');
      c = out;
    }
    if (i !== 0) conv(lm, `decoder.up.${i}.upsample.conv`, c, c, 3);
    up.set(i, lm);
  }
  for (let i = 0; i < n; i++) for (const [k, s] of up.get(i)!) m.set(k, s);
  groupNorm(m, 'decoder.norm_out', c);
  conv(m, 'decoder.conv_out', c, cfg.out_ch, 3);
  return m;
}

/** Every parameter of diffusers' `AutoencoderKL` as FLUX configures it (no quant convs), name -> shape. */
export function diffusersVaeKeys(cfg: AutoencoderKeyConfig): KeyShapes {
  checkAe(cfg);
  const m: KeyShapes = new Map();
  const n = cfg.ch_mult.length;
  const blockOut = cfg.ch_mult.map((x) => cfg.ch * x); // block_out_channels
  const mid = (p: string, c: number) => {
    // UNetMidBlock2D: attentions.0 sits between resnets.0 and resnets.1
    groupNorm(m, `${p}.mid_block.attentions.0.group_norm`, c);
    for (const x of ['to_q', 'to_k', 'to_v', 'to_out.0']) linear(m, `${p}.mid_block.attentions.0.${x}`, c, c);
    resnet(m, `${p}.mid_block.resnets.0`, c, c, 'conv_shortcut');
    resnet(m, `${p}.mid_block.resnets.1`, c, c, 'conv_shortcut');
  };
  conv(m, 'encoder.conv_in', cfg.in_channels, blockOut[0]!, 3);
  let c = blockOut[0]!;
  for (let i = 0; i < n; i++) {
    const out = blockOut[i]!;
    for (let j = 0; j < cfg.num_res_blocks; j++) {
      resnet(m, `encoder.down_blocks.${i}.resnets.${j}`, c, out, 'conv_shortcut');
      c = out;
    }
    if (i !== n - 1) conv(m, `encoder.down_blocks.${i}.downsamplers.0.conv`, c, c, 3);
  }
  mid('encoder', c);
  groupNorm(m, 'encoder.conv_norm_out', c);
  conv(m, 'encoder.conv_out', c, 2 * cfg.z_channels, 3);
  c = blockOut[n - 1]!;
  conv(m, 'decoder.conv_in', cfg.z_channels, c, 3);
  mid('decoder', c);
  // diffusers numbers the up blocks in execution order: up_blocks.0 is the deepest level.
  const reversed = [...blockOut].reverse();
  for (let i = 0; i < n; i++) {
    const out = reversed[i]!;
    for (let j = 0; j <= cfg.num_res_blocks; j++) {
      resnet(m, `decoder.up_blocks.${i}.resnets.${j}`, c, out, 'conv_shortcut');
      c = out;
    }
    if (i !== n - 1) conv(m, `decoder.up_blocks.${i}.upsamplers.0.conv`, c, c, 3);
  }
  groupNorm(m, 'decoder.conv_norm_out', c);
  conv(m, 'decoder.conv_out', c, cfg.out_ch, 3);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Lazy renamed views

/** How one output tensor is made from source tensors. */
type Plan =
  /** Same data; `reshape` (when given) maps the source shape to the output shape. */
  | { readonly kind: 'copy'; readonly src: string; readonly reshape?: (s: readonly number[]) => number[] }
  /** Rows (dim 0) of the sources, in order. */
  | { readonly kind: 'concat'; readonly srcs: readonly string[] }
  /** Rows of one source with its two halves exchanged (`swap_scale_shift`). */
  | { readonly kind: 'swap'; readonly src: string }
  /** Part `part` of the source's rows cut into `sizes(sourceRows)`. */
  | { readonly kind: 'split'; readonly src: string; readonly part: number; readonly sizes: (rows: number) => number[] };

type Mapper = (key: string) => Array<[string, Plan]> | undefined;

function planSources(p: Plan): readonly string[] {
  return p.kind === 'concat' ? p.srcs : [p.src];
}

class RenamedSource implements TensorSource {
  private readonly plans = new Map<string, Plan>();

  constructor(
    private readonly src: TensorSource,
    readonly label: string,
    map: Mapper,
  ) {
    for (const key of src.keys()) {
      const outs = map(key) ?? [[key, { kind: 'copy', src: key }]];
      for (const [name, plan] of outs) {
        const prev = this.plans.get(name);
        if (prev === undefined) {
          this.plans.set(name, plan);
        } else if (!(prev.kind === 'concat' && prev.srcs.includes(key))) {
          throw new Error(`${label}: ${name} would come from both ${planSources(prev).join(' + ')} and ${key}; the checkpoint mixes layouts`);
        }
      }
    }
  }

  keys(): string[] {
    return [...this.plans.keys()];
  }

  private srcInfo(key: string, forName: string): TensorInfo {
    const info = this.src.info(key);
    if (!info) throw new Error(`${this.label}: ${forName} needs ${key}, which is missing from ${this.src.label}`);
    return info;
  }

  info(name: string): TensorInfo | undefined {
    const p = this.plans.get(name);
    if (!p) return undefined;
    switch (p.kind) {
      case 'copy': {
        const s = this.srcInfo(p.src, name);
        return p.reshape ? { dtype: s.dtype, shape: p.reshape(s.shape) } : s;
      }
      case 'swap': {
        const s = this.srcInfo(p.src, name);
        if (s.shape.length === 0 || s.shape[0]! % 2 !== 0) {
          throw new Error(`${this.label}: ${p.src} ${shapeStr(s.shape)} has no two equal row halves to swap`);
        }
        return s;
      }
      case 'concat':
        return this.concatInfo(name, p.srcs);
      case 'split': {
        const s = this.srcInfo(p.src, name);
        const sizes = this.splitSizes(p, s);
        return { dtype: s.dtype, shape: [sizes[p.part]!, ...s.shape.slice(1)] };
      }
    }
  }

  private concatInfo(name: string, srcs: readonly string[]): TensorInfo {
    const infos = srcs.map((k) => {
      const i = this.src.info(k);
      if (!i) {
        const have = srcs.filter((x) => this.src.info(x) !== undefined);
        throw new Error(
          `${this.label}: ${name} is the concatenation of ${srcs.join(' + ')}; ${k} is missing from ${this.src.label}` +
            ` (present: ${have.join(', ') || 'none'})`,
        );
      }
      return i;
    });
    const first = infos[0]!;
    const rest = first.shape.slice(1);
    let rows = 0;
    infos.forEach((inf, t) => {
      if (inf.dtype !== first.dtype) {
        throw new Error(
          `${this.label}: cannot concatenate ${name} from parts of different dtypes: ${srcs.map((k, u) => `${k} ${infos[u]!.dtype}`).join(', ')}`,
        );
      }
      if (inf.shape.length === 0 || shapeStr(inf.shape.slice(1)) !== shapeStr(rest)) {
        throw new Error(
          `${this.label}: cannot concatenate ${name} rows from parts of shapes ` +
            srcs.map((k, u) => `${k} ${shapeStr(infos[u]!.shape)}`).join(', ') +
            ` (${srcs[t]} differs)`,
        );
      }
      rows += inf.shape[0]!;
    });
    return { dtype: first.dtype, shape: [rows, ...rest] };
  }

  private splitSizes(p: Extract<Plan, { kind: 'split' }>, s: TensorInfo): number[] {
    const rows = s.shape[0] ?? 0;
    const sizes = p.sizes(rows);
    if (sizes.some((x) => !Number.isInteger(x) || x <= 0) || sizes.reduce((a, b) => a + b, 0) !== rows) {
      throw new Error(`${this.label}: cannot split the ${rows} rows of ${p.src} ${shapeStr(s.shape)} into [${sizes.join(', ')}]`);
    }
    return sizes;
  }

  read(name: string): RawArray {
    const p = this.plans.get(name);
    if (!p) throw new Error(`${this.label}: no tensor named ${name}`);
    const info = this.info(name)!; // validates parts, dtypes and shapes before any read
    switch (p.kind) {
      case 'copy':
        return this.src.read(p.src);
      case 'swap': {
        const raw = this.src.read(p.src);
        const b = bytesOf(raw);
        const half = b.byteLength / 2;
        const out = allocRaw(info.dtype, raw.length);
        const ob = bytesOf(out);
        ob.set(b.subarray(half), 0);
        ob.set(b.subarray(0, half), half);
        return out;
      }
      case 'concat': {
        const out = allocRaw(info.dtype, numel(info.shape));
        const ob = bytesOf(out);
        let at = 0;
        for (const k of p.srcs) {
          const b = bytesOf(this.src.read(k)); // one part at a time
          if (at + b.byteLength > ob.byteLength) throw new Error(`${this.label}: ${k} holds more data than its shape says`);
          ob.set(b, at);
          at += b.byteLength;
        }
        if (at !== ob.byteLength) throw new Error(`${this.label}: the parts of ${name} hold less data than their shapes say`);
        return out;
      }
      case 'split': {
        const s = this.srcInfo(p.src, name);
        const sizes = this.splitSizes(p, s);
        const rowBytes = numel(s.shape.slice(1)) * dtypeSize(s.dtype);
        let start = 0;
        for (let t = 0; t < p.part; t++) start += sizes[t]!;
        const b = bytesOf(this.src.read(p.src));
        // slice() copies: the part does not keep the whole source tensor alive
        return rawFromBytes(s.dtype, b.slice(start * rowBytes, (start + sizes[p.part]!) * rowBytes));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Transformer name rules (flux-spec §1.11)

/** One BFL parameter and the diffusers parameter(s) it is made of. `{i}` is the block index. */
interface Rule {
  readonly bfl: string;
  readonly diffusers: readonly string[];
  /** 'rows': BFL rows = diffusers parts stacked; 'swap': halves exchanged; 'same': renamed only. */
  readonly op: 'same' | 'rows' | 'swap';
}

function linearRules(bfl: string, diffusers: string | readonly string[], op: Rule['op'] = 'same'): Rule[] {
  const parts = typeof diffusers === 'string' ? [diffusers] : diffusers;
  return ['weight', 'bias'].map((p) => ({ bfl: `${bfl}.${p}`, diffusers: parts.map((d) => `${d}.${p}`), op }));
}

const TRANSFORMER_RULES: readonly Rule[] = [
  ...linearRules('img_in', 'x_embedder'),
  ...linearRules('txt_in', 'context_embedder'),
  ...linearRules('time_in.in_layer', 'time_text_embed.timestep_embedder.linear_1'),
  ...linearRules('time_in.out_layer', 'time_text_embed.timestep_embedder.linear_2'),
  ...linearRules('guidance_in.in_layer', 'time_text_embed.guidance_embedder.linear_1'),
  ...linearRules('guidance_in.out_layer', 'time_text_embed.guidance_embedder.linear_2'),
  ...linearRules('vector_in.in_layer', 'time_text_embed.text_embedder.linear_1'),
  ...linearRules('vector_in.out_layer', 'time_text_embed.text_embedder.linear_2'),
  ...linearRules('final_layer.linear', 'proj_out'),
  ...linearRules('final_layer.adaLN_modulation.1', 'norm_out.linear', 'swap'),
  // double-stream blocks
  ...linearRules('double_blocks.{i}.img_mod.lin', 'transformer_blocks.{i}.norm1.linear'),
  ...linearRules('double_blocks.{i}.txt_mod.lin', 'transformer_blocks.{i}.norm1_context.linear'),
  ...linearRules(
    'double_blocks.{i}.img_attn.qkv',
    ['to_q', 'to_k', 'to_v'].map((x) => `transformer_blocks.{i}.attn.${x}`),
    'rows',
  ),
  ...linearRules(
    'double_blocks.{i}.txt_attn.qkv',
    ['add_q_proj', 'add_k_proj', 'add_v_proj'].map((x) => `transformer_blocks.{i}.attn.${x}`),
    'rows',
  ),
  { bfl: 'double_blocks.{i}.img_attn.norm.query_norm.scale', diffusers: ['transformer_blocks.{i}.attn.norm_q.weight'], op: 'same' },
  { bfl: 'double_blocks.{i}.img_attn.norm.key_norm.scale', diffusers: ['transformer_blocks.{i}.attn.norm_k.weight'], op: 'same' },
  {
    bfl: 'double_blocks.{i}.txt_attn.norm.query_norm.scale',
    diffusers: ['transformer_blocks.{i}.attn.norm_added_q.weight'],
    op: 'same',
  },
  {
    bfl: 'double_blocks.{i}.txt_attn.norm.key_norm.scale',
    diffusers: ['transformer_blocks.{i}.attn.norm_added_k.weight'],
    op: 'same',
  },
  ...linearRules('double_blocks.{i}.img_attn.proj', 'transformer_blocks.{i}.attn.to_out.0'),
  ...linearRules('double_blocks.{i}.txt_attn.proj', 'transformer_blocks.{i}.attn.to_add_out'),
  ...linearRules('double_blocks.{i}.img_mlp.0', 'transformer_blocks.{i}.ff.net.0.proj'),
  ...linearRules('double_blocks.{i}.img_mlp.2', 'transformer_blocks.{i}.ff.net.2'),
  ...linearRules('double_blocks.{i}.txt_mlp.0', 'transformer_blocks.{i}.ff_context.net.0.proj'),
  ...linearRules('double_blocks.{i}.txt_mlp.2', 'transformer_blocks.{i}.ff_context.net.2'),
  // single-stream blocks
  ...linearRules('single_blocks.{i}.modulation.lin', 'single_transformer_blocks.{i}.norm.linear'),
  ...linearRules(
    'single_blocks.{i}.linear1',
    ['attn.to_q', 'attn.to_k', 'attn.to_v', 'proj_mlp'].map((x) => `single_transformer_blocks.{i}.${x}`),
    'rows',
  ),
  { bfl: 'single_blocks.{i}.norm.query_norm.scale', diffusers: ['single_transformer_blocks.{i}.attn.norm_q.weight'], op: 'same' },
  { bfl: 'single_blocks.{i}.norm.key_norm.scale', diffusers: ['single_transformer_blocks.{i}.attn.norm_k.weight'], op: 'same' },
  ...linearRules('single_blocks.{i}.linear2', 'single_transformer_blocks.{i}.proj_out'),
];

const BLOCK_INDEX = /^(double_blocks|single_blocks|transformer_blocks|single_transformer_blocks)\.(0|[1-9]\d*)\.(.+)$/;

/** `double_blocks.7.x` -> [`double_blocks.{i}.x`, '7']; names without a block index -> [name, undefined]. */
function template(key: string): [string, string | undefined] {
  const m = BLOCK_INDEX.exec(key);
  return m ? [`${m[1]}.{i}.${m[3]}`, m[2]] : [key, undefined];
}

function fill(t: string, i: string | undefined): string {
  return i === undefined ? t : t.replace('{i}', i);
}

const RULE_BY_BFL = new Map(TRANSFORMER_RULES.map((r) => [r.bfl, r]));
const RULE_BY_DIFFUSERS = new Map<string, [Rule, number]>();
for (const r of TRANSFORMER_RULES) r.diffusers.forEach((d, k) => RULE_BY_DIFFUSERS.set(d, [r, k]));

function diffusersToBflTransformerName(key: string): Array<[string, Plan]> | undefined {
  const [t, i] = template(key);
  const hit = RULE_BY_DIFFUSERS.get(t);
  if (!hit) return undefined;
  const [rule] = hit;
  const name = fill(rule.bfl, i);
  switch (rule.op) {
    case 'same':
      return [[name, { kind: 'copy', src: key }]];
    case 'swap':
      return [[name, { kind: 'swap', src: key }]];
    case 'rows':
      return [[name, { kind: 'concat', srcs: rule.diffusers.map((d) => fill(d, i)) }]];
  }
}

/** Renames a diffusers-layout transformer (`transformer/`) to BFL names; see the module comment. */
export function diffusersToBflTransformer(src: TensorSource): TensorSource {
  return new RenamedSource(src, `${src.label} (diffusers names as BFL)`, diffusersToBflTransformerName);
}

/** Renames a BFL-layout transformer to diffusers names (q/k/v and MLP rows split, final halves swapped). */
export function bflToDiffusersTransformer(src: TensorSource): TensorSource {
  const map: Mapper = (key) => {
    const [t, i] = template(key);
    const rule = RULE_BY_BFL.get(t);
    if (!rule) return undefined;
    switch (rule.op) {
      case 'same':
        return [[fill(rule.diffusers[0]!, i), { kind: 'copy', src: key }]];
      case 'swap':
        return [[fill(rule.diffusers[0]!, i), { kind: 'swap', src: key }]];
      case 'rows': {
        let sizes: (rows: number) => number[];
        if (rule.diffusers.length === 3) {
          sizes = (rows) => [rows / 3, rows / 3, rows / 3]; // torch.chunk(qkv, 3)
        } else {
          // linear1 = [q | k | v | mlp]: q, k, v are `hidden` rows each, hidden = linear1.weight's in-features
          const w = `single_blocks.${i}.linear1.weight`;
          sizes = (rows) => {
            const wi = src.info(w);
            if (wi?.shape.length !== 2) {
              throw new Error(`${src.label}: splitting ${key} needs ${w} (2-D) for the hidden size`);
            }
            const h = wi.shape[1]!;
            return [h, h, h, rows - 3 * h];
          };
        }
        return rule.diffusers.map((d, part): [string, Plan] => [fill(d, i), { kind: 'split', src: key, part, sizes }]);
      }
    }
  };
  return new RenamedSource(src, `${src.label} (BFL names as diffusers)`, map);
}

/** Strips `model.diffusion_model.` (ComfyUI single files); other keys keep their names. */
export function stripBflPrefix(src: TensorSource, prefix = BFL_PREFIX): TensorSource {
  if (!src.keys().some((k) => k.startsWith(prefix))) return src;
  return new RenamedSource(src, src.label, (key) => (key.startsWith(prefix) ? [[key.slice(prefix.length), { kind: 'copy', src: key }]] : undefined));
}

// ---------------------------------------------------------------------------------------------
// VAE name rules (flux-spec §4.6)

const RESNET_PARAM = /^(norm1|conv1|norm2|conv2|nin_shortcut|conv_shortcut)\.(weight|bias)$/;

function resnetParam(rest: string, to: 'bfl' | 'diffusers'): string | undefined {
  const m = RESNET_PARAM.exec(rest);
  if (!m) return undefined;
  let mod = m[1]!;
  if (to === 'bfl' && mod === 'conv_shortcut') mod = 'nin_shortcut';
  else if (to === 'diffusers' && mod === 'nin_shortcut') mod = 'conv_shortcut';
  else if (mod === 'nin_shortcut' || mod === 'conv_shortcut') return undefined; // the other layout's name
  return `${mod}.${m[2]}`;
}

const ATTN_TO_DIFFUSERS: Record<string, string> = { q: 'to_q', k: 'to_k', v: 'to_v', proj_out: 'to_out.0' };
const ATTN_TO_BFL: Record<string, string> = { to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' };

/** diffusers Linear [C,C] -> BFL 1x1 conv [C,C,1,1] (a 4-D source is kept). */
const unsqueeze = (s: readonly number[]) => (s.length === 2 ? [...s, 1, 1] : [...s]);
/** BFL 1x1 conv [C,C,1,1] -> diffusers Linear [C,C]. */
const squeeze = (s: readonly number[]) => (s.length === 4 && s[2] === 1 && s[3] === 1 ? s.slice(0, 2) : [...s]);

/** Number of resolution levels, from the largest down/up index present. */
function vaeLevels(keys: string[], down: RegExp, up: RegExp): number {
  let n = 0;
  for (const k of keys) {
    const m = down.exec(k) ?? up.exec(k);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

function bflToDiffusersVaeName(key: string, n: number): [string, Plan] | undefined {
  const copy = (name: string, reshape?: (s: readonly number[]) => number[]): [string, Plan] => [
    name,
    reshape ? { kind: 'copy', src: key, reshape } : { kind: 'copy', src: key },
  ];
  let m: RegExpExecArray | null;
  if ((m = /^(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)$/.exec(key))) return copy(key);
  if ((m = /^(encoder|decoder)\.norm_out\.(weight|bias)$/.exec(key))) return copy(`${m[1]}.conv_norm_out.${m[2]}`);
  if ((m = /^encoder\.down\.(0|[1-9]\d*)\.block\.(0|[1-9]\d*)\.(.+)$/.exec(key))) {
    const r = resnetParam(m[3]!, 'diffusers');
    return r ? copy(`encoder.down_blocks.${m[1]}.resnets.${m[2]}.${r}`) : undefined;
  }
  if ((m = /^encoder\.down\.(0|[1-9]\d*)\.downsample\.conv\.(weight|bias)$/.exec(key))) {
    return copy(`encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`);
  }
  if ((m = /^decoder\.up\.(0|[1-9]\d*)\.block\.(0|[1-9]\d*)\.(.+)$/.exec(key))) {
    const r = resnetParam(m[3]!, 'diffusers');
    const u = n - 1 - Number(m[1]); // index reversed
    return r && u >= 0 ? copy(`decoder.up_blocks.${u}.resnets.${m[2]}.${r}`) : undefined;
  }
  if ((m = /^decoder\.up\.(0|[1-9]\d*)\.upsample\.conv\.(weight|bias)$/.exec(key))) {
    const u = n - 1 - Number(m[1]);
    return u >= 0 ? copy(`decoder.up_blocks.${u}.upsamplers.0.conv.${m[2]}`) : undefined;
  }
  if ((m = /^(encoder|decoder)\.mid\.block_([12])\.(.+)$/.exec(key))) {
    const r = resnetParam(m[3]!, 'diffusers');
    return r ? copy(`${m[1]}.mid_block.resnets.${Number(m[2]) - 1}.${r}`) : undefined;
  }
  if ((m = /^(encoder|decoder)\.mid\.attn_1\.norm\.(weight|bias)$/.exec(key))) {
    return copy(`${m[1]}.mid_block.attentions.0.group_norm.${m[2]}`);
  }
  if ((m = /^(encoder|decoder)\.mid\.attn_1\.(q|k|v|proj_out)\.(weight|bias)$/.exec(key))) {
    const name = `${m[1]}.mid_block.attentions.0.${ATTN_TO_DIFFUSERS[m[2]!]}.${m[3]}`;
    return copy(name, m[3] === 'weight' ? squeeze : undefined);
  }
  return undefined;
}

function diffusersToBflVaeName(key: string, n: number): [string, Plan] | undefined {
  const copy = (name: string, reshape?: (s: readonly number[]) => number[]): [string, Plan] => [
    name,
    reshape ? { kind: 'copy', src: key, reshape } : { kind: 'copy', src: key },
  ];
  let m: RegExpExecArray | null;
  if ((m = /^(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)$/.exec(key))) return copy(key);
  if ((m = /^(encoder|decoder)\.conv_norm_out\.(weight|bias)$/.exec(key))) return copy(`${m[1]}.norm_out.${m[2]}`);
  if ((m = /^encoder\.down_blocks\.(0|[1-9]\d*)\.resnets\.(0|[1-9]\d*)\.(.+)$/.exec(key))) {
    const r = resnetParam(m[3]!, 'bfl');
    return r ? copy(`encoder.down.${m[1]}.block.${m[2]}.${r}`) : undefined;
  }
  if ((m = /^encoder\.down_blocks\.(0|[1-9]\d*)\.downsamplers\.0\.conv\.(weight|bias)$/.exec(key))) {
    return copy(`encoder.down.${m[1]}.downsample.conv.${m[2]}`);
  }
  if ((m = /^decoder\.up_blocks\.(0|[1-9]\d*)\.resnets\.(0|[1-9]\d*)\.(.+)$/.exec(key))) {
    const r = resnetParam(m[3]!, 'bfl');
    const u = n - 1 - Number(m[1]); // index reversed
    return r && u >= 0 ? copy(`decoder.up.${u}.block.${m[2]}.${r}`) : undefined;
  }
  if ((m = /^decoder\.up_blocks\.(0|[1-9]\d*)\.upsamplers\.0\.conv\.(weight|bias)$/.exec(key))) {
    const u = n - 1 - Number(m[1]);
    return u >= 0 ? copy(`decoder.up.${u}.upsample.conv.${m[2]}`) : undefined;
  }
  if ((m = /^(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)$/.exec(key))) {
    const r = resnetParam(m[3]!, 'bfl');
    return r ? copy(`${m[1]}.mid.block_${Number(m[2]) + 1}.${r}`) : undefined;
  }
  if ((m = /^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.(weight|bias)$/.exec(key))) {
    return copy(`${m[1]}.mid.attn_1.norm.${m[2]}`);
  }
  if ((m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(key))) {
    const name = `${m[1]}.mid.attn_1.${ATTN_TO_BFL[m[2]!]}.${m[3]}`;
    return copy(name, m[3] === 'weight' ? unsqueeze : undefined);
  }
  return undefined;
}

/**
 * Renames a diffusers `vae/` state dict to BFL `ae.safetensors` names. The up blocks' order is
 * reversed, which needs the number of levels: taken from the largest `down_blocks`/`up_blocks`
 * index present unless `levels` (= ch_mult.length) is given.
 */
export function diffusersToBflVae(src: TensorSource, levels?: number): TensorSource {
  const n = levels ?? vaeLevels(src.keys(), /^encoder\.down_blocks\.(\d+)\./, /^decoder\.up_blocks\.(\d+)\./);
  return new RenamedSource(src, `${src.label} (diffusers names as BFL)`, (key) => {
    const r = diffusersToBflVaeName(key, n);
    return r && [r];
  });
}

/** Renames a BFL autoencoder to diffusers `vae/` names (1x1 attention convs become Linear weights). */
export function bflToDiffusersVae(src: TensorSource, levels?: number): TensorSource {
  const n = levels ?? vaeLevels(src.keys(), /^encoder\.down\.(\d+)\./, /^decoder\.up\.(\d+)\./);
  return new RenamedSource(src, `${src.label} (BFL names as diffusers)`, (key) => {
    const r = bflToDiffusersVaeName(key, n);
    return r && [r];
  });
}

// ---------------------------------------------------------------------------------------------
// Layout detection

function detect(what: string, keys: string[], bfl: RegExp, diffusers: RegExp): 'bfl' | 'diffusers' {
  const b = keys.some((k) => bfl.test(k));
  const d = keys.some((k) => diffusers.test(k));
  if (b && !d) return 'bfl';
  if (d && !b) return 'diffusers';
  const sample = keys.slice(0, 5).join(', ') || 'no keys';
  throw new Error(
    b
      ? `${what}: the checkpoint mixes BFL and diffusers names (${sample}, ...)`
      : `${what}: neither BFL nor diffusers names found (${sample}${keys.length > 5 ? ', ...' : ''})`,
  );
}

/**
 * Which naming a transformer checkpoint uses. BFL names may carry the `model.diffusion_model.`
 * prefix (still 'bfl'; apply stripBflPrefix). Throws when neither or both are recognised.
 */
export function detectTransformerLayout(keys: string[]): 'bfl' | 'diffusers' {
  return detect(
    'transformer layout',
    keys,
    /^(model\.diffusion_model\.)?(double_blocks\.|single_blocks\.|img_in\.|txt_in\.|time_in\.|final_layer\.)/,
    /^(transformer_blocks\.|single_transformer_blocks\.|x_embedder\.|context_embedder\.|time_text_embed\.|norm_out\.linear\.)/,
  );
}

/** Which naming a VAE checkpoint uses (BFL `ae.safetensors` or diffusers `vae/`). */
export function detectVaeLayout(keys: string[]): 'bfl' | 'diffusers' {
  return detect(
    'VAE layout',
    keys,
    /^(encoder\.down\.|decoder\.up\.|(encoder|decoder)\.mid\.|(encoder|decoder)\.norm_out\.)/,
    /^(encoder\.down_blocks\.|decoder\.up_blocks\.|(encoder|decoder)\.mid_block\.|(encoder|decoder)\.conv_norm_out\.)/,
  );
}
