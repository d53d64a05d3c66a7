// Per-thread scratch buffers (plain, not shared: they never leave the thread that owns them).

const buffers: Float32Array[] = [];

/** A float32 scratch array of at least `n` elements; slot `i` lets one kernel hold several at once. */
export function scratch(i: number, n: number): Float32Array {
  let b = buffers[i];
  if (!b || b.length < n) {
    b = new Float32Array(Math.max(n, (b?.length ?? 0) * 2));
    buffers[i] = b;
  }
  return b;
}
