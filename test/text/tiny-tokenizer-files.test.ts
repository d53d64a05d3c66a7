// The generator of the tiny tokenizer files: deterministic, sizes recorded, common words whole.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadClipTokenizer, loadT5Tokenizer } from '../../src/text/index.js';
import { trainBpe } from '../../src/tiny/bpe-trainer.js';
import { TINY_CLIP_VOCAB_SIZE, TINY_T5_VOCAB_SIZE, buildTinyClipVocab, writeTinyTokenizers } from '../../src/tiny/tokenizers.js';
import { uniqueTinyWords } from '../../src/tiny/words.js';

function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const sub of ['tokenizer', 'tokenizer_2']) {
    for (const f of readdirSync(join(dir, sub)).sort()) out.set(`${sub}/${f}`, readFileSync(join(dir, sub, f), 'utf8'));
  }
  return out;
}

describe('tiny tokenizer files', () => {
  const a = mkdtempSync(join(tmpdir(), 'fluxserve-tok-a-'));
  const b = mkdtempSync(join(tmpdir(), 'fluxserve-tok-b-'));
  const info = writeTinyTokenizers(a);
  writeTinyTokenizers(b);

  it('are byte-for-byte the same on every run, laid out like the FLUX repos', () => {
    const sa = snapshot(a);
    assert.deepEqual(
      [...sa.keys()],
      [
        'tokenizer/merges.txt',
        'tokenizer/special_tokens_map.json',
        'tokenizer/tokenizer_config.json',
        'tokenizer/vocab.json',
        'tokenizer_2/special_tokens_map.json',
        'tokenizer_2/tokenizer.json',
        'tokenizer_2/tokenizer_config.json',
      ],
    );
    assert.deepEqual(snapshot(b), sa);
    assert.ok(sa.get('tokenizer/merges.txt')!.startsWith('#version: 0.2\n'));
  });

  it('record their vocabulary sizes in the exported constants', () => {
    assert.equal(info.clipVocabSize, TINY_CLIP_VOCAB_SIZE);
    assert.equal(info.t5VocabSize, TINY_T5_VOCAB_SIZE);
    const vocab = JSON.parse(readFileSync(join(a, 'tokenizer/vocab.json'), 'utf8')) as Record<string, number>;
    assert.equal(Object.keys(vocab).length, TINY_CLIP_VOCAB_SIZE);
    assert.equal(vocab['<|startoftext|>'], TINY_CLIP_VOCAB_SIZE - 2);
    assert.equal(vocab['<|endoftext|>'], TINY_CLIP_VOCAB_SIZE - 1);
    // CLIP's id layout: 256 byte symbols, then the same with </w>.
    assert.equal(vocab['!'], 0);
    assert.equal(vocab['!</w>'], 256);
    assert.equal(new Set(Object.values(vocab)).size, TINY_CLIP_VOCAB_SIZE);
  });

  it('spell every embedded word as one CLIP token and one T5 piece', () => {
    const clip = loadClipTokenizer(join(a, 'tokenizer'));
    const t5 = loadT5Tokenizer(join(a, 'tokenizer_2'));
    for (const w of uniqueTinyWords()) {
      assert.deepEqual(clip.tokenize(w), [`${w}</w>`], w);
      assert.deepEqual(t5.tokenize(w), [`▁${w}`], w);
    }
  });

  it('learn merges for shared word parts first', () => {
    const { merges } = buildTinyClipVocab();
    assert.equal(merges.length, TINY_CLIP_VOCAB_SIZE - 514);
    // ties break on the pair's text: 'a b' (2) before 'b c</w>' (2)
    assert.deepEqual(
      trainBpe([
        [['a', 'b', 'c</w>'], 2],
        [['a', 'b</w>'], 1],
      ]),
      ['a b', 'ab c</w>', 'a b</w>'],
    );
  });
});
