// LoraManager: LoRAs fused into a loaded transformer's weights with exact restore, on the BFL tiny
// fixture transformer (f32 as stored, and a bf16 copy).
//
// - swapping among LoRA sets 1000 times leaves the base weights bit-identical, and every set
//   always produces the same bytes;
// - an unchanged list (same ids and scales) writes nothing; a changed scale re-applies;
// - the model's output after setLoras equals, bit for bit, the output of a model loaded from the
//   merged checkpoint (merge.ts), and after clear() the base model's output;
// - overrides (BFL control LoRA norm scales) and bias deltas are restored too;
// - a list that does not fit is refused before any write.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { MapSource, type TensorSource } from '../../src/io/source.js';
import { LoraApplyError, LoraManager, findParam, type LoraEntry } from '../../src/lora/apply.js';
import { parseLora } from '../../src/lora/formats.js';
import { MergedSource } from '../../src/lora/merge.js';
import type { LoraTarget, ParsedLora } from '../../src/lora/types.js';
import { fluxParamsFromBflConfig, type FluxParams } from '../../src/models/flux/config.js';
import { Flux } from '../../src/models/flux/model.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { type DType, f32ToRaw, rawToF32 } from '../../src/tensor/dtype.js';
import { fromArray } from '../../src/tensor/ops.js';
import type { Tensor } from '../../src/tensor/tensor.js';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/bfl-tiny-a', import.meta.url));
const PARAMS: FluxParams = fluxParamsFromBflConfig(JSON.parse(readFileSync(join(FIXTURE, 'config.json'), 'utf8')));
const H = 64;
const MLP = 256;

/** The fixture transformer as an in-memory source in `dtype`. */
function baseSource(dtype: DType): MapSource {
  const f = SafetensorsFile.open(join(FIXTURE, 'weights-flux.safetensors'));
  try {
    const m = new MapSource(`fixture (${dtype})`);
    for (const k of f.keys()) {
      const info = f.info(k)!;
      m.set(k, dtype, info.shape, f32ToRaw(dtype, rawToF32(info.dtype, f.read(k))));
    }
    return m;
  } finally {
    f.close();
  }
}

class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  array(n: number, amp = 0.2): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = amp * this.next();
    return a;
  }
  int(n: number): number {
    return Math.floor(((this.next() + 1) / 2) * n);
  }
}

/** Three LoRAs of different formats, parsed against the model; C is a control LoRA (bias delta + norm override). */
function makeLoras(target: LoraTarget): { A: ParsedLora; B: ParsedLora; C: ParsedLora } {
  const rng = new Rng(7);
  const put = (s: MapSource, key: string, shape: number[], amp = 0.2) =>
    s.set(
      key,
      'f32',
      shape,
      rng.array(
        shape.reduce((a, b) => a * b, 1),
        amp,
      ),
    );
  // A: kohya, fused qkv + linear1 + final layer, with alphas
  const a = new MapSource('A (kohya)');
  for (const [m, inF, out] of [
    ['double_blocks_0_img_attn_qkv', H, 3 * H],
    ['single_blocks_1_linear1', H, 3 * H + MLP],
    ['final_layer_adaLN_modulation_1', H, 2 * H],
    ['double_blocks_1_img_mlp_2', MLP, H],
  ] as const) {
    put(a, `lora_unet_${m}.lora_down.weight`, [4, inF]);
    put(a, `lora_unet_${m}.lora_up.weight`, [out, 4]);
    a.set(`lora_unet_${m}.alpha`, 'f32', [], new Float32Array([2]));
  }
  // B: diffusers PEFT, split q/k/v rows of the same qkv as A, plus LoKr-free low-rank on other modules
  const b = new MapSource('B (diffusers)');
  for (const [m, inF, out] of [
    ['transformer_blocks.0.attn.to_k', H, H],
    ['transformer_blocks.1.attn.add_v_proj', H, H],
    ['single_transformer_blocks.0.proj_mlp', H, MLP],
    ['norm_out.linear', H, 2 * H],
  ] as const) {
    put(b, `transformer.${m}.lora_A.weight`, [8, inF]);
    put(b, `transformer.${m}.lora_B.weight`, [out, 8]);
  }
  // C: BFL control LoRA: lora_A/lora_B(+bias) and a QK-norm scale override
  const c = new MapSource('C (control)');
  for (const [m, inF, out] of [
    ['double_blocks.0.img_attn.qkv', H, 3 * H],
    ['img_in', 64, H],
  ] as const) {
    put(c, `${m}.lora_A.weight`, [4, inF]);
    put(c, `${m}.lora_B.weight`, [out, 4]);
    put(c, `${m}.lora_B.bias`, [out]);
  }
  put(c, 'double_blocks.0.img_attn.norm.query_norm.scale', [H / 2], 1);
  put(c, 'single_blocks.1.norm.key_norm.scale', [H / 2], 1);
  const A = parseLora(a, target);
  const B = parseLora(b, target);
  const C = parseLora(c, target);
  assert.equal(A.format, 'kohya');
  assert.equal(B.format, 'diffusers-peft');
  assert.equal(C.format, 'bfl-control');
  assert.equal(C.overrides.length, 2);
  return { A, B, C };
}

/** Raw bytes of every parameter of the model, by BFL key. */
function snapshot(model: Flux, keys: Iterable<string>): Map<string, Buffer> {
  const m = new Map<string, Buffer>();
  for (const k of keys) {
    const t = findParam(model, k);
    assert.ok(t, `${k}: findParam`);
    const raw = t.toRaw();
    m.set(k, Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength));
  }
  return m;
}

function sameBytes(a: Map<string, Buffer>, b: Map<string, Buffer>): string[] {
  const diff: string[] = [];
  for (const [k, v] of a) if (!v.equals(b.get(k)!)) diff.push(k);
  return diff;
}

/** One forward pass on fixed inputs; the output's raw bytes. */
function forward(model: Flux): Buffer {
  const rng = new Rng(99);
  const be = model.backend;
  const Li = 16;
  const Lt = 8;
  const imgIds = new Float32Array(Li * 3);
  for (let i = 0; i < Li; i++) {
    imgIds[i * 3 + 1] = Math.floor(i / 4);
    imgIds[i * 3 + 2] = i % 4;
  }
  const img = fromArray(be, [1, Li, PARAMS.in_channels], rng.array(Li * PARAMS.in_channels, 1));
  const txt = fromArray(be, [1, Lt, PARAMS.context_in_dim], rng.array(Lt * PARAMS.context_in_dim, 1));
  const y = fromArray(be, [1, PARAMS.vec_in_dim], rng.array(PARAMS.vec_in_dim, 1));
  let out: Tensor | undefined;
  try {
    out = model.forward(img, imgIds, txt, new Float32Array(Lt * 3), [0.6], y, [3.5]);
    const raw = out.toRaw();
    return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  } finally {
    for (const t of [img, txt, y, out]) t?.dispose();
  }
}

function loadModel(src: TensorSource): Flux {
  return Flux.load(PARAMS, src, cpuBackend);
}

describe('LoraManager (fused LoRAs, exact restore)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fluxserve-lora-apply-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('1000 swaps among 3 LoRAs (several at once, changing scales) leave the base bit-identical', () => {
    const base = baseSource('bf16');
    const model = loadModel(base);
    try {
      const mgr = new LoraManager(model);
      const { A, B, C } = makeLoras(mgr.target);
      const keys = [...mgr.target.keys.keys()];
      const pristine = snapshot(model, keys);
      const configs: LoraEntry[][] = [
        [],
        [{ parsed: A, scale: 1, id: 'A' }],
        [{ parsed: A, scale: 0.35, id: 'A' }],
        [{ parsed: B, scale: -0.8, id: 'B' }],
        [{ parsed: C, scale: 1, id: 'C' }],
        [
          { parsed: A, scale: 0.7, id: 'A' },
          { parsed: B, scale: 1.2, id: 'B' },
        ],
        [
          { parsed: C, scale: 0.5, id: 'C' },
          { parsed: A, scale: 1, id: 'A' },
          { parsed: B, scale: 0.25, id: 'B' },
        ],
      ];
      const seen = new Map<number, Map<string, Buffer>>();
      const rng = new Rng(3);
      let applied = 0;
      let prev = -1;
      for (let step = 0; step < 1000; step++) {
        const i = rng.int(configs.length);
        const changed = mgr.setLoras(configs[i]!);
        assert.equal(changed, i !== prev && !(configs[i]!.length === 0 && prev <= 0), `step ${step}: setLoras reports a change`);
        if (changed) applied++;
        prev = i;
        // every 25th step (and the first time each set is seen) compare every parameter's bytes
        if (!seen.has(i)) {
          const snap = snapshot(model, keys);
          if (i === 0) assert.deepEqual(sameBytes(pristine, snap), [], 'no LoRA: base weights');
          else assert.ok(sameBytes(pristine, snap).length > 0, `set ${i} changes the weights`);
          seen.set(i, snap);
        } else if (step % 25 === 0) {
          assert.deepEqual(sameBytes(seen.get(i)!, snapshot(model, keys)), [], `step ${step}: set ${i} gives the same bytes as before`);
        }
      }
      assert.ok(applied > 500, `most steps change the set (${applied})`);
      assert.equal(seen.size, configs.length);
      mgr.clear();
      assert.deepEqual(sameBytes(pristine, snapshot(model, keys)), [], 'after 1000 swaps and clear(): base weights, bit for bit');
      assert.equal(mgr.savedBytes, 0, 'no pristine copies kept once back at base');
    } finally {
      model.dispose();
    }
  });

  it('an unchanged list writes nothing; a changed scale or file re-applies', () => {
    const model = loadModel(baseSource('f32'));
    const realWrite = cpuBackend.write;
    let writes = 0;
    cpuBackend.write = (...args) => {
      writes++;
      realWrite.apply(cpuBackend, args);
    };
    try {
      const mgr = new LoraManager(model);
      const { A, B } = makeLoras(mgr.target);
      const keys = [...mgr.target.keys.keys()];
      assert.equal(mgr.setLoras([{ parsed: A, scale: 1, id: 'A' }]), true);
      const w1 = writes;
      assert.ok(w1 > 0);
      const atA1 = snapshot(model, keys);
      // same id and scale (even with a re-parsed object): nothing happens
      assert.equal(mgr.setLoras([{ parsed: makeLoras(mgr.target).A, scale: 1, id: 'A' }]), false);
      assert.equal(writes, w1, 'unchanged list: no writes');
      assert.deepEqual(mgr.loaded, [{ id: 'A', scale: 1 }]);
      // changed scale: re-applied, and equal to applying it from scratch on another model
      assert.equal(mgr.setLoras([{ parsed: A, scale: 0.5, id: 'A' }]), true);
      assert.ok(writes > w1);
      const atHalf = snapshot(model, keys);
      assert.ok(sameBytes(atA1, atHalf).length > 0, 'scale 0.5 differs from scale 1');
      const fresh = loadModel(new MergedSource(baseSource('f32'), [{ parsed: A, scale: 0.5 }]));
      try {
        assert.deepEqual(sameBytes(atHalf, snapshot(fresh, keys)), [], 'swapped-to scale 0.5 = merged at 0.5');
      } finally {
        fresh.dispose();
      }
      // changed file under the same scale
      assert.equal(mgr.setLoras([{ parsed: B, scale: 0.5, id: 'B' }]), true);
      assert.deepEqual(mgr.loaded, [{ id: 'B', scale: 0.5 }]);
      // order matters (it is part of the list)
      assert.equal(
        mgr.setLoras([
          { parsed: A, scale: 1, id: 'A' },
          { parsed: B, scale: 1, id: 'B' },
        ]),
        true,
      );
      assert.equal(
        mgr.setLoras([
          { parsed: B, scale: 1, id: 'B' },
          { parsed: A, scale: 1, id: 'A' },
        ]),
        true,
      );
    } finally {
      cpuBackend.write = realWrite;
      model.dispose();
    }
  });

  for (const dtype of ['f32', 'bf16'] as const) {
    it(`${dtype}: the output after setLoras equals a model loaded from the merged file, bit for bit; clear() gives the base output`, () => {
      const base = baseSource(dtype);
      const model = loadModel(base);
      try {
        const baseOut = forward(model); // also fills the CPU backend's decode cache of bf16 weights
        const mgr = new LoraManager(model);
        const { A, B, C } = makeLoras(mgr.target);
        const list: LoraEntry[] = [
          { parsed: A, scale: 0.7, id: 'A' },
          { parsed: C, scale: 1.3, id: 'C' },
          { parsed: B, scale: -0.4, id: 'B' },
        ];
        const file = join(dir, `merged-${dtype}.safetensors`);
        writeSafetensors(file, new MergedSource(base, list));
        const mf = SafetensorsFile.open(file);
        let merged: Flux;
        try {
          merged = loadModel(mf);
        } finally {
          mf.close();
        }
        try {
          mgr.setLoras([{ parsed: A, scale: 2, id: 'A' }]); // something else first
          mgr.setLoras(list);
          const fusedOut = forward(model);
          const mergedOut = forward(merged);
          assert.ok(!fusedOut.equals(baseOut), 'the LoRAs change the output');
          assert.ok(fusedOut.equals(mergedOut), 'fused output = merged-file output, bit for bit');
          const keys = [...mgr.target.keys.keys()];
          assert.deepEqual(sameBytes(snapshot(model, keys), snapshot(merged, keys)), [], 'fused weights = merged weights');
          mgr.clear();
          assert.ok(forward(model).equals(baseOut), 'after clear(): the base output, bit for bit');
        } finally {
          merged.dispose();
        }
      } finally {
        model.dispose();
      }
    });
  }

  it('overrides and bias deltas are applied and restored', () => {
    const model = loadModel(baseSource('f32'));
    try {
      const mgr = new LoraManager(model);
      const { C } = makeLoras(mgr.target);
      const qn = 'double_blocks.0.img_attn.norm.query_norm.scale';
      const bias = 'img_in.bias';
      const before = snapshot(model, [qn, bias]);
      mgr.setLoras([{ parsed: C, scale: 0.5, id: 'C' }]);
      const want = C.overrides.find((o) => o.key === qn)!.value;
      assert.deepEqual(findParam(model, qn)!.toFloat32(), want, 'the override replaces the parameter (not scaled)');
      const bd = C.deltas.find((d) => d.module === bias)!;
      assert.equal(bd.kind, 'full');
      const got = findParam(model, bias)!.toFloat32();
      const bb = before.get(bias)!;
      const b = new Float32Array(bb.buffer.slice(bb.byteOffset, bb.byteOffset + bb.byteLength));
      // W + userScale · scale · Δb, computed in float64 and rounded once to f32
      for (let i = 0; i < H; i++) assert.equal(got[i], Math.fround(b[i]! + 0.5 * bd.scale * (bd.kind === 'full' ? bd.delta[i]! : 0)));
      mgr.clear();
      assert.deepEqual(sameBytes(before, snapshot(model, [qn, bias])), []);
    } finally {
      model.dispose();
    }
  });

  it('a list that does not fit is refused before anything is written', () => {
    const model = loadModel(baseSource('f32'));
    try {
      const mgr = new LoraManager(model);
      const { A } = makeLoras(mgr.target);
      const keys = [...mgr.target.keys.keys()];
      mgr.setLoras([{ parsed: A, scale: 1, id: 'A' }]);
      const atA = snapshot(model, keys);
      const bad: ParsedLora = {
        ...A,
        deltas: [{ ...A.deltas[0]!, rowEnd: A.deltas[0]!.rowEnd + 1, source: 'too many rows' }],
      };
      assert.throws(() => mgr.setLoras([{ parsed: bad, scale: 1, id: 'bad' }]), LoraApplyError);
      assert.throws(() => mgr.setLoras([{ parsed: A, scale: Number.NaN, id: 'A' }]), LoraApplyError);
      assert.deepEqual(sameBytes(atA, snapshot(model, keys)), [], 'the previous set is still applied');
      assert.deepEqual(mgr.loaded, [{ id: 'A', scale: 1 }]);
    } finally {
      model.dispose();
    }
  });
});
