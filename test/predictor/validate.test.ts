import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InputValidationError, type ValidationErrorItem } from '../../src/predictor/errors.js';
import type { FieldDef } from '../../src/predictor/fields.js';
import { HOTSWAP, HOTSWAP_FIXED, type Profile, TRAINER } from '../../src/predictor/profiles.js';
import { validateInput } from '../../src/predictor/validate.js';
import { ValidationError as FieldValidationError } from '../../src/sampling/errors.js';

const IMG = 'https://example.com/in.png';
const MASK = 'data:image/png;base64,iVBORw0KGgo=';

/** The 422 items for an input that must fail. */
function errorsOf(profile: Profile<unknown>, raw: unknown): readonly ValidationErrorItem[] {
  try {
    validateInput(profile, raw);
  } catch (e) {
    assert.ok(e instanceof InputValidationError, `expected InputValidationError, got ${String(e)}`);
    assert.equal(e.status, 422);
    assert.deepEqual(e.body, { detail: e.detail.map((d) => ({ loc: [...d.loc], msg: d.msg, type: d.type })) });
    return e.detail;
  }
  assert.fail(`expected a validation error for ${JSON.stringify(raw)}`);
}

function oneError(profile: Profile<unknown>, raw: unknown): ValidationErrorItem {
  const d = errorsOf(profile, raw);
  assert.equal(d.length, 1, JSON.stringify(d));
  return d[0]!;
}

const PROFILES: readonly Profile<unknown>[] = [TRAINER, HOTSWAP, HOTSWAP_FIXED];
const numeric = (p: Profile<unknown>): FieldDef[] => p.fields.filter((f) => f.minimum !== undefined || f.maximum !== undefined);

describe('bounds', () => {
  for (const p of PROFILES) {
    for (const f of numeric(p)) {
      it(`${p.name}/${p.variant} ${f.name}: each bound violated -> 422 naming the field and range`, () => {
        const step = f.type === 'integer' ? 1 : 0.5;
        for (const [bad, type] of [
          [f.maximum! + step, 'less_than_equal'],
          [f.minimum! - step, 'greater_than_equal'],
        ] as const) {
          const e = oneError(p, { prompt: 'x', [f.name]: bad });
          assert.deepEqual(e.loc, ['body', 'input', f.name]);
          assert.equal(e.type, type);
          assert.equal(e.msg, `${f.name}: must be between ${f.minimum} and ${f.maximum} (got ${bad})`);
        }
      });
      it(`${p.name}/${p.variant} ${f.name}: the bounds themselves are accepted`, () => {
        for (const v of [f.minimum!, f.maximum!]) {
          const extra = f.name === 'width' || f.name === 'height' ? { aspect_ratio: 'custom', width: 512, height: 512 } : {};
          const r = validateInput(p, { prompt: 'x', ...extra, [f.name]: v });
          assert.equal((r.input as Record<string, unknown>)[f.name], v);
        }
      });
    }
  }

  it('the message example from the brief', () => {
    const e = oneError(TRAINER, { prompt: 'x', num_outputs: 7 });
    assert.equal(e.msg, 'num_outputs: must be between 1 and 4 (got 7)');
  });

  it('trainer lora_scale stops at 2, hotswap at 3', () => {
    assert.equal(oneError(TRAINER, { prompt: 'x', lora_scale: 2.5 }).msg, 'lora_scale: must be between -1 and 2 (got 2.5)');
    assert.equal(validateInput(HOTSWAP, { prompt: 'x', lora_scale: 2.5 }).input.lora_scale, 2.5);
  });
});

describe('choices', () => {
  for (const p of PROFILES) {
    for (const f of p.fields.filter((g) => g.choices !== undefined)) {
      it(`${p.name}/${p.variant} ${f.name}: every choice accepted, anything else -> enum error listing them`, () => {
        for (const c of f.choices!) {
          const extra = c === 'custom' ? { width: 512, height: 512 } : {};
          assert.equal((validateInput(p, { prompt: 'x', ...extra, [f.name]: c }).input as Record<string, unknown>)[f.name], c);
        }
        const e = oneError(p, { prompt: 'x', [f.name]: 'nope' });
        assert.deepEqual(e.loc, ['body', 'input', f.name]);
        assert.equal(e.type, 'enum');
        assert.equal(e.msg, `${f.name}: must be one of ${f.choices!.join(', ')} (got "nope")`);
      });
    }
  }

  it('choices are case-sensitive, as Cog compares them exactly', () => {
    assert.equal(oneError(TRAINER, { prompt: 'x', output_format: 'PNG' }).type, 'enum');
  });

  it('a number whose spelling is a choice is accepted (megapixels: 0.25 -> "0.25")', () => {
    assert.equal(validateInput(HOTSWAP, { prompt: 'x', megapixels: 0.25 }).input.megapixels, '0.25');
    assert.equal(validateInput(HOTSWAP, { prompt: 'x', megapixels: 1 }).input.megapixels, '1');
    assert.equal(oneError(HOTSWAP, { prompt: 'x', megapixels: 2 }).type, 'enum');
    assert.equal(oneError(HOTSWAP, { prompt: 'x', megapixels: true }).type, 'string_type');
  });
});

describe('types and coercion (pydantic lax mode)', () => {
  it('integers: 3, 3.0, "3", " 3 ", "3.0" are 3', () => {
    for (const v of [3, 3.0, '3', ' 3 ', '3.0', '+3']) assert.equal(validateInput(TRAINER, { prompt: 'x', num_outputs: v }).input.num_outputs, 3, String(v));
  });
  it('integers: fractions, words, lists, objects and booleans are rejected with the right type', () => {
    const cases: [unknown, string][] = [
      [2.5, 'int_from_float'],
      ['2.5', 'int_from_float'],
      ['abc', 'int_parsing'],
      ['', 'int_parsing'],
      [[1], 'int_type'],
      [{ n: 1 }, 'int_type'],
      [true, 'int_type'],
    ];
    for (const [v, type] of cases) {
      const e = oneError(TRAINER, { prompt: 'x', num_outputs: v });
      assert.equal(e.type, type, JSON.stringify(v));
      assert.match(e.msg, /^num_outputs: must be an integer \(got .+\)$/);
    }
  });
  it('seed takes any safe integer, negative included, and refuses ones JSON cannot hold exactly', () => {
    assert.equal(validateInput(TRAINER, { prompt: 'x', seed: -1 }).input.seed, -1);
    assert.equal(validateInput(TRAINER, { prompt: 'x', seed: '123456789' }).input.seed, 123456789);
    assert.equal(oneError(TRAINER, { prompt: 'x', seed: 2 ** 60 }).type, 'int_parsing_size');
  });
  it('numbers: 2, 2.5, "2.5", "1e-1" accepted; words and booleans rejected', () => {
    assert.equal(validateInput(TRAINER, { prompt: 'x', guidance_scale: 2 }).input.guidance_scale, 2);
    assert.equal(validateInput(TRAINER, { prompt: 'x', guidance_scale: '2.5' }).input.guidance_scale, 2.5);
    assert.equal(validateInput(TRAINER, { prompt: 'x', prompt_strength: '1e-1' }).input.prompt_strength, 0.1);
    assert.equal(oneError(TRAINER, { prompt: 'x', guidance_scale: 'high' }).type, 'float_parsing');
    const e = oneError(TRAINER, { prompt: 'x', guidance_scale: false });
    assert.deepEqual([e.type, e.msg], ['float_type', 'guidance_scale: must be a number (got false)']);
  });
  it('a coerced number is still range-checked', () => {
    assert.equal(oneError(TRAINER, { prompt: 'x', num_outputs: '9' }).msg, 'num_outputs: must be between 1 and 4 (got 9)');
  });
  it('booleans: true/false, 0/1 and the pydantic words', () => {
    for (const v of [true, 1, 'true', 'True', 'yes', 'on', 't', 'y', '1']) {
      assert.equal(validateInput(TRAINER, { prompt: 'x', disable_safety_checker: v }).input.disable_safety_checker, true, String(v));
    }
    for (const v of [false, 0, 'false', 'FALSE', 'no', 'off', 'f', 'n', '0']) {
      assert.equal(validateInput(TRAINER, { prompt: 'x', disable_safety_checker: v }).input.disable_safety_checker, false, String(v));
    }
    for (const [v, type] of [
      ['maybe', 'bool_parsing'],
      [2, 'bool_parsing'],
      [[], 'bool_type'],
    ] as const) {
      const e = oneError(TRAINER, { prompt: 'x', disable_safety_checker: v });
      assert.equal(e.type, type);
      assert.match(e.msg, /^disable_safety_checker: must be true or false \(got .+\)$/);
    }
  });
  it('strings: numbers are not strings', () => {
    const e = oneError(TRAINER, { prompt: 42 });
    assert.deepEqual([e.loc, e.type, e.msg], [['body', 'input', 'prompt'], 'string_type', 'prompt: must be a string (got 42)']);
  });
  it('files: http(s) URLs and data: URIs; other schemes are 422 like Cog', () => {
    assert.equal(validateInput(TRAINER, { prompt: 'x', image: IMG }).input.image, IMG);
    assert.equal(validateInput(TRAINER, { prompt: 'x', image: MASK }).input.image, MASK);
    const e = oneError(TRAINER, { prompt: 'x', image: 'ftp://example.com/a.png' });
    assert.deepEqual(e.loc, ['body', 'input', 'image']);
    assert.equal(e.msg, `image: 'ftp' is not a valid URL scheme; 'data', 'http', 'https' is supported (got "ftp://example.com/a.png")`);
    assert.match(oneError(TRAINER, { prompt: 'x', image: 'photo.png' }).msg, /^image: '' is not a valid URL scheme/);
    assert.equal(oneError(TRAINER, { prompt: 'x', image: 5 }).type, 'string_type');
    // A caller (e.g. the CLI) may allow more schemes.
    assert.equal(validateInput(TRAINER, { prompt: 'x', image: 'file:///tmp/a.png' }, { fileSchemes: ['file'] }).input.image, 'file:///tmp/a.png');
  });
  it('long values are shortened in messages', () => {
    const big = `ftp://${'a'.repeat(5000)}`;
    const e = oneError(TRAINER, { prompt: 'x', image: big });
    assert.ok(e.msg.length < 200, e.msg);
  });
});

describe('required fields, nulls, empties, unknown keys', () => {
  it('missing prompt -> 422 "field required" at body.input.prompt', () => {
    for (const p of PROFILES) {
      for (const raw of [{}, { prompt: null }, null, undefined]) {
        assert.deepEqual(oneError(p, raw), { loc: ['body', 'input', 'prompt'], msg: 'prompt: field required', type: 'missing' });
      }
    }
  });
  it('an empty prompt is a prompt (Cog accepts "")', () => {
    assert.equal(validateInput(TRAINER, { prompt: '' }).input.prompt, '');
  });
  it('input that is not an object -> 422 at body.input', () => {
    for (const raw of [[], 'prompt', 3]) {
      const e = oneError(TRAINER, raw);
      assert.deepEqual([e.loc, e.type], [['body', 'input'], 'dict_type']);
    }
  });
  it('null and "" for optional inputs mean "not given"', () => {
    const r = validateInput(HOTSWAP, { prompt: 'x', num_outputs: null, image: '', extra_lora: '', replicate_weights: null, seed: null });
    assert.equal(r.input.num_outputs, 1);
    assert.equal(r.input.image, null);
    assert.equal(r.input.extra_lora, null);
    assert.equal(r.input.seed, null);
    assert.equal(r.mode, 'txt2img');
  });
  it('unknown keys are dropped with a warning (Cog drops them silently)', () => {
    const r = validateInput(TRAINER, { prompt: 'x', lora_weights: 'a/b', __proto__x: 1 });
    assert.ok(!('lora_weights' in r.input));
    assert.deepEqual(r.warnings, ['lora_weights is not an input of this model; ignored', '__proto__x is not an input of this model; ignored']);
  });
  it('replicate_weights is unknown to trainer and to the fixed-weights hotswap variant', () => {
    for (const p of [TRAINER, HOTSWAP_FIXED]) {
      assert.deepEqual(validateInput(p, { prompt: 'x', replicate_weights: 'a/b' }).warnings, ['replicate_weights is not an input of this model; ignored']);
    }
    assert.equal(validateInput(HOTSWAP, { prompt: 'x', replicate_weights: 'a/b' }).input.replicate_weights, 'a/b');
  });
});

describe('defaults', () => {
  it('trainer: every field present, in order, defaults filled, nulls for the rest', () => {
    const r = validateInput(TRAINER, { prompt: 'a cat' });
    assert.deepEqual(
      Object.keys(r.input),
      TRAINER.fields.map((f) => f.name),
    );
    assert.deepEqual(r.input, {
      prompt: 'a cat',
      image: null,
      mask: null,
      aspect_ratio: '1:1',
      width: null,
      height: null,
      num_outputs: 1,
      lora_scale: 1,
      num_inference_steps: 28,
      model: 'dev',
      guidance_scale: 3.5,
      prompt_strength: 0.8,
      seed: null,
      extra_lora: null,
      extra_lora_scale: 1,
      output_format: 'webp',
      output_quality: 90,
      disable_safety_checker: false,
    });
    assert.deepEqual(r.warnings, []);
    assert.equal(r.mode, 'txt2img');
  });
  it('hotswap: every field present, in order, defaults filled', () => {
    const r = validateInput(HOTSWAP, { prompt: 'a cat' });
    assert.deepEqual(
      Object.keys(r.input),
      HOTSWAP.fields.map((f) => f.name),
    );
    assert.deepEqual(r.input, {
      prompt: 'a cat',
      image: null,
      mask: null,
      aspect_ratio: '1:1',
      height: null,
      width: null,
      prompt_strength: 0.8,
      model: 'dev',
      num_outputs: 1,
      num_inference_steps: 28,
      guidance_scale: 3,
      seed: null,
      output_format: 'webp',
      output_quality: 80,
      disable_safety_checker: false,
      go_fast: false,
      megapixels: '1',
      replicate_weights: null,
      lora_scale: 1,
      extra_lora: null,
      extra_lora_scale: 1,
    });
  });
  it('the input type follows the profile', () => {
    const r = validateInput(TRAINER, { prompt: 'x' });
    const ar: '1:1' | '16:9' | '21:9' | '3:2' | '2:3' | '4:5' | '5:4' | '3:4' | '4:3' | '9:16' | '9:21' | 'custom' = r.input.aspect_ratio;
    const seed: number | null = r.input.seed;
    const steps: number = r.input.num_inference_steps;
    // @ts-expect-error replicate_weights is not a trainer input
    void r.input.replicate_weights;
    const h = validateInput(HOTSWAP, { prompt: 'x' });
    const mp: '1' | '0.25' = h.input.megapixels;
    const rw: string | null = h.input.replicate_weights;
    assert.deepEqual([ar, seed, steps, mp, rw], ['1:1', null, 28, '1', null]);
  });
});

describe('cross-field checks', () => {
  it('a mask without an image is a 422 (cog-flux silently ignores it)', () => {
    for (const p of PROFILES) {
      assert.deepEqual(oneError(p, { prompt: 'x', mask: MASK }), {
        loc: ['body', 'input', 'mask'],
        msg: 'mask: requires image (inpainting needs both image and mask; a mask alone would be ignored)',
        type: 'value_error',
      });
    }
  });
  it('image + mask is inpainting, image alone img2img', () => {
    assert.equal(validateInput(TRAINER, { prompt: 'x', image: IMG, mask: MASK }).mode, 'inpaint');
    assert.equal(validateInput(HOTSWAP, { prompt: 'x', image: IMG }).mode, 'img2img');
  });
  it('an invalid image does not also report the mask', () => {
    const d = errorsOf(TRAINER, { prompt: 'x', image: 'ftp://a', mask: MASK });
    assert.deepEqual(
      d.map((e) => e.loc[2]),
      ['image'],
    );
  });
  it("aspect_ratio=custom needs width and height in text-to-image mode (the fine-tuner's message)", () => {
    for (const p of PROFILES) {
      const d = errorsOf(p, { prompt: 'x', aspect_ratio: 'custom', width: 512 });
      assert.deepEqual(d, [
        {
          loc: ['body', 'input', 'height'],
          msg: "height: required when aspect_ratio=custom (width and height must be defined if aspect ratio is 'custom')",
          type: 'missing',
        },
      ]);
      assert.equal(errorsOf(p, { prompt: 'x', aspect_ratio: 'custom' }).length, 2);
      const r = validateInput(p, { prompt: 'x', aspect_ratio: 'custom', width: 1000, height: 257 });
      assert.deepEqual([(r.input as Record<string, unknown>)['width'], (r.input as Record<string, unknown>)['height']], [1000, 257]);
    }
  });
  it('custom without a size is fine with an image (the size is ignored there)', () => {
    const r = validateInput(TRAINER, { prompt: 'x', aspect_ratio: 'custom', image: IMG });
    assert.deepEqual(r.warnings, ['aspect_ratio is ignored in img2img mode']);
  });
  it('all errors of a request come at once, in field order', () => {
    const d = errorsOf(TRAINER, { num_outputs: 0, aspect_ratio: '7:5', guidance_scale: 11, output_quality: 'best', mask: MASK });
    assert.deepEqual(
      d.map((e) => e.loc[2]),
      ['prompt', 'aspect_ratio', 'num_outputs', 'guidance_scale', 'output_quality', 'mask'],
    );
    assert.equal(new InputValidationError(d).message, d.map((e) => e.msg).join('; '));
  });
});

describe('ignored-input warnings (§1.6)', () => {
  const warn = (p: Profile<unknown>, raw: Record<string, unknown>, opts = {}) => validateInput(p, { prompt: 'x', ...raw }, opts).warnings;

  it('aspect_ratio / width / height / megapixels in img2img and inpainting mode', () => {
    assert.deepEqual(warn(TRAINER, { image: IMG, aspect_ratio: '16:9' }), ['aspect_ratio is ignored in img2img mode']);
    assert.deepEqual(warn(HOTSWAP, { image: IMG, mask: MASK, aspect_ratio: 'custom', width: 512, height: 512, megapixels: '0.25' }), [
      'aspect_ratio is ignored in inpainting mode',
      'width is ignored in inpainting mode',
      'height is ignored in inpainting mode',
      'megapixels is ignored in inpainting mode',
    ]);
  });
  it('width/height unless aspect_ratio=custom; megapixels with custom', () => {
    assert.deepEqual(warn(TRAINER, { width: 512 }), ['width is ignored unless aspect_ratio=custom']);
    assert.deepEqual(warn(HOTSWAP, { aspect_ratio: '3:2', height: 512 }), ['height is ignored unless aspect_ratio=custom']);
    assert.deepEqual(warn(HOTSWAP, { aspect_ratio: 'custom', width: 512, height: 512 }), []);
    assert.deepEqual(warn(HOTSWAP, { aspect_ratio: 'custom', width: 512, height: 512, megapixels: '0.25' }), [
      'megapixels is ignored with aspect_ratio=custom',
    ]);
  });
  it('prompt_strength without an image', () => {
    assert.deepEqual(warn(TRAINER, { prompt_strength: 0.5 }), ['prompt_strength is ignored in text-to-image mode (no image)']);
    assert.deepEqual(warn(TRAINER, { prompt_strength: 0.5, image: IMG }), []);
  });
  it('guidance_scale with schnell', () => {
    for (const p of [TRAINER, HOTSWAP]) {
      assert.deepEqual(warn(p, { model: 'schnell', guidance_scale: 2 }), ['guidance_scale is ignored with model=schnell (schnell has no guidance embedding)']);
      assert.deepEqual(warn(p, { model: 'dev', guidance_scale: 2 }), []);
    }
  });
  it('go_fast=true with custom sizes and images (cog-flux runs those in bf16)', () => {
    assert.deepEqual(warn(HOTSWAP, { go_fast: true, aspect_ratio: 'custom', width: 512, height: 512 }), [
      'go_fast is ignored with aspect_ratio=custom (runs in bf16)',
    ]);
    assert.deepEqual(warn(HOTSWAP, { go_fast: true, image: IMG }), ['go_fast is ignored in img2img mode (runs in bf16)']);
    assert.deepEqual(warn(HOTSWAP, { go_fast: true }), []);
  });
  it('output_quality with png, extra_lora_scale without extra_lora', () => {
    assert.deepEqual(warn(TRAINER, { output_format: 'png', output_quality: 100 }), ['output_quality is ignored for png output']);
    assert.deepEqual(warn(TRAINER, { extra_lora_scale: 0.5 }), ['extra_lora_scale is ignored without extra_lora']);
    assert.deepEqual(warn(TRAINER, { extra_lora_scale: 0.5, extra_lora: 'fofr/flux-pixar-cars' }), []);
  });
  it('lora_scale without a main LoRA: hotswap without replicate_weights; never for the trainer fine-tune', () => {
    assert.deepEqual(warn(HOTSWAP, { lora_scale: 0.7 }), ['lora_scale is ignored without replicate_weights']);
    assert.deepEqual(warn(HOTSWAP, { lora_scale: 0.7, replicate_weights: 'fofr/flux-dev-day' }), []);
    assert.deepEqual(warn(HOTSWAP, { lora_scale: 0.7 }, { ownLora: true }), []);
    assert.deepEqual(warn(TRAINER, { lora_scale: 0.7 }), []);
    assert.deepEqual(warn(HOTSWAP_FIXED, { lora_scale: 0.7 }), []);
    assert.deepEqual(warn(TRAINER, { lora_scale: 0.7 }, { ownLora: false }), ['lora_scale is ignored because this model has no LoRA weights']);
  });
  it('values equal to the default are not reported (forms send every field)', () => {
    assert.deepEqual(warn(TRAINER, { image: IMG, aspect_ratio: '1:1', prompt_strength: 0.8, output_quality: 90, model: 'dev' }), []);
    assert.deepEqual(warn(HOTSWAP, { output_format: 'png', output_quality: 80, megapixels: '1', go_fast: false, lora_scale: 1 }), []);
  });
  it('the structured list matches the warnings', () => {
    const r = validateInput(TRAINER, { prompt: 'x', image: IMG, mask: MASK, aspect_ratio: '4:3', foo: 1 });
    assert.deepEqual(r.ignored, [{ field: 'aspect_ratio', reason: 'in inpainting mode' }]);
    assert.deepEqual(r.warnings, ['aspect_ratio is ignored in inpainting mode', 'foo is not an input of this model; ignored']);
  });
});

describe('InputValidationError', () => {
  it('wraps a single-field error from src/sampling (sizes) as a 422', () => {
    const e = InputValidationError.fromFieldError(new FieldValidationError('width', 'must be between 256 and 1440, got 2000'));
    assert.deepEqual(e.body, { detail: [{ loc: ['body', 'input', 'width'], msg: 'width: must be between 256 and 1440, got 2000', type: 'value_error' }] });
    assert.deepEqual(e.fields, ['width']);
    assert.equal(e.status, 422);
  });
  it('the body is plain JSON matching components.schemas.ValidationError', () => {
    const d = errorsOf(HOTSWAP, { num_outputs: 5 });
    const body = JSON.parse(JSON.stringify(new InputValidationError(d).body)) as { detail: ValidationErrorItem[] };
    for (const item of body.detail) {
      assert.deepEqual(Object.keys(item).sort(), ['loc', 'msg', 'type']);
      assert.ok(item.loc.every((l) => typeof l === 'string' || typeof l === 'number'));
    }
  });
  it('needs at least one item', () => {
    assert.throws(() => new InputValidationError([]), /at least one item/);
  });
});
