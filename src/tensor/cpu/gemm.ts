// Float32 GEMM kernels (pure functions over typed arrays; used on the main thread and in workers).
//
// gemmNT: C[m, n] = Σ_k A[m, k] · B[n, k]   (both operands row-major with rows contiguous in K:
//         x·Wᵀ for Linear, q·kᵀ for attention, W·colᵀ for im2col convolution)
// gemmNN: C[m, n] = Σ_k A[m, k] · B[k, n]   (B row-major [K, N]: 1x1 convolution, plain matmul)
//
// Register blocking: 4 rows x 4 columns of C per inner loop (16 accumulators, 8 loads per k).
// Accumulators are JS numbers (float64); C is written once per K block (K blocks of KC keep the
// A panel in cache for long reductions).

export type F32 = Float32Array;

const KC = 1024;

export function gemmNT(
  A: F32,
  aOff: number,
  lda: number,
  B: F32,
  bOff: number,
  ldb: number,
  C: F32,
  cOff: number,
  ldc: number,
  M: number,
  N: number,
  K: number,
): void {
  // int32 arguments (see dimsOf in storage.ts: boxed doubles would de-tune the optimised loop)
  aOff |= 0;
  lda |= 0;
  bOff |= 0;
  ldb |= 0;
  cOff |= 0;
  ldc |= 0;
  M |= 0;
  N |= 0;
  K |= 0;
  if (K === 0) {
    for (let m = 0; m < M; m++) C.fill(0, cOff + m * ldc, cOff + m * ldc + N);
    return;
  }
  for (let k0 = 0; k0 < K; k0 += KC) {
    const kc = Math.min(KC, K - k0);
    ntBlock(A, aOff + k0, lda, B, bOff + k0, ldb, C, cOff, ldc, M, N, kc, k0 > 0);
  }
}

function ntBlock(
  A: F32,
  aOff: number,
  lda: number,
  B: F32,
  bOff: number,
  ldb: number,
  C: F32,
  cOff: number,
  ldc: number,
  M: number,
  N: number,
  K: number,
  acc: boolean,
): void {
  const M4 = M - (M % 4);
  const N4 = N - (N % 4);
  for (let m = 0; m < M4; m += 4) {
    const a0 = aOff + m * lda,
      a1 = a0 + lda,
      a2 = a1 + lda,
      a3 = a2 + lda;
    const o0 = cOff + m * ldc,
      o1 = o0 + ldc,
      o2 = o1 + ldc,
      o3 = o2 + ldc;
    for (let n = 0; n < N4; n += 4) {
      const b0 = bOff + n * ldb,
        b1 = b0 + ldb,
        b2 = b1 + ldb,
        b3 = b2 + ldb;
      let c00 = 0,
        c01 = 0,
        c02 = 0,
        c03 = 0,
        c10 = 0,
        c11 = 0,
        c12 = 0,
        c13 = 0;
      let c20 = 0,
        c21 = 0,
        c22 = 0,
        c23 = 0,
        c30 = 0,
        c31 = 0,
        c32 = 0,
        c33 = 0;
      for (let k = 0; k < K; k++) {
        const x0 = A[a0 + k]!,
          x1 = A[a1 + k]!,
          x2 = A[a2 + k]!,
          x3 = A[a3 + k]!;
        const y0 = B[b0 + k]!,
          y1 = B[b1 + k]!,
          y2 = B[b2 + k]!,
          y3 = B[b3 + k]!;
        c00 += x0 * y0;
        c01 += x0 * y1;
        c02 += x0 * y2;
        c03 += x0 * y3;
        c10 += x1 * y0;
        c11 += x1 * y1;
        c12 += x1 * y2;
        c13 += x1 * y3;
        c20 += x2 * y0;
        c21 += x2 * y1;
        c22 += x2 * y2;
        c23 += x2 * y3;
        c30 += x3 * y0;
        c31 += x3 * y1;
        c32 += x3 * y2;
        c33 += x3 * y3;
      }
      if (acc) {
        c00 += C[o0 + n]!;
        c01 += C[o0 + n + 1]!;
        c02 += C[o0 + n + 2]!;
        c03 += C[o0 + n + 3]!;
        c10 += C[o1 + n]!;
        c11 += C[o1 + n + 1]!;
        c12 += C[o1 + n + 2]!;
        c13 += C[o1 + n + 3]!;
        c20 += C[o2 + n]!;
        c21 += C[o2 + n + 1]!;
        c22 += C[o2 + n + 2]!;
        c23 += C[o2 + n + 3]!;
        c30 += C[o3 + n]!;
        c31 += C[o3 + n + 1]!;
        c32 += C[o3 + n + 2]!;
        c33 += C[o3 + n + 3]!;
      }
      C[o0 + n] = c00;
      C[o0 + n + 1] = c01;
      C[o0 + n + 2] = c02;
      C[o0 + n + 3] = c03;
      C[o1 + n] = c10;
      C[o1 + n + 1] = c11;
      C[o1 + n + 2] = c12;
      C[o1 + n + 3] = c13;
      C[o2 + n] = c20;
      C[o2 + n + 1] = c21;
      C[o2 + n + 2] = c22;
      C[o2 + n + 3] = c23;
      C[o3 + n] = c30;
      C[o3 + n + 1] = c31;
      C[o3 + n + 2] = c32;
      C[o3 + n + 3] = c33;
    }
    for (let n = N4; n < N; n++) {
      const b0 = bOff + n * ldb;
      let c0 = 0,
        c1 = 0,
        c2 = 0,
        c3 = 0;
      for (let k = 0; k < K; k++) {
        const y = B[b0 + k]!;
        c0 += A[a0 + k]! * y;
        c1 += A[a1 + k]! * y;
        c2 += A[a2 + k]! * y;
        c3 += A[a3 + k]! * y;
      }
      if (acc) {
        c0 += C[o0 + n]!;
        c1 += C[o1 + n]!;
        c2 += C[o2 + n]!;
        c3 += C[o3 + n]!;
      }
      C[o0 + n] = c0;
      C[o1 + n] = c1;
      C[o2 + n] = c2;
      C[o3 + n] = c3;
    }
  }
  for (let m = M4; m < M; m++) {
    const a0 = aOff + m * lda;
    const o0 = cOff + m * ldc;
    for (let n = 0; n < N4; n += 4) {
      const b0 = bOff + n * ldb,
        b1 = b0 + ldb,
        b2 = b1 + ldb,
        b3 = b2 + ldb;
      let c0 = 0,
        c1 = 0,
        c2 = 0,
        c3 = 0;
      for (let k = 0; k < K; k++) {
        const x = A[a0 + k]!;
        c0 += x * B[b0 + k]!;
        c1 += x * B[b1 + k]!;
        c2 += x * B[b2 + k]!;
        c3 += x * B[b3 + k]!;
      }
      if (acc) {
        c0 += C[o0 + n]!;
        c1 += C[o0 + n + 1]!;
        c2 += C[o0 + n + 2]!;
        c3 += C[o0 + n + 3]!;
      }
      C[o0 + n] = c0;
      C[o0 + n + 1] = c1;
      C[o0 + n + 2] = c2;
      C[o0 + n + 3] = c3;
    }
    for (let n = N4; n < N; n++) {
      const b0 = bOff + n * ldb;
      let c = 0;
      for (let k = 0; k < K; k++) c += A[a0 + k]! * B[b0 + k]!;
      C[o0 + n] = acc ? c + C[o0 + n]! : c;
    }
  }
}

export function gemmNN(
  A: F32,
  aOff: number,
  lda: number,
  B: F32,
  bOff: number,
  ldb: number,
  C: F32,
  cOff: number,
  ldc: number,
  M: number,
  N: number,
  K: number,
): void {
  // int32 arguments (see dimsOf in storage.ts: boxed doubles would de-tune the optimised loop)
  aOff |= 0;
  lda |= 0;
  bOff |= 0;
  ldb |= 0;
  cOff |= 0;
  ldc |= 0;
  M |= 0;
  N |= 0;
  K |= 0;
  if (K === 0) {
    for (let m = 0; m < M; m++) C.fill(0, cOff + m * ldc, cOff + m * ldc + N);
    return;
  }
  for (let k0 = 0; k0 < K; k0 += KC) {
    const kc = Math.min(KC, K - k0);
    nnBlock(A, aOff + k0, lda, B, bOff + k0 * ldb, ldb, C, cOff, ldc, M, N, kc, k0 > 0);
  }
}

function nnBlock(
  A: F32,
  aOff: number,
  lda: number,
  B: F32,
  bOff: number,
  ldb: number,
  C: F32,
  cOff: number,
  ldc: number,
  M: number,
  N: number,
  K: number,
  acc: boolean,
): void {
  const M4 = M - (M % 4);
  const N4 = N - (N % 4);
  for (let m = 0; m < M4; m += 4) {
    const a0 = aOff + m * lda,
      a1 = a0 + lda,
      a2 = a1 + lda,
      a3 = a2 + lda;
    const o0 = cOff + m * ldc,
      o1 = o0 + ldc,
      o2 = o1 + ldc,
      o3 = o2 + ldc;
    for (let n = 0; n < N4; n += 4) {
      let c00 = 0,
        c01 = 0,
        c02 = 0,
        c03 = 0,
        c10 = 0,
        c11 = 0,
        c12 = 0,
        c13 = 0;
      let c20 = 0,
        c21 = 0,
        c22 = 0,
        c23 = 0,
        c30 = 0,
        c31 = 0,
        c32 = 0,
        c33 = 0;
      let b = bOff + n;
      for (let k = 0; k < K; k++, b += ldb) {
        const x0 = A[a0 + k]!,
          x1 = A[a1 + k]!,
          x2 = A[a2 + k]!,
          x3 = A[a3 + k]!;
        const y0 = B[b]!,
          y1 = B[b + 1]!,
          y2 = B[b + 2]!,
          y3 = B[b + 3]!;
        c00 += x0 * y0;
        c01 += x0 * y1;
        c02 += x0 * y2;
        c03 += x0 * y3;
        c10 += x1 * y0;
        c11 += x1 * y1;
        c12 += x1 * y2;
        c13 += x1 * y3;
        c20 += x2 * y0;
        c21 += x2 * y1;
        c22 += x2 * y2;
        c23 += x2 * y3;
        c30 += x3 * y0;
        c31 += x3 * y1;
        c32 += x3 * y2;
        c33 += x3 * y3;
      }
      if (acc) {
        c00 += C[o0 + n]!;
        c01 += C[o0 + n + 1]!;
        c02 += C[o0 + n + 2]!;
        c03 += C[o0 + n + 3]!;
        c10 += C[o1 + n]!;
        c11 += C[o1 + n + 1]!;
        c12 += C[o1 + n + 2]!;
        c13 += C[o1 + n + 3]!;
        c20 += C[o2 + n]!;
        c21 += C[o2 + n + 1]!;
        c22 += C[o2 + n + 2]!;
        c23 += C[o2 + n + 3]!;
        c30 += C[o3 + n]!;
        c31 += C[o3 + n + 1]!;
        c32 += C[o3 + n + 2]!;
        c33 += C[o3 + n + 3]!;
      }
      C[o0 + n] = c00;
      C[o0 + n + 1] = c01;
      C[o0 + n + 2] = c02;
      C[o0 + n + 3] = c03;
      C[o1 + n] = c10;
      C[o1 + n + 1] = c11;
      C[o1 + n + 2] = c12;
      C[o1 + n + 3] = c13;
      C[o2 + n] = c20;
      C[o2 + n + 1] = c21;
      C[o2 + n + 2] = c22;
      C[o2 + n + 3] = c23;
      C[o3 + n] = c30;
      C[o3 + n + 1] = c31;
      C[o3 + n + 2] = c32;
      C[o3 + n + 3] = c33;
    }
    for (let n = N4; n < N; n++) {
      let c0 = 0,
        c1 = 0,
        c2 = 0,
        c3 = 0;
      let b = bOff + n;
      for (let k = 0; k < K; k++, b += ldb) {
        const y = B[b]!;
        c0 += A[a0 + k]! * y;
        c1 += A[a1 + k]! * y;
        c2 += A[a2 + k]! * y;
        c3 += A[a3 + k]! * y;
      }
      if (acc) {
        c0 += C[o0 + n]!;
        c1 += C[o1 + n]!;
        c2 += C[o2 + n]!;
        c3 += C[o3 + n]!;
      }
      C[o0 + n] = c0;
      C[o1 + n] = c1;
      C[o2 + n] = c2;
      C[o3 + n] = c3;
    }
  }
  for (let m = M4; m < M; m++) {
    const a0 = aOff + m * lda;
    const o0 = cOff + m * ldc;
    for (let n = 0; n < N4; n += 4) {
      let c0 = 0,
        c1 = 0,
        c2 = 0,
        c3 = 0;
      let b = bOff + n;
      for (let k = 0; k < K; k++, b += ldb) {
        const x = A[a0 + k]!;
        c0 += x * B[b]!;
        c1 += x * B[b + 1]!;
        c2 += x * B[b + 2]!;
        c3 += x * B[b + 3]!;
      }
      if (acc) {
        c0 += C[o0 + n]!;
        c1 += C[o0 + n + 1]!;
        c2 += C[o0 + n + 2]!;
        c3 += C[o0 + n + 3]!;
      }
      C[o0 + n] = c0;
      C[o0 + n + 1] = c1;
      C[o0 + n + 2] = c2;
      C[o0 + n + 3] = c3;
    }
    for (let n = N4; n < N; n++) {
      let c = 0;
      let b = bOff + n;
      for (let k = 0; k < K; k++, b += ldb) c += A[a0 + k]! * B[b]!;
      C[o0 + n] = acc ? c + C[o0 + n]! : c;
    }
  }
}

/**
 * Run every path of both kernels once on tiny inputs (row and column remainders 0-3, blocked K),
 * so V8 has full type feedback before it optimises them: otherwise the first shape that reaches
 * a not-yet-seen remainder loop deoptimises the hot kernel mid-model, and the re-optimised code
 * can end up markedly slower (seen as a 1.7x slower conv inside the full pipeline).
 */
function warmUp(): void {
  const K = KC + 3;
  const A = new Float32Array(7 * K).fill(0.5);
  const B = new Float32Array(7 * K).fill(0.25);
  const C = new Float32Array(7 * 7);
  for (const k of [3, K]) {
    for (let m = 1; m <= 7; m++) {
      for (let n = 1; n <= 7; n++) {
        gemmNT(A, 0, k, B, 0, k, C, 0, 7, m, n, k);
        gemmNN(A, 0, k, B, 0, 7, C, 0, 7, m, n, k);
      }
    }
  }
}
warmUp();
