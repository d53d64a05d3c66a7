// The checks of admit() that need no queue: the model a request runs on, its input with the
// model's defaults merged and validated against the model's schema, and its http(s) file inputs
// downloaded. Each refusal is a ServiceError naming the field.

import { InputValidationError } from '../../predictor/errors.js';
import type { Profile } from '../../predictor/profiles.js';
import { validateInput } from '../../predictor/validate.js';
import { ServiceError, invalidInputError } from '../errors.js';
import { type InputFetchOptions, InputFetchError, fetchFileInputs, fileFields, hasUrlInputs } from '../inputs.js';
import type { ModelEntry, ServedPredictor } from '../models.js';
import type { AdmitRequest } from './types.js';

type Input = Record<string, unknown>;
const isObject = (v: unknown): v is Input => v !== null && typeof v === 'object' && !Array.isArray(v);

/** What a prediction runs on: the predictor, the schema its input is checked against, defaults. */
export interface AdmissionTarget {
  readonly predictor: ServedPredictor;
  readonly profile: Profile<unknown>;
  readonly defaults: Readonly<Input>;
  /** The /v1 model (undefined for the Cog routes). */
  readonly model?: ModelEntry | undefined;
}

export interface CheckedInput {
  /** Echoed as `input` (Cog: the validated input; Replicate: as submitted). */
  readonly echo: Input;
  /** Defaults merged, own file URLs resolved: what the file inputs are fetched from. */
  readonly given: Input;
}

/** Merges the target's defaults and validates (throws ServiceError 'invalid-input'). */
export function checkInput(target: AdmissionTarget, req: AdmitRequest): CheckedInput {
  const raw = req.api === 'replicate' ? (req.resolvedInput ?? req.input) : req.input;
  const given = isObject(raw) ? { ...target.defaults, ...raw } : raw;
  let validated: { readonly input: unknown };
  try {
    validated = target.predictor.validate ? target.predictor.validate(given) : validateInput(target.profile, given);
  } catch (e) {
    if (e instanceof InputValidationError) throw invalidInputError(e.detail);
    throw e;
  }
  const echo = req.api === 'cog' ? (validated.input as Input) : isObject(req.input) ? req.input : {};
  return { echo, given: isObject(given) ? given : {} };
}

export interface FetchContext {
  readonly options: InputFetchOptions;
  readonly signal: AbortSignal;
  /** Called before any download (Cog: refuse at capacity rather than download for nothing). */
  readonly beforeFetch?: () => void;
}

/** `input` with its http(s) file inputs downloaded into data: URIs (throws ServiceError). */
export async function fetchInputs(profile: Profile<unknown>, input: Input, ctx: FetchContext): Promise<Input> {
  const fields = fileFields(profile);
  if (!hasUrlInputs(fields, input)) return input;
  ctx.beforeFetch?.();
  try {
    return await fetchFileInputs(fields, input, ctx.options, ctx.signal);
  } catch (e) {
    if (e instanceof InputFetchError) {
      throw new ServiceError(
        'input-fetch-failed',
        e.failures.map((f) => `- ${f.message}`).join('\n'),
        e.failures.map((f) => ({ loc: ['body', 'input', f.field], msg: f.message, type: 'value_error', replicate: { type: 'file_fetch_failed' } })),
      );
    }
    if (ctx.signal.aborted) throw new ServiceError('shutting-down');
    throw e;
  }
}
