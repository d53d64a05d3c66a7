// The profiles against the user's seed documents (parsed here, field by field) and against the
// predictor source values recorded in shared/reference/cog-flux-behaviour.md §1.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { type FieldDef, resolveFields, titleCase } from '../../src/predictor/fields.js';
import { HOTSWAP, HOTSWAP_FIXED, OUTPUT_SCHEMA, type Profile, TRAINER, getProfile } from '../../src/predictor/profiles.js';
import { ASPECT_RATIOS } from '../../src/sampling/sizes.js';
import { HOTSWAP_SEEDS, SEEDS_DIR, SHARED_SEEDS_DIR, type Seed, type SeedField, TRAINER_SEEDS, loadSeed } from './seeds.js';

const seeds = new Map<string, Seed>([...TRAINER_SEEDS, ...HOTSWAP_SEEDS].map((f) => [f, loadSeed(f)]));
const seed = (f: string): Seed => seeds.get(f)!;

/** Which profile reproduces which seed (seed 003 lacks replicate_weights: the fixed-weights variant). */
const CASES: readonly [string, Profile<unknown>][] = [
  [TRAINER_SEEDS[0], TRAINER],
  [TRAINER_SEEDS[1], TRAINER],
  [HOTSWAP_SEEDS[0], HOTSWAP],
  [HOTSWAP_SEEDS[1], HOTSWAP_FIXED],
  [HOTSWAP_SEEDS[2], HOTSWAP],
];

/** How a Replicate page prints a default: Python's repr for booleans, the plain number or string otherwise. */
function pageDefault(d: FieldDef['default']): string | undefined {
  if (d === undefined) return undefined;
  if (typeof d === 'boolean') return d ? 'True' : 'False';
  return String(d);
}

function checkField(file: string, s: SeedField, f: FieldDef): void {
  const at = `${file}: ${s.name}`;
  assert.equal(f.name, s.name, at);
  assert.equal(f.description, s.description, `${at}: description verbatim`);
  if (s.required !== undefined) assert.equal(f.required, s.required, `${at}: required`);
  // Types: the pages print Cog's JSON type; a file (Path) input is a string, an enum property
  // (allOf $ref, no type of its own) prints as "None" on the pipe-table pages.
  if (s.type === null) assert.ok(f.choices !== undefined, `${at}: "None" type means an enum property`);
  else assert.equal(f.type === 'file' ? 'string' : f.type, s.type, `${at}: type`);
  if (s.isEnum !== undefined) assert.equal(f.choices !== undefined, s.isEnum, `${at}: enum-ness`);
  if (s.options !== undefined) assert.deepEqual(f.choices, s.options, `${at}: choices`);
  // Where the page lists a default it must match; a page without a default column (000) or a
  // field shown without one must have none (pipe tables and page text print every real default).
  if (s.default !== undefined) assert.equal(pageDefault(f.default), s.default, `${at}: default`);
  else if (seed(file).layout !== 'bullets') assert.equal(f.default, undefined, `${at}: no default on the page`);
  if (seed(file).layout !== 'bullets') {
    // Replicate's page omits "Min: 0" (a falsy bound), so a missing Min means 0 or none.
    if (s.min !== undefined) assert.equal(f.minimum, s.min, `${at}: minimum`);
    else assert.ok(f.minimum === undefined || f.minimum === 0, `${at}: page shows no Min, profile has ${f.minimum}`);
    assert.equal(f.maximum, s.max, `${at}: maximum`);
  }
}

describe('seed documents', () => {
  it('the in-repo copies are byte-identical to shared/seeds where present', (t) => {
    if (!fs.existsSync(SHARED_SEEDS_DIR)) {
      t.skip(`no ${SHARED_SEEDS_DIR}`);
      return;
    }
    for (const f of [...TRAINER_SEEDS, ...HOTSWAP_SEEDS]) {
      assert.deepEqual(fs.readFileSync(SEEDS_DIR + f), fs.readFileSync(SHARED_SEEDS_DIR + f), f);
    }
  });

  it('parse in all four layouts', () => {
    const got = [...seeds.values()].map((s) => [s.file.slice(0, 3), s.layout, s.model, s.fields.length]);
    assert.deepEqual(got, [
      ['000', 'bullets', 'ostris/flux-dev-lora-trainer', 18],
      ['001', 'page-text', 'jan890/flux_dev_ascii_art', 18],
      ['002', 'pipe-table', 'fofr/flux-dev-day', 21],
      ['003', 'page-tabs', undefined, 20],
      ['004', 'pipe-table', 'fofr/flux-handwriting-and-sketch', 21],
    ]);
  });

  it('within a profile the seeds agree except seed 003 lacking replicate_weights', () => {
    const strip = (s: Seed) => s.fields.map((f) => [f.name, f.description]);
    assert.deepEqual(strip(seed(TRAINER_SEEDS[0])), strip(seed(TRAINER_SEEDS[1])));
    assert.deepEqual(strip(seed(HOTSWAP_SEEDS[0])), strip(seed(HOTSWAP_SEEDS[2])));
    const without = strip(seed(HOTSWAP_SEEDS[0])).filter(([n]) => n !== 'replicate_weights');
    assert.deepEqual(strip(seed(HOTSWAP_SEEDS[1])), without);
    // Defaults and bounds where both pages print them.
    for (const [a, b] of [
      [TRAINER_SEEDS[1], TRAINER_SEEDS[1]],
      [HOTSWAP_SEEDS[0], HOTSWAP_SEEDS[1]],
      [HOTSWAP_SEEDS[0], HOTSWAP_SEEDS[2]],
    ] as const) {
      for (const f of seed(b).fields) {
        const g = seed(a).fields.find((x) => x.name === f.name)!;
        assert.deepEqual([g.default, g.min, g.max], [f.default, f.min, f.max], `${a} vs ${b}: ${f.name}`);
      }
    }
  });
});

describe('profiles reproduce the seeds', () => {
  for (const [file, profile] of CASES) {
    it(`${file} -> ${profile.name}/${profile.variant}: names, order, types, descriptions, defaults, bounds, choices`, () => {
      const s = seed(file);
      assert.deepEqual(
        profile.fields.map((f) => f.name),
        s.fields.map((f) => f.name),
        'names and order',
      );
      s.fields.forEach((sf, i) => {
        checkField(file, sf, profile.fields[i]!);
        assert.equal(profile.fields[i]!.order, i, `${sf.name}: x-order`);
      });
      assert.ok(profile.seeds.includes(file), 'profile lists the seed');
    });

    it(`${file}: output schema`, () => {
      assert.deepEqual(seed(file).output, { type: 'array', items: { type: 'string', format: 'uri' }, title: 'Output' });
      assert.deepEqual(profile.output, seed(file).output);
    });
  }
});

// Values from the predictor source, as cog-flux-behaviour.md records them; the seed pages omit
// some (000 prints no defaults or bounds; no page prints "Min: 0"; 002/004 print no choices).
type Expect = { d?: string | number | boolean; min?: number; max?: number; choices?: readonly string[]; req?: true; file?: true };
const RATIOS = ['1:1', '16:9', '21:9', '3:2', '2:3', '4:5', '5:4', '3:4', '4:3', '9:16', '9:21', 'custom'];

// §1.5 Trainer-style predictor (replicate/flux-fine-tuner:predict.py); replicate_weights is not shown by the seeds.
const TRAINER_SOURCE: Record<string, Expect> = {
  prompt: { req: true },
  image: { file: true },
  mask: { file: true },
  aspect_ratio: { d: '1:1', choices: RATIOS },
  width: { min: 256, max: 1440 },
  height: { min: 256, max: 1440 },
  num_outputs: { d: 1, min: 1, max: 4 },
  lora_scale: { d: 1, min: -1, max: 2 },
  num_inference_steps: { d: 28, min: 1, max: 50 },
  model: { d: 'dev', choices: ['dev', 'schnell'] },
  guidance_scale: { d: 3.5, min: 0, max: 10 },
  prompt_strength: { d: 0.8, min: 0, max: 1 },
  seed: {},
  extra_lora: {},
  extra_lora_scale: { d: 1, min: -1, max: 2 },
  output_format: { d: 'webp', choices: ['webp', 'jpg', 'png'] },
  output_quality: { d: 90, min: 0, max: 100 },
  disable_safety_checker: { d: false },
};

// §1.4 Fine-tune ("hotswap") predictor (replicate/cog-flux HotswapPredictor), in declaration order.
const HOTSWAP_SOURCE: Record<string, Expect> = {
  prompt: { req: true },
  image: { file: true },
  mask: { file: true },
  aspect_ratio: { d: '1:1', choices: RATIOS },
  height: { min: 256, max: 1440 },
  width: { min: 256, max: 1440 },
  prompt_strength: { d: 0.8, min: 0, max: 1 },
  model: { d: 'dev', choices: ['dev', 'schnell'] },
  num_outputs: { d: 1, min: 1, max: 4 },
  num_inference_steps: { d: 28, min: 1, max: 50 },
  guidance_scale: { d: 3, min: 0, max: 10 },
  seed: {},
  output_format: { d: 'webp', choices: ['webp', 'jpg', 'png'] },
  output_quality: { d: 80, min: 0, max: 100 },
  disable_safety_checker: { d: false },
  go_fast: { d: false },
  megapixels: { d: '1', choices: ['1', '0.25'] },
  replicate_weights: {},
  lora_scale: { d: 1, min: -1, max: 3 },
  extra_lora: {},
  extra_lora_scale: { d: 1, min: -1, max: 3 },
};

function checkSource(profile: Profile<unknown>, expected: Record<string, Expect>): void {
  assert.deepEqual(
    profile.fields.map((f) => f.name),
    Object.keys(expected).filter((n) => profile.fields.some((f) => f.name === n)),
  );
  for (const f of profile.fields) {
    const e = expected[f.name]!;
    const at = `${profile.name}/${profile.variant}: ${f.name}`;
    assert.equal(f.default, e.d, `${at}: default`);
    assert.equal(f.minimum, e.min, `${at}: minimum`);
    assert.equal(f.maximum, e.max, `${at}: maximum`);
    assert.deepEqual(f.choices, e.choices, `${at}: choices`);
    assert.equal(f.required, e.req === true, `${at}: required`);
    assert.equal(f.type === 'file', e.file === true, `${at}: file input`);
  }
}

describe('profiles match the predictor source (cog-flux-behaviour.md §1)', () => {
  it('trainer: §1.5', () => checkSource(TRAINER, TRAINER_SOURCE));
  it('hotswap: §1.4', () => checkSource(HOTSWAP, HOTSWAP_SOURCE));
  it('hotswap fixed-weights: §1.4 without replicate_weights', () => {
    checkSource(HOTSWAP_FIXED, HOTSWAP_SOURCE);
    assert.equal(HOTSWAP_FIXED.fields.length, HOTSWAP.fields.length - 1);
    assert.ok(!HOTSWAP_FIXED.fields.some((f) => f.name === 'replicate_weights'));
  });
  it('aspect_ratio choices are the size table (§2.1, src/sampling/sizes.ts) plus custom', () => {
    for (const p of [TRAINER, HOTSWAP]) {
      assert.deepEqual(p.fields.find((f) => f.name === 'aspect_ratio')!.choices, [...Object.keys(ASPECT_RATIOS), 'custom']);
    }
  });
  it('every profile returns the seeds output schema', () => {
    for (const p of [TRAINER, HOTSWAP, HOTSWAP_FIXED]) assert.equal(p.output, OUTPUT_SCHEMA);
  });
});

describe('getProfile', () => {
  it('returns the profile by name and the hotswap variant on request', () => {
    assert.equal(getProfile('trainer'), TRAINER);
    assert.equal(getProfile('hotswap'), HOTSWAP);
    assert.equal(getProfile('hotswap', { replicateWeights: true }), HOTSWAP);
    assert.equal(getProfile('hotswap', { replicateWeights: false }), HOTSWAP_FIXED);
  });
  it('rejects an unknown name', () => {
    assert.throws(() => getProfile('dev' as 'trainer'), /unknown profile "dev": expected trainer or hotswap/);
  });
  it('profiles are frozen', () => {
    assert.ok(Object.isFrozen(TRAINER) && Object.isFrozen(TRAINER.fields) && Object.isFrozen(TRAINER.fields[0]));
  });
});

describe('field DSL', () => {
  it('titles follow Cog (snake_case -> Title Case)', () => {
    assert.equal(titleCase('num_outputs'), 'Num Outputs');
    assert.equal(titleCase('disable_safety_checker'), 'Disable Safety Checker');
    assert.equal(titleCase('prompt'), 'Prompt');
    assert.equal(TRAINER.fields.find((f) => f.name === 'num_inference_steps')!.title, 'Num Inference Steps');
  });
  it('enum fields name their component after themselves; others have none', () => {
    for (const f of HOTSWAP.fields) assert.equal(f.enumSchema, f.choices !== undefined ? f.name : undefined, f.name);
  });
  it('rejects inconsistent specs', () => {
    assert.throws(() => resolveFields([{ name: 'a', type: 'integer', description: '', default: 5, maximum: 4 }]), /a: default out of range/);
    assert.throws(() => resolveFields([{ name: 'a', type: 'integer', description: '', default: 1.5 }]), /not a integer/);
    assert.throws(() => resolveFields([{ name: 'a', type: 'string', description: '', choices: ['x'], default: 'y' }]), /not a choice/);
    assert.throws(() => resolveFields([{ name: 'a', type: 'string', description: '', minimum: 1 }]), /bounds on a non-numeric/);
    assert.throws(() => resolveFields([{ name: 'a', type: 'string', description: '', required: true, default: 'x' }]), /required field has no default/);
    const dup = { name: 'a', type: 'string', description: '' } as const;
    assert.throws(() => resolveFields([dup, dup]), /defined twice/);
  });
});
