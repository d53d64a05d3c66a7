// The predictor's input side: profiles (one definition each), validation, OpenAPI, docs.
export { type FieldDef, type FieldSpec, type FieldType, type InputOf, type Scalar, titleCase } from './fields.js';
export {
  getProfile,
  isProfileName,
  HOTSWAP,
  HOTSWAP_FIXED,
  PROFILES,
  TRAINER,
  type HotswapFixedInput,
  type HotswapInput,
  type Profile,
  type ProfileName,
  type ProfileOptions,
  type TrainerInput,
  type TypedInput,
} from './profiles.js';
export { detectMode, type Mode } from './modes.js';
export { validateInput, type IgnoredInput, type ValidateOptions, type ValidationResult } from './validate.js';
export { InputValidationError, type HTTPValidationErrorBody, type ValidationErrorItem } from './errors.js';
export { openApiDocument, schemaCommand, type OpenApiOptions } from './openapi.js';
export { renderInputsDoc } from './docs.js';
