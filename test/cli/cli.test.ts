// The fluxserve command, run as a user runs it: the compiled bin in a child process.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import type { DType, RawArray } from '../../src/tensor/dtype.js';
import { loadSeed } from '../predictor/seeds.js';

const BIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/bfl-tiny-a', import.meta.url));

function run(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 240_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('fluxserve CLI', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'fluxserve-cli-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('predict on the tiny model writes valid images and prints their paths', async () => {
    const out = join(root, 'out');
    const r = run(
      [
        'predict',
        '-i',
        'prompt=a photo of a cat',
        '-i',
        'aspect_ratio=custom',
        '-i',
        'width=320',
        '-i',
        'height=256',
        '-i',
        'num_inference_steps=2',
        '-i',
        'num_outputs=2',
        '-i',
        'seed=1234',
        '-i',
        'output_format=png',
        '-o',
        out,
      ],
      { FLUXSERVE_CACHE: join(root, 'cache') },
    );
    assert.equal(r.code, 0, r.stderr);
    const paths = r.stdout.trim().split('\n');
    assert.deepEqual(paths, [join(out, 'out-0.png'), join(out, 'out-1.png')]);
    assert.match(r.stderr, /Using seed: 1234/);
    assert.match(r.stderr, /step 2\/2/);
    for (const p of paths) {
      const meta = await sharp(p).metadata();
      assert.equal(meta.format, 'png');
      assert.equal(meta.width, 320);
      assert.equal(meta.height, 256);
    }
    // The same seed reproduces the same image.
    const again = run(
      [
        'predict',
        '-i',
        'prompt=a photo of a cat',
        '-i',
        'aspect_ratio=custom',
        '-i',
        'width=320',
        '-i',
        'height=256',
        '-i',
        'num_inference_steps=2',
        '-i',
        'seed=1234',
        '-i',
        'output_format=png',
        '-o',
        join(root, 'again'),
      ],
      { FLUXSERVE_CACHE: join(root, 'cache') },
    );
    assert.equal(again.code, 0, again.stderr);
    assert.ok(readFileSync(join(root, 'again', 'out-0.png')).equals(readFileSync(paths[0]!)));
  });

  it('predict rejects a bad input with a message naming the field and the range', () => {
    const r = run(['predict', '-i', 'prompt=x', '-i', 'num_outputs=9', '-o', join(root, 'bad')], { FLUXSERVE_CACHE: join(root, 'cache') });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /num_outputs/);
    assert.match(r.stderr, /1 .*4/);
    assert.equal(existsSync(join(root, 'bad')), false);
  });

  it('debug reference-check passes on the BFL fixture and prints every case', () => {
    const r = run(['debug', 'reference-check', FIXTURE]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const name of [
      'forward.out',
      'tap.double_blocks.0.img',
      'tap.single_blocks.1',
      'noise.seed42.f32',
      'sample.latents',
      'sample.decoded',
      'sample.uint8',
      'vae.encoded',
    ]) {
      assert.match(r.stdout, new RegExp(`^${name.replace(/\./g, '\\.')}\\s.*ok`, 'm'), `${name} not reported ok`);
    }
    assert.match(r.stdout, /all \d+ checks passed/);
  });

  it('debug reference-check exits non-zero when a reference tensor is off', () => {
    const dir = join(root, 'bad-fixture');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    for (const f of ['config.json', 'weights-flux.safetensors', 'weights-ae.safetensors']) copyFileSync(join(FIXTURE, f), join(dir, f));
    const cases = SafetensorsFile.open(join(FIXTURE, 'cases.safetensors'));
    const entries: [string, { dtype: DType; shape: readonly number[]; data: RawArray }][] = [];
    for (const k of cases.keys()) {
      const info = cases.info(k)!;
      const data = cases.read(k);
      if (k === 'forward.out') (data as Float32Array)[5]! += 0.5; // one value off
      entries.push([k, { dtype: info.dtype, shape: info.shape, data }]);
    }
    cases.close();
    writeSafetensors(join(dir, 'cases.safetensors'), entries);
    const r = run(['debug', 'reference-check', dir]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^forward\.out\s.*FAIL/m);
  });

  it("schema prints each profile's OpenAPI document, field by field as the seeds", () => {
    type Prop = { type?: string; description?: string; allOf?: { $ref: string }[]; default?: unknown; minimum?: number; maximum?: number; 'x-order': number };
    type Doc = { components: { schemas: Record<string, { properties: Record<string, Prop>; required: string[]; enum?: string[] }> } };
    const cases = [
      ['trainer', [], '001_7ea0495fc2fa6a7e.txt'],
      ['hotswap', [], '002_ce0de2fa46b5b8d3.txt'],
      ['hotswap', ['--no-replicate-weights'], '003_ce5e5830ef703dc5.txt'],
    ] as const;
    for (const [profile, extra, seedFile] of cases) {
      const r = run(['schema', '--profile', profile, ...extra]);
      assert.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout) as Doc;
      const input = doc.components.schemas['Input']!;
      const seed = loadSeed(seedFile);
      const names = Object.entries(input.properties)
        .sort((a, b) => a[1]['x-order'] - b[1]['x-order'])
        .map(([k]) => k);
      assert.deepEqual(
        names,
        seed.fields.map((f) => f.name),
        `${seedFile}: field names and order`,
      );
      assert.deepEqual(input.required, ['prompt']);
      for (const f of seed.fields) {
        const prop = input.properties[f.name]!;
        assert.equal(prop.description, f.description, `${seedFile}: ${f.name} description`);
        // Enum properties are an allOf $ref (no type of their own); the type is the enum schema's.
        const enumRef = prop.allOf?.[0]?.$ref.split('/').pop();
        const type = enumRef ? (doc.components.schemas[enumRef] as unknown as { type: string }).type : prop.type;
        if (f.type) assert.equal(type, f.type, `${seedFile}: ${f.name} type`);
        if (f.min !== undefined) assert.equal(prop.minimum, f.min, `${seedFile}: ${f.name} minimum`);
        if (f.max !== undefined) assert.equal(prop.maximum, f.max, `${seedFile}: ${f.name} maximum`);
        const pyRepr = (v: unknown) => (typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v)); // the pages print Python values
        if (f.default !== undefined) assert.equal(pyRepr(prop.default), f.default, `${seedFile}: ${f.name} default`);
        if (f.options) {
          const ref = prop.allOf?.[0]?.$ref.split('/').pop();
          assert.ok(ref, `${seedFile}: ${f.name} is an enum`);
          assert.deepEqual(doc.components.schemas[ref]!.enum, f.options, `${seedFile}: ${f.name} choices`);
        }
      }
    }
    const bad = run(['schema', '--profile', 'nope']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /trainer or hotswap/);
  });

  it('predict says which inputs the mode ignores', () => {
    const r = run(
      [
        'predict',
        '-i',
        'prompt=x',
        '-i',
        'aspect_ratio=custom',
        '-i',
        'width=256',
        '-i',
        'height=256',
        '-i',
        'num_inference_steps=1',
        '-i',
        'prompt_strength=0.5',
        '-o',
        join(root, 'ign'),
      ],
      { FLUXSERVE_CACHE: join(root, 'cache') },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /prompt_strength is ignored/);
  });

  it('predict names a wrong model folder, and reports bad inputs before loading any weights', () => {
    const noModel = run(['predict', '-i', 'prompt=x', '--model', join(root, 'no-such-model')]);
    assert.equal(noModel.code, 1);
    assert.match(noModel.stderr, /no-such-model: not a FLUX model folder/);
    const maskOnly = run(['predict', '-i', 'prompt=x', '-i', `mask=data:image/png;base64,${Buffer.from('x').toString('base64')}`], {
      FLUXSERVE_CACHE: join(root, 'cache'),
    });
    assert.equal(maskOnly.code, 2);
    assert.match(maskOnly.stderr, /mask: requires image/);
    assert.doesNotMatch(maskOnly.stderr, /Loaded /, 'validation ran before the weights loaded');
  });

  it('prints usage for an unknown command', () => {
    const r = run(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  });
});
