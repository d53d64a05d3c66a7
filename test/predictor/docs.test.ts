import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderInputsDoc } from '../../src/predictor/docs.js';
import { HOTSWAP, TRAINER } from '../../src/predictor/profiles.js';

// dist/test/predictor/ -> repository root
const DOC = fileURLToPath(new URL('../../../docs/inputs.md', import.meta.url));

describe('docs/inputs.md', () => {
  it('equals what the profiles render (regenerate: node dist/scripts/gen-inputs-doc.js)', () => {
    assert.equal(fs.readFileSync(DOC, 'utf8'), renderInputsDoc());
  });

  it('has one table row per field of each profile, in order', () => {
    const md = renderInputsDoc();
    for (const [heading, p] of [
      ['## trainer', TRAINER],
      ['## hotswap', HOTSWAP],
    ] as const) {
      const section = md.slice(md.indexOf(heading));
      const rows = section
        .split('\n')
        .filter((l) => l.startsWith('| ') && !l.startsWith('| field'))
        .map((l) => l.split(' | ')[0]!.slice(2));
      assert.deepEqual(
        rows.slice(0, p.fields.length),
        p.fields.map((f) => f.name),
        heading,
      );
    }
  });
});
