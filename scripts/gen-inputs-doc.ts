// Writes docs/inputs.md from the profiles: `npx tsc -p . && node dist/scripts/gen-inputs-doc.js`.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderInputsDoc } from '../src/predictor/docs.js';

const target = fileURLToPath(new URL('../../docs/inputs.md', import.meta.url)); // dist/scripts/ -> repo root
writeFileSync(target, renderInputsDoc());
console.log(`wrote ${target}`);
