// Small but real tokenizer files for the built-in tiny model, laid out like the FLUX hub repos
// (black-forest-labs/FLUX.1-dev): `tokenizer/` = CLIP byte-level BPE (vocab.json, merges.txt,
// tokenizer_config.json, special_tokens_map.json) and `tokenizer_2/` = T5 unigram (tokenizer.json
// + the two config JSONs). Both are generated deterministically from the embedded word list, so
// the same bytes come out on every machine. The real loaders (src/text) read them unchanged.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { byteLevelAlphabet, toByteLevel } from '../text/bytes.js';
import { trainBpe } from './bpe-trainer.js';
import { uniqueTinyWords } from './words.js';

/** vocab_size of the tiny CLIP vocabulary (max id + 1); a test checks it against the generator. */
export const TINY_CLIP_VOCAB_SIZE = 1050;
/** Number of pieces in the tiny T5 unigram vocabulary (max id + 1); checked by a test too. */
export const TINY_T5_VOCAB_SIZE = 567;

const CLIP_BOS = '<|startoftext|>';
const CLIP_EOS = '<|endoftext|>';

export interface TinyClipVocab {
  /** token -> id: 256 byte symbols, the same with `</w>`, one per new merge result, BOS, EOS. */
  readonly vocab: Record<string, number>;
  /** merges.txt lines in rank order (no header). */
  readonly merges: string[];
  readonly bosId: number;
  readonly eosId: number;
}

/** The tiny CLIP BPE vocabulary (CLIP's id layout: bytes, bytes</w>, merges, then BOS and EOS). */
export function buildTinyClipVocab(): TinyClipVocab {
  const { charOf, order } = byteLevelAlphabet();
  const words = uniqueTinyWords().map((w): [string[], number] => {
    const symbols = Array.from(toByteLevel(w, charOf));
    symbols[symbols.length - 1] += '</w>';
    return [symbols, 1];
  });
  const merges = trainBpe(words);
  const tokens: string[] = [...order, ...order.map((s) => `${s}</w>`)];
  const seen = new Set(tokens);
  for (const m of merges) {
    const merged = m.replace(' ', '');
    if (!seen.has(merged)) {
      seen.add(merged);
      tokens.push(merged);
    }
  }
  tokens.push(CLIP_BOS, CLIP_EOS);
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => (vocab[t] = i));
  return { vocab, merges, bosId: tokens.length - 2, eosId: tokens.length - 1 };
}

/** [piece, log-prob score] of the tiny T5 unigram model; ids 0/1/2 are <pad>, </s>, <unk>. */
export function buildTinyT5Pieces(): Array<[string, number]> {
  const pieces: Array<[string, number]> = [
    ['<pad>', 0],
    ['</s>', 0],
    ['<unk>', 0],
  ];
  const seen = new Set(pieces.map(([p]) => p));
  const add = (piece: string, score: number) => {
    if (seen.has(piece)) return;
    seen.add(piece);
    // Scores are written rounded to 4 decimals so the JSON text is stable.
    pieces.push([piece, Math.round(score * 1e4) / 1e4]);
  };
  const words = uniqueTinyWords();
  add('▁', -3.5);
  // A word-initial piece always outscores any split of it: two pieces sum to at most -3 - 6 - ln 2,
  // and the rarest whole word scores -3 - ln(#words) > -9 for a few hundred words.
  words.forEach((w, r) => add(`▁${w}`, -(3 + Math.log(r + 1))));
  words.forEach((w, r) => add(w, -(6 + Math.log(r + 1))));
  for (const suffix of ['s', 'es', 'ed', 'ing', 'er', 'ers', 'ly', 'est', "'s"]) add(suffix, -5.5);
  const chars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?\'"-:;()/&%$#@*+=';
  for (const c of chars) add(c, -10);
  for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789') add(`▁${c}`, -9);
  return pieces;
}

const T5_SPECIALS = ['<pad>', '</s>', '<unk>'] as const;

/** tokenizer.json of the tiny T5 tokenizer, shaped like transformers' T5Converter output. */
export function buildTinyT5TokenizerJson(): Record<string, unknown> {
  const metaspace = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: T5_SPECIALS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    // The real file starts with a Precompiled (nmt_nfkc) charsmap; NFKC stands in for it here.
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFKC' }, { type: 'Strip', strip_left: false, strip_right: true }, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: '▁' }],
    },
    pre_tokenizer: metaspace,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
      ],
      special_tokens: { '</s>': { id: '</s>', ids: [1], tokens: ['</s>'] } },
    },
    decoder: metaspace,
    model: { type: 'Unigram', unk_id: 2, vocab: buildTinyT5Pieces(), byte_fallback: false },
  };
}

function addedTokenJson(content: string, normalized: boolean) {
  return { content, lstrip: false, normalized, rstrip: false, single_word: false };
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

export interface TinyTokenizerInfo {
  /** Max CLIP id + 1 (the tiny CLIP config's vocab_size must be at least this). */
  readonly clipVocabSize: number;
  /** Max T5 id + 1 (the tiny T5 config's vocab_size must be at least this). */
  readonly t5VocabSize: number;
  readonly clipBosId: number;
  readonly clipEosId: number;
}

/** Write `dir/tokenizer/` (CLIP) and `dir/tokenizer_2/` (T5); same bytes on every run. */
export function writeTinyTokenizers(dir: string): TinyTokenizerInfo {
  const clip = buildTinyClipVocab();
  const clipDir = join(dir, 'tokenizer');
  mkdirSync(clipDir, { recursive: true });
  writeJson(join(clipDir, 'vocab.json'), clip.vocab);
  writeFileSync(join(clipDir, 'merges.txt'), `#version: 0.2\n${clip.merges.join('\n')}\n`);
  const clipAdded = (id: number, content: string) => [String(id), { ...addedTokenJson(content, true), special: true }];
  writeJson(join(clipDir, 'tokenizer_config.json'), {
    add_prefix_space: false,
    added_tokens_decoder: Object.fromEntries([clipAdded(clip.bosId, CLIP_BOS), clipAdded(clip.eosId, CLIP_EOS)]),
    bos_token: CLIP_BOS,
    clean_up_tokenization_spaces: true,
    do_lower_case: true,
    eos_token: CLIP_EOS,
    errors: 'replace',
    model_max_length: 77,
    pad_token: CLIP_EOS,
    tokenizer_class: 'CLIPTokenizer',
    unk_token: CLIP_EOS,
  });
  writeJson(join(clipDir, 'special_tokens_map.json'), {
    bos_token: addedTokenJson(CLIP_BOS, true),
    eos_token: addedTokenJson(CLIP_EOS, true),
    pad_token: CLIP_EOS,
    unk_token: addedTokenJson(CLIP_EOS, true),
  });

  const t5 = buildTinyT5TokenizerJson();
  const t5Dir = join(dir, 'tokenizer_2');
  mkdirSync(t5Dir, { recursive: true });
  writeJson(join(t5Dir, 'tokenizer.json'), t5);
  writeJson(join(t5Dir, 'tokenizer_config.json'), {
    add_prefix_space: true,
    added_tokens_decoder: Object.fromEntries(T5_SPECIALS.map((c, id) => [String(id), { ...addedTokenJson(c, false), special: true }])),
    additional_special_tokens: [],
    clean_up_tokenization_spaces: true,
    eos_token: '</s>',
    extra_ids: 0,
    legacy: true,
    model_max_length: 512,
    pad_token: '<pad>',
    sp_model_kwargs: {},
    tokenizer_class: 'T5Tokenizer',
    unk_token: '<unk>',
  });
  writeJson(join(t5Dir, 'special_tokens_map.json'), {
    eos_token: addedTokenJson('</s>', false),
    pad_token: addedTokenJson('<pad>', false),
    unk_token: addedTokenJson('<unk>', false),
  });
  const t5Pieces = (t5.model as { vocab: unknown[] }).vocab.length;
  return { clipVocabSize: clip.eosId + 1, t5VocabSize: t5Pieces, clipBosId: clip.bosId, clipEosId: clip.eosId };
}
