// `fluxserve predict` with a remote LoRA: a hotswap replicate_weights on (fake) Hugging Face reached
// through HF_ENDPOINT (huggingface_hub's mirror variable), downloaded once into the LoRA cache,
// with HF_TOKEN sent to the hub and never printed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { type FakeHubs, startFakeHubs } from '../helpers/fake-hubs.js';
import { tinyLora } from '../helpers/tiny-lora.js';

const BIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const HF_TOKEN = 'hf_cliTESTtoken_9876543210';

/** The CLI in a child process, without blocking this process (the fake hub answers from here). */
function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

describe('fluxserve predict with a remote LoRA', () => {
  let root: string;
  let hubs: FakeHubs;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'fluxserve-cli-lora-'));
    hubs = await startFakeHubs();
    hubs.hfRepos.set('acme/tiny-style', {
      files: {
        'lora.safetensors': tinyLora(
          5,
          [
            ['transformer_blocks.0.attn.to_q', 64, 64],
            ['proj_out', 64, 64],
          ],
          4,
          0.8,
        ),
      },
      token: HF_TOKEN,
    });
  });
  after(async () => {
    await hubs.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('downloads replicate_weights once, applies it, and never prints the token', async () => {
    const env = { FLUXSERVE_CACHE: join(root, 'cache'), HF_ENDPOINT: hubs.hf, HF_TOKEN };
    const inputs = [
      '-i',
      'prompt=a fox',
      '-i',
      'aspect_ratio=custom',
      '-i',
      'width=256',
      '-i',
      'height=256',
      '-i',
      'num_inference_steps=1',
      '-i',
      'seed=3',
      '-i',
      'output_format=png',
      '--profile',
      'hotswap',
    ];
    const base = await run(['predict', ...inputs, '-o', join(root, 'base')], env);
    assert.equal(base.code, 0, base.stderr);
    const hitsBefore = hubs.hits.length;
    const ref = 'huggingface.co/acme/tiny-style/lora.safetensors';
    const first = await run(['predict', ...inputs, '-i', `replicate_weights=${ref}`, '-o', join(root, 'a')], env);
    assert.equal(first.code, 0, first.stderr);
    assert.ok(hubs.hits.length > hitsBefore, 'the LoRA was downloaded from the hub');
    assert.ok(
      hubs.hits.slice(hitsBefore).some((h) => h.server === 'hf' && h.authorization === `Bearer ${HF_TOKEN}`),
      'HF_TOKEN sent to the hub',
    );
    const hitsAfter = hubs.hits.length;
    const second = await run(['predict', ...inputs, '-i', `replicate_weights=${ref}`, '-o', join(root, 'b')], env);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(hubs.hits.length, hitsAfter, 'the second run uses the cache');
    const img = (d: string) => readFileSync(join(root, d, 'out-0.png'));
    assert.ok(!img('a').equals(img('base')), 'the LoRA changes the image');
    assert.ok(img('a').equals(img('b')), 'cached LoRA gives the same image');
    // --lora-mode runtime: the same LoRA as adapters (the tiny model is f32: the same image to rounding)
    const rt = await run(['predict', ...inputs, '-i', `replicate_weights=${ref}`, '--lora-mode', 'runtime', '-o', join(root, 'c')], env);
    assert.equal(rt.code, 0, rt.stderr);
    assert.match(rt.stderr + rt.stdout, /as runtime adapters on \d+ layers/);
    const [pa, pc] = await Promise.all(['a', 'c'].map((d) => sharp(img(d)).raw().toBuffer()));
    let maxDiff = 0;
    for (let i = 0; i < pa!.length; i++) maxDiff = Math.max(maxDiff, Math.abs(pa![i]! - pc![i]!));
    assert.ok(maxDiff <= 1, `runtime and fused pixels within 1 (max diff ${maxDiff})`);
    const bad = await run(['predict', ...inputs, '--lora-mode', 'lazy', '-o', join(root, 'd')], env);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--lora-mode must be fused or runtime \(got lazy\)/);
    for (const r of [first, second]) {
      assert.doesNotMatch(r.stdout + r.stderr, new RegExp(HF_TOKEN), 'the token is never printed');
      assert.doesNotMatch(r.stdout + r.stderr, new RegExp(hubs.signature), 'no signed query is printed');
    }
  });
});
