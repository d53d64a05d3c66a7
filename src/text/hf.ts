// A TextTokenizer over an @huggingface/tokenizers Tokenizer: the library splits text into ids, this
// class adds the special tokens, truncates and pads itself (fitToLength), so truncation is reported
// instead of silent, and both CLIP and T5 follow the same rules (BFL
// src/flux/modules/conditioner.py HFEmbedder).

import type { Tokenizer } from '@huggingface/tokenizers';
import { type Encoded, type TextTokenizer, fitToLength } from './tokenizer.js';

export class HfTextTokenizer implements TextTokenizer {
  readonly maxLength: number;
  readonly padId: number;
  readonly eosId: number;
  readonly bosId: number | undefined;
  readonly maxId: number;

  constructor(
    readonly kind: 'clip' | 't5',
    private readonly tok: Tokenizer,
    spec: { bos: string | undefined; eos: string; pad: string; maxLength: number; label: string },
  ) {
    const id = (t: string): number => {
      const v = tok.token_to_id(t);
      if (v === undefined) throw new Error(`${spec.label}: the tokenizer has no token ${t}`);
      return v;
    };
    this.eosId = id(spec.eos);
    this.padId = id(spec.pad);
    this.bosId = spec.bos === undefined ? undefined : id(spec.bos);
    this.maxLength = spec.maxLength;
    let maxId = 0;
    for (const v of tok.get_vocab(true).values()) maxId = Math.max(maxId, v);
    this.maxId = maxId;
  }

  tokenize(prompt: string): string[] {
    return this.tok.tokenize(prompt, { add_special_tokens: false });
  }

  encode(prompt: string): Encoded {
    const ids = this.tok.encode(prompt, { add_special_tokens: false }).ids;
    return fitToLength(ids, { bos: this.bosId, eos: this.eosId, pad: this.padId }, this.maxLength);
  }

  decode(ids: ArrayLike<number>): string {
    const keep = Array.from(ids).filter((i) => i !== this.padId && i !== this.eosId && i !== this.bosId);
    if (keep.length === 0) return '';
    return this.tok.decode(keep, { skip_special_tokens: true }).trim();
  }
}
