// The tiny tokenizer files, written once per test process into a temporary folder.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TinyTokenizerInfo, writeTinyTokenizers } from '../../src/tiny/tokenizers.js';

let cached: { dir: string; info: TinyTokenizerInfo } | undefined;

export function tinyTokenizerDir(): { dir: string; info: TinyTokenizerInfo } {
  if (!cached) {
    const dir = mkdtempSync(join(tmpdir(), 'fluxserve-tok-'));
    cached = { dir, info: writeTinyTokenizers(dir) };
  }
  return cached;
}
