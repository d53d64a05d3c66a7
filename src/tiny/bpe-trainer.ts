// A minimal, deterministic byte-pair-encoding trainer for the tiny CLIP vocabulary: words are
// spelled in byte-level symbols with `</w>` on the last one (CLIP's convention, openai/CLIP
// clip/simple_tokenizer.py); the most frequent adjacent pair is merged until every word is one
// symbol (or `maxMerges`). Ties break on the pair's text (code-unit order), so the output never
// depends on Map order.

export interface BpeTrainOptions {
  maxMerges?: number;
}

/** Train merges ("left right" strings, rank order) over `(word, weight)` pairs. */
export function trainBpe(words: ReadonlyArray<readonly [symbols: string[], weight: number]>, opts: BpeTrainOptions = {}): string[] {
  const maxMerges = opts.maxMerges ?? Infinity;
  const corpus = words.map(([s, w]) => ({ symbols: [...s], weight: w }));
  const merges: string[] = [];
  while (merges.length < maxMerges) {
    const counts = new Map<string, number>();
    for (const { symbols, weight } of corpus) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]} ${symbols[i + 1]}`;
        counts.set(key, (counts.get(key) ?? 0) + weight);
      }
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [key, c] of counts) {
      if (c > bestCount || (c === bestCount && best !== undefined && key < best)) {
        best = key;
        bestCount = c;
      }
    }
    if (best === undefined) break;
    merges.push(best);
    const [left, right] = best.split(' ') as [string, string];
    for (const w of corpus) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === left && w.symbols[i + 1] === right) {
          out.push(left + right);
          i++;
        } else {
          out.push(w.symbols[i]!);
        }
      }
      w.symbols = out;
    }
  }
  return merges;
}
