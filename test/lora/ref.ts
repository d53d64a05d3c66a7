// Float64 references for LoRA tests: the products the delta formats are defined by.

/** [m, k] · [k, n] */
export function mm(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const o = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) o[i * n + j]! += a[i * k + p]! * b[p * n + j]!;
  return o;
}

/** kron([a, b], [c, d]) by the definition: out[i*c + k][j*d + l] = x[i][j] · y[k][l]. */
export function kronRef(x: ArrayLike<number>, a: number, b: number, y: ArrayLike<number>, c: number, d: number): Float64Array {
  const o = new Float64Array(a * c * b * d);
  for (let i = 0; i < a; i++)
    for (let j = 0; j < b; j++) for (let k = 0; k < c; k++) for (let l = 0; l < d; l++) o[(i * c + k) * (b * d) + (j * d + l)] = x[i * b + j]! * y[k * d + l]!;
  return o;
}
