// Acceptance: `fluxserve lora merge` and `fluxserve lora inspect`, run as a user runs them (the
// compiled bin in a child process) on the BFL tiny fixture transformer (hidden 64, 2 heads, MLP 256,
// 2 double + 2 single blocks).
//
// One synthetic LoRA file per format, with real key names for that config. The weight change each
// file must make is computed HERE in float64 from the definitions (flux-spec §6: ΔW = alpha/r · B·A
// placed at the fused rows; diffusers norm_out.linear = BFL final_layer.adaLN_modulation.1 with
// its row halves swapped; LoKr = kron(W1, W2) · alpha/r; LoHa = (W1a·W1b) ⊙ (W2a·W2b) · alpha/r),
// independently of src/lora. Merged f32 weights must equal W + scale · ΔW within 1e-6 relative
// (to |W| + |scale · ΔW| per element: f32 rounding of the delta and of the sum); every untouched
// tensor must be bit-identical to the base.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { bflToDiffusersTransformer } from '../../src/io/names.js';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { MapSource } from '../../src/io/source.js';
import { parseLoraSpec } from '../../src/lora/merge.js';
import { type DType, type RawArray, f32ToRaw, rawToF32 } from '../../src/tensor/dtype.js';
import { kronRef, mm } from './ref.js';

const BIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/bfl-tiny-a', import.meta.url));
const BASE = join(FIXTURE, 'weights-flux.safetensors');

const H = 64;
const MLP = 256;
const Q = (i: number) => `double_blocks.${i}.img_attn.qkv.weight`;
const TQ = (i: number) => `double_blocks.${i}.txt_attn.qkv.weight`;
const L1 = (j: number) => `single_blocks.${j}.linear1.weight`;

function run(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 240_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

// ---------------------------------------------------------------------------------------------
// Test-side math (float64), from the definitions

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
}

function swapHalves(m: Float64Array, rows: number, cols: number): Float64Array {
  const o = new Float64Array(m.length);
  const half = (rows / 2) * cols;
  o.set(m.subarray(half), 0);
  o.set(m.subarray(0, half), half);
  return o;
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** The base checkpoint, read once: key -> shape, f32 values and raw bytes. */
interface BaseTensor {
  shape: number[];
  dtype: DType;
  raw: RawArray;
  values: Float32Array;
}
function readAll(file: string): Map<string, BaseTensor> {
  const f = SafetensorsFile.open(file);
  try {
    const m = new Map<string, BaseTensor>();
    for (const k of f.keys()) {
      const info = f.info(k)!;
      const raw = f.read(k);
      m.set(k, { shape: [...info.shape], dtype: info.dtype, raw, values: rawToF32(info.dtype, raw) });
    }
    return m;
  } finally {
    f.close();
  }
}

const BASE_T = readAll(BASE);

function baseShape(key: string): number[] {
  const t = BASE_T.get(key);
  assert.ok(t, `test bug: ${key} is not in the fixture`);
  return t.shape;
}

/** A synthetic LoRA file and the ΔW (file scale included, user scale not) it must make. */
class LoraCase {
  readonly src: MapSource;
  readonly expected = new Map<string, Float64Array>();
  private readonly rng: Rng;

  constructor(
    readonly name: string,
    readonly format: string,
    seed: number,
  ) {
    this.src = new MapSource(name);
    this.rng = new Rng(seed);
  }

  rand(key: string, shape: number[], amp = 0.25): Float32Array {
    const v = new Float32Array(numel(shape));
    for (let i = 0; i < v.length; i++) v[i] = amp * this.rng.next();
    this.src.set(key, 'f32', shape, v);
    return v;
  }

  alpha(key: string, v: number): void {
    this.src.set(key, 'f32', [], new Float32Array([v]));
  }

  expect(key: string, rowStart: number, dense: Float64Array, scale: number): void {
    const shape = baseShape(key);
    const cols = shape.length === 2 ? shape[1]! : 1;
    let e = this.expected.get(key);
    if (!e) this.expected.set(key, (e = new Float64Array(numel(shape))));
    assert.ok(rowStart * cols + dense.length <= e.length, `test bug: ${key} rows overflow`);
    for (let i = 0; i < dense.length; i++) e[rowStart * cols + i]! += scale * dense[i]!;
  }

  /** A low-rank pair: A [r, in] at `stem+a`, B [out, r] at `stem+b`; ΔW = scale · B·A at rows rowStart.. of `key`. */
  pair(stem: string, [a, b]: [string, string], r: number, inF: number, out: number, key: string, rowStart: number, scale: number, swap = false): void {
    const A = this.rand(`${stem}${a}`, [r, inF]);
    const B = this.rand(`${stem}${b}`, [out, r]);
    let d = mm(B, A, out, r, inF);
    if (swap) d = swapHalves(d, out, inF);
    this.expect(key, rowStart, d, scale);
  }

  write(dir: string): string {
    const file = join(dir, `${this.name}.safetensors`);
    writeSafetensors(file, this.src);
    return file;
  }
}

const PEFT: [string, string] = ['.lora_A.weight', '.lora_B.weight'];
const KOHYA: [string, string] = ['.lora_down.weight', '.lora_up.weight'];
const XL: [string, string] = ['.down.weight', '.up.weight'];

/** ai-toolkit / Replicate diffusers PEFT: transformer. prefix, no alpha (scale 1). */
function diffusersLora(): LoraCase {
  const c = new LoraCase('diffusers', 'diffusers-peft', 11);
  const t = 'transformer.';
  c.pair(`${t}transformer_blocks.0.attn.to_q`, PEFT, 4, H, H, Q(0), 0, 1);
  c.pair(`${t}transformer_blocks.0.attn.to_k`, PEFT, 4, H, H, Q(0), H, 1);
  c.pair(`${t}transformer_blocks.0.attn.to_v`, PEFT, 4, H, H, Q(0), 2 * H, 1);
  c.pair(`${t}transformer_blocks.1.attn.to_add_out`, PEFT, 4, H, H, 'double_blocks.1.txt_attn.proj.weight', 0, 1);
  c.pair(`${t}single_transformer_blocks.1.proj_mlp`, PEFT, 4, H, MLP, L1(1), 3 * H, 1);
  c.pair(`${t}single_transformer_blocks.0.attn.to_k`, PEFT, 4, H, H, L1(0), H, 1);
  c.pair(`${t}norm_out.linear`, PEFT, 4, H, 2 * H, 'final_layer.adaLN_modulation.1.weight', 0, 1, true);
  c.pair(`${t}proj_out`, PEFT, 4, H, 64, 'final_layer.linear.weight', 0, 1);
  c.pair(`${t}x_embedder`, PEFT, 4, 64, H, 'img_in.weight', 0, 1);
  return c;
}

/** kohya sd-scripts: lora_unet_<BFL path>, lora_down/lora_up, .alpha -> scale alpha / r. */
function kohyaLora(): LoraCase {
  const c = new LoraCase('kohya', 'kohya', 12);
  const u = 'lora_unet_';
  const mod = (name: string, r: number, inF: number, out: number, key: string, alpha?: number) => {
    c.pair(`${u}${name}`, KOHYA, r, inF, out, key, 0, alpha === undefined ? 1 : alpha / r);
    if (alpha !== undefined) c.alpha(`${u}${name}.alpha`, alpha);
  };
  mod('double_blocks_0_img_attn_qkv', 4, H, 3 * H, Q(0), 2);
  mod('double_blocks_1_txt_mlp_0', 4, H, MLP, 'double_blocks.1.txt_mlp.0.weight', 8);
  mod('single_blocks_1_linear2', 4, H + MLP, H, 'single_blocks.1.linear2.weight', 1);
  mod('single_blocks_0_modulation_lin', 4, H, 3 * H, 'single_blocks.0.modulation.lin.weight'); // no alpha: 1
  mod('time_in_in_layer', 4, 256, H, 'time_in.in_layer.weight', 4);
  return c;
}

/** BFL module names with lora_A/lora_B (ComfyUI / fal exports). */
function bflPeftLora(): LoraCase {
  const c = new LoraCase('bfl-peft', 'bfl-peft', 13);
  c.pair('diffusion_model.double_blocks.1.img_attn.proj', PEFT, 4, H, H, 'double_blocks.1.img_attn.proj.weight', 0, 1);
  c.pair('diffusion_model.single_blocks.0.linear1', PEFT, 8, H, 3 * H + MLP, L1(0), 0, 2 / 8);
  c.alpha('diffusion_model.single_blocks.0.linear1.alpha', 2);
  c.pair('diffusion_model.final_layer.adaLN_modulation.1', PEFT, 4, H, 2 * H, 'final_layer.adaLN_modulation.1.weight', 0, 1); // BFL name: no swap
  return c;
}

/** XLabs x-flux processor LoRAs: qkv_lora1/2 -> img/txt qkv, single qkv_lora -> linear1 rows [0, 3H). */
function xlabsLora(): LoraCase {
  const c = new LoraCase('xlabs', 'xlabs', 14);
  c.pair('double_blocks.0.processor.qkv_lora1', XL, 4, H, 3 * H, Q(0), 0, 1);
  c.pair('double_blocks.1.processor.qkv_lora2', XL, 4, H, 3 * H, TQ(1), 0, 1);
  c.pair('double_blocks.1.processor.proj_lora1', XL, 4, H, H, 'double_blocks.1.img_attn.proj.weight', 0, 1);
  c.pair('single_blocks.1.processor.qkv_lora', XL, 4, H, 3 * H, L1(1), 0, 1);
  c.pair('single_blocks.0.processor.proj_lora', XL, 4, H + MLP, H, 'single_blocks.0.linear2.weight', 0, 1);
  return c;
}

/** LyCORIS LoKr: ΔW = kron(W1, W2) · alpha / r (r of the decomposed factor; scale 1 with two full factors). */
function lokrLora(): LoraCase {
  const c = new LoraCase('lokr', 'lokr', 15);
  {
    // diffusers to_v -> qkv rows [2H, 3H): both factors full, alpha ignored -> 1
    const s = 'lycoris_transformer_blocks_1_attn_to_v';
    const w1 = c.rand(`${s}.lokr_w1`, [2, 4]);
    const w2 = c.rand(`${s}.lokr_w2`, [32, 16]);
    c.alpha(`${s}.alpha`, 3);
    c.expect(Q(1), 2 * H, kronRef(w1, 2, 4, w2, 32, 16), 1);
  }
  {
    // img_mlp.2 [H, MLP]: W1 [4, 4] full, W2 = w2_a [16, 2] · w2_b [2, 64]; alpha 1, r 2 -> 1/2
    const s = 'lora_unet_double_blocks_0_img_mlp_2';
    const w1 = c.rand(`${s}.lokr_w1`, [4, 4]);
    const w2a = c.rand(`${s}.lokr_w2_a`, [16, 2]);
    const w2b = c.rand(`${s}.lokr_w2_b`, [2, 64]);
    c.alpha(`${s}.alpha`, 1);
    c.expect('double_blocks.0.img_mlp.2.weight', 0, kronRef(w1, 4, 4, mm(w2a, w2b, 16, 2, 64), 16, 64), 1 / 2);
  }
  return c;
}

/** LyCORIS LoHa: ΔW = (w1a·w1b) ⊙ (w2a·w2b) · alpha / r, r = hada_w1_b.shape[0]. */
function lohaLora(): LoraCase {
  const c = new LoraCase('loha', 'loha', 16);
  const loha = (s: string, r: number, out: number, inF: number, key: string, rowStart: number, alpha?: number) => {
    const w1a = c.rand(`${s}.hada_w1_a`, [out, r]);
    const w1b = c.rand(`${s}.hada_w1_b`, [r, inF]);
    const w2a = c.rand(`${s}.hada_w2_a`, [out, r]);
    const w2b = c.rand(`${s}.hada_w2_b`, [r, inF]);
    if (alpha !== undefined) c.alpha(`${s}.alpha`, alpha);
    const p = mm(w1a, w1b, out, r, inF);
    const q = mm(w2a, w2b, out, r, inF);
    c.expect(
      key,
      rowStart,
      p.map((v, i) => v * q[i]!),
      alpha === undefined ? 1 : alpha / r,
    );
  };
  loha('lora_unet_single_blocks_0_linear2', 4, H, H + MLP, 'single_blocks.0.linear2.weight', 0, 2);
  loha('lycoris_transformer_blocks_1_attn_add_q_proj', 2, H, H, TQ(1), 0);
  return c;
}

const CASES: Array<() => LoraCase> = [diffusersLora, kohyaLora, bflPeftLora, xlabsLora, lokrLora, lohaLora];

/**
 * Checks a merged checkpoint against base + Σ userScale · ΔW: same keys, shapes and dtypes; touched
 * tensors within `relTol` of the float64 expectation; untouched tensors bit-identical.
 */
function checkMerged(outFile: string, parts: Array<[LoraCase, number]>, relTol = 1e-6, base = BASE_T): void {
  const got = readAll(outFile);
  assert.deepEqual([...got.keys()].sort(), [...base.keys()].sort(), 'merged checkpoint has the base keys');
  let touched = 0;
  for (const [key, b] of base) {
    const g = got.get(key)!;
    assert.deepEqual(g.shape, b.shape, `${key}: shape`);
    assert.equal(g.dtype, b.dtype, `${key}: dtype`);
    const deltas = parts.filter(([c]) => c.expected.has(key));
    if (deltas.length === 0) {
      assert.deepEqual(
        Buffer.from(g.raw.buffer, g.raw.byteOffset, g.raw.byteLength),
        Buffer.from(b.raw.buffer, b.raw.byteOffset, b.raw.byteLength),
        `${key}: untouched tensor must be bit-identical`,
      );
      continue;
    }
    touched++;
    let worst = 0;
    let changed = 0;
    for (let i = 0; i < b.values.length; i++) {
      let want = b.values[i]!;
      let mag = Math.abs(want);
      for (const [c, s] of deltas) {
        const d = s * c.expected.get(key)![i]!;
        want += d;
        mag += Math.abs(d);
      }
      const err = Math.abs(g.values[i]! - want);
      if (err > relTol * mag + 1e-30) assert.fail(`${key}[${i}]: merged ${g.values[i]}, expected ${want} (|err| ${err} > ${relTol} · ${mag})`);
      worst = Math.max(worst, err / (mag || 1));
      if (g.values[i] !== b.values[i]) changed++;
    }
    assert.ok(changed > 0, `${key}: the LoRA changed nothing`);
  }
  const want = new Set(parts.flatMap(([c]) => [...c.expected.keys()]));
  assert.equal(touched, want.size, 'every parameter the LoRAs address is in the checkpoint');
}

describe('fluxserve lora merge (acceptance, tiny fixture)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fluxserve-lora-merge-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const make of CASES) {
    const c = make();
    it(`${c.name} (${c.format}) at scale 0.7: merged = W + 0.7·ΔW, the rest bit-identical`, () => {
      const lora = c.write(dir);
      const out = join(dir, `merged-${c.name}.safetensors`);
      const r = run(['lora', 'merge', '--base', BASE, '--lora', `${lora}:0.7`, '--out', out]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), out);
      assert.match(r.stderr, new RegExp(`${c.format}, scale 0.7`));
      checkMerged(out, [[c, 0.7]]);
    });
  }

  it('two LoRAs at once on overlapping parameters, each with its scale (default scale 1)', () => {
    const a = diffusersLora();
    const b = kohyaLora();
    const x = xlabsLora();
    const out = join(dir, 'merged-two.safetensors');
    const r = run(['lora', 'merge', '--base', BASE, '--lora', `${a.write(dir)}:0.7`, '--lora', `${b.write(dir)}:-0.4`, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    checkMerged(out, [
      [a, 0.7],
      [b, -0.4],
    ]);
    const out3 = join(dir, 'merged-three.safetensors');
    const r3 = run(['lora', 'merge', '-b', BASE, '-l', `${a.write(dir)}:1.5`, '-l', x.write(dir), '-l', `${b.write(dir)}:2e-1`, '-o', out3]);
    assert.equal(r3.code, 0, r3.stderr);
    checkMerged(out3, [
      [a, 1.5],
      [x, 1],
      [b, 0.2],
    ]);
  });

  it('a bf16 base stays bf16: W + s·ΔW rounded once to bf16, untouched tensors bit-identical', () => {
    const bf = new MapSource('bf16 base');
    for (const [k, t] of BASE_T) bf.set(k, 'bf16', t.shape, f32ToRaw('bf16', t.values));
    const baseFile = join(dir, 'base-bf16.safetensors');
    writeSafetensors(baseFile, bf);
    const base = readAll(baseFile);
    const c = kohyaLora();
    const out = join(dir, 'merged-bf16.safetensors');
    const r = run(['lora', 'merge', '--base', baseFile, '--lora', `${c.write(dir)}:0.7`, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    // one bf16 rounding of the f32 result: within 2^-8 relative (plus the f32 part)
    checkMerged(out, [[c, 0.7]], 2 ** -8, base);
  });

  it('a diffusers-layout model folder as the base gives the same BFL checkpoint, byte for byte', () => {
    const folder = join(dir, 'diffusers-model');
    mkdirSync(join(folder, 'transformer'), { recursive: true });
    const f = SafetensorsFile.open(BASE);
    try {
      writeSafetensors(join(folder, 'transformer', 'diffusion_pytorch_model.safetensors'), bflToDiffusersTransformer(f));
    } finally {
      f.close();
    }
    const c = diffusersLora();
    const lora = c.write(dir);
    const fromFolder = join(dir, 'merged-from-folder.safetensors');
    const fromFile = join(dir, 'merged-from-file.safetensors');
    for (const [b, o] of [
      [folder, fromFolder],
      [BASE, fromFile],
    ] as const) {
      const r = run(['lora', 'merge', '--base', b, '--lora', `${lora}:0.7`, '--out', o]);
      assert.equal(r.code, 0, r.stderr);
    }
    checkMerged(fromFolder, [[c, 0.7]]);
    const x = readAll(fromFolder);
    const y = readAll(fromFile);
    for (const [k, t] of y) assert.deepEqual(x.get(k)!.values, t.values, `${k}: folder and file bases merge alike`);
  });

  it('fails clearly: a LoRA for another size, missing flags', () => {
    const c = new LoraCase('wrong-size', 'kohya', 17);
    c.rand('lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight', [4, 3072]);
    c.rand('lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight', [9216, 4], 0);
    const lora = c.write(dir);
    const out = join(dir, 'never.safetensors');
    let r = run(['lora', 'merge', '--base', BASE, '--lora', lora, '--out', out]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /input features|output rows/);
    r = run(['lora', 'merge', '--base', BASE, '--lora', lora]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--out/);
    r = run(['lora', 'frobnicate']);
    assert.equal(r.code, 2);
  });
});

describe('fluxserve lora inspect', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fluxserve-lora-inspect-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('names the format, rank, alpha and the targeted modules (--base the fixture)', () => {
    for (const make of CASES) {
      const c = make();
      const r = run(['lora', 'inspect', c.write(dir), '--base', BASE]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^format: ${c.format}$`, 'm'));
      assert.match(r.stdout, /^rank: /m);
      for (const key of c.expected.keys()) assert.ok(r.stdout.includes(key), `${c.name}: inspect lists ${key}\n${r.stdout}`);
    }
    const k = kohyaLora();
    const r = run(['lora', 'inspect', k.write(dir), '--base', BASE]);
    assert.match(r.stdout, /^rank: 4$/m);
    assert.match(r.stdout, /^alpha: mixed/m);
  });

  it('checks against the FLUX.1-dev key list by default', () => {
    const c = new LoraCase('dev-sized', 'diffusers-peft', 18);
    c.rand('transformer.single_transformer_blocks.37.proj_mlp.lora_A.weight', [1, 3072]);
    c.rand('transformer.single_transformer_blocks.37.proj_mlp.lora_B.weight', [12288, 1], 0);
    c.rand('text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight', [1, 8]);
    c.rand('text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight', [8, 1]);
    const file = c.write(dir);
    const r = run(['lora', 'inspect', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^format: diffusers-peft$/m);
    assert.match(r.stdout, /^rank: 1$/m);
    assert.match(r.stdout, /single_blocks\.37\.linear1\.weight rows \[9216, 21504\)/);
    assert.match(r.stdout, /^dropped: 2 key\(s\)$/m);
    // ... and the tiny base rejects it, naming the problem
    const bad = run(['lora', 'inspect', file, '--base', BASE]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /address no module|single_transformer_blocks\.37/);
  });
  it('accepts a reference (here a data: URI), resolved through the LoRA sources and cache', () => {
    const c = CASES[0]!();
    const file = c.write(dir);
    const uri = `data:application/octet-stream;base64,${readFileSync(file).toString('base64')}`;
    const r = run(['lora', 'inspect', uri, '--base', BASE, '--lora-cache', join(dir, 'cache')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /resolved from data: URI/);
    assert.match(r.stdout, new RegExp(`^format: ${c.format}$`, 'm'));
    const bad = run(['lora', 'inspect', 'ftp://example.com/x.safetensors', '--lora-cache', join(dir, 'cache')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /cannot resolve "ftp:\/\/example\.com\/x\.safetensors": unsupported URL scheme/);
  });
});

describe('parseLoraSpec', () => {
  it('splits SRC:SCALE on the last colon only when a number follows', () => {
    assert.deepEqual(parseLoraSpec('a.safetensors'), { src: 'a.safetensors', scale: 1 });
    assert.deepEqual(parseLoraSpec('a.safetensors:0.7'), { src: 'a.safetensors', scale: 0.7 });
    assert.deepEqual(parseLoraSpec('a.safetensors:-1'), { src: 'a.safetensors', scale: -1 });
    assert.deepEqual(parseLoraSpec('a.safetensors:2e-1'), { src: 'a.safetensors', scale: 0.2 });
    assert.deepEqual(parseLoraSpec('a.safetensors:.5'), { src: 'a.safetensors', scale: 0.5 });
    assert.deepEqual(parseLoraSpec('C:\\loras\\a.safetensors'), { src: 'C:\\loras\\a.safetensors', scale: 1 });
    assert.deepEqual(parseLoraSpec('C:\\loras\\a.safetensors:1.25'), { src: 'C:\\loras\\a.safetensors', scale: 1.25 });
    assert.deepEqual(parseLoraSpec('https://example.com/x.safetensors'), { src: 'https://example.com/x.safetensors', scale: 1 });
    assert.deepEqual(parseLoraSpec('https://example.com:8080/x'), { src: 'https://example.com:8080/x', scale: 1 });
    assert.deepEqual(parseLoraSpec('owner/model:abc'), { src: 'owner/model:abc', scale: 1 });
  });
});
