// CLIP BPE tokenizer on the tiny tokenizer/ files (laid out like the FLUX.1-dev hub repo's).

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pooledIndex } from '../../src/models/clip.js';
import { loadClipTokenizer, parseMerges } from '../../src/text/index.js';
import { tinyTokenizerDir } from './tiny-tokenizers.js';

const { dir, info } = tinyTokenizerDir();
const tok = loadClipTokenizer(join(dir, 'tokenizer'));

describe('CLIP tokenizer (tiny files)', () => {
  it('reads BOS, EOS and pad from the config files (pad = <|endoftext|>, as in FLUX)', () => {
    assert.equal(tok.kind, 'clip');
    assert.equal(tok.maxLength, 77);
    assert.equal(tok.bosId, info.clipBosId);
    assert.equal(tok.eosId, info.clipEosId);
    assert.equal(tok.padId, info.clipEosId);
    assert.equal(tok.maxId + 1, info.clipVocabSize);
  });

  it('"a cat": [BOS, a, cat, EOS, pad...] of length 77, pooled index 3', () => {
    assert.deepEqual(tok.tokenize('a cat'), ['a</w>', 'cat</w>']);
    const e = tok.encode('a cat');
    assert.equal(e.ids.length, 77);
    assert.equal(e.ids[0], tok.bosId);
    assert.equal(e.ids[3], tok.eosId);
    assert.ok(e.ids.subarray(3).every((id) => id === tok.padId));
    assert.equal(e.tokenCount, 2);
    assert.equal(e.truncated, false);
    // EOS is the largest id, so both pooling paths of CLIPTextTransformer.forward agree.
    assert.equal(pooledIndex(e.ids, 2), 3);
    assert.equal(pooledIndex(e.ids, tok.eosId), 3);
  });

  it('lowercases, collapses whitespace and splits punctuation like CLIP', () => {
    assert.deepEqual(tok.encode('A  Photo\tof a CAT').ids, tok.encode('a photo of a cat').ids);
    assert.deepEqual(tok.tokenize('cat, dog!'), ['cat</w>', ',</w>', 'dog</w>', '!</w>']);
    assert.deepEqual(tok.tokenize("cat's"), ['cat</w>', "'", 's</w>']);
  });

  it('round-trips common words', () => {
    for (const text of ['a photo of a cat sitting on the table', 'a red car on a street at night', 'portrait of an old man']) {
      assert.equal(tok.decode(tok.encode(text).ids), text);
    }
  });

  it('spells unknown words in byte-level pieces, never <unk>', () => {
    const pieces = tok.tokenize('zebra ñ');
    assert.ok(pieces.length > 2);
    assert.equal(tok.decode(tok.encode('zebra ñ').ids), 'zebra ñ');
  });

  it('truncates to BOS + 75 + EOS and says so', () => {
    const words = (n: number) => Array.from({ length: n }, () => 'cat').join(' ');
    const fits = tok.encode(words(75));
    assert.equal(fits.truncated, false);
    assert.equal(fits.ids[76], tok.eosId);
    const over = tok.encode(words(100));
    assert.equal(over.truncated, true);
    assert.equal(over.tokenCount, 100);
    assert.equal(over.ids.length, 77);
    assert.equal(over.ids[0], tok.bosId);
    assert.equal(over.ids[76], tok.eosId);
    assert.equal(pooledIndex(over.ids, 2), 76);
  });

  it('honours a maxLength option', () => {
    const t = loadClipTokenizer(join(dir, 'tokenizer'), { maxLength: 8 });
    assert.equal(t.encode('a cat').ids.length, 8);
    assert.equal(t.encode('a b c d e f g').truncated, true);
  });

  it('parses merges.txt (header and blank lines skipped, malformed lines refused)', () => {
    assert.deepEqual(parseMerges('#version: 0.2\ni n\n\nin g</w>\n'), ['i n', 'in g</w>']);
    assert.throws(() => parseMerges('#version: 0.2\nabc\n'), /malformed/);
  });
});
