// The module's one error type (its message always starts with the file) and the small helpers its
// messages and JSON checks use.

/** Every error of this module; the message always starts with the file it is about. */
export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

export function fmtShape(shape: readonly unknown[]): string {
  return `[${shape.map((d) => JSON.stringify(d)).join(', ')}]`;
}

export function describe(v: unknown): string {
  if (Array.isArray(v)) return `an array`;
  if (v === null) return 'null';
  return typeof v;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
