// Input validation errors, declared once with their HTTP status, shaped like Cog's 422 body
// (api-compat.md A.13): {"detail": [{"loc": ["body", "input", field], "msg": ..., "type": ...}]}.
// `type` uses pydantic v2's error names (missing, int_parsing, less_than_equal, enum, ...); `msg`
// starts with the field name and says what is allowed ("num_outputs: must be between 1 and 4 (got 7)").

import type { ValidationError as FieldValidationError } from '../sampling/errors.js';

export interface ValidationErrorItem {
  readonly loc: readonly (string | number)[];
  readonly msg: string;
  readonly type: string;
}

/** The HTTP 422 body (components.schemas.HTTPValidationError). */
export interface HTTPValidationErrorBody {
  readonly detail: readonly ValidationErrorItem[];
}

export const INPUT_VALIDATION_STATUS = 422;

/** Where an input field's errors point (Cog: body.input.<field>). */
export function inputLoc(field: string): readonly string[] {
  return ['body', 'input', field];
}

/** One or more invalid inputs; every problem found in the request is listed at once. */
export class InputValidationError extends Error {
  readonly status = INPUT_VALIDATION_STATUS;
  readonly detail: readonly ValidationErrorItem[];

  constructor(detail: readonly ValidationErrorItem[]) {
    if (detail.length === 0) throw new Error('InputValidationError needs at least one item');
    super(detail.map((d) => d.msg).join('; '));
    this.name = 'InputValidationError';
    this.detail = Object.freeze([...detail]);
  }

  /** The JSON body to send with HTTP 422. */
  get body(): HTTPValidationErrorBody {
    return { detail: this.detail.map((d) => ({ loc: [...d.loc], msg: d.msg, type: d.type })) };
  }

  /** The fields named, in order. */
  get fields(): string[] {
    return this.detail.map((d) => String(d.loc[d.loc.length - 1]));
  }

  /** Wrap a single-field error thrown further down (e.g. src/sampling/sizes.ts) as a 422. */
  static fromFieldError(e: FieldValidationError): InputValidationError {
    return new InputValidationError([{ loc: inputLoc(e.field), msg: e.message, type: 'value_error' }]);
  }
}
