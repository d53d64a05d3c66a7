// T5 unigram tokenizer on the tiny tokenizer_2/ files (laid out like the FLUX.1-dev hub repo's).

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadT5Tokenizer } from '../../src/text/index.js';
import { tinyTokenizerDir } from './tiny-tokenizers.js';

const { dir, info } = tinyTokenizerDir();
const tok = loadT5Tokenizer(join(dir, 'tokenizer_2'));

describe('T5 tokenizer (tiny files)', () => {
  it('has <pad> 0, </s> 1, no BOS, and 512 tokens by default (model_max_length)', () => {
    assert.equal(tok.kind, 't5');
    assert.equal(tok.padId, 0);
    assert.equal(tok.eosId, 1);
    assert.equal(tok.bosId, undefined);
    assert.equal(tok.maxLength, 512);
    assert.equal(tok.maxId + 1, info.t5VocabSize);
  });

  it('"a cat": [▁a, ▁cat, </s>, <pad>...]', () => {
    assert.deepEqual(tok.tokenize('a cat'), ['▁a', '▁cat']);
    const e = tok.encode('a cat');
    assert.equal(e.ids.length, 512);
    assert.equal(e.ids[2], 1);
    assert.ok(e.ids.subarray(3).every((id) => id === 0));
    assert.equal(e.tokenCount, 2);
    assert.equal(e.truncated, false);
  });

  it('pads to 256 for schnell', () => {
    const t = loadT5Tokenizer(join(dir, 'tokenizer_2'), { maxLength: 256 });
    const e = t.encode('a photo of a cat');
    assert.equal(e.ids.length, 256);
    assert.equal(e.ids[e.tokenCount], 1);
  });

  it('keeps case, prefers whole-word pieces, splits unknown words into pieces', () => {
    assert.deepEqual(tok.tokenize('A photo of a cat, sitting.'), ['▁A', '▁photo', '▁of', '▁a', '▁cat', ',', '▁sitting', '.']);
    const z = tok.tokenize('zebra');
    assert.ok(z.length > 1 && z.join('') === '▁zebra', z.join(' '));
  });

  it('round-trips common words, ignoring repeated and trailing spaces', () => {
    for (const text of ['a photo of a cat sitting on the table', 'A Red car on a street at night.']) {
      assert.equal(tok.decode(tok.encode(text).ids), text);
    }
    assert.deepEqual(tok.encode('a  cat   ').ids, tok.encode('a cat').ids);
  });

  it('truncates to 511 pieces + </s> and says so', () => {
    const words = (n: number) => Array.from({ length: n }, () => 'cat').join(' ');
    const fits = tok.encode(words(511));
    assert.equal(fits.truncated, false);
    assert.equal(fits.ids[511], 1);
    const over = tok.encode(words(600));
    assert.equal(over.truncated, true);
    assert.equal(over.tokenCount, 600);
    assert.equal(over.ids.length, 512);
    assert.equal(over.ids[511], 1);
    assert.equal(over.ids[510], tok.encode('cat').ids[0]);
  });

  it('refuses a folder without tokenizer.json', () => {
    assert.throws(() => loadT5Tokenizer(join(dir, 'tokenizer')), /tokenizer\.json not found/);
  });
});
