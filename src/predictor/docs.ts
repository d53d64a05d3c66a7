// Renders docs/inputs.md from the profiles, so the docs cannot drift from the code
// (test/predictor/docs.test.ts compares the file with this output; regenerate with
// `node dist/scripts/gen-inputs-doc.js`).

import type { FieldDef } from './fields.js';
import { HOTSWAP, HOTSWAP_FIXED, type Profile, TRAINER } from './profiles.js';

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function typeText(f: FieldDef): string {
  if (f.type === 'file') return 'file (URI)';
  return f.choices !== undefined ? `${f.type} (enum)` : f.type;
}

function defaultText(f: FieldDef): string {
  if (f.required) return '(required)';
  if (f.default === undefined) return '—';
  return `\`${typeof f.default === 'string' ? JSON.stringify(f.default) : String(f.default)}\``;
}

function rangeText(f: FieldDef): string {
  if (f.choices !== undefined) return f.choices.map((c) => `\`${c}\``).join(', ');
  if (f.minimum !== undefined || f.maximum !== undefined) return `${f.minimum ?? '−∞'} … ${f.maximum ?? '∞'}`;
  if (f.type === 'file') return 'http(s) URL or data: URI';
  return '';
}

function notes(p: Profile<unknown>, f: FieldDef): string {
  const n = p.ignoreRules.filter((r) => r.field === f.name).map((r) => r.doc);
  if (f.name === 'mask') n.push('needs `image` (a mask alone is rejected with 422)');
  if (f.name === 'width' || f.name === 'height') n.push('required when aspect_ratio=custom in text-to-image mode');
  return n.join('; ');
}

function table(p: Profile<unknown>): string {
  const rows = p.fields.map((f) => `| ${[f.name, typeText(f), defaultText(f), rangeText(f), notes(p, f)].map(cell).join(' | ')} |`);
  return ['| field | type | default | range / choices | notes |', '|---|---|---|---|---|', ...rows].join('\n');
}

export function renderInputsDoc(): string {
  const fixedOnly = HOTSWAP.fields.filter((f) => !HOTSWAP_FIXED.fields.some((g) => g.name === f.name)).map((f) => `\`${f.name}\``);
  return `<!-- Generated from src/predictor/profiles.ts by scripts/gen-inputs-doc.ts; do not edit by hand. -->
# Model inputs

fluxserve serves two input profiles, each exactly as Replicate shows it for the models it
reproduces (field names, order, types, defaults, bounds, choices, descriptions). The full
descriptions are in the OpenAPI document: \`fluxserve schema --profile trainer|hotswap\`.

Validation follows Cog: values out of range, not among the choices, or of the wrong type give
HTTP 422 with \`{"detail": [{"loc": ["body", "input", field], "msg", "type"}]}\`, every problem at once.
Numbers and booleans sent as strings are accepted (\`"4"\`, \`"true"\`), as are integers written
\`4.0\`. Unknown inputs are dropped with a warning. Inputs given with a non-default value that
the request's mode ignores (the notes column) are reported as warnings.

Deliberate differences from Replicate's cog-flux: a \`mask\` without an \`image\` is rejected
(cog-flux silently runs text-to-image), and \`aspect_ratio=custom\` without \`width\`/\`height\`
is rejected up front (cog-flux fails inside the prediction).

## trainer

${TRAINER.summary}. Reproduces ${TRAINER.seeds.map((s) => `\`${s}\``).join(', ')}.

${table(TRAINER)}

## hotswap

${HOTSWAP.summary}. Reproduces ${HOTSWAP.seeds.map((s) => `\`${s}\``).join(', ')}.
The fixed-weights variant (${HOTSWAP_FIXED.seeds.map((s) => `\`${s}\``).join(', ')}) has the same inputs without ${fixedOnly.join(', ')}.

${table(HOTSWAP)}
`;
}
