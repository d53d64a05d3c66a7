// What the text encoders' tokenizers share: the encode() result, truncation + special tokens +
// padding to a fixed length the way HF's `tokenizer(..., truncation=True, max_length, padding=
// "max_length")` does it (BFL src/flux/modules/conditioner.py HFEmbedder.forward), and reading the
// hub folder's JSON files.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Encoded {
  /** Exactly `maxLength` ids: specials + prompt tokens (truncated) + padding. */
  readonly ids: Int32Array;
  /** True when prompt tokens were dropped to fit `maxLength`. */
  readonly truncated: boolean;
  /** Prompt tokens before truncation, without BOS/EOS (what a "too long" message should report). */
  readonly tokenCount: number;
}

export interface TextTokenizer {
  readonly kind: 'clip' | 't5';
  readonly maxLength: number;
  readonly padId: number;
  readonly eosId: number;
  /** BOS id, or undefined when the tokenizer adds none (T5). */
  readonly bosId: number | undefined;
  /** Largest id the tokenizer can produce (a model's vocab_size must exceed it). */
  readonly maxId: number;
  encode(prompt: string): Encoded;
  /** The prompt's tokens as strings, no specials, no truncation (for logs and tests). */
  tokenize(prompt: string): string[];
  /** Text of ids, special and pad tokens skipped. */
  decode(ids: ArrayLike<number>): string;
}

/**
 * `[bos?] + tokens[:room] + [eos]`, then pad ids up to `maxLength` (HF truncation keeps room for
 * the special tokens; "longest_first" on a single sequence drops from the end).
 */
export function fitToLength(tokens: readonly number[], specials: { bos: number | undefined; eos: number; pad: number }, maxLength: number): Encoded {
  const nSpecial = (specials.bos === undefined ? 0 : 1) + 1;
  const room = maxLength - nSpecial;
  if (room < 0) throw new Error(`tokenizer: max_length ${maxLength} leaves no room for the special tokens`);
  const kept = Math.min(tokens.length, room);
  const ids = new Int32Array(maxLength).fill(specials.pad);
  let i = 0;
  if (specials.bos !== undefined) ids[i++] = specials.bos;
  for (let t = 0; t < kept; t++) ids[i++] = tokens[t]!;
  ids[i] = specials.eos;
  return { ids, truncated: kept < tokens.length, tokenCount: tokens.length };
}

export type JsonObject = Record<string, unknown>;

export function readJson(path: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`tokenizer: cannot read ${path}: ${(e as Error).message}`);
  }
  const v: unknown = JSON.parse(text);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`tokenizer: ${path} is not a JSON object`);
  return v as JsonObject;
}

export function readJsonIfPresent(path: string): JsonObject {
  return existsSync(path) ? readJson(path) : {};
}

/**
 * tokenizer_config.json merged over special_tokens_map.json, with AddedToken dicts
 * (`{"content": "</s>", ...}`) flattened to their content strings.
 */
export function readTokenizerConfig(dir: string): JsonObject {
  const merged: JsonObject = {
    ...readJsonIfPresent(join(dir, 'special_tokens_map.json')),
    ...readJsonIfPresent(join(dir, 'tokenizer_config.json')),
  };
  for (const [k, v] of Object.entries(merged)) {
    if (k.endsWith('_token') && v !== null && typeof v === 'object' && 'content' in v) {
      merged[k] = (v as { content: unknown }).content;
    }
  }
  return merged;
}

export function configString(cfg: JsonObject, key: string, fallback: string): string {
  const v = cfg[key];
  return typeof v === 'string' ? v : fallback;
}

export function configInt(cfg: JsonObject, key: string, fallback: number): number {
  const v = cfg[key];
  // model_max_length is 1e30 ("no limit") in some configs: keep the fallback then.
  return typeof v === 'number' && Number.isInteger(v) && v > 0 && v < 1e9 ? v : fallback;
}
