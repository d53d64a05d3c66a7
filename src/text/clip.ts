// CLIP BPE tokenizer from a hub `tokenizer/` folder (vocab.json + merges.txt + the two config
// JSONs, as in the FLUX.1-dev hub repo). The FLUX repos ship no tokenizer.json for CLIP, so the
// structure HF's CLIPConverter (transformers convert_slow_tokenizer.py) would build is assembled
// here and handed to @huggingface/tokenizers: NFC + whitespace collapse + lowercase, the CLIP word
// regex, byte-level symbols, BPE with `</w>` on each word's last symbol. ids = [BOS] + bpe[:75] +
// [EOS], padded to 77 with the pad token (<|endoftext|> in FLUX's tokenizer, so the pad id is also
// the EOS id).

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { HfTextTokenizer } from './hf.js';
import { type JsonObject, type TextTokenizer, configInt, configString, readJson, readTokenizerConfig } from './tokenizer.js';

/** The CLIP pre-tokenizer regex without the two special tokens (those are added tokens). */
export const CLIP_WORD_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

export interface ClipSpecials {
  bos: string;
  eos: string;
  unk: string;
}

/** Parse merges.txt: drop the `#version` header and blank lines; each line is "left right". */
export function parseMerges(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line.length === 0 || line.startsWith('#version')) continue;
    if (line.split(' ').length !== 2) throw new Error(`merges.txt: malformed line ${JSON.stringify(line)}`);
    out.push(line);
  }
  return out;
}

/** The tokenizer.json object HF's CLIPConverter produces for a vocab + merges. */
export function clipTokenizerJson(vocab: Record<string, number>, merges: readonly string[], sp: ClipSpecials): JsonObject {
  const idOf = (tok: string): number => {
    const id = vocab[tok];
    if (id === undefined) throw new Error(`CLIP vocab.json has no ${tok}`);
    return id;
  };
  const bosId = idOf(sp.bos);
  const eosId = idOf(sp.eos);
  const added = (content: string, id: number) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [added(sp.bos, bosId), added(sp.eos, eosId)],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_WORD_PATTERN }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [sp.eos, eosId],
      cls: [sp.bos, bosId],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: sp.unk,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: [...merges],
    },
  };
}

export interface TokenizerLoadOptions {
  /** Pad/truncate to this many tokens (default: tokenizer_config model_max_length, else 77). */
  maxLength?: number;
}

/** Load the CLIP tokenizer of a hub `tokenizer/` folder. */
export function loadClipTokenizer(dir: string, opts: TokenizerLoadOptions = {}): TextTokenizer {
  const cfg = readTokenizerConfig(dir);
  const sp: ClipSpecials = {
    bos: configString(cfg, 'bos_token', '<|startoftext|>'),
    eos: configString(cfg, 'eos_token', '<|endoftext|>'),
    unk: configString(cfg, 'unk_token', '<|endoftext|>'),
  };
  const padToken = configString(cfg, 'pad_token', sp.eos);
  let json: JsonObject;
  const vocabPath = join(dir, 'vocab.json');
  if (existsSync(vocabPath)) {
    const vocab = readJson(vocabPath) as Record<string, number>;
    const merges = parseMerges(readFileSync(join(dir, 'merges.txt'), 'utf8'));
    json = clipTokenizerJson(vocab, merges, sp);
  } else {
    json = readJson(join(dir, 'tokenizer.json'));
  }
  const tok = new Tokenizer(json, { ...cfg, bos_token: sp.bos, eos_token: sp.eos, unk_token: sp.unk, pad_token: padToken });
  return new HfTextTokenizer('clip', tok, {
    bos: sp.bos,
    eos: sp.eos,
    pad: padToken,
    maxLength: opts.maxLength ?? configInt(cfg, 'model_max_length', 77),
    label: dir,
  });
}
