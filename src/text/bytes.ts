// GPT-2 / CLIP byte-level alphabet: each of the 256 byte values is shown as one printable unicode
// character, so BPE can work on strings (openai/CLIP simple_tokenizer.py `bytes_to_unicode`,
// transformers models/clip/tokenization_clip.py). Printable Latin-1 bytes map to themselves; the
// rest are shifted to U+0100...

/** The 256 byte-level symbols in vocabulary order (printable bytes first, then the shifted ones). */
export function byteLevelAlphabet(): { byteOf: Map<string, number>; charOf: string[]; order: string[] } {
  const printable: number[] = [];
  const add = (from: string, to: string) => {
    for (let c = from.codePointAt(0)!; c <= to.codePointAt(0)!; c++) printable.push(c);
  };
  add('!', '~');
  add('¡', '¬');
  add('®', 'ÿ');
  const charOf: string[] = new Array<string>(256);
  const order: string[] = [];
  for (const b of printable) {
    charOf[b] = String.fromCodePoint(b);
    order.push(charOf[b]);
  }
  let shift = 0;
  for (let b = 0; b < 256; b++) {
    if (charOf[b] !== undefined) continue;
    charOf[b] = String.fromCodePoint(256 + shift++);
    order.push(charOf[b]);
  }
  const byteOf = new Map<string, number>(charOf.map((c, b) => [c, b]));
  return { byteOf, charOf, order };
}

/** A UTF-8 string spelled in byte-level symbols. */
export function toByteLevel(text: string, charOf: readonly string[]): string {
  let s = '';
  for (const b of new TextEncoder().encode(text)) s += charOf[b]!;
  return s;
}
