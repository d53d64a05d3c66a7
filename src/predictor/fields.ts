// A small typed DSL for predictor inputs. A profile lists FieldSpecs once (profiles.ts); the same
// list drives validation (validate.ts), the OpenAPI document (openapi.ts), docs/inputs.md
// (docs.ts) and the web form. The shape follows what Cog derives from `predict()` arguments
// (api-compat.md A.5): name, type, title, description, default, ge/le, choices, required, x-order.

/** `file` is Cog's `Path`: a string with `format: "uri"` in the schema (http(s) or data: URI). */
export type FieldType = 'string' | 'integer' | 'number' | 'boolean' | 'file';

export type Scalar = string | number | boolean;

/** What a profile author writes. Everything else (title, order, enum schema name) is derived. */
export interface FieldSpec {
  readonly name: string;
  readonly type: FieldType;
  /** Verbatim from the seed documents. */
  readonly description: string;
  /** Only `prompt` is required in these profiles. */
  readonly required?: boolean;
  /** A real default (Cog emits `default` only for these); absent means "None" in Python. */
  readonly default?: Scalar;
  /** Cog `ge`. */
  readonly minimum?: number;
  /** Cog `le`. */
  readonly maximum?: number;
  /** Cog `choices`: emitted as a separate enum component referenced through allOf. */
  readonly choices?: readonly string[];
  /** Overrides the derived title (Cog: "num_outputs" -> "Num Outputs"). */
  readonly title?: string;
}

/** A field as the rest of the code sees it. */
export interface FieldDef extends FieldSpec {
  readonly title: string;
  readonly required: boolean;
  /** Cog's `x-order`: the 0-based position of the argument. */
  readonly order: number;
  /** For choice fields: the components.schemas name Cog emits (the parameter's own name). */
  readonly enumSchema?: string;
}

/** Cog's title rule (Python `name.replace("_", " ").title()`, Go `TitleCase`): "num_outputs" -> "Num Outputs". */
export function titleCase(name: string): string {
  return name
    .split('_')
    .filter((w) => w !== '')
    .map((w) => w[0]!.toUpperCase() + w.slice(1).toLowerCase())
    .join(' ');
}

/** Resolve specs into FieldDefs: order from position, derived title, enum schema name. Checks the specs. */
export function resolveFields(specs: readonly FieldSpec[]): FieldDef[] {
  const seen = new Set<string>();
  return specs.map((s, order) => {
    if (seen.has(s.name)) throw new Error(`field ${s.name} is defined twice`);
    seen.add(s.name);
    checkSpec(s);
    const def: FieldDef = {
      ...s,
      title: s.title ?? titleCase(s.name),
      required: s.required === true,
      order,
      ...(s.choices !== undefined ? { enumSchema: s.name } : {}),
    };
    return Object.freeze(def);
  });
}

function checkSpec(s: FieldSpec): void {
  const bad = (why: string): never => {
    throw new Error(`field ${s.name}: ${why}`);
  };
  if (s.required === true && s.default !== undefined) bad('a required field has no default');
  if ((s.minimum !== undefined || s.maximum !== undefined) && s.type !== 'integer' && s.type !== 'number') bad('bounds on a non-numeric field');
  if (s.choices !== undefined && s.type !== 'string') bad('choices are strings here');
  if (s.default !== undefined) {
    const d = s.default;
    const ok =
      s.type === 'boolean'
        ? typeof d === 'boolean'
        : s.type === 'integer'
          ? Number.isInteger(d)
          : s.type === 'number'
            ? typeof d === 'number'
            : typeof d === 'string';
    if (!ok) bad(`default ${JSON.stringify(d)} is not a ${s.type}`);
    if (typeof d === 'number' && ((s.minimum !== undefined && d < s.minimum) || (s.maximum !== undefined && d > s.maximum))) bad('default out of range');
    if (s.choices !== undefined && !s.choices.includes(d as string)) bad('default is not a choice');
  }
}

// ---- Type-level: the TypeScript type of a validated input, derived from the specs --------------

type BaseValue<F extends FieldSpec> = F extends { readonly choices: readonly (infer C)[] }
  ? C
  : F['type'] extends 'integer' | 'number'
    ? number
    : F['type'] extends 'boolean'
      ? boolean
      : string;

/** Required fields and fields with a default always have a value; the others may be null. */
export type FieldValue<F extends FieldSpec> = F extends { readonly required: true }
  ? BaseValue<F>
  : F extends { readonly default: Scalar }
    ? BaseValue<F>
    : BaseValue<F> | null;

/** `{ prompt: string; aspect_ratio: '1:1' | ... ; seed: number | null; ... }` from a union of specs. */
export type InputOf<F extends FieldSpec> = { readonly [K in F as K['name']]: FieldValue<K> };
