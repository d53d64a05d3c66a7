// Token-id input of the text encoders: rows of equal length, ids checked against the vocabulary
// before they reach an embedding gather.

/** Validate token rows and flatten them (shared by the text encoders). */
export function packTokens(model: string, tokens: readonly Int32Array[], vocabSize: number): { B: number; L: number; flat: Int32Array } {
  const B = tokens.length;
  if (B === 0) throw new Error(`${model}: no token rows`);
  const L = tokens[0]!.length;
  if (L === 0) throw new Error(`${model}: empty token row`);
  const flat = new Int32Array(B * L);
  tokens.forEach((row, b) => {
    if (row.length !== L) throw new Error(`${model}: token rows differ in length (${row.length} vs ${L})`);
    for (let i = 0; i < L; i++) {
      const id = row[i]!;
      if (id < 0 || id >= vocabSize) throw new Error(`${model}: token id ${id} outside 0..${vocabSize - 1}`);
    }
    flat.set(row, b * L);
  });
  return { B, L, flat };
}
