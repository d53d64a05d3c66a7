// The reference check: runs our transformer, autoencoder, noise and sampling loop on a fixture
// computed by the BFL PyTorch code (test/fixtures/bfl-tiny-a: config.json, weights-flux /
// weights-ae .safetensors with BFL names, cases.safetensors) and reports, per tensor, the relative
// error ‖ours − ref‖ / ‖ref‖ against its tolerance. Every case present in the file is run;
// `tap.*` tensors are compared as the forward produces them, so the first bad block shows first.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TensorSource } from '../io/source.js';
import { openSafetensors } from '../io/safetensors.js';
import { AutoEncoder } from '../models/autoencoder.js';
import { autoEncoderParamsFromBflConfig, fluxParamsFromBflConfig } from '../models/flux/config.js';
import { Flux } from '../models/flux/model.js';
import { denoise } from '../sampling/denoise.js';
import { imageIds, pack, textIds, unpack } from '../sampling/latents.js';
import { randn } from '../sampling/noise.js';
import { getSchedule } from '../sampling/schedule.js';
import type { Backend } from '../tensor/backend.js';
import { f32ToBf16Bits, rawToF32 } from '../tensor/dtype.js';
import { fromArray, fromRaw } from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';

export interface CheckResult {
  name: string;
  /** ‖ours − ref‖ / ‖ref‖ (0 when both are zero). */
  relErr: number;
  /** The bound `ok` was judged by, on `metric`. */
  tol: number;
  /** relErr: relErr <= tol; maxAbsDiff: the largest |ours − ref| <= tol; bits: identical bit patterns. */
  metric: 'relErr' | 'maxAbsDiff' | 'bits';
  maxAbsDiff: number;
  ok: boolean;
  note?: string;
}

export interface ReferenceCheckOptions {
  backend: Backend;
  log?: ((line: string) => void) | undefined;
}

/** Tolerances in float32, as test/fixtures/bfl-tiny-a/README.md states them ("Expected agreement"). */
export const TOLERANCES = {
  forward: 1e-5, // one transformer call and its per-block taps
  sample: 1e-4, // the sampling loop's latents and the decoded pixels
  vae: 1e-4,
  schedule: 1e-6, // the σ table (BFL src/flux/sampling.py get_schedule, in fp32)
  uint8: 1, // pixels: equal or off by one (truncation at a boundary)
} as const;

interface Config {
  batch: number;
  height: number;
  width: number;
  txt_len: number;
  steps: number;
  shift: boolean;
  guidance: number;
  noise_seed: number;
}

function norms(ours: ArrayLike<number>, ref: ArrayLike<number>): { relErr: number; maxAbsDiff: number } {
  let num = 0;
  let den = 0;
  let maxAbs = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = ours[i]! - ref[i]!;
    num += d * d;
    den += ref[i]! * ref[i]!;
    const a = Math.abs(d);
    if (!(a <= maxAbs)) maxAbs = a; // NaN propagates
  }
  const relErr = den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den);
  return { relErr, maxAbsDiff: maxAbs };
}

class Checker {
  readonly results: CheckResult[] = [];

  constructor(private readonly log: (line: string) => void) {}

  private push(r: CheckResult): void {
    this.results.push(r);
    const err = r.metric === 'maxAbsDiff' ? `maxAbs ${r.maxAbsDiff}` : `relErr ${r.relErr.toExponential(3)}`;
    this.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name.padEnd(28)} ${err.padEnd(18)} tol ${r.tol}${r.note ? `  (${r.note})` : ''}`);
  }

  /** Relative-error comparison of float values. */
  rel(name: string, ours: ArrayLike<number>, ref: ArrayLike<number>, tol: number, note?: string): void {
    if (ours.length !== ref.length) {
      this.push({ name, relErr: Infinity, maxAbsDiff: Infinity, tol, metric: 'relErr', ok: false, note: `${ours.length} values, reference has ${ref.length}` });
      return;
    }
    const { relErr, maxAbsDiff } = norms(ours, ref);
    this.push({ name, relErr, maxAbsDiff, tol, metric: 'relErr', ok: relErr <= tol, ...(note ? { note } : {}) });
  }

  /** Largest absolute difference (integer pixels). */
  maxAbs(name: string, ours: ArrayLike<number>, ref: ArrayLike<number>, tol: number): void {
    const { relErr, maxAbsDiff } = ours.length === ref.length ? norms(ours, ref) : { relErr: Infinity, maxAbsDiff: Infinity };
    let differing = 0;
    for (let i = 0; i < ref.length; i++) if (ours[i] !== ref[i]) differing++;
    const note = `${differing} of ${ref.length} differ`;
    this.push({ name, relErr, maxAbsDiff, tol, metric: 'maxAbsDiff', ok: maxAbsDiff <= tol, note });
  }

  /** Bit-for-bit equality of raw patterns (values given for the relative error). */
  bits(name: string, oursBits: ArrayLike<number>, refBits: ArrayLike<number>, ours: ArrayLike<number>, ref: ArrayLike<number>, note?: string): void {
    let same = oursBits.length === refBits.length;
    let differing = 0;
    for (let i = 0; same && i < refBits.length; i++) if (oursBits[i] !== refBits[i]) differing++;
    if (differing > 0) same = false;
    const { relErr, maxAbsDiff } = ours.length === ref.length ? norms(ours, ref) : { relErr: Infinity, maxAbsDiff: Infinity };
    const why = differing > 0 ? `${differing} of ${refBits.length} elements differ` : undefined;
    const n = [note, why].filter(Boolean).join('; ');
    this.push({ name, relErr, maxAbsDiff, tol: 0, metric: 'bits', ok: same, ...(n ? { note: n } : {}) });
  }
}

/** Host access to the fixture's cases. */
class Cases {
  constructor(
    private readonly src: TensorSource,
    private readonly be: Backend,
  ) {}

  has(name: string): boolean {
    return this.src.info(name) !== undefined;
  }

  keys(): string[] {
    return this.src.keys();
  }

  shape(name: string): number[] {
    const info = this.src.info(name);
    if (!info) throw new Error(`reference fixture: cases.safetensors has no ${name}`);
    return [...info.shape];
  }

  raw(name: string) {
    return this.src.read(name);
  }

  f32(name: string): Float32Array {
    const info = this.src.info(name);
    if (!info) throw new Error(`reference fixture: cases.safetensors has no ${name}`);
    return rawToF32(info.dtype, this.src.read(name));
  }

  tensor(name: string): Tensor {
    const info = this.src.info(name);
    if (!info) throw new Error(`reference fixture: cases.safetensors has no ${name}`);
    return fromRaw(this.be, info.shape, info.dtype, this.src.read(name));
  }
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`reference fixture: cannot read ${file}: ${(e as Error).message}`);
  }
}

/** Runs every case of the fixture in `dir`; `ok` is true when every result is within tolerance. */
export async function referenceCheck(dir: string, opts: ReferenceCheckOptions): Promise<{ results: CheckResult[]; ok: boolean }> {
  const be = opts.backend;
  const log = opts.log ?? (() => {});
  const json = readJson(path.join(dir, 'config.json')) as Config & Record<string, unknown>;
  const fluxParams = fluxParamsFromBflConfig(json);
  const aeParams = autoEncoderParamsFromBflConfig(json);
  const check = new Checker(log);

  const sources: { close(): void }[] = [];
  const open = (name: string) => {
    const s = openSafetensors(path.join(dir, name));
    sources.push(s);
    return s;
  };
  let model: Flux | undefined;
  let ae: AutoEncoder | undefined;
  try {
    const cases = new Cases(open('cases.safetensors'), be);
    model = Flux.load(fluxParams, open('weights-flux.safetensors'), be);
    ae = AutoEncoder.load(aeParams, open('weights-ae.safetensors'), be);

    if (cases.has('forward.out')) checkForward(model, cases, check);
    checkNoise(json, cases, check);
    if (cases.has('sample.latents_packed')) await checkSample(json, model, ae, cases, check, be);
    if (cases.has('vae.encoded')) checkVae(ae, cases, check);
  } finally {
    model?.dispose();
    ae?.dispose();
    for (const s of sources) s.close();
  }
  return { results: check.results, ok: check.results.length > 0 && check.results.every((r) => r.ok) };
}

/** One transformer call, every `tap.*` tensor compared as it is produced. */
function checkForward(model: Flux, cases: Cases, check: Checker): void {
  const img = cases.tensor('forward.img'); // [B, Li, 64]
  const txt = cases.tensor('txt'); // [B, Lt, ctx]
  const y = cases.tensor('vec'); // [B, vec_in_dim]
  try {
    const guidance = cases.has('forward.guidance') ? cases.f32('forward.guidance') : undefined;
    const taps = (name: string, t: Tensor) => {
      const key = `tap.${name}`;
      if (cases.has(key)) check.rel(key, t.toFloat32(), cases.f32(key), TOLERANCES.forward);
    };
    const out = model.forward(img, cases.f32('forward.img_ids'), txt, cases.f32('forward.txt_ids'), cases.f32('forward.timesteps'), y, guidance, { taps });
    check.rel('forward.out', out.toFloat32(), cases.f32('forward.out'), TOLERANCES.forward);
    out.dispose();
  } finally {
    img.dispose();
    txt.dispose();
    y.dispose();
  }
}

/** BFL get_noise shape: (B, 16, 2·ceil(H/16), 2·ceil(W/16)) (src/flux/sampling.py get_noise). */
function noiseShape(cfg: Config): number[] {
  return [cfg.batch, 16, 2 * Math.ceil(cfg.height / 16), 2 * Math.ceil(cfg.width / 16)];
}

/** noise.seed{S}.f32|bf16: torch.randn with a CPU generator, compared bit for bit. */
function checkNoise(cfg: Config, cases: Cases, check: Checker): void {
  const want = noiseShape(cfg);
  for (const key of cases.keys()) {
    const m = /^noise\.seed(\d+)\.(f32|bf16)$/.exec(key);
    if (!m) continue;
    const seed = BigInt(m[1]!);
    const dtype = m[2] as 'f32' | 'bf16';
    const shape = cases.shape(key);
    const note = shape.join(',') === want.join(',') ? undefined : `fixture shape [${shape}] is not get_noise's [${want}]`;
    const ours = randn(shape, seed, dtype);
    const ref = cases.f32(key);
    if (dtype === 'f32') {
      const ob = new Uint32Array(ours.buffer, ours.byteOffset, ours.length);
      const rb = new Uint32Array(ref.buffer, ref.byteOffset, ref.length);
      check.bits(key, ob, rb, ours, ref, note);
    } else {
      const ob = Uint16Array.from(ours, (v) => f32ToBf16Bits(v));
      check.bits(key, ob, cases.raw(key), ours, ref, note ?? 'reference drawn by PyTorch 1.13');
    }
  }
}

/**
 * The whole float32 loop: noise (seed from config) -> pack -> schedule -> denoise with guidance
 * -> unpack -> decode -> uint8 = trunc(127.5·(clamp(x, −1, 1) + 1)) (BFL cli.py).
 */
async function checkSample(cfg: Config, model: Flux, ae: AutoEncoder, cases: Cases, check: Checker, be: Backend): Promise<void> {
  const [B, C, h, w] = noiseShape(cfg) as [number, number, number, number];
  const Li = (h / 2) * (w / 2);
  const noise = randn([B, C, h, w], cfg.noise_seed, 'f32'); // [B, 16, h, w]
  const schedule = getSchedule(cfg.steps, Li, { shift: cfg.shift });
  if (cases.has('sample.timesteps')) check.rel('sample.timesteps', schedule, cases.f32('sample.timesteps'), TOLERANCES.schedule);

  const txt = cases.tensor('txt'); // [B, Lt, ctx]
  const vec = cases.tensor('vec'); // [B, vec_in_dim]
  const Lt = txt.shape[1]!;
  const img = fromArray(be, [B, Li, 4 * C], pack(noise, B, C, h, w), 'f32'); // [B, Li, 64]
  let latents: Tensor | undefined;
  let decoded: Tensor | undefined;
  let z: Tensor | undefined;
  try {
    latents = await denoise(model, {
      img,
      img_ids: imageIds(h, w),
      txt,
      txt_ids: textIds(Lt),
      vec,
      timesteps: schedule,
      guidance: cfg.guidance,
    });
    const packed = latents.toFloat32();
    check.rel('sample.latents_packed', packed, cases.f32('sample.latents_packed'), TOLERANCES.sample);
    const unpacked = unpack(packed, B, C, h, w); // [B, 16, h, w]
    check.rel('sample.latents', unpacked, cases.f32('sample.latents'), TOLERANCES.sample);
    z = fromArray(be, [B, C, h, w], unpacked, 'f32');
    decoded = ae.decode(z); // [B, 3, H, W]
    const pixels = decoded.toFloat32();
    check.rel('sample.decoded', pixels, cases.f32('sample.decoded'), TOLERANCES.sample);
    if (cases.has('sample.uint8')) check.maxAbs('sample.uint8', toUint8(pixels), cases.f32('sample.uint8'), TOLERANCES.uint8);
  } finally {
    img.dispose();
    txt.dispose();
    vec.dispose();
    latents?.dispose();
    z?.dispose();
    decoded?.dispose();
  }
}

/** BFL cli.py: (127.5·(clamp(x, −1, 1) + 1)).byte(), each op in fp32, truncating. */
export function toUint8(x: Float32Array): Uint8Array {
  const out = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const c = Math.min(1, Math.max(-1, x[i]!));
    out[i] = Math.trunc(Math.fround(127.5 * Math.fround(c + 1)));
  }
  return out;
}

/** ae.encode (the Gaussian's mean) of vae.image against vae.encoded. */
function checkVae(ae: AutoEncoder, cases: Cases, check: Checker): void {
  const image = cases.tensor('vae.image'); // [B, 3, H, W]
  try {
    const z = ae.encode(image); // [B, 16, H/8, W/8]
    check.rel('vae.encoded', z.toFloat32(), cases.f32('vae.encoded'), TOLERANCES.vae);
    z.dispose();
  } finally {
    image.dispose();
  }
}
