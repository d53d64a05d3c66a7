// T5 (v1.1) SentencePiece-unigram tokenizer from a hub `tokenizer_2/` folder (FLUX.1-dev hub repo): the
// fast-tokenizer `tokenizer.json` (Unigram + Metaspace "▁"), read by @huggingface/tokenizers.
// ids = pieces[:max_length-1] + [</s>], padded with <pad> (id 0) to max_length: 512 for dev and
// 256 for schnell in BFL (the pipeline picks, as BFL src/flux/cli.py passes to load_t5 — no
// attention mask, so the padded length changes the embeddings).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { HfTextTokenizer } from './hf.js';
import type { TokenizerLoadOptions } from './clip.js';
import { type TextTokenizer, configInt, configString, readJson, readTokenizerConfig } from './tokenizer.js';

/** Load the T5 tokenizer of a hub `tokenizer_2/` folder. */
export function loadT5Tokenizer(dir: string, opts: TokenizerLoadOptions = {}): TextTokenizer {
  const path = join(dir, 'tokenizer.json');
  if (!existsSync(path)) {
    const spm = existsSync(join(dir, 'spiece.model')) ? ' (only spiece.model is there; a tokenizer.json is needed)' : '';
    throw new Error(`T5 tokenizer: ${path} not found${spm}`);
  }
  const cfg = readTokenizerConfig(dir);
  const eos = configString(cfg, 'eos_token', '</s>');
  const pad = configString(cfg, 'pad_token', '<pad>');
  const unk = configString(cfg, 'unk_token', '<unk>');
  const tok = new Tokenizer(readJson(path), { ...cfg, eos_token: eos, pad_token: pad, unk_token: unk });
  return new HfTextTokenizer('t5', tok, {
    bos: undefined,
    eos,
    pad,
    maxLength: opts.maxLength ?? configInt(cfg, 'model_max_length', 512),
    label: dir,
  });
}
