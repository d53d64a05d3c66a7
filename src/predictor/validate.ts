// Validates a prediction's `input` object against a profile, the way Cog does before predict()
// runs (api-compat.md A.13, cog-flux-behaviour.md §1, §9), and reports which inputs the chosen
// mode ignores (§1.6).
//
// Coercion follows pydantic's lax mode, which the Python Cog servers (the ones Replicate's
// published schemas come from) apply:
//   integer  3, 3.0, "3", " 3 ", "3.0"          -> 3      (2.5 and "2.5" are errors: int_from_float / int_parsing)
//   number   2.5, 2, "2.5", "1e-1"               -> number
//   boolean  true/false, 0/1, "true"/"false"/"yes"/"no"/"on"/"off"/"t"/"f"/"y"/"n"/"1"/"0" (any case)
//   string   strings only (pydantic v2 rejects numbers: string_type); for choice fields a number
//            whose decimal spelling is a choice is accepted (megapixels: 1 -> "1"), as CLIs send them.
//   file     an http(s) URL or a data: URI (Cog's Path input; other schemes -> 422)
// Not accepted although pydantic's lax mode would: booleans for numeric fields (true as 1), which the
// current Cog server (coglet, JSON Schema) rejects too.
// Other behaviour:
//   - unknown keys are dropped, as Cog does, and named in a warning;
//   - null, and "" for optional text/file fields, mean "not given" (the default, or null);
//   - every error in the request is reported at once, in field order;
//   - deliberate fixes over cog-flux (cog-flux-behaviour.md §9): a mask without an image is a 422
//     (cog-flux silently runs txt2img), and aspect_ratio=custom without width/height is a 422 up
//     front (the fine-tuner raises a ValueError inside predict, hotswap crashes with a TypeError);
//     in img2img/inpainting mode the missing size is not an error because it is ignored anyway.

import type { FieldDef, Scalar } from './fields.js';
import { type ValidationErrorItem, InputValidationError, inputLoc } from './errors.js';
import { type InputValues, type Mode, detectMode } from './modes.js';
import type { Profile, TypedInput } from './profiles.js';

export interface ValidateOptions {
  /** URL schemes accepted for file inputs (default: data, http, https, as Cog). */
  readonly fileSchemes?: readonly string[];
  /** Overrides `profile.ownLora`: whether the model applies a LoRA of its own when replicate_weights is empty. */
  readonly ownLora?: boolean;
}

export interface IgnoredInput {
  readonly field: string;
  /** "in img2img mode", "unless aspect_ratio=custom", ... */
  readonly reason: string;
}

export interface ValidationResult<I> {
  /** Every field of the profile, in order: the given value, else the default, else null. */
  readonly input: I;
  /** Human-readable: ignored inputs ("aspect_ratio is ignored in img2img mode"), then unknown keys. */
  readonly warnings: string[];
  readonly mode: Mode;
  /** The ignored inputs behind the warnings, for UIs. */
  readonly ignored: IgnoredInput[];
}

const DEFAULT_FILE_SCHEMES: readonly string[] = ['data', 'http', 'https'];
const TRUE_WORDS = new Set(['true', 't', 'yes', 'y', 'on', '1']);
const FALSE_WORDS = new Set(['false', 'f', 'no', 'n', 'off', '0']);

type Coerced = { readonly ok: true; readonly value: Scalar | null } | { readonly ok: false; readonly type: string; readonly msg: string };

const fail = (type: string, msg: string): Coerced => ({ ok: false, type, msg });
const ok = (value: Scalar | null): Coerced => ({ ok: true, value });

/** How a rejected value is quoted in messages: JSON, shortened (data URIs can be megabytes). */
export function describeValue(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (v !== null && typeof v === 'object') return 'an object';
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 64 ? `${s.slice(0, 60)}...${s.slice(-1)}` : s;
}

/** The allowed range, as messages state it. */
export function rangeText(f: FieldDef): string {
  if (f.minimum !== undefined && f.maximum !== undefined) return `between ${f.minimum} and ${f.maximum}`;
  if (f.minimum !== undefined) return `at least ${f.minimum}`;
  return `at most ${f.maximum}`;
}

function coerceInteger(f: FieldDef, v: unknown): Coerced {
  let n: number;
  if (typeof v === 'number') {
    n = v;
  } else if (typeof v === 'string') {
    const s = v.trim();
    if (!/^[+-]?\d+(\.0*)?$/.test(s)) {
      const fractional = /^[+-]?(\d+\.\d*|\.\d+)$/.test(s);
      return fail(fractional ? 'int_from_float' : 'int_parsing', `${f.name}: must be an integer (got ${describeValue(v)})`);
    }
    n = Number(s);
  } else {
    return fail('int_type', `${f.name}: must be an integer (got ${describeValue(v)})`);
  }
  if (!Number.isFinite(n) || !Number.isInteger(n)) return fail('int_from_float', `${f.name}: must be an integer (got ${describeValue(v)})`);
  // JSON numbers past 2^53 have already lost digits; refuse rather than run a different seed.
  if (!Number.isSafeInteger(n)) {
    return fail(
      'int_parsing_size',
      `${f.name}: must be an integer between ${-Number.MAX_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER} (got ${describeValue(v)})`,
    );
  }
  return ok(n);
}

function coerceNumber(f: FieldDef, v: unknown): Coerced {
  if (typeof v === 'number') return Number.isFinite(v) ? ok(v) : fail('finite_number', `${f.name}: must be a finite number (got ${describeValue(v)})`);
  if (typeof v === 'string') {
    const s = v.trim();
    if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return ok(Number(s));
    return fail('float_parsing', `${f.name}: must be a number (got ${describeValue(v)})`);
  }
  return fail('float_type', `${f.name}: must be a number (got ${describeValue(v)})`);
}

function coerceBoolean(f: FieldDef, v: unknown): Coerced {
  if (typeof v === 'boolean') return ok(v);
  if (v === 0 || v === 1) return ok(v === 1);
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (TRUE_WORDS.has(s)) return ok(true);
    if (FALSE_WORDS.has(s)) return ok(false);
  }
  return fail(typeof v === 'string' || typeof v === 'number' ? 'bool_parsing' : 'bool_type', `${f.name}: must be true or false (got ${describeValue(v)})`);
}

function coerceString(f: FieldDef, v: unknown): Coerced {
  if (f.choices !== undefined) {
    const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : v;
    if (typeof s !== 'string') return fail('string_type', `${f.name}: must be one of ${f.choices.join(', ')} (got ${describeValue(v)})`);
    if (!f.choices.includes(s)) return fail('enum', `${f.name}: must be one of ${f.choices.join(', ')} (got ${describeValue(v)})`);
    return ok(s);
  }
  if (typeof v !== 'string') return fail('string_type', `${f.name}: must be a string (got ${describeValue(v)})`);
  return ok(v === '' && !f.required ? null : v);
}

function coerceFile(f: FieldDef, v: unknown, schemes: readonly string[]): Coerced {
  if (typeof v !== 'string') return fail('string_type', `${f.name}: must be a URL string (got ${describeValue(v)})`);
  if (v === '' && !f.required) return ok(null);
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(v);
  const scheme = m ? m[1]!.toLowerCase() : '';
  if (!schemes.includes(scheme)) {
    const allowed = schemes.map((s) => `'${s}'`).join(', ');
    return fail('value_error', `${f.name}: '${scheme}' is not a valid URL scheme; ${allowed} is supported (got ${describeValue(v)})`);
  }
  return ok(v);
}

function coerce(f: FieldDef, v: unknown, schemes: readonly string[]): Coerced {
  switch (f.type) {
    case 'integer':
      return coerceInteger(f, v);
    case 'number':
      return coerceNumber(f, v);
    case 'boolean':
      return coerceBoolean(f, v);
    case 'string':
      return coerceString(f, v);
    case 'file':
      return coerceFile(f, v, schemes);
  }
}

function checkBounds(f: FieldDef, n: number): ValidationErrorItem | null {
  if (f.minimum !== undefined && n < f.minimum) {
    return { loc: inputLoc(f.name), msg: `${f.name}: must be ${rangeText(f)} (got ${n})`, type: 'greater_than_equal' };
  }
  if (f.maximum !== undefined && n > f.maximum) {
    return { loc: inputLoc(f.name), msg: `${f.name}: must be ${rangeText(f)} (got ${n})`, type: 'less_than_equal' };
  }
  return null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Validate and complete a prediction input. Throws InputValidationError (HTTP 422, Cog's body)
 * listing every invalid field; otherwise returns the full typed input, the mode, and warnings.
 */
export function validateInput<I = TypedInput>(profile: Profile<I>, raw: unknown, opts: ValidateOptions = {}): ValidationResult<I> {
  if (raw === null || raw === undefined) raw = {}; // Cog: a missing or null input is {}
  if (!isObject(raw)) {
    throw new InputValidationError([{ loc: ['body', 'input'], msg: `input: must be an object (got ${describeValue(raw)})`, type: 'dict_type' }]);
  }
  const schemes = opts.fileSchemes ?? DEFAULT_FILE_SCHEMES;
  const errors: ValidationErrorItem[] = [];
  const out: Record<string, Scalar | null> = {};
  /** Fields the caller chose a value for (given, not null, not equal to the default). */
  const chosen = new Set<string>();
  const known = new Set(profile.fields.map((f) => f.name));

  for (const f of profile.fields) {
    const given = Object.hasOwn(raw, f.name) ? raw[f.name] : undefined;
    let value: Scalar | null = null;
    if (given !== undefined && given !== null) {
      const c = coerce(f, given, schemes);
      if (!c.ok) {
        errors.push({ loc: inputLoc(f.name), msg: c.msg, type: c.type });
        continue;
      }
      value = c.value;
      if (typeof value === 'number') {
        const e = checkBounds(f, value);
        if (e) {
          errors.push(e);
          continue;
        }
      }
    }
    if (value === null) {
      if (f.required) {
        errors.push({ loc: inputLoc(f.name), msg: `${f.name}: field required`, type: 'missing' });
        continue;
      }
      value = f.default ?? null;
    } else if (value !== f.default) {
      chosen.add(f.name);
    }
    out[f.name] = value;
  }

  // Cross-field checks, only on fields that are valid on their own.
  const has = (name: string): boolean => known.has(name) && out[name] !== null && out[name] !== undefined;
  const failed = (name: string): boolean => errors.some((e) => e.loc[2] === name);
  if (has('mask') && !has('image') && !failed('image')) {
    errors.push({
      loc: inputLoc('mask'),
      msg: 'mask: requires image (inpainting needs both image and mask; a mask alone would be ignored)',
      type: 'value_error',
    });
  }
  if (out['aspect_ratio'] === 'custom' && !has('image') && !failed('image') && known.has('width') && known.has('height')) {
    for (const side of ['width', 'height']) {
      if (!has(side) && !failed(side)) {
        errors.push({
          loc: inputLoc(side),
          msg: `${side}: required when aspect_ratio=custom (width and height must be defined if aspect ratio is 'custom')`,
          type: 'missing',
        });
      }
    }
  }
  if (errors.length > 0) throw new InputValidationError(errors);

  const values: InputValues = out;
  const mode = detectMode(values);
  const ctx = {
    mode,
    mainLora: has('replicate_weights') || (opts.ownLora ?? profile.ownLora),
    hasReplicateWeights: known.has('replicate_weights'),
  };
  const ignored: IgnoredInput[] = [];
  for (const rule of profile.ignoreRules) {
    if (!chosen.has(rule.field)) continue;
    const reason = rule.check(values, ctx);
    if (reason !== null) ignored.push({ field: rule.field, reason });
  }
  const warnings = ignored.map((i) => `${i.field} is ignored ${i.reason}`);
  for (const key of Object.keys(raw)) {
    if (!known.has(key)) warnings.push(`${key} is not an input of this model; ignored`);
  }
  return { input: out as unknown as I, warnings, mode, ignored };
}
