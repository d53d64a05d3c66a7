// Configurations of the FLUX.1 transformer and its autoencoder: BFL's `FluxParams` and
// `AutoEncoderParams` (black-forest-labs/flux@802fb47 src/flux/model.py, modules/autoencoder.py),
// frozen presets, validation, and readers for the diffusers and BFL-style config.json files
// (BFL src/flux/util.py `configs`; diffusers FluxTransformer2DModel and AutoencoderKL configs).

export class ModelConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelConfigError';
  }
}

/** BFL `FluxParams`, field for field. */
export interface FluxParams {
  readonly in_channels: number;
  readonly out_channels: number;
  readonly vec_in_dim: number;
  readonly context_in_dim: number;
  readonly hidden_size: number;
  readonly mlp_ratio: number;
  readonly num_heads: number;
  /** Number of double-stream blocks. */
  readonly depth: number;
  readonly depth_single_blocks: number;
  /** RoPE dims per id axis (index, row, column); the sum is the head dim (BFL EmbedND). */
  readonly axes_dim: readonly number[];
  readonly theta: number;
  readonly qkv_bias: boolean;
  readonly guidance_embed: boolean;
}

/** BFL `AutoEncoderParams`, field for field. */
export interface AutoEncoderParams {
  /** Unused by the computation (the networks are fully convolutional); kept for fidelity. */
  readonly resolution: number;
  readonly in_channels: number;
  readonly ch: number;
  readonly out_ch: number;
  readonly ch_mult: readonly number[];
  readonly num_res_blocks: number;
  readonly z_channels: number;
  readonly scale_factor: number;
  readonly shift_factor: number;
}

function freeze<T extends object>(p: T): T {
  for (const v of Object.values(p)) if (Array.isArray(v)) Object.freeze(v);
  return Object.freeze(p);
}

// black-forest-labs/flux@802fb47 src/flux/util.py, configs["flux-dev"].params
export const FLUX_DEV: FluxParams = freeze({
  in_channels: 64,
  out_channels: 64,
  vec_in_dim: 768,
  context_in_dim: 4096,
  hidden_size: 3072,
  mlp_ratio: 4.0,
  num_heads: 24,
  depth: 19,
  depth_single_blocks: 38,
  axes_dim: [16, 56, 56],
  theta: 10_000,
  qkv_bias: true,
  guidance_embed: true,
});

// black-forest-labs/flux@802fb47 src/flux/util.py, configs["flux-schnell"].params: dev without
// the guidance embedder (schnell is not guidance-distilled: Flux.__init__ makes guidance_in Identity).
export const FLUX_SCHNELL: FluxParams = freeze({ ...FLUX_DEV, axes_dim: [16, 56, 56], guidance_embed: false });

// black-forest-labs/flux@802fb47 src/flux/util.py, configs["flux-dev"|"flux-schnell"].ae_params
export const FLUX_AE: AutoEncoderParams = freeze({
  resolution: 256,
  in_channels: 3,
  ch: 128,
  out_ch: 3,
  ch_mult: [1, 2, 4, 4],
  num_res_blocks: 2,
  z_channels: 16,
  scale_factor: 0.3611,
  shift_factor: 0.1159,
});

export function headDim(p: FluxParams): number {
  return p.hidden_size / p.num_heads;
}

/** int(hidden_size * mlp_ratio), as BFL computes the MLP width. */
export function mlpHiddenDim(p: FluxParams): number {
  return Math.trunc(p.hidden_size * p.mlp_ratio);
}

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new ModelConfigError(`${name} must be a positive integer (got ${JSON.stringify(v)})`);
  }
  return v;
}

function finiteNumber(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelConfigError(`${name} must be a number (got ${JSON.stringify(v)})`);
  return v;
}

function bool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new ModelConfigError(`${name} must be true or false (got ${JSON.stringify(v)})`);
  return v;
}

function intList(name: string, v: unknown): number[] {
  if (!Array.isArray(v) || v.length === 0) throw new ModelConfigError(`${name} must be a non-empty list of integers (got ${JSON.stringify(v)})`);
  return v.map((x, i) => positiveInt(`${name}[${i}]`, x));
}

/** Checks a FluxParams like BFL's `Flux.__init__` (and a little more); returns a frozen copy. */
export function validateFluxParams(p: FluxParams): FluxParams {
  const q: FluxParams = {
    in_channels: positiveInt('in_channels', p.in_channels),
    out_channels: positiveInt('out_channels', p.out_channels),
    vec_in_dim: positiveInt('vec_in_dim', p.vec_in_dim),
    context_in_dim: positiveInt('context_in_dim', p.context_in_dim),
    hidden_size: positiveInt('hidden_size', p.hidden_size),
    mlp_ratio: finiteNumber('mlp_ratio', p.mlp_ratio),
    num_heads: positiveInt('num_heads', p.num_heads),
    depth: positiveIntOrZero('depth', p.depth),
    depth_single_blocks: positiveIntOrZero('depth_single_blocks', p.depth_single_blocks),
    axes_dim: intList('axes_dim', p.axes_dim),
    theta: finiteNumber('theta', p.theta),
    qkv_bias: bool('qkv_bias', p.qkv_bias),
    guidance_embed: bool('guidance_embed', p.guidance_embed),
  };
  if (q.hidden_size % q.num_heads !== 0) {
    throw new ModelConfigError(`Hidden size ${q.hidden_size} must be divisible by num_heads ${q.num_heads}`);
  }
  const pe = headDim(q);
  const sum = q.axes_dim.reduce((a, b) => a + b, 0);
  if (sum !== pe) throw new ModelConfigError(`Got axes_dim [${q.axes_dim.join(', ')}] (sum ${sum}) but expected positional dim ${pe}`);
  if (q.axes_dim.some((d) => d % 2 !== 0)) throw new ModelConfigError(`every axes_dim entry must be even (got [${q.axes_dim.join(', ')}])`);
  if (q.mlp_ratio <= 0 || mlpHiddenDim(q) < 1) throw new ModelConfigError(`mlp_ratio must be > 0 (got ${q.mlp_ratio})`);
  if (q.theta <= 0) throw new ModelConfigError(`theta must be > 0 (got ${q.theta})`);
  return freeze(q);
}

function positiveIntOrZero(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new ModelConfigError(`${name} must be an integer >= 0 (got ${JSON.stringify(v)})`);
  }
  return v;
}

/** Checks an AutoEncoderParams; returns a frozen copy. */
export function validateAutoEncoderParams(p: AutoEncoderParams): AutoEncoderParams {
  const q: AutoEncoderParams = {
    resolution: positiveInt('resolution', p.resolution),
    in_channels: positiveInt('in_channels', p.in_channels),
    ch: positiveInt('ch', p.ch),
    out_ch: positiveInt('out_ch', p.out_ch),
    ch_mult: intList('ch_mult', p.ch_mult),
    num_res_blocks: positiveInt('num_res_blocks', p.num_res_blocks),
    z_channels: positiveInt('z_channels', p.z_channels),
    scale_factor: finiteNumber('scale_factor', p.scale_factor),
    shift_factor: finiteNumber('shift_factor', p.shift_factor),
  };
  // Every GroupNorm has 32 groups (BFL autoencoder.py), so every block width must be a multiple of 32.
  for (const m of q.ch_mult) {
    if ((q.ch * m) % 32 !== 0) throw new ModelConfigError(`ch * ch_mult = ${q.ch * m} is not a multiple of the 32 GroupNorm groups`);
  }
  if (q.ch % 32 !== 0) throw new ModelConfigError(`ch = ${q.ch} is not a multiple of the 32 GroupNorm groups`);
  if (q.scale_factor === 0) throw new ModelConfigError('scale_factor must not be 0');
  return freeze(q);
}

type Json = Record<string, unknown>;

function asObject(what: string, json: unknown): Json {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ModelConfigError(`${what} must be a JSON object`);
  return json as Json;
}

/** FluxParams from a BFL-style config (the FluxParams keys, at the top or under "flux"). */
export function fluxParamsFromBflConfig(json: unknown): FluxParams {
  let o = asObject('flux config', json);
  if (typeof o['flux'] === 'object' && o['flux'] !== null) o = asObject('flux config "flux"', o['flux']);
  return validateFluxParams(o as unknown as FluxParams);
}

/**
 * FluxParams from a diffusers `transformer/config.json` (FluxTransformer2DModel.__init__'s
 * arguments against BFL's FluxParams). The values diffusers does not store are FLUX's constants:
 * mlp_ratio 4 (FeedForward mult), theta 10000 (FluxPosEmbed), qkv_bias true.
 */
export function fluxParamsFromDiffusersConfig(json: unknown): FluxParams {
  const o = asObject('diffusers transformer config', json);
  const patch = o['patch_size'] ?? 1;
  if (patch !== 1) throw new ModelConfigError(`patch_size must be 1 (packing is done outside the model), got ${JSON.stringify(patch)}`);
  const heads = positiveInt('num_attention_heads', o['num_attention_heads']);
  const headDimD = positiveInt('attention_head_dim', o['attention_head_dim']);
  const inCh = positiveInt('in_channels', o['in_channels']);
  const rope = o['axes_dims_rope'] ?? [16, 56, 56];
  return validateFluxParams({
    in_channels: inCh,
    out_channels: o['out_channels'] == null ? inCh : positiveInt('out_channels', o['out_channels']),
    vec_in_dim: positiveInt('pooled_projection_dim', o['pooled_projection_dim']),
    context_in_dim: positiveInt('joint_attention_dim', o['joint_attention_dim']),
    hidden_size: heads * headDimD,
    mlp_ratio: 4.0,
    num_heads: heads,
    depth: positiveIntOrZero('num_layers', o['num_layers']),
    depth_single_blocks: positiveIntOrZero('num_single_layers', o['num_single_layers']),
    axes_dim: intList('axes_dims_rope', rope),
    theta: 10_000,
    qkv_bias: true,
    guidance_embed: bool('guidance_embeds', o['guidance_embeds'] ?? false),
  });
}

/** AutoEncoderParams from a BFL-style config (the AutoEncoderParams keys, at the top or under "ae"). */
export function autoEncoderParamsFromBflConfig(json: unknown): AutoEncoderParams {
  let o = asObject('autoencoder config', json);
  if (typeof o['ae'] === 'object' && o['ae'] !== null) o = asObject('autoencoder config "ae"', o['ae']);
  return validateAutoEncoderParams(o as unknown as AutoEncoderParams);
}

/**
 * AutoEncoderParams from a diffusers `vae/config.json` (AutoencoderKL, as diffusers'
 * convert_flux_to_diffusers.py writes it). Only the FLUX layout is accepted: 32 groups, SiLU, mid
 * attention, no quant convs, plain DownEncoderBlock2D / UpDecoderBlock2D stages.
 */
export function autoEncoderParamsFromDiffusersConfig(json: unknown): AutoEncoderParams {
  const o = asObject('diffusers vae config', json);
  const blocks = intList('block_out_channels', o['block_out_channels']);
  const ch = blocks[0]!;
  const expect = (key: string, want: unknown, dflt: unknown) => {
    const got = o[key] ?? dflt;
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      throw new ModelConfigError(`vae config ${key} must be ${JSON.stringify(want)} for the FLUX autoencoder (got ${JSON.stringify(got)})`);
    }
  };
  expect('norm_num_groups', 32, 32);
  expect('act_fn', 'silu', 'silu');
  expect('use_quant_conv', false, true);
  expect('use_post_quant_conv', false, true);
  expect('mid_block_add_attention', true, true);
  for (const [key, want] of [
    ['down_block_types', 'DownEncoderBlock2D'],
    ['up_block_types', 'UpDecoderBlock2D'],
  ] as const) {
    const types = o[key];
    if (types !== undefined && (!Array.isArray(types) || types.length !== blocks.length || types.some((t) => t !== want))) {
      throw new ModelConfigError(`vae config ${key} must be ${blocks.length} x "${want}" (got ${JSON.stringify(types)})`);
    }
  }
  const ch_mult = blocks.map((c) => {
    if (c % ch !== 0) throw new ModelConfigError(`block_out_channels [${blocks.join(', ')}] must be multiples of the first entry`);
    return c / ch;
  });
  return validateAutoEncoderParams({
    resolution: positiveInt('sample_size', o['sample_size'] ?? 256),
    in_channels: positiveInt('in_channels', o['in_channels'] ?? 3),
    ch,
    out_ch: positiveInt('out_channels', o['out_channels'] ?? 3),
    ch_mult,
    num_res_blocks: positiveInt('layers_per_block', o['layers_per_block'] ?? 2),
    z_channels: positiveInt('latent_channels', o['latent_channels']),
    scale_factor: finiteNumber('scaling_factor', o['scaling_factor']),
    shift_factor: finiteNumber('shift_factor', o['shift_factor'] ?? 0),
  });
}
