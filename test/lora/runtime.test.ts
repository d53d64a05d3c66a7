// Runtime (unfused) LoRAs on the BFL tiny fixture transformer (f32): adapters on Linear layers give
// the same output as fusing (relative error < 1e-5) for each of two LoRAs and both at once; the
// weights are never written for low-rank deltas; other delta kinds fall back to fusing; removing
// the adapters gives the base output bit for bit.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { SafetensorsFile } from '../../src/io/safetensors.js';
import { MapSource } from '../../src/io/source.js';
import { LoraManager, type LoraEntry } from '../../src/lora/apply.js';
import { parseLora } from '../../src/lora/formats.js';
import { RuntimeLoraManager, findLinear } from '../../src/lora/runtime.js';
import type { LoraTarget, ParsedLora } from '../../src/lora/types.js';
import { fluxParamsFromBflConfig, type FluxParams } from '../../src/models/flux/config.js';
import { Flux } from '../../src/models/flux/model.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { fromArray } from '../../src/tensor/ops.js';
import type { Tensor } from '../../src/tensor/tensor.js';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/bfl-tiny-a', import.meta.url));
const PARAMS: FluxParams = fluxParamsFromBflConfig(JSON.parse(readFileSync(join(FIXTURE, 'config.json'), 'utf8')));
const H = 64;
const MLP = 256;

function rng(seed: number): (n: number, amp?: number) => Float32Array {
  let s = seed >>> 0;
  const next = () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
  return (n, amp = 0.2) => Float32Array.from({ length: n }, () => amp * next());
}

/** A: kohya (fused qkv, linear1, mlp, final adaLN, with alphas). B: diffusers PEFT (q/k/v rows, proj_mlp, linear2). */
function makeLoras(target: LoraTarget): { A: ParsedLora; B: ParsedLora; C: ParsedLora } {
  const r = rng(11);
  const a = new MapSource('A (kohya)');
  for (const [m, inF, out] of [
    ['double_blocks_0_img_attn_qkv', H, 3 * H],
    ['single_blocks_1_linear1', H, 3 * H + MLP],
    ['double_blocks_1_img_mlp_0', H, MLP],
    ['final_layer_adaLN_modulation_1', H, 2 * H],
    ['time_in_in_layer', 256, H],
  ] as const) {
    a.set(`lora_unet_${m}.lora_down.weight`, 'f32', [4, inF], r(4 * inF));
    a.set(`lora_unet_${m}.lora_up.weight`, 'f32', [out, 4], r(out * 4));
    a.set(`lora_unet_${m}.alpha`, 'f32', [], new Float32Array([2]));
  }
  const b = new MapSource('B (diffusers)');
  for (const [m, inF, out] of [
    ['transformer_blocks.0.attn.to_k', H, H],
    ['transformer_blocks.0.attn.to_v', H, H],
    ['transformer_blocks.1.attn.add_q_proj', H, H],
    ['single_transformer_blocks.0.proj_mlp', H, MLP],
    ['single_transformer_blocks.1.proj_out', H + MLP, H],
    ['proj_out', H, 64],
  ] as const) {
    b.set(`transformer.${m}.lora_A.weight`, 'f32', [8, inF], r(8 * inF));
    b.set(`transformer.${m}.lora_B.weight`, 'f32', [out, 8], r(out * 8));
  }
  // C: a LoKr file (not low-rank): must fall back to fusing in runtime mode
  const c = new MapSource('C (lokr)');
  c.set('lora_unet_double_blocks_1_img_attn_proj.lokr_w1', 'f32', [8, 8], r(64));
  c.set('lora_unet_double_blocks_1_img_attn_proj.lokr_w2', 'f32', [8, 8], r(64));
  const A = parseLora(a, target);
  const B = parseLora(b, target);
  const C = parseLora(c, target);
  assert.equal(A.format, 'kohya');
  assert.equal(B.format, 'diffusers-peft');
  assert.ok(
    C.deltas.every((d) => d.kind !== 'lowrank'),
    'C has no low-rank delta',
  );
  return { A, B, C };
}

function forward(model: Flux): Float32Array {
  const r = rng(99);
  const be = model.backend;
  const Li = 16;
  const Lt = 8;
  const imgIds = new Float32Array(Li * 3);
  for (let i = 0; i < Li; i++) {
    imgIds[i * 3 + 1] = Math.floor(i / 4);
    imgIds[i * 3 + 2] = i % 4;
  }
  const img = fromArray(be, [1, Li, PARAMS.in_channels], r(Li * PARAMS.in_channels, 1));
  const txt = fromArray(be, [1, Lt, PARAMS.context_in_dim], r(Lt * PARAMS.context_in_dim, 1));
  const y = fromArray(be, [1, PARAMS.vec_in_dim], r(PARAMS.vec_in_dim, 1));
  let out: Tensor | undefined;
  try {
    out = model.forward(img, imgIds, txt, new Float32Array(Lt * 3), [0.6], y, [3.5]);
    return out.toFloat32();
  } finally {
    for (const t of [img, txt, y, out]) t?.dispose();
  }
}

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('runtime (unfused) LoRAs', () => {
  let model: Flux;
  let loras: { A: ParsedLora; B: ParsedLora; C: ParsedLora };
  let base: Float32Array;
  before(() => {
    const f = SafetensorsFile.open(join(FIXTURE, 'weights-flux.safetensors'));
    try {
      model = Flux.load(PARAMS, f, cpuBackend);
    } finally {
      f.close();
    }
    assert.equal(model.dtype, 'f32');
    loras = makeLoras(new LoraManager(model).target);
    base = forward(model);
  });
  after(() => model?.dispose());

  const sets = (): [string, LoraEntry[]][] => [
    ['A', [{ parsed: loras.A, scale: 0.8, id: 'A' }]],
    ['B', [{ parsed: loras.B, scale: -1.3, id: 'B' }]],
    [
      'A+B',
      [
        { parsed: loras.A, scale: 0.8, id: 'A' },
        { parsed: loras.B, scale: 1.1, id: 'B' },
      ],
    ],
    [
      'A+C (C fused)',
      [
        { parsed: loras.A, scale: 1, id: 'A' },
        { parsed: loras.C, scale: 0.5, id: 'C' },
      ],
    ],
  ];

  it('matches the fused output (f32, rel err < 1e-5) for A, B, A+B and a LoKr fallback', () => {
    for (const [name, list] of sets()) {
      const fused = new LoraManager(model);
      assert.equal(fused.setLoras(list), true);
      const want = forward(model);
      fused.clear();
      assert.ok(same(forward(model), base), `${name}: fused clear restores the base`);

      const rt = new RuntimeLoraManager(model);
      assert.equal(rt.setLoras(list), true);
      const got = forward(model);
      const err = relErr(got, want);
      assert.ok(err < 1e-5, `${name}: runtime vs fused rel err ${err}`);
      assert.ok(relErr(got, base) > 1e-3, `${name}: the LoRA changes the output (${relErr(got, base)})`);
      const hasC = list.some((l) => l.id === 'C');
      assert.equal(rt.stats.fallbackEntries, hasC ? 1 : 0);
      assert.equal(rt.fused.stats.paramsWritten, hasC ? 1 : 0, `${name}: low-rank deltas never write weights`);
      assert.equal(rt.setLoras(list.map((l) => ({ ...l }))), false, 'an unchanged list is a no-op');
      rt.dispose();
      assert.ok(same(forward(model), base), `${name}: removing the adapters restores the base bit for bit`);
    }
  });

  it('one adapter per Linear, holding every delta on it (q/k/v rows and both LoRAs)', () => {
    const rt = new RuntimeLoraManager(model);
    rt.setLoras(sets()[2]![1]);
    const qkv = findLinear(model, 'double_blocks.0.img_attn.qkv.weight')!;
    assert.equal(qkv.adapters.length, 1);
    // A: rank 4 on the whole qkv; B: rank 8 on k and v
    assert.equal((qkv.adapters[0] as unknown as { rank: number }).rank, 4 + 8 + 8);
    assert.equal(findLinear(model, 'time_in.in_layer.weight')!.adapters.length, 1, 'an activation-fused Linear (silu) takes an adapter');
    assert.equal(findLinear(model, 'double_blocks.1.img_attn.qkv.weight')!.adapters.length, 0);
    // switching sets replaces adapters instead of stacking them
    rt.setLoras(sets()[1]![1]);
    assert.equal(qkv.adapters.length, 1);
    assert.equal(findLinear(model, 'time_in.in_layer.weight')!.adapters.length, 0);
    rt.clear();
    assert.equal(qkv.adapters.length, 0);
    assert.ok(same(forward(model), base));
    rt.dispose();
  });

  it('switching back to a list re-attaches its cached adapters (nothing rebuilt), within cacheBytes', () => {
    const [A, B] = [sets()[0]![1], sets()[1]![1]];
    const qkv = findLinear(model, 'double_blocks.0.img_attn.qkv.weight')!;
    const rt = new RuntimeLoraManager(model);
    rt.setLoras(A);
    const adA = qkv.adapters[0];
    const outA = forward(model);
    rt.setLoras(B);
    const outB = forward(model);
    assert.ok(rt.cachedBytes > 0, 'the detached set of A is kept');
    rt.setLoras(A);
    assert.equal(rt.stats.cacheHits, 1);
    assert.equal(qkv.adapters[0], adA, 'the same adapter object, not a rebuilt one');
    assert.ok(same(forward(model), outA));
    rt.setLoras(B);
    assert.equal(rt.stats.cacheHits, 2);
    assert.ok(same(forward(model), outB));
    rt.dispose();
    assert.equal(rt.cachedBytes, 0);
    assert.ok(same(forward(model), base));

    const uncached = new RuntimeLoraManager(model, 0);
    uncached.setLoras(A);
    uncached.setLoras(B);
    uncached.setLoras(A);
    assert.equal(uncached.stats.cacheHits, 0, 'cacheBytes 0 keeps nothing');
    assert.equal(uncached.cachedBytes, 0);
    assert.ok(same(forward(model), outA));
    uncached.dispose();
    assert.ok(same(forward(model), base));
  });

  it('scale 0 attaches nothing; a LoRA that does not fit is refused before anything changes', () => {
    const rt = new RuntimeLoraManager(model);
    rt.setLoras([{ parsed: loras.A, scale: 0, id: 'A' }]);
    assert.equal(rt.stats.adapters, 0);
    assert.ok(same(forward(model), base));
    rt.setLoras([{ parsed: loras.B, scale: 1, id: 'B' }]);
    const withB = forward(model);
    const bad: ParsedLora = { ...loras.A, deltas: [{ ...loras.A.deltas[0]!, module: 'double_blocks.7.img_attn.qkv.weight' }] };
    assert.throws(() => rt.setLoras([{ parsed: bad, scale: 1, id: 'bad' }]), /double_blocks\.7\.img_attn\.qkv\.weight/);
    assert.deepEqual(rt.loaded, [{ id: 'B', scale: 1 }]);
    assert.ok(same(forward(model), withB), 'the previous list stays in place');
    rt.dispose();
    assert.ok(same(forward(model), base));
  });
});
