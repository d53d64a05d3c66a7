// LoRA format detection and conversion to canonical BFL deltas (reference/flux-spec.md §6).
//
// Every case builds a small synthetic LoRA with real key names for the tiny fixture config
// (hidden 64, 2 heads, MLP 256, 2 double + 2 single blocks, as /work/shared/fixtures/bfl-tiny-a),
// and computes the expected weight change of every BFL parameter HERE, from the definitions in
// the spec (ΔW = alpha/r · B·A, fused-row placement, kron, Hadamard, final-layer half swap),
// independently of src/lora. The parsed deltas are applied to zero weights with applyDeltaTo and
// every parameter of the model is compared (untouched parameters must stay exactly zero).

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';

import { bflTransformerKeys, type FluxKeyConfig } from '../../src/io/names.js';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { MapSource } from '../../src/io/source.js';
import {
  LoraFormatError,
  applyDeltaTo,
  denseDelta,
  describeLora,
  detectLoraFormat,
  loraTargetFromConfig,
  loraTargetFromKeys,
  parseLora,
  sumDeltas,
  type LoraDelta,
  type LoraFormat,
  type ParsedLora,
} from '../../src/lora/formats.js';
import { type DType, f32ToRaw, rawToF32 } from '../../src/tensor/dtype.js';
import { kronRef, mm } from './ref.js';

// ---------------------------------------------------------------------------------------------
// The tiny model (flux section of shared/fixtures/bfl-tiny-a/config.json)

const CFG: FluxKeyConfig = {
  in_channels: 64,
  out_channels: 64,
  vec_in_dim: 32,
  context_in_dim: 48,
  hidden_size: 64,
  mlp_ratio: 4.0,
  num_heads: 2,
  depth: 2,
  depth_single_blocks: 2,
  axes_dim: [4, 14, 14],
  theta: 10000,
  qkv_bias: true,
  guidance_embed: true,
};
const KEYS = bflTransformerKeys(CFG);
const TARGET = loraTargetFromKeys(KEYS);
const H = 64;
const MLP = 256;

// ---------------------------------------------------------------------------------------------
// Test-side math (float64), written from the spec, not taken from src/lora

class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** mulberry32, uniform in [-1, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  array(n: number): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.next();
    return a;
  }
}

function hadamard(x: Float64Array, y: Float64Array): Float64Array {
  return x.map((v, i) => v * y[i]!);
}

/** diffusers norm_out.linear row order (scale, shift) -> BFL (shift, scale): swap the row halves. */
function swapHalves(m: Float64Array, rows: number, cols: number): Float64Array {
  const o = new Float64Array(m.length);
  const half = (rows / 2) * cols;
  o.set(m.subarray(half), 0);
  o.set(m.subarray(0, half), half);
  return o;
}

function shapeOf(key: string): number[] {
  const s = KEYS.get(key);
  assert.ok(s, `test bug: ${key} is not a BFL key`);
  return s;
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

// ---------------------------------------------------------------------------------------------
// A synthetic LoRA file plus the weight change it must produce

class Case {
  readonly src: MapSource;
  readonly expected = new Map<string, Float64Array>();
  readonly rng: Rng;

  constructor(
    readonly name: string,
    readonly format: LoraFormat,
    seed: number,
    readonly dtype: DType = 'f32',
  ) {
    this.src = new MapSource(`synthetic ${name}`);
    this.rng = new Rng(seed);
  }

  /** Stores random values under `key` and returns them as the file holds them (bf16-rounded if bf16). */
  rand(key: string, shape: number[]): Float32Array {
    return this.put(key, shape, this.rng.array(numel(shape)));
  }

  put(key: string, shape: number[], values: Float32Array): Float32Array {
    const raw = f32ToRaw(this.dtype, values);
    this.src.set(key, this.dtype, shape, raw);
    return rawToF32(this.dtype, raw);
  }

  /** A scalar alpha (shape [], as kohya and PEFT write it). */
  alpha(key: string, v: number): void {
    this.src.set(key, 'f32', [], new Float32Array([v]));
  }

  /** Adds scale · dense [rows, cols] into rows [rowStart, ...) of BFL parameter `key`. */
  expect(key: string, rowStart: number, dense: Float64Array, scale: number): void {
    const shape = shapeOf(key);
    const cols = shape.length === 2 ? shape[1]! : 1;
    let e = this.expected.get(key);
    if (!e) this.expected.set(key, (e = new Float64Array(numel(shape))));
    assert.ok(rowStart * cols + dense.length <= e.length, `test bug: ${key} rows overflow`);
    for (let i = 0; i < dense.length; i++) e[rowStart * cols + i]! += scale * dense[i]!;
  }

  /** A LoRA pair under `stem` + spellings; expected ΔW = scale · B·A at rows [rowStart, rowStart + out). */
  pair(
    stem: string,
    [aSuffix, bSuffix]: [string, string],
    r: number,
    inF: number,
    out: number,
    target: { key: string; rowStart?: number; swap?: boolean },
    scale: number,
  ): { A: Float32Array; B: Float32Array } {
    const A = this.rand(`${stem}${aSuffix}`, [r, inF]);
    const B = this.rand(`${stem}${bSuffix}`, [out, r]);
    let dense = mm(B, A, out, r, inF);
    if (target.swap) dense = swapHalves(dense, out, inF);
    this.expect(target.key, target.rowStart ?? 0, dense, scale);
    return { A, B };
  }
}

const PEFT: [string, string] = ['.lora_A.weight', '.lora_B.weight'];
const KOHYA: [string, string] = ['.lora_down.weight', '.lora_up.weight'];
const DOT: [string, string] = ['.lora.down.weight', '.lora.up.weight'];
const XL: [string, string] = ['.down.weight', '.up.weight'];

/** Applies every delta of one parameter to zeros with applyDeltaTo (user scale 1). */
function applied(parsed: ParsedLora, key: string): Float32Array {
  const shape = shapeOf(key);
  const w = new Float32Array(numel(shape));
  for (const d of parsed.deltas) if (d.module === key) applyDeltaTo(w, shape, d, 1);
  return w;
}

/** Compares the parsed LoRA's effect on EVERY parameter of the model with the case's expectation. */
function checkCase(c: Case, parsed: ParsedLora): void {
  assert.equal(parsed.format, c.format, `${c.name}: format`);
  const touched = new Set(parsed.deltas.map((d) => d.module));
  assert.deepEqual([...touched].sort(), [...c.expected.keys()].sort(), `${c.name}: the set of modified parameters`);
  for (const key of KEYS.keys()) {
    const got = applied(parsed, key);
    const want = c.expected.get(key);
    if (!want) {
      assert.ok(
        got.every((v) => v === 0),
        `${c.name}: ${key} must be untouched`,
      );
      continue;
    }
    let worst = 0;
    let at = -1;
    for (let i = 0; i < got.length; i++) {
      const err = Math.abs(got[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!));
      if (err > worst) {
        worst = err;
        at = i;
      }
    }
    assert.ok(worst <= 1e-6, `${c.name}: ${key} differs at ${at}: got ${got[at]}, want ${want[at]} (rel err ${worst})`);
  }
}

function findDelta(parsed: ParsedLora, module: string, rowStart = 0): LoraDelta {
  const d = parsed.deltas.find((x) => x.module === module && x.rowStart === rowStart);
  assert.ok(d, `no delta on ${module} at row ${rowStart}; have ${parsed.deltas.map((x) => `${x.module}@${x.rowStart}`).join(', ')}`);
  return d;
}

function throwsLora(fn: () => unknown, kind: LoraFormatError['kind'], check?: (e: LoraFormatError) => void): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LoraFormatError, `expected LoraFormatError, got ${String(e)}`);
    assert.equal(e.kind, kind, `error kind (message: ${e.message})`);
    check?.(e);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// The cases

const Q = (i: number) => `double_blocks.${i}.img_attn.qkv.weight`;
const TQ = (i: number) => `double_blocks.${i}.txt_attn.qkv.weight`;
const L1 = (j: number) => `single_blocks.${j}.linear1.weight`;

/** ai-toolkit / Replicate-trained diffusers PEFT file: transformer. prefix, lora_A/lora_B, no alpha (scale 1). */
function diffusersCase(): Case {
  const c = new Case('diffusers-peft', 'diffusers-peft', 1);
  const r = 4;
  const t = 'transformer.';
  // [diffusers module, in, out, BFL key, first row, swap] — flux-spec §1.11
  const table: Array<[string, number, number, string, number, boolean?]> = [
    ['transformer_blocks.0.attn.to_q', H, H, Q(0), 0],
    ['transformer_blocks.0.attn.to_k', H, H, Q(0), H],
    ['transformer_blocks.0.attn.to_v', H, H, Q(0), 2 * H],
    ['transformer_blocks.0.attn.add_k_proj', H, H, TQ(0), H],
    ['transformer_blocks.1.attn.add_v_proj', H, H, TQ(1), 2 * H],
    ['transformer_blocks.1.attn.to_out.0', H, H, 'double_blocks.1.img_attn.proj.weight', 0],
    ['transformer_blocks.1.attn.to_add_out', H, H, 'double_blocks.1.txt_attn.proj.weight', 0],
    ['transformer_blocks.0.ff.net.0.proj', H, MLP, 'double_blocks.0.img_mlp.0.weight', 0],
    ['transformer_blocks.0.ff.net.2', MLP, H, 'double_blocks.0.img_mlp.2.weight', 0],
    ['transformer_blocks.1.ff_context.net.0.proj', H, MLP, 'double_blocks.1.txt_mlp.0.weight', 0],
    ['transformer_blocks.1.ff_context.net.2', MLP, H, 'double_blocks.1.txt_mlp.2.weight', 0],
    ['transformer_blocks.1.norm1.linear', H, 6 * H, 'double_blocks.1.img_mod.lin.weight', 0],
    ['transformer_blocks.0.norm1_context.linear', H, 6 * H, 'double_blocks.0.txt_mod.lin.weight', 0],
    ['single_transformer_blocks.0.attn.to_q', H, H, L1(0), 0],
    ['single_transformer_blocks.0.attn.to_k', H, H, L1(0), H],
    ['single_transformer_blocks.0.attn.to_v', H, H, L1(0), 2 * H],
    ['single_transformer_blocks.0.proj_mlp', H, MLP, L1(0), 3 * H],
    ['single_transformer_blocks.1.attn.to_k', H, H, L1(1), H],
    ['single_transformer_blocks.1.proj_out', H + MLP, H, 'single_blocks.1.linear2.weight', 0],
    ['single_transformer_blocks.0.norm.linear', H, 3 * H, 'single_blocks.0.modulation.lin.weight', 0],
    ['x_embedder', 64, H, 'img_in.weight', 0],
    ['context_embedder', 48, H, 'txt_in.weight', 0],
    ['time_text_embed.timestep_embedder.linear_1', 256, H, 'time_in.in_layer.weight', 0],
    ['time_text_embed.guidance_embedder.linear_2', H, H, 'guidance_in.out_layer.weight', 0],
    ['time_text_embed.text_embedder.linear_1', 32, H, 'vector_in.in_layer.weight', 0],
    ['norm_out.linear', H, 2 * H, 'final_layer.adaLN_modulation.1.weight', 0, true],
    ['proj_out', H, 64, 'final_layer.linear.weight', 0],
  ];
  for (const [name, inF, out, key, row, swap] of table) {
    c.pair(`${t}${name}`, PEFT, r, inF, out, { key, rowStart: row, swap: swap ?? false }, 1);
  }
  return c;
}

/** diffusers names with .alpha tensors, the lora.down/lora.up spelling and a base_model.model. prefix. */
function diffusersAlphaCase(): Case {
  const c = new Case('diffusers-peft with alpha', 'diffusers-peft', 2);
  const p = 'transformer.base_model.model.';
  c.pair(`${p}transformer_blocks.1.attn.to_q`, DOT, 4, H, H, { key: Q(1), rowStart: 0 }, 8 / 4);
  c.alpha(`${p}transformer_blocks.1.attn.to_q.alpha`, 8);
  c.pair(`${p}transformer_blocks.1.attn.to_v`, DOT, 2, H, H, { key: Q(1), rowStart: 2 * H }, 1 / 2);
  c.alpha(`${p}transformer_blocks.1.attn.to_v.alpha`, 1);
  c.pair(`${p}single_transformer_blocks.0.proj_out`, PEFT, 8, H + MLP, H, { key: 'single_blocks.0.linear2.weight' }, 4 / 8);
  c.alpha(`${p}single_transformer_blocks.0.proj_out.alpha`, 4);
  c.pair(`${p}single_transformer_blocks.1.proj_mlp`, PEFT, 4, H, MLP, { key: L1(1), rowStart: 3 * H }, 1); // no alpha: scale 1
  return c;
}

/** kohya sd-scripts: lora_unet_<BFL path>, lora_down/lora_up, .alpha; bf16 tensors; fused qkv/linear1. */
function kohyaCase(): Case {
  const c = new Case('kohya', 'kohya', 3, 'bf16');
  const u = 'lora_unet_';
  const mod = (name: string, r: number, inF: number, out: number, key: string, alpha?: number) => {
    c.pair(`${u}${name}`, KOHYA, r, inF, out, { key }, alpha === undefined ? 1 : alpha / r);
    if (alpha !== undefined) c.alpha(`${u}${name}.alpha`, alpha);
  };
  mod('double_blocks_0_img_attn_qkv', 4, H, 3 * H, Q(0), 2);
  mod('double_blocks_0_txt_attn_proj', 4, H, H, 'double_blocks.0.txt_attn.proj.weight', 4);
  mod('double_blocks_1_img_mlp_2', 8, MLP, H, 'double_blocks.1.img_mlp.2.weight', 16);
  mod('double_blocks_1_txt_mod_lin', 4, H, 6 * H, 'double_blocks.1.txt_mod.lin.weight', 1);
  mod('single_blocks_1_linear1', 4, H, 3 * H + MLP, L1(1), 3);
  mod('single_blocks_0_linear2', 4, H + MLP, H, 'single_blocks.0.linear2.weight', 2);
  mod('single_blocks_1_modulation_lin', 2, H, 3 * H, 'single_blocks.1.modulation.lin.weight'); // no alpha
  mod('final_layer_adaLN_modulation_1', 4, H, 2 * H, 'final_layer.adaLN_modulation.1.weight', 2); // BFL name: no swap
  mod('final_layer_linear', 4, H, 64, 'final_layer.linear.weight', 4);
  mod('img_in', 4, 64, H, 'img_in.weight', 2);
  mod('time_in_out_layer', 4, H, H, 'time_in.out_layer.weight', 2);
  mod('vector_in_in_layer', 4, 32, H, 'vector_in.in_layer.weight', 2);
  mod('guidance_in_in_layer', 4, 256, H, 'guidance_in.in_layer.weight', 2);
  // split_qkv as saved: lora_down [3r, H], block-diagonal lora_up [3H, 3r], per-part alpha kept;
  // applied as one full-width low-rank delta with scale alpha / (3r) (alpha / lora_down.shape[0])
  const r = 2;
  const down = c.rand(`${u}double_blocks_1_txt_attn_qkv.lora_down.weight`, [3 * r, H]);
  const upVals = new Float32Array(3 * H * 3 * r);
  for (let part = 0; part < 3; part++) {
    for (let i = 0; i < H; i++) for (let k = 0; k < r; k++) upVals[(part * H + i) * 3 * r + part * r + k] = c.rng.next();
  }
  const up = c.put(`${u}double_blocks_1_txt_attn_qkv.lora_up.weight`, [3 * H, 3 * r], upVals);
  c.alpha(`${u}double_blocks_1_txt_attn_qkv.alpha`, 2);
  c.expect(TQ(1), 0, mm(up, down, 3 * H, 3 * r, H), 2 / (3 * r));
  // text-encoder modules: dropped with a warning
  c.rand('lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight', [4, 16]);
  c.rand('lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight', [16, 4]);
  c.alpha('lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha', 4);
  return c;
}

/** The ComfyUI spelling of a kohya file: diffusion_model.<BFL path>.lora_down/lora_up/.alpha. */
function comfyKohyaCase(): Case {
  const c = new Case('kohya (ComfyUI diffusion_model.)', 'kohya', 4);
  const d = 'diffusion_model.';
  c.pair(`${d}double_blocks.1.img_attn.qkv`, KOHYA, 4, H, 3 * H, { key: Q(1) }, 8 / 4);
  c.alpha(`${d}double_blocks.1.img_attn.qkv.alpha`, 8);
  c.pair(`${d}single_blocks.0.linear1`, KOHYA, 4, H, 3 * H + MLP, { key: L1(0) }, 1);
  return c;
}

/** BFL module names with lora_A/lora_B, with and without diffusion_model. / base_model.model. prefixes. */
function bflPeftCase(): Case {
  const c = new Case('bfl-peft', 'bfl-peft', 5);
  c.pair('diffusion_model.double_blocks.0.img_attn.qkv', PEFT, 4, H, 3 * H, { key: Q(0) }, 1);
  c.pair('base_model.model.double_blocks.1.txt_mlp.0', PEFT, 4, H, MLP, { key: 'double_blocks.1.txt_mlp.0.weight' }, 2 / 4);
  c.alpha('base_model.model.double_blocks.1.txt_mlp.0.alpha', 2);
  c.pair('single_blocks.1.linear1', PEFT, 4, H, 3 * H + MLP, { key: L1(1) }, 1);
  c.pair('final_layer.adaLN_modulation.1', PEFT, 4, H, 2 * H, { key: 'final_layer.adaLN_modulation.1.weight' }, 1); // no swap
  c.pair('model.diffusion_model.txt_in', PEFT, 4, 48, H, { key: 'txt_in.weight' }, 1);
  return c;
}

/** XLabs x-flux processor LoRAs (flux-spec §6.5). */
function xlabsCase(): Case {
  const c = new Case('xlabs', 'xlabs', 6);
  c.pair('double_blocks.0.processor.qkv_lora1', XL, 4, H, 3 * H, { key: Q(0) }, 1);
  c.pair('double_blocks.0.processor.proj_lora1', XL, 4, H, H, { key: 'double_blocks.0.img_attn.proj.weight' }, 1);
  c.pair('double_blocks.0.processor.qkv_lora2', XL, 4, H, 3 * H, { key: TQ(0) }, 1);
  c.pair('double_blocks.0.processor.proj_lora2', XL, 4, H, H, { key: 'double_blocks.0.txt_attn.proj.weight' }, 1);
  c.pair('double_blocks.1.processor.proj_lora2', XL, 4, H, H, { key: 'double_blocks.1.txt_attn.proj.weight' }, 1);
  // single: qkv_lora adds to the qkv rows [0, 3H) of linear1 only; proj_lora is on linear2 (input H + MLP)
  c.pair('single_blocks.0.processor.qkv_lora', XL, 4, H, 3 * H, { key: L1(0), rowStart: 0 }, 1);
  c.pair('diffusion_model.single_blocks.1.processor.proj_lora', XL, 4, H + MLP, H, { key: 'single_blocks.1.linear2.weight' }, 1);
  return c;
}

/** LyCORIS LoKr: ΔW = kron(W1, W2) · scale, scale = alpha / r (r from the decomposed factor), 1 if both are full. */
function lokrCase(): Case {
  const c = new Case('lokr', 'lokr', 7);
  // lora_unet_ name, W1 full [4, 2], W2 = w2_a [48, 2] @ w2_b [2, 32]: kron -> [192, 64]; alpha 1, r 2
  {
    const s = 'lora_unet_double_blocks_0_img_attn_qkv';
    const w1 = c.rand(`${s}.lokr_w1`, [4, 2]);
    const w2a = c.rand(`${s}.lokr_w2_a`, [48, 2]);
    const w2b = c.rand(`${s}.lokr_w2_b`, [2, 32]);
    c.alpha(`${s}.alpha`, 1);
    c.expect(Q(0), 0, kronRef(w1, 4, 2, mm(w2a, w2b, 48, 2, 32), 48, 32), 1 / 2);
  }
  // lycoris_ + diffusers path (SimpleTuner), to_v only -> qkv rows [2H, 3H); both factors full: scale 1 despite alpha
  {
    const s = 'lycoris_transformer_blocks_1_attn_to_v';
    const w1 = c.rand(`${s}.lokr_w1`, [2, 4]);
    const w2 = c.rand(`${s}.lokr_w2`, [32, 16]);
    c.alpha(`${s}.alpha`, 7);
    c.expect(Q(1), 2 * H, kronRef(w1, 2, 4, w2, 32, 16), 1);
  }
  // decomposed W1 (r = lokr_w1_a.shape[1] = 3), proj_mlp -> linear1 rows [3H, 3H + MLP); alpha 6 -> scale 2
  {
    const s = 'lycoris_single_transformer_blocks_0_proj_mlp';
    const w1a = c.rand(`${s}.lokr_w1_a`, [4, 3]);
    const w1b = c.rand(`${s}.lokr_w1_b`, [3, 2]);
    const w2 = c.rand(`${s}.lokr_w2`, [64, 32]);
    c.alpha(`${s}.alpha`, 6);
    c.expect(L1(0), 3 * H, kronRef(mm(w1a, w1b, 4, 3, 2), 4, 2, w2, 64, 32), 6 / 3);
  }
  // diffusers norm_out.linear: BFL final_layer.adaLN_modulation.1 with the row halves swapped; no alpha -> 1
  {
    const s = 'lycoris_norm_out_linear';
    const w1 = c.rand(`${s}.lokr_w1`, [2, 2]);
    const w2a = c.rand(`${s}.lokr_w2_a`, [64, 2]);
    const w2b = c.rand(`${s}.lokr_w2_b`, [2, 32]);
    const k = kronRef(w1, 2, 2, mm(w2a, w2b, 64, 2, 32), 64, 32);
    c.expect('final_layer.adaLN_modulation.1.weight', 0, swapHalves(k, 2 * H, H), 1);
  }
  // diffusion_model.<BFL path> spelling
  {
    const s = 'diffusion_model.single_blocks.1.linear2';
    const w1 = c.rand(`${s}.lokr_w1`, [4, 5]);
    const w2 = c.rand(`${s}.lokr_w2`, [16, 64]);
    c.expect('single_blocks.1.linear2.weight', 0, kronRef(w1, 4, 5, w2, 16, 64), 1);
  }
  return c;
}

/** A LoKr final-layer swap whose W1 has an odd number of rows (cannot swap inside the factor). */
function lokrOddSwapCase(): Case {
  const c = new Case('lokr odd swap', 'lokr', 8);
  const s = 'lycoris_norm_out_linear';
  const w1 = c.rand(`${s}.lokr_w1`, [1, 2]);
  const w2a = c.rand(`${s}.lokr_w2_a`, [128, 4]);
  const w2b = c.rand(`${s}.lokr_w2_b`, [4, 32]);
  c.alpha(`${s}.alpha`, 2);
  const k = kronRef(w1, 1, 2, mm(w2a, w2b, 128, 4, 32), 128, 32);
  c.expect('final_layer.adaLN_modulation.1.weight', 0, swapHalves(k, 2 * H, H), 2 / 4);
  return c;
}

/** LyCORIS LoHa: ΔW = (w1a·w1b) ⊙ (w2a·w2b) · alpha / r, r = hada_w1_b.shape[0]. */
function lohaCase(): Case {
  const c = new Case('loha', 'loha', 9);
  const loha = (s: string, r: number, out: number, inF: number, key: string, rowStart: number, alpha?: number, swap = false) => {
    const w1a = c.rand(`${s}.hada_w1_a`, [out, r]);
    const w1b = c.rand(`${s}.hada_w1_b`, [r, inF]);
    const w2a = c.rand(`${s}.hada_w2_a`, [out, r]);
    const w2b = c.rand(`${s}.hada_w2_b`, [r, inF]);
    if (alpha !== undefined) c.alpha(`${s}.alpha`, alpha);
    let d = hadamard(mm(w1a, w1b, out, r, inF), mm(w2a, w2b, out, r, inF));
    if (swap) d = swapHalves(d, out, inF);
    c.expect(key, rowStart, d, alpha === undefined ? 1 : alpha / r);
  };
  loha('lora_unet_single_blocks_1_linear2', 4, H, H + MLP, 'single_blocks.1.linear2.weight', 0, 2);
  loha('lycoris_transformer_blocks_0_attn_add_q_proj', 2, H, H, TQ(0), 0);
  loha('lycoris_norm_out_linear', 3, 2 * H, H, 'final_layer.adaLN_modulation.1.weight', 0, 1.5, true);
  loha('lora_unet_double_blocks_1_img_mlp_0', 2, MLP, H, 'double_blocks.1.img_mlp.0.weight', 0, 4);
  return c;
}

/** BFL control LoRA (FLUX.1-Canny/Depth-dev-lora): lora_A/lora_B + lora_B.bias on BFL names, QK-norm scales. */
function controlCase(): Case {
  const c = new Case('bfl-control', 'bfl-control', 10);
  const withBias = (m: string, r: number, inF: number, out: number) => {
    c.pair(m, PEFT, r, inF, out, { key: `${m}.weight` }, 1);
    const b = c.rand(`${m}.lora_B.bias`, [out]);
    c.expect(`${m}.bias`, 0, Float64Array.from(b), 1);
  };
  withBias('double_blocks.0.img_attn.qkv', 4, H, 3 * H);
  withBias('single_blocks.1.linear1', 4, H, 3 * H + MLP);
  withBias('img_in', 4, 64, H);
  c.rand('double_blocks.0.img_attn.norm.query_norm.scale', [H / 2]);
  c.rand('single_blocks.1.norm.key_norm.scale', [H / 2]);
  return c;
}

/** ComfyUI full differences: <module>.diff [out, in], <module>.diff_b [out], QK-norm scale diffs. */
function diffCase(): Case {
  const c = new Case('comfy diff', 'diff', 17);
  const d = c.rand('diffusion_model.double_blocks.1.img_attn.proj.diff', [H, H]);
  c.expect('double_blocks.1.img_attn.proj.weight', 0, Float64Array.from(d), 1);
  const b = c.rand('diffusion_model.double_blocks.1.img_attn.proj.diff_b', [H]);
  c.expect('double_blocks.1.img_attn.proj.bias', 0, Float64Array.from(b), 1);
  const n = c.rand('diffusion_model.single_blocks.0.norm.key_norm.scale.diff', [H / 2]);
  c.expect('single_blocks.0.norm.key_norm.scale', 0, Float64Array.from(n), 1);
  return c;
}

const ALL_CASES: Array<() => Case> = [
  diffCase,
  diffusersCase,
  diffusersAlphaCase,
  kohyaCase,
  comfyKohyaCase,
  bflPeftCase,
  xlabsCase,
  lokrCase,
  lokrOddSwapCase,
  lohaCase,
  controlCase,
];

// ---------------------------------------------------------------------------------------------

describe('LoRA target', () => {
  it('is derived from the BFL key list of the tiny config', () => {
    assert.equal(TARGET.hidden, H);
    assert.equal(TARGET.mlpHidden, MLP);
    assert.equal(TARGET.depth, 2);
    assert.equal(TARGET.depthSingle, 2);
    const t2 = loraTargetFromConfig(CFG);
    assert.deepEqual([t2.hidden, t2.mlpHidden, t2.depth, t2.depthSingle], [H, MLP, 2, 2]);
  });
});

describe('parseLora: every format gives the spec delta on every parameter', () => {
  for (const make of ALL_CASES) {
    const c = make();
    it(c.name, () => {
      assert.equal(detectLoraFormat(c.src.keys()), c.format);
      const parsed = parseLora(c.src, TARGET);
      checkCase(c, parsed);
      // sumDeltas (denseDelta path) agrees with applyDeltaTo
      const sums = sumDeltas(parsed, TARGET);
      for (const [k, v] of sums) {
        const a = applied(parsed, k);
        for (let i = 0; i < v.length; i++) assert.ok(Math.abs(v[i]! - a[i]!) <= 1e-6 * Math.max(1, Math.abs(a[i]!)), `${k}[${i}]`);
      }
    });
  }
});

describe('detectLoraFormat', () => {
  it('names the layout from the keys alone', () => {
    const cases: Array<[string[], string]> = [
      [['transformer.transformer_blocks.0.attn.to_q.lora_A.weight', 'transformer.transformer_blocks.0.attn.to_q.lora_B.weight'], 'diffusers-peft'],
      [['transformer.transformer_blocks.0.attn.to_q.lora_down.weight', 'transformer.transformer_blocks.0.attn.to_q.lora_up.weight'], 'diffusers-peft'],
      [['transformer_blocks.0.attn.to_q.lora.down.weight', 'transformer_blocks.0.attn.to_q.lora.up.weight'], 'diffusers-peft'],
      [['lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight', 'lora_unet_double_blocks_0_img_attn_qkv.alpha'], 'kohya'],
      [['diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight'], 'kohya'],
      [['lora_transformer_single_transformer_blocks_0_attn_to_q.lora_down.weight'], 'kohya'],
      [['diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight'], 'bfl-peft'],
      [['base_model.model.single_blocks.3.linear2.lora_B.weight'], 'bfl-peft'],
      [['double_blocks.0.img_attn.qkv.lora_B.bias', 'double_blocks.0.img_attn.qkv.lora_A.weight'], 'bfl-control'],
      [['double_blocks.0.processor.qkv_lora1.down.weight', 'double_blocks.0.processor.qkv_lora1.up.weight'], 'xlabs'],
      [['lycoris_transformer_blocks_0_attn_to_q.lokr_w1', 'lycoris_transformer_blocks_0_attn_to_q.lokr_w2'], 'lokr'],
      [['lora_unet_single_blocks_0_linear1.hada_w1_a', 'lora_unet_single_blocks_0_linear1.hada_w1_b'], 'loha'],
      [['diffusion_model.img_in.diff'], 'diff'],
    ];
    for (const [keys, want] of cases) assert.equal(detectLoraFormat(keys), want, keys[0]);
  });
});

describe('parseLora: structure of the deltas', () => {
  it('diffusers to_k alone touches rows [H, 2H) of the fused qkv; scale 1 without alpha', () => {
    const c = new Case('to_k only', 'diffusers-peft', 11);
    c.pair('transformer.transformer_blocks.1.attn.to_k', PEFT, 4, H, H, { key: Q(1), rowStart: H }, 1);
    const parsed = parseLora(c.src, TARGET);
    checkCase(c, parsed);
    assert.equal(parsed.deltas.length, 1);
    const d = parsed.deltas[0]!;
    assert.equal(d.kind, 'lowrank');
    assert.equal(d.module, Q(1));
    assert.deepEqual([d.rowStart, d.rowEnd, d.cols, d.scale], [H, 2 * H, H, 1]);
    const w = applied(parsed, Q(1));
    for (let i = 0; i < 3 * H; i++) {
      const rowTouched = w.subarray(i * H, (i + 1) * H).some((v) => v !== 0);
      assert.equal(rowTouched, i >= H && i < 2 * H, `row ${i}`);
    }
    assert.equal(parsed.rank, 4);
    assert.equal(parsed.alpha, undefined);
  });

  it('single-block to_q/to_k/to_v/proj_mlp map to linear1 rows [0,H), [H,2H), [2H,3H), [3H,3H+mlp)', () => {
    const parsed = parseLora(diffusersCase().src, TARGET);
    const ranges = parsed.deltas
      .filter((d) => d.module === L1(0))
      .map((d) => [d.rowStart, d.rowEnd])
      .sort((a, b) => a[0]! - b[0]!);
    assert.deepEqual(ranges, [
      [0, H],
      [H, 2 * H],
      [2 * H, 3 * H],
      [3 * H, 3 * H + MLP],
    ]);
  });

  it('XLabs single qkv_lora touches linear1 rows [0, 3H) only; proj_lora2 is txt_attn.proj', () => {
    const parsed = parseLora(xlabsCase().src, TARGET);
    const d = findDelta(parsed, L1(0));
    assert.deepEqual([d.rowStart, d.rowEnd, d.scale], [0, 3 * H, 1]);
    const w = applied(parsed, L1(0));
    assert.ok(w.subarray(3 * H * H).every((v) => v === 0));
    assert.equal(findDelta(parsed, 'double_blocks.1.txt_attn.proj.weight').source, 'double_blocks.1.processor.proj_lora2');
  });

  it('kohya fused qkv is one full-width delta with scale alpha / rank', () => {
    const parsed = parseLora(kohyaCase().src, TARGET);
    const d = findDelta(parsed, Q(0));
    assert.equal(d.kind, 'lowrank');
    assert.deepEqual([d.rowStart, d.rowEnd, d.scale], [0, 3 * H, 2 / 4]);
    if (d.kind === 'lowrank') assert.equal(d.alpha, 2);
    const split = findDelta(parsed, TQ(1));
    assert.equal(split.kind === 'lowrank' && split.rank, 6);
    assert.equal(split.scale, 2 / 6);
    assert.deepEqual(parsed.ranks, [2, 4, 6, 8]);
  });

  it('final layer: diffusers norm_out.linear swaps the halves of lora_B (and its bias) only, lora_A unchanged', () => {
    const c = new Case('final layer', 'bfl-control', 12);
    const { A, B } = c.pair('transformer.norm_out.linear', PEFT, 4, H, 2 * H, { key: 'final_layer.adaLN_modulation.1.weight', swap: true }, 1);
    const bias = c.rand('transformer.norm_out.linear.lora_B.bias', [2 * H]);
    c.expect('final_layer.adaLN_modulation.1.bias', 0, swapHalves(Float64Array.from(bias), 2 * H, 1), 1);
    const parsed = parseLora(c.src, TARGET);
    checkCase(c, parsed);
    const d = findDelta(parsed, 'final_layer.adaLN_modulation.1.weight');
    assert.ok(d.kind === 'lowrank');
    assert.deepEqual([...d.down], [...A]);
    // BFL rows [0, H) = shift = diffusers rows [H, 2H)
    assert.deepEqual([...d.up.subarray(0, H * 4)], [...B.subarray(H * 4)]);
    assert.deepEqual([...d.up.subarray(H * 4)], [...B.subarray(0, H * 4)]);
    const b = findDelta(parsed, 'final_layer.adaLN_modulation.1.bias');
    assert.ok(b.kind === 'full');
    assert.deepEqual([...b.delta.subarray(0, H)], [...bias.subarray(H)]);
  });

  it('LoKr deltas stay factored; denseDelta forms kron(W1, W2)', () => {
    const parsed = parseLora(lokrCase().src, TARGET);
    const d = findDelta(parsed, Q(0));
    assert.equal(d.kind, 'lokr');
    if (d.kind === 'lokr') {
      assert.deepEqual(d.w1Shape, [4, 2]);
      assert.deepEqual(d.w2Shape, [48, 32]);
      assert.equal(d.rank, 2);
      assert.equal(d.scale, 0.5);
      assert.equal(denseDelta(d).length, 3 * H * H);
    }
    const v = findDelta(parsed, Q(1), 2 * H);
    assert.deepEqual([v.kind, v.rowEnd, v.scale], ['lokr', 3 * H, 1]);
    assert.ok(parsed.warnings.some((w) => /two full factors/.test(w)));
  });

  it('BFL control LoRA: bias deltas on .bias keys and QK-norm scale overrides', () => {
    const c = controlCase();
    const parsed = parseLora(c.src, TARGET);
    const b = findDelta(parsed, 'double_blocks.0.img_attn.qkv.bias');
    assert.deepEqual([b.kind, b.cols, b.rowEnd], ['full', 1, 3 * H]);
    assert.deepEqual(parsed.overrides.map((o) => o.key).sort(), ['double_blocks.0.img_attn.norm.query_norm.scale', 'single_blocks.1.norm.key_norm.scale']);
    const o = parsed.overrides.find((x) => x.key === 'single_blocks.1.norm.key_norm.scale')!;
    assert.deepEqual([...o.value], [...rawToF32('f32', c.src.read('single_blocks.1.norm.key_norm.scale'))]);
  });

  it('ComfyUI kohya spelling equals the lora_unet_ spelling', () => {
    const a = new Case('a', 'kohya', 13);
    const A = a.rand('lora_unet_double_blocks_1_img_attn_qkv.lora_down.weight', [4, H]);
    const B = a.rand('lora_unet_double_blocks_1_img_attn_qkv.lora_up.weight', [3 * H, 4]);
    a.alpha('lora_unet_double_blocks_1_img_attn_qkv.alpha', 8);
    const b = new MapSource('comfy');
    b.set('diffusion_model.double_blocks.1.img_attn.qkv.lora_down.weight', 'f32', [4, H], A);
    b.set('diffusion_model.double_blocks.1.img_attn.qkv.lora_up.weight', 'f32', [3 * H, 4], B);
    b.set('diffusion_model.double_blocks.1.img_attn.qkv.alpha', 'f32', [], new Float32Array([8]));
    const pa = parseLora(a.src, TARGET);
    const pb = parseLora(b, TARGET);
    assert.equal(pb.format, 'kohya');
    assert.deepEqual([...applied(pa, Q(1))], [...applied(pb, Q(1))]);
  });

  it('PEFT adapter metadata (lora_adapter_metadata) gives alpha and alpha_pattern', () => {
    const c = new Case('metadata', 'diffusers-peft', 14);
    c.pair('transformer.transformer_blocks.0.attn.to_q', PEFT, 4, H, H, { key: Q(0) }, 2 / 4);
    c.pair('transformer.transformer_blocks.0.attn.to_k', PEFT, 4, H, H, { key: Q(0), rowStart: H }, 8 / 4);
    const metadata = { lora_adapter_metadata: JSON.stringify({ r: 4, lora_alpha: 2, alpha_pattern: { 'transformer_blocks.0.attn.to_k': 8 } }) };
    checkCase(c, parseLora(c.src, TARGET, { metadata }));
    // the same through a real file's __metadata__
    const file = tmpFile('meta.safetensors');
    writeSafetensors(file, c.src, metadata);
    const f = SafetensorsFile.open(file);
    try {
      checkCase(c, parseLora(f, TARGET));
    } finally {
      f.close();
    }
  });
});

describe('parseLora: dropped keys and warnings', () => {
  it('kohya lora_te1_ keys are dropped with a warning', () => {
    const parsed = parseLora(kohyaCase().src, TARGET);
    const te = parsed.dropped.filter((d) => d.key.startsWith('lora_te1_'));
    assert.equal(te.length, 3);
    assert.ok(te.every((d) => /text-encoder/.test(d.reason)));
    assert.ok(parsed.warnings.some((w) => /text-encoder/.test(w) && /3/.test(w)));
  });

  it('diffusers text_encoder.* and T5 lora_te3_ keys, and dora_scale, are dropped with warnings', () => {
    const c = diffusersAlphaCase();
    c.rand('text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight', [4, 16]);
    c.rand('text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight', [16, 4]);
    c.rand('lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight', [4, 16]);
    c.rand('transformer.base_model.model.transformer_blocks.1.attn.to_q.dora_scale', [1, H]);
    const parsed = parseLora(c.src, TARGET);
    checkCase(c, parsed);
    assert.deepEqual(parsed.dropped.map((d) => d.key).sort(), [
      'lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight',
      'text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight',
      'text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight',
      'transformer.base_model.model.transformer_blocks.1.attn.to_q.dora_scale',
    ]);
    assert.ok(parsed.warnings.some((w) => /DoRA/.test(w)));
    assert.ok(parsed.warnings.some((w) => /text-encoder/.test(w)));
  });

  it('a text-encoder-only LoRA parses to no deltas and says so', () => {
    const s = new MapSource('te only');
    s.set('lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight', 'f32', [2, 4], new Float32Array(8));
    s.set('lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight', 'f32', [4, 2], new Float32Array(8));
    const parsed = parseLora(s, TARGET);
    assert.equal(parsed.deltas.length, 0);
    assert.ok(parsed.warnings.some((w) => /changes nothing/.test(w)));
  });
});

describe('parseLora: errors', () => {
  it('keys that map nowhere -> LoraFormatError listing every one of them', () => {
    const c = diffusersCase();
    c.rand('transformer.transformer_blocks.0.attn.to_zz.lora_A.weight', [4, H]);
    c.rand('transformer.transformer_blocks.0.attn.to_zz.lora_B.weight', [H, 4]);
    c.rand('transformer.transformer_blocks.5.attn.to_q.lora_A.weight', [4, H]); // beyond depth 2
    c.rand('transformer.transformer_blocks.5.attn.to_q.lora_B.weight', [H, 4]);
    c.rand('transformer.single_transformer_blocks.0.attn.to_out.0.lora_A.weight', [4, H]); // pre_only: no to_out
    c.rand('some_random_thing', [3]);
    throwsLora(
      () => parseLora(c.src, TARGET),
      'unmapped',
      (e) => {
        assert.deepEqual([...e.keys].sort(), [
          'some_random_thing',
          'transformer.single_transformer_blocks.0.attn.to_out.0.lora_A.weight',
          'transformer.transformer_blocks.0.attn.to_zz.lora_A.weight',
          'transformer.transformer_blocks.0.attn.to_zz.lora_B.weight',
          'transformer.transformer_blocks.5.attn.to_q.lora_A.weight',
          'transformer.transformer_blocks.5.attn.to_q.lora_B.weight',
        ]);
        assert.match(e.message, /to_zz/);
        assert.match(e.message, /2 double \/ 2 single blocks/);
      },
    );
  });

  it('an SDXL kohya LoRA -> not a FLUX LoRA', () => {
    const s = new MapSource('sdxl');
    const z = (n: number) => new Float32Array(n);
    s.set('lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight', 'f32', [4, 64], z(256));
    s.set('lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight', 'f32', [64, 4], z(256));
    s.set('lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.alpha', 'f32', [], z(1));
    s.set('lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight', 'f32', [4, 64], z(256));
    for (const fn of [() => parseLora(s, TARGET), () => detectLoraFormat(s.keys())]) {
      throwsLora(fn, 'not-flux', (e) => assert.match(e.message, /not a FLUX LoRA/));
    }
  });

  it('a diffusers SD UNet LoRA and an unrelated model LoRA -> not a FLUX LoRA', () => {
    const s = new MapSource('sd15');
    s.set('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight', 'f32', [4, 8], new Float32Array(32));
    s.set('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight', 'f32', [8, 4], new Float32Array(32));
    throwsLora(
      () => parseLora(s, TARGET),
      'not-flux',
      (e) => assert.match(e.message, /not a FLUX LoRA/),
    );
    const w = new MapSource('video model');
    w.set('diffusion_model.blocks.0.self_attn.q.lora_A.weight', 'f32', [4, 8], new Float32Array(32));
    w.set('diffusion_model.blocks.0.self_attn.q.lora_B.weight', 'f32', [8, 4], new Float32Array(32));
    throwsLora(
      () => parseLora(w, TARGET),
      'not-flux',
      (e) => assert.match(e.message, /not a FLUX LoRA/),
    );
  });

  it('a full checkpoint -> not a LoRA', () => {
    const s = new MapSource('checkpoint');
    for (const k of ['double_blocks.0.img_attn.qkv.weight', 'double_blocks.0.img_attn.qkv.bias', 'img_in.weight']) {
      const shape = shapeOf(k);
      s.set(k, 'f32', shape, new Float32Array(numel(shape)));
    }
    throwsLora(
      () => parseLora(s, TARGET),
      'not-lora',
      (e) => assert.match(e.message, /full model checkpoint/),
    );
    throwsLora(() => parseLora(new MapSource('empty'), TARGET), 'not-lora');
  });

  it('mismatched rank between A and B -> error naming the key', () => {
    const s = new MapSource('bad rank');
    s.set('transformer.transformer_blocks.0.attn.to_q.lora_A.weight', 'f32', [4, H], new Float32Array(4 * H));
    s.set('transformer.transformer_blocks.0.attn.to_q.lora_B.weight', 'f32', [H, 3], new Float32Array(3 * H));
    throwsLora(
      () => parseLora(s, TARGET),
      'shape',
      (e) => {
        assert.match(e.message, /transformer\.transformer_blocks\.0\.attn\.to_q\.lora_B\.weight/);
        assert.match(e.message, /rank 3/);
        assert.deepEqual(e.keys, ['transformer.transformer_blocks.0.attn.to_q.lora_B.weight']);
      },
    );
  });

  it('in/out features that do not match the base module -> error naming the key', () => {
    const s = new MapSource('bad in');
    s.set('lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight', 'f32', [4, 32], new Float32Array(128));
    s.set('lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight', 'f32', [3 * H, 4], new Float32Array(3 * H * 4));
    throwsLora(
      () => parseLora(s, TARGET),
      'shape',
      (e) => assert.match(e.message, /lora_unet_double_blocks_0_img_attn_qkv\.lora_down\.weight.*32 input features.*64/),
    );
    const t = new MapSource('bad out');
    t.set('transformer.transformer_blocks.0.attn.to_k.lora_A.weight', 'f32', [4, H], new Float32Array(4 * H));
    t.set('transformer.transformer_blocks.0.attn.to_k.lora_B.weight', 'f32', [3 * H, 4], new Float32Array(3 * H * 4));
    throwsLora(
      () => parseLora(t, TARGET),
      'shape',
      (e) => assert.match(e.message, /to_k\.lora_B\.weight.*192 output rows.*rows \[64, 128\).*64/),
    );
    const k = new MapSource('bad kron');
    k.set('lycoris_transformer_blocks_0_attn_to_q.lokr_w1', 'f32', [2, 2], new Float32Array(4));
    k.set('lycoris_transformer_blocks_0_attn_to_q.lokr_w2', 'f32', [32, 16], new Float32Array(512));
    throwsLora(
      () => parseLora(k, TARGET),
      'shape',
      (e) => assert.match(e.message, /lokr_w1.*input features/),
    );
  });

  it('lora_A without lora_B -> incomplete; two LoRAs on the same rows -> duplicate', () => {
    const s = new MapSource('half');
    s.set('transformer.transformer_blocks.0.attn.to_q.lora_A.weight', 'f32', [4, H], new Float32Array(4 * H));
    throwsLora(
      () => parseLora(s, TARGET),
      'incomplete',
      (e) => assert.match(e.message, /to_q\.lora_A\.weight/),
    );
    const d = new Case('dup', 'kohya', 15);
    d.pair('lora_unet_double_blocks_0_img_attn_qkv', KOHYA, 4, H, 3 * H, { key: Q(0) }, 1);
    d.pair('transformer.transformer_blocks.0.attn.to_k', KOHYA, 4, H, H, { key: Q(0), rowStart: H }, 1);
    throwsLora(() => parseLora(d.src, TARGET), 'duplicate');
  });

  it('Tucker LoKr and lora_A bias are rejected as unsupported', () => {
    const s = new MapSource('tucker');
    s.set('lycoris_transformer_blocks_0_attn_to_q.lokr_w1', 'f32', [2, 2], new Float32Array(4));
    s.set('lycoris_transformer_blocks_0_attn_to_q.lokr_w2_a', 'f32', [2, 32], new Float32Array(64));
    s.set('lycoris_transformer_blocks_0_attn_to_q.lokr_w2_b', 'f32', [2, 32], new Float32Array(64));
    s.set('lycoris_transformer_blocks_0_attn_to_q.lokr_t2', 'f32', [2, 2, 3, 3], new Float32Array(36));
    throwsLora(
      () => parseLora(s, TARGET),
      'unsupported',
      (e) => assert.match(e.message, /lokr_t2/),
    );
  });
});

describe('applyDeltaTo', () => {
  it('adds userScale * scale * up@down into the right rows of a non-zero weight', () => {
    const c = new Case('apply', 'diffusers-peft', 16);
    c.pair('transformer.single_transformer_blocks.1.attn.to_v', PEFT, 4, H, H, { key: L1(1), rowStart: 2 * H }, 1);
    c.alpha('transformer.single_transformer_blocks.1.attn.to_v.alpha', 2);
    const parsed = parseLora(c.src, TARGET);
    const d = findDelta(parsed, L1(1), 2 * H);
    assert.equal(d.scale, 0.5);
    const shape = shapeOf(L1(1)) as [number, number];
    const base = new Rng(99).array(numel(shape));
    const w = base.slice();
    applyDeltaTo(w, shape, d, 0.7);
    const delta = c.expected.get(L1(1))!; // holds 1 · B·A (the case was built with scale 1)
    for (let i = 0; i < w.length; i++) {
      const want = base[i]! + 0.7 * 0.5 * delta[i]!;
      assert.ok(Math.abs(w[i]! - want) <= 1e-6 * Math.max(1, Math.abs(want)), `element ${i}`);
    }
    assert.throws(() => applyDeltaTo(new Float32Array(H * H), [H, H], d, 1), /does not fit/);
  });
});

describe('describeLora', () => {
  it('reports format, rank, alpha, targeted modules and dropped keys', () => {
    const text = describeLora(parseLora(kohyaCase().src, TARGET));
    assert.match(text, /^format: kohya$/m);
    assert.match(text, /^rank: mixed \(2, 4, 6, 8\)$/m);
    assert.match(text, /double_blocks\.0\.img_attn\.qkv\.weight rows \[0, 192\) lowrank r=4 scale 0\.5 +<- lora_unet_double_blocks_0_img_attn_qkv/);
    assert.match(text, /^dropped: 3 key\(s\)$/m);
    assert.match(text, /lora_te1_text_model_encoder_layers_0_self_attn_q_proj\.alpha: CLIP text-encoder/);
    const d = describeLora(parseLora(diffusersCase().src, TARGET));
    assert.match(d, /^rank: 4$/m);
    assert.match(d, /^alpha: none in file/m);
  });
});

// ---------------------------------------------------------------------------------------------
// File level: every format through a real .safetensors file

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fluxserve-lora-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
let fileNo = 0;
function tmpFile(name: string): string {
  return path.join(tmp, `${fileNo++}-${name}`);
}

describe('safetensors files', () => {
  for (const make of ALL_CASES) {
    const c = make();
    it(`${c.name}: written with writeSafetensors, read back with SafetensorsFile.open`, () => {
      const file = tmpFile(`${c.format}.safetensors`);
      writeSafetensors(file, c.src);
      const f = SafetensorsFile.open(file);
      try {
        const fromFile = parseLora(f, TARGET);
        checkCase(c, fromFile);
        const fromMemory = parseLora(c.src, TARGET);
        assert.deepEqual(
          fromFile.deltas.map((d) => [d.module, d.rowStart, d.rowEnd, d.kind, d.scale]).sort(),
          fromMemory.deltas.map((d) => [d.module, d.rowStart, d.rowEnd, d.kind, d.scale]).sort(),
        );
        assert.deepEqual(fromFile.dropped, fromMemory.dropped);
      } finally {
        f.close();
      }
    });
  }
});
