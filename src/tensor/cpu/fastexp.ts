// exp(x) for x <= 0 (softmax after subtracting the row max), about twice as fast as Math.exp
// when inlined: exp(x) = 2^n · 2^r with n = round(x·log2 e), |r| <= 1/2, 2^r by a degree-8
// Taylor polynomial in r·ln 2 (relative error < 3e-10, far below float32's 6e-8) and 2^n from
// a table. Callers inline the same steps in hot loops (see attention-kernel.ts).

export const LOG2E = Math.LOG2E;
/** 2^n for n in [-160, 0], indexed n + 160. */
export const POW2 = Float64Array.from({ length: 161 }, (_, i) => 2 ** (i - 160));
// (ln 2)^k / k!
export const C1 = Math.LN2;
export const C2 = (C1 * Math.LN2) / 2;
export const C3 = (C2 * Math.LN2) / 3;
export const C4 = (C3 * Math.LN2) / 4;
export const C5 = (C4 * Math.LN2) / 5;
export const C6 = (C5 * Math.LN2) / 6;
export const C7 = (C6 * Math.LN2) / 7;
export const C8 = (C7 * Math.LN2) / 8;
/** Below this, exp(x) underflows float32 (exp(−104) < 2^−149); the table stops at 2^−160. */
export const EXP_MIN = -110;

/** exp(x) for x <= 0; NaN for NaN, 0 below EXP_MIN. */
export function expNonPositive(x: number): number {
  if (x < EXP_MIN) return 0;
  const t = x * LOG2E;
  const n = Math.floor(t + 0.5);
  if (n !== n) return NaN;
  const r = t - n;
  return (1 + r * (C1 + r * (C2 + r * (C3 + r * (C4 + r * (C5 + r * (C6 + r * (C7 + r * C8)))))))) * POW2[n + 160]!;
}
