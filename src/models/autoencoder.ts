// The FLUX autoencoder (AutoencoderKL with 16 latent channels), read line for line against
// black-forest-labs/flux@802fb47 src/flux/modules/autoencoder.py `AutoEncoder`. Fields keep the
// checkpoint's spelling: encoder.down.{i}.block.{j}.norm1, decoder.up.{i}.upsample.conv,
// {encoder,decoder}.mid.attn_1.proj_out ...
//
// Shapes are NCHW: B batch, C channels, H x W pixels (or latent positions).

import type { TensorSource } from '../io/source.js';
import type { Backend } from '../tensor/backend.js';
import { add, affine, attention, linear, permute, reshape, slice, upsampleNearest } from '../tensor/ops.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type AutoEncoderParams, validateAutoEncoderParams } from './flux/config.js';
import { Autocast, Conv2d, GroupNorm } from './nn.js';
import { type LoadOptions, Weights } from './weights.js';

const GROUPS = 32; // nn.GroupNorm(num_groups=32, ...) everywhere in the autoencoder
const EPS = 1e-6; // ... with eps=1e-6

function norm(w: Weights, ch: number): GroupNorm {
  return new GroupNorm(w, ch, GROUPS, EPS);
}

/** ResnetBlock: x' = shortcut(x) + conv2(swish(norm2(conv1(swish(norm1(x)))))). */
export class ResnetBlock {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly nin_shortcut: Conv2d | undefined; // 1x1 conv when the width changes

  constructor(w: Weights, inCh: number, outCh: number) {
    this.norm1 = norm(w.pp('norm1'), inCh);
    this.conv1 = new Conv2d(w.pp('conv1'), inCh, outCh, 3, 1, 1);
    this.norm2 = norm(w.pp('norm2'), outCh);
    this.conv2 = new Conv2d(w.pp('conv2'), outCh, outCh, 3, 1, 1);
    this.nin_shortcut = inCh !== outCh ? new Conv2d(w.pp('nin_shortcut'), inCh, outCh, 1) : undefined;
  }

  /** [B, Cin, H, W] -> [B, Cout, H, W] */
  forward(x: Tensor, ac?: Autocast): Tensor {
    return tidy(() => {
      let h = this.conv1.forward(this.norm1.forward(x, 'silu', ac), ac); // [B, Cout, H, W]
      h = this.conv2.forward(this.norm2.forward(h, 'silu', ac), ac); // [B, Cout, H, W]
      const s = this.nin_shortcut ? this.nin_shortcut.forward(x, ac) : x; // [B, Cout, H, W]
      return add(s, h); // [B, Cout, H, W] (under autocast both are conv outputs in its dtype)
    });
  }
}

/**
 * AttnBlock: single-head attention over the H*W positions of norm(x), q/k/v/proj_out being 1x1
 * convs; returns x + proj_out(attn). A 1x1 conv is a Linear over channels, so the block works on
 * [B, HW, C] rows with the conv weights viewed as [C, C].
 */
export class AttnBlock {
  readonly norm: GroupNorm;
  readonly q: Conv2d;
  readonly k: Conv2d;
  readonly v: Conv2d;
  readonly proj_out: Conv2d;

  constructor(
    w: Weights,
    readonly channels: number,
  ) {
    this.norm = norm(w.pp('norm'), channels);
    this.q = new Conv2d(w.pp('q'), channels, channels, 1);
    this.k = new Conv2d(w.pp('k'), channels, channels, 1);
    this.v = new Conv2d(w.pp('v'), channels, channels, 1);
    this.proj_out = new Conv2d(w.pp('proj_out'), channels, channels, 1);
  }

  /** [B, C, H, W] -> [B, C, H, W] */
  forward(x: Tensor, ac?: Autocast): Tensor {
    const [B, C, H, W] = x.shape as [number, number, number, number];
    return tidy(() => {
      const h = this.norm.forward(x, 'none', ac); // [B, C, H, W]
      const rows = permute(reshape(h, [B, C, H * W]), [0, 2, 1]); // [B, HW, C]
      const proj = (c: Conv2d, t: Tensor) =>
        ac ? linear(ac.input(t), reshape(ac.param(c.weight), [C, C]), { bias: ac.param(c.bias) }) : linear(t, reshape(c.weight, [C, C]), { bias: c.bias }); // [B, HW, C]
      const q = reshape(proj(this.q, rows), [B, 1, H * W, C]); // "b c h w -> b 1 (h w) c"
      const k = reshape(proj(this.k, rows), [B, 1, H * W, C]);
      const v = reshape(proj(this.v, rows), [B, 1, H * W, C]);
      const a = attention(q, k, v); // [B, HW, C]; scale 1/√C
      const o = proj(this.proj_out, a); // [B, HW, C]
      const back = reshape(permute(o, [0, 2, 1]), [B, C, H, W]); // [B, C, H, W]
      return add(x, back); // [B, C, H, W]
    });
  }
}

/** Downsample: zero-pad (left 0, right 1, top 0, bottom 1), then a 3x3 conv, stride 2, padding 0. */
export class Downsample {
  readonly conv: Conv2d;

  constructor(w: Weights, ch: number) {
    this.conv = new Conv2d(w.pp('conv'), ch, ch, 3, 2, [0, 1, 0, 1]); // [top, bottom, left, right]
  }

  /** [B, C, H, W] -> [B, C, H/2, W/2] */
  forward(x: Tensor, ac?: Autocast): Tensor {
    return tidy(() => this.conv.forward(x, ac));
  }
}

/** Upsample: nearest x2, then a 3x3 conv, padding 1. */
export class Upsample {
  readonly conv: Conv2d;

  constructor(w: Weights, ch: number) {
    this.conv = new Conv2d(w.pp('conv'), ch, ch, 3, 1, 1);
  }

  /** [B, C, H, W] -> [B, C, 2H, 2W] */
  forward(x: Tensor, ac?: Autocast): Tensor {
    return tidy(() => this.conv.forward(upsampleNearest(x, 2), ac));
  }
}

/** The middle of both networks: block_1, attn_1, block_2. */
export class Mid {
  readonly block_1: ResnetBlock;
  readonly attn_1: AttnBlock;
  readonly block_2: ResnetBlock;

  constructor(w: Weights, ch: number) {
    this.block_1 = new ResnetBlock(w.pp('block_1'), ch, ch);
    this.attn_1 = new AttnBlock(w.pp('attn_1'), ch);
    this.block_2 = new ResnetBlock(w.pp('block_2'), ch, ch);
  }

  forward(x: Tensor, ac?: Autocast): Tensor {
    return chain(x, [(h) => this.block_1.forward(h, ac), (h) => this.attn_1.forward(h, ac), (h) => this.block_2.forward(h, ac)]);
  }
}

/** Applies stages in order, freeing each intermediate as soon as the next one exists. */
function chain(x: Tensor, stages: readonly ((h: Tensor) => Tensor)[]): Tensor {
  let h = x;
  for (const f of stages) {
    const n = f(h);
    if (h !== x) h.dispose();
    h = n;
  }
  return h;
}

/** One resolution level: `block` resnets, then `downsample` (encoder) or `upsample` (decoder). */
interface Level {
  readonly block: ResnetBlock[];
  readonly downsample?: Downsample;
  readonly upsample?: Upsample;
}

export class Encoder {
  readonly conv_in: Conv2d;
  readonly down: Level[];
  readonly mid: Mid;
  readonly norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(w: Weights, p: AutoEncoderParams) {
    const n = p.ch_mult.length;
    this.conv_in = new Conv2d(w.pp('conv_in'), p.in_channels, p.ch, 3, 1, 1);
    const inMult = [1, ...p.ch_mult];
    let blockIn = p.ch;
    this.down = p.ch_mult.map((m, i) => {
      const wl = w.pp('down').pp(i);
      blockIn = p.ch * inMult[i]!;
      const blockOut = p.ch * m;
      const block: ResnetBlock[] = [];
      for (let j = 0; j < p.num_res_blocks; j++) {
        block.push(new ResnetBlock(wl.pp('block').pp(j), blockIn, blockOut));
        blockIn = blockOut;
      }
      return i !== n - 1 ? { block, downsample: new Downsample(wl.pp('downsample'), blockIn) } : { block };
    });
    this.mid = new Mid(w.pp('mid'), blockIn);
    this.norm_out = norm(w.pp('norm_out'), blockIn);
    this.conv_out = new Conv2d(w.pp('conv_out'), blockIn, 2 * p.z_channels, 3, 1, 1); // mean ‖ logvar
  }

  /** [B, 3, H, W] -> [B, 2*z, H/f, W/f] (f = 2^(levels-1)); under `ac` the output is in its dtype. */
  forward(x: Tensor, ac?: Autocast): Tensor {
    const stages: ((h: Tensor) => Tensor)[] = [(h) => tidy(() => this.conv_in.forward(h, ac))];
    for (const level of this.down) {
      for (const b of level.block) stages.push((h) => b.forward(h, ac));
      const ds = level.downsample;
      if (ds) stages.push((h) => ds.forward(h, ac));
    }
    stages.push((h) => this.mid.forward(h, ac));
    stages.push((h) => tidy(() => this.conv_out.forward(this.norm_out.forward(h, 'silu', ac), ac)));
    return chain(x, stages);
  }
}

export class Decoder {
  readonly conv_in: Conv2d;
  readonly mid: Mid;
  /** up[i] is the level of resolution i (up[0] the finest); they run from the last to the first. */
  readonly up: Level[];
  readonly norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(w: Weights, p: AutoEncoderParams) {
    const n = p.ch_mult.length;
    let blockIn = p.ch * p.ch_mult[n - 1]!;
    this.conv_in = new Conv2d(w.pp('conv_in'), p.z_channels, blockIn, 3, 1, 1);
    this.mid = new Mid(w.pp('mid'), blockIn);
    const up: Level[] = new Array<Level>(n);
    for (let i = n - 1; i >= 0; i--) {
      const wl = w.pp('up').pp(i);
      const blockOut = p.ch * p.ch_mult[i]!;
      const block: ResnetBlock[] = [];
      for (let j = 0; j < p.num_res_blocks + 1; j++) {
        block.push(new ResnetBlock(wl.pp('block').pp(j), blockIn, blockOut));
        blockIn = blockOut;
      }
      up[i] = i !== 0 ? { block, upsample: new Upsample(wl.pp('upsample'), blockIn) } : { block };
    }
    this.up = up;
    this.norm_out = norm(w.pp('norm_out'), blockIn);
    this.conv_out = new Conv2d(w.pp('conv_out'), blockIn, p.out_ch, 3, 1, 1);
  }

  /** [B, z, h, w] -> [B, 3, h*f, w*f]; under `ac` the output is in its dtype. */
  forward(z: Tensor, ac?: Autocast): Tensor {
    const stages: ((h: Tensor) => Tensor)[] = [(h) => tidy(() => this.conv_in.forward(h, ac)), (h) => this.mid.forward(h, ac)];
    for (let i = this.up.length - 1; i >= 0; i--) {
      const level = this.up[i]!;
      for (const b of level.block) stages.push((h) => b.forward(h, ac));
      const us = level.upsample;
      if (us) stages.push((h) => us.forward(h, ac));
    }
    stages.push((h) => tidy(() => this.conv_out.forward(this.norm_out.forward(h, 'silu', ac), ac)));
    return chain(z, stages);
  }
}

/**
 * The VAE precision predictions use (decode, and the image modes' encode): FLUXSERVE_VAE_AUTOCAST=bf16|off, by default bf16 on the
 * CUDA backend (what BFL and cog-flux do, and ~10x less time than fp32 convs on a GPU) and off on
 * the CPU (the fp32 reference; bf16 buys the CPU nothing). docs/behaviour.md.
 */
export function vaeAutocast(be: Backend, env: NodeJS.ProcessEnv = process.env): 'bf16' | undefined {
  const v = env['FLUXSERVE_VAE_AUTOCAST'];
  if (v === 'bf16') return 'bf16';
  if (v === 'off' || v === '0') return undefined;
  if (v !== undefined && v !== '') throw new Error(`FLUXSERVE_VAE_AUTOCAST must be bf16 or off (got '${v}')`);
  return be.name === 'cuda' ? 'bf16' : undefined;
}

export class AutoEncoder {
  readonly params: AutoEncoderParams;
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  private readonly owned: Tensor[];
  /** The bf16 copies of the parameters for autocast encodes/decodes, made on first use. */
  private autocast: Autocast | undefined;

  /** Builds both networks from `w` (a builder at the autoencoder's prefix); call `w.finish()` after. */
  constructor(params: AutoEncoderParams, w: Weights) {
    this.params = validateAutoEncoderParams(params);
    const first = w.tensors.length;
    this.encoder = new Encoder(w.pp('encoder'), this.params);
    this.decoder = new Decoder(w.pp('decoder'), this.params);
    this.owned = w.tensors.slice(first);
  }

  static load(params: AutoEncoderParams, source: TensorSource, backend: Backend, opts: LoadOptions = {}): AutoEncoder {
    const w = Weights.from(source, backend, opts);
    const ae = new AutoEncoder(params, w);
    w.finish();
    return ae;
  }

  /** Latent downsampling factor (8 for FLUX). */
  get scaleFactor(): number {
    return 2 ** (this.params.ch_mult.length - 1);
  }

  /**
   * image [B, 3, H, W] in [-1, 1] -> scale_factor·(mean − shift_factor) [B, z, H/8, W/8]: the
   * Gaussian's mean, no sampling (BFL util.py load_ae: AutoEncoder, sample_z=False). `autocast:
   * 'bf16'` as in decode (the image modes' diffusers engine runs its VAE in bf16; the result is bf16).
   */
  encode(x: Tensor, opts: { autocast?: 'bf16' | undefined } = {}): Tensor {
    const z = this.params.z_channels;
    const s = Math.fround(this.params.scale_factor); // fp32 op scalars
    const sh = Math.fround(this.params.shift_factor);
    const ac = opts.autocast ? (this.autocast ??= new Autocast(opts.autocast)) : undefined;
    return tidy(() => {
      const moments = this.encoder.forward(x, ac); // [B, 2z, h, w]
      const mean = slice(moments, 1, 0, z); // [B, z, h, w]
      return affine(affine(mean, 1, -sh), s); // two ops, as BFL: scale * (z - shift)
    });
  }

  /**
   * z [B, z, h, w] in transformer space -> image [B, 3, 8h, 8w] (≈[-1, 1]): decoder(z/scale + shift).
   * `autocast: 'bf16'` decodes like BFL and cog-flux, under torch.autocast(bf16) (BFL src/flux/cli.py:
   * convs, linears and attention in bf16 from fp32 weights, GroupNorm in fp32; the output is bf16);
   * without it everything runs in the weights' dtype (the reference check's fp32).
   */
  decode(z: Tensor, opts: { autocast?: 'bf16' | undefined } = {}): Tensor {
    // z / scale as a multiply by the fp32 reciprocal (within an ulp of the division), then + shift.
    const inv = Math.fround(1 / Math.fround(this.params.scale_factor));
    const sh = Math.fround(this.params.shift_factor);
    const ac = opts.autocast ? (this.autocast ??= new Autocast(opts.autocast)) : undefined;
    return tidy(() => this.decoder.forward(affine(z, inv, sh), ac)); // [B, 3, H, W]
  }

  dispose(): void {
    this.autocast?.dispose();
    for (const t of this.owned) t.dispose();
  }
}
