/**
 * A request input that fails validation. `field` is the input's name as the API spells it
 * (e.g. "aspect_ratio", "width"); the message starts with it and states what is allowed.
 */
export class ValidationError extends Error {
  readonly field: string;

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'ValidationError';
    this.field = field;
  }
}
