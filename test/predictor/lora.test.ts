// The Predictor's LoRA step end to end on the tiny model: replicate_weights / extra_lora as data:
// URIs, the model's own LoRA (trainer, fixed-weights hotswap), scale 0, no re-fusion for an
// unchanged list, exact restore when switching, field-named failures, token redaction, go_fast.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';

import { writeSafetensors } from '../../src/io/safetensors.js';
import type { LoraManager } from '../../src/lora/apply.js';
import { RuntimeLoraManager } from '../../src/lora/runtime.js';
import { InputValidationError } from '../../src/predictor/errors.js';
import { Predictor, type PredictorOptions } from '../../src/predictor/predictor.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { writeTinyModel } from '../../src/tiny/generate.js';

const H = 64;
const MLP = 256;

function rng(seed: number): (n: number, amp: number) => Float32Array {
  let s = seed >>> 0;
  const next = () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
  return (n, amp) => Float32Array.from({ length: n }, () => amp * next());
}

/** A diffusers PEFT (ai-toolkit style) LoRA for the tiny transformer, as safetensors bytes. */
function peftLora(dir: string, name: string, seed: number, modules: readonly (readonly [string, number, number])[], rank = 4, amp = 0.6): string {
  const r = rng(seed);
  const tensors: [string, { dtype: 'f32'; shape: number[]; data: Float32Array }][] = [];
  for (const [m, inF, out] of modules) {
    tensors.push([`transformer.${m}.lora_A.weight`, { dtype: 'f32', shape: [rank, inF], data: r(rank * inF, amp) }]);
    tensors.push([`transformer.${m}.lora_B.weight`, { dtype: 'f32', shape: [out, rank], data: r(out * rank, amp) }]);
  }
  const p = join(dir, `${name}.safetensors`);
  writeSafetensors(p, tensors);
  return p;
}

const dataUri = (p: string) => `data:application/octet-stream;base64,${readFileSync(p).toString('base64')}`;

describe('Predictor LoRAs (tiny model)', () => {
  let root: string;
  let loraDir: string;
  let hotswap: Predictor;
  let A: string;
  let B: string;
  let Apath: string;
  const made: Predictor[] = [];
  // img2img from a small image at full strength: the smallest sizes the profiles allow (txt2img needs >= 256 px)
  let input: Record<string, unknown>;

  const make = (o: Partial<PredictorOptions>) => {
    const p = new Predictor({ modelDir: root, backend: cpuBackend, profile: 'hotswap', loraDataDir: join(loraDir, 'data'), ...o });
    p.setup();
    made.push(p);
    return p;
  };
  const run = async (p: Predictor, extra: Record<string, unknown> = {}, lines?: string[], token?: string) => {
    const r = await p.predict({ ...input, ...extra }, { log: (l) => lines?.push(l), loraToken: token });
    return r.files[0]!.data;
  };
  const manager = (p: Predictor) => (p as unknown as { loras: { manager: LoraManager | RuntimeLoraManager } }).loras.manager;

  before(async () => {
    const raw = Buffer.alloc(64 * 48 * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 37) % 251;
    const png = await sharp(raw, { raw: { width: 64, height: 48, channels: 3 } })
      .png()
      .toBuffer();
    input = {
      prompt: 'a fox',
      image: `data:image/png;base64,${png.toString('base64')}`,
      prompt_strength: 1,
      num_inference_steps: 2,
      seed: 7,
      output_format: 'png',
    };
    root = mkdtempSync(join(tmpdir(), 'fluxserve-lora-pred-'));
    loraDir = join(root, 'loras');
    writeTinyModel(root);
    Apath = peftLora(root, 'a', 1, [
      ['transformer_blocks.0.attn.to_q', H, H],
      ['transformer_blocks.0.attn.to_k', H, H],
      ['transformer_blocks.0.attn.to_v', H, H],
      ['transformer_blocks.1.ff.net.0.proj', H, MLP],
      ['single_transformer_blocks.0.proj_mlp', H, MLP],
      ['proj_out', H, 64],
    ]);
    A = dataUri(Apath);
    B = dataUri(
      peftLora(root, 'b', 2, [
        ['transformer_blocks.1.attn.to_out.0', H, H],
        ['single_transformer_blocks.1.proj_out', H + MLP, H],
        ['norm_out.linear', H, 2 * H],
      ]),
    );
    hotswap = make({});
  });
  after(() => {
    for (const p of made) p.dispose();
    rmSync(root, { recursive: true, force: true });
  });

  it('replicate_weights changes the output; lora_scale=0 and switching back give the base exactly; no re-fusion when unchanged', async () => {
    const base = await run(hotswap);
    const lines: string[] = [];
    const withA = await run(hotswap, { replicate_weights: A }, lines);
    assert.ok(!withA.equals(base), 'a LoRA changes the image');
    assert.ok(
      lines.some((l) => /^Loading LoRA weights from data:application\/octet-stream URI \(\d+ chars\)$/.test(l)),
      lines.join('\n'),
    );
    assert.ok(lines.includes('LoRA scale: 1'), lines.join('\n'));
    assert.ok(
      lines.some((l) => /^Loaded 1 LoRA\(s\) in .* \(fused into the weights\)$/.test(l)),
      lines.join('\n'),
    );

    const m = manager(hotswap) as LoraManager;
    const applies = m.stats.applies;
    const written = m.stats.paramsWritten;
    const again: string[] = [];
    assert.ok((await run(hotswap, { replicate_weights: A }, again)).equals(withA), 'same LoRA, same image');
    assert.equal(m.stats.applies, applies, 'same LoRA twice: no re-fusion');
    assert.equal(m.stats.paramsWritten, written);
    assert.ok(again.includes('LoRA weights already loaded'), again.join('\n'));

    const scaled = await run(hotswap, { replicate_weights: A, lora_scale: 0.5 });
    assert.ok(!scaled.equals(withA) && !scaled.equals(base), 'a changed scale re-applies');
    const zero: string[] = [];
    assert.ok((await run(hotswap, { replicate_weights: A, lora_scale: 0 }, zero)).equals(base), 'lora_scale=0 is the base model exactly');
    assert.ok(zero.includes('LoRA scale: 0'), zero.join('\n'));

    await run(hotswap, { replicate_weights: B });
    const off: string[] = [];
    assert.ok((await run(hotswap, {}, off)).equals(base), 'after LoRAs, no LoRA is the base bit for bit');
    assert.ok(
      off.some((l) => l.startsWith('Unloaded 1 LoRA(s)')),
      off.join('\n'),
    );
    assert.ok((await run(hotswap, { replicate_weights: A })).equals(withA), 'A again gives the same image');
  });

  it('extra_lora combines with the main LoRA; alone it is applied at extra_lora_scale', async () => {
    const base = await run(hotswap);
    const a = await run(hotswap, { replicate_weights: A });
    const b = await run(hotswap, { replicate_weights: B, lora_scale: 0.7 });
    const lines: string[] = [];
    const ab = await run(hotswap, { replicate_weights: A, extra_lora: B, extra_lora_scale: 0.7 }, lines);
    assert.ok(!ab.equals(a) && !ab.equals(b) && !ab.equals(base));
    assert.deepEqual(
      manager(hotswap).loaded.map((l) => l.scale),
      [1, 0.7],
    );
    assert.ok(
      lines.some((l) => l.startsWith('Loading extra LoRA weights from data:')),
      lines.join('\n'),
    );
    assert.ok(lines.includes('Extra LoRA scale: 0.7'), lines.join('\n'));
    const alone: string[] = [];
    assert.ok((await run(hotswap, { extra_lora: B, extra_lora_scale: 0.7 }, alone)).equals(b), 'extra alone == B as main at that scale');
    assert.ok(
      alone.some((l) => l.startsWith('extra_lora was given without a main LoRA')),
      alone.join('\n'),
    );
  });

  it('a bad LoRA is a 422 naming the field; the previous weights stay usable', async () => {
    const base = await run(hotswap);
    const sdxl = join(root, 'sdxl.safetensors');
    writeSafetensors(sdxl, [
      ['lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', { dtype: 'f32', shape: [4, 320], data: new Float32Array(1280) }],
      ['lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight', { dtype: 'f32', shape: [320, 4], data: new Float32Array(1280) }],
    ]);
    const big = dataUri(peftLora(root, 'big', 3, [['transformer_blocks.7.attn.to_q', H, H]]));
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ replicate_weights: dataUri(sdxl) }, 'replicate_weights', /^replicate_weights: not a FLUX LoRA \(/],
      [
        { replicate_weights: A, extra_lora: 'data:application/octet-stream;base64,AAAAAAAAAAB7fQ==' },
        'extra_lora',
        /^extra_lora: not a valid \.safetensors file/,
      ],
      [{ replicate_weights: big }, 'replicate_weights', /^replicate_weights: targets modules the loaded model does not have \(.*transformer_blocks\.7/],
      [{ replicate_weights: 'data:;base64,%%%' }, 'replicate_weights', /^replicate_weights: could not be loaded \(malformed data: URI/],
      [{ replicate_weights: Apath }, 'replicate_weights', /^replicate_weights: local LoRA files are not allowed here/],
      [{ replicate_weights: 'fofr/flux-pixar-cars' }, 'replicate_weights', /no LoRA downloader/],
    ];
    for (const [extra, field, msg] of cases) {
      await assert.rejects(run(hotswap, extra), (e: unknown) => {
        assert.ok(e instanceof InputValidationError, String(e));
        assert.deepEqual(e.fields, [field]);
        assert.match(e.detail[0]!.msg, msg);
        return true;
      });
    }
    assert.ok((await run(hotswap)).equals(base));
  });

  it('log lines and errors never contain a token or a signed query string', async () => {
    const SECRET = 'SECRET-abc123';
    const TOKEN = 'hf_TOKENVALUE42';
    let seenToken: string | undefined;
    const p = make({
      loraToken: TOKEN,
      resolveLora: async (ref, ctx) => {
        seenToken = ctx.token;
        // a careless resolver: logs everything it knows
        ctx.log(`downloading weights from ${ref} with token ${ctx.token}`);
        if (ref.includes('fail')) throw new Error(`401 from ${ref} (Authorization: Bearer ${ctx.token})`);
        return { path: Apath, source: `${ref}` };
      },
    });
    const lines: string[] = [];
    await run(p, { replicate_weights: `https://example.com/lora.safetensors?token=${SECRET}&X-Amz-Signature=${SECRET}` }, lines);
    assert.equal(seenToken, TOKEN, 'the resolver gets the configured token');
    await assert.rejects(run(p, { replicate_weights: `https://user:${SECRET}@example.com/fail.safetensors?sig=${SECRET}` }, lines), (e: unknown) => {
      assert.ok(e instanceof InputValidationError);
      assert.ok(!e.message.includes(SECRET) && !e.message.includes(TOKEN), e.message);
      return true;
    });
    const perRequest: string[] = [];
    await run(p, { replicate_weights: `https://example.com/other.safetensors?token=${SECRET}` }, perRequest, 'r8_PERREQUEST99');
    assert.equal(seenToken, 'r8_PERREQUEST99', 'a per-request token wins');
    const all = [...lines, ...perRequest];
    assert.ok(
      all.some((l) => l === 'Loading LoRA weights from https://example.com/lora.safetensors?***'),
      all.join('\n'),
    );
    for (const l of all) {
      for (const s of [SECRET, TOKEN, 'r8_PERREQUEST99']) assert.ok(!l.includes(s), `leaked in: ${l}`);
    }
  });

  it("trainer and fixed-weights hotswap apply the model's own LoRA at lora_scale; local paths when allowed", async () => {
    const trainerBase = new Predictor({ modelDir: root, backend: cpuBackend, profile: 'trainer' });
    trainerBase.setup();
    made.push(trainerBase);
    const own = { ref: A, triggerWord: 'TOK' };
    const trainer = make({ profile: 'trainer', ownLora: own });
    const t0 = await run(trainerBase);
    const lines: string[] = [];
    const t1 = await run(trainer, {}, lines);
    assert.ok(!t1.equals(t0));
    assert.ok(lines.includes('Note: the prompt does not contain this model\'s trigger word "TOK"'), lines.join('\n'));
    assert.ok((await run(trainer, { lora_scale: 0 })).equals(t0), 'lora_scale=0 turns the own LoRA off');
    assert.ok((await run(trainer, { prompt: 'a TOK fox', lora_scale: 0 })).equals(await run(trainerBase, { prompt: 'a TOK fox' })));

    const fixed = make({ replicateWeights: false, ownLora: { ref: Apath, scale: 1 }, allowLocalLoras: true });
    assert.ok(!fixed.profile.fields.some((f) => f.name === 'replicate_weights'));
    const f1 = await run(fixed);
    assert.ok(f1.equals(await run(hotswap, { replicate_weights: A })), 'own LoRA (local path) == the same file as replicate_weights');
    const local = make({ allowLocalLoras: true });
    assert.ok((await run(local, { replicate_weights: Apath })).equals(f1));
    // own LoRA misconfigured: a plain error (not the caller's input)
    writeFileSync(join(root, 'junk.safetensors'), 'junk');
    const broken = make({ profile: 'trainer', ownLora: { ref: join(root, 'junk.safetensors') }, allowLocalLoras: true });
    await assert.rejects(
      run(broken),
      (e: unknown) => !(e instanceof InputValidationError) && /^the model's own LoRA: not a valid \.safetensors file/.test((e as Error).message),
    );
  });

  it('runtime mode: same images as fused (pixels within 1), base restored exactly', async () => {
    const rt = make({ loraMode: 'runtime' });
    const base = await run(hotswap);
    const fusedAB = await run(hotswap, { replicate_weights: A, extra_lora: B, extra_lora_scale: 0.7 });
    const lines: string[] = [];
    const rtAB = await run(rt, { replicate_weights: A, extra_lora: B, extra_lora_scale: 0.7 }, lines);
    assert.ok(
      lines.some((l) => /runtime adapters on \d+ layers/.test(l)),
      lines.join('\n'),
    );
    assert.ok(manager(rt) instanceof RuntimeLoraManager);
    const [x, y] = await Promise.all([rtAB, fusedAB].map((b) => sharp(b).raw().toBuffer()));
    let maxDiff = 0;
    for (let i = 0; i < x!.length; i++) maxDiff = Math.max(maxDiff, Math.abs(x![i]! - y![i]!));
    assert.ok(maxDiff <= 1, `runtime and fused pixels agree within 1 (max diff ${maxDiff})`);
    assert.ok(!rtAB.equals(base));
    assert.ok((await run(rt)).equals(base));
    // back to the same list: its adapters come from the cache, the image is the same
    const again: string[] = [];
    assert.ok((await run(rt, { replicate_weights: A, extra_lora: B, extra_lora_scale: 0.7 }, again)).equals(rtAB));
    assert.ok(
      again.some((l) => /runtime adapters on \d+ layers in [\d.]+ s, re-attached from the adapter cache/.test(l)),
      again.join('\n'),
    );
  });

  it('go_fast=true runs the fp8 path: deterministic, main LoRA x1.5, copies follow LoRA changes, ignored for images', async () => {
    // txt2img at the smallest table size (1:1 at 0.25 megapixels = 512x512), 2 steps
    const t2i = { prompt: 'a fox', aspect_ratio: '1:1', megapixels: '0.25', num_inference_steps: 2, seed: 7, output_format: 'png' };
    const go = async (extra: Record<string, unknown>, lines?: string[]) =>
      (await hotswap.predict({ ...t2i, ...extra }, { log: (l) => lines?.push(l) })).files[0]!.data;
    const plain = await go({ go_fast: false });
    const first: string[] = [];
    const fast = await go({ go_fast: true }, first);
    assert.ok(
      first.some((l) => /^go_fast: fp8 \(e4m3\) block weights and activations \(\d+ layers quantised in /.test(l)),
      first.join('\n'),
    );
    assert.ok(!fast.equals(plain), 'fp8 changes the image');
    const again: string[] = [];
    assert.ok((await go({ go_fast: true }, again)).equals(fast), 'go_fast is deterministic for a fixed seed');
    assert.ok(again.includes('go_fast: fp8 (e4m3) block weights and activations'), 'the fp8 copies are kept between predictions');

    const withLora: string[] = [];
    const fastA = await go({ go_fast: true, replicate_weights: A, lora_scale: 1 }, withLora);
    assert.ok(withLora.includes('go_fast: replicate_weights strength x1.5 on the fp8 path (as cog-flux does), 1 -> 1.5'), withLora.join('\n'));
    assert.ok(withLora.includes('LoRA scale: 1.5'), withLora.join('\n'));
    assert.ok(!fastA.equals(fast), 'the LoRA reaches the fp8 weights');
    assert.ok((await go({ go_fast: true })).equals(fast), 'unloading the LoRA re-quantises the pristine weights');

    const img: string[] = [];
    await run(hotswap, { go_fast: true }, img);
    assert.ok(!img.some((l) => l.startsWith('go_fast: fp8')), 'img2img runs in the model dtype');
    assert.ok(img.includes('go_fast is ignored in img2img mode (runs in bf16)'), img.join('\n'));
  });
});
