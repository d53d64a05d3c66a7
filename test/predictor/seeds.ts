// Parses the seed schema documents (test/fixtures/seeds/*.txt, verbatim copies of the user's
// documents in shared/seeds/) into a neutral list of fields. The five files come in four layouts,
// all copied from Replicate model pages:
//   000  "## Model inputs" bullets: `- name (required|optional): description (type)` + JSON output schema
//   001  the page's text: name / type [/ default] [/ Options: list] [/ Min: / Max:] / description lines
//   003  the same as 001 with a tab after the name and "(enum)" on its own line
//   002, 004  a pipe table, one row per field: | name | type | [default and bounds |] description |
// The output schema is JSON (000, 003) or a Python dict repr (001, 002, 004).
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';

export type SeedType = 'string' | 'integer' | 'number' | 'boolean';

export interface SeedField {
  name: string;
  /** Only the bullet layout (000) says; undefined elsewhere. */
  required?: boolean;
  /** null where the page prints "None": an allOf-$ref enum property, which has no `type`. */
  type: SeedType | null;
  /** true where the page says "(enum)" or prints "None" (an enum property); undefined where the layout can't tell. */
  isEnum?: boolean;
  description: string;
  default?: string;
  min?: number;
  max?: number;
  options?: string[];
}

export interface Seed {
  file: string;
  layout: 'bullets' | 'page-text' | 'page-tabs' | 'pipe-table';
  /** "owner/name" where the document names the model. */
  model?: string;
  fields: SeedField[];
  output: unknown;
}

/** The in-repo copies (this file compiles to dist/test/predictor/). */
export const SEEDS_DIR = fileURLToPath(new URL('../../../test/fixtures/seeds/', import.meta.url));
/** The user's originals, beside the repository (absent in a bare clone). */
export const SHARED_SEEDS_DIR = fileURLToPath(new URL('../../../../shared/seeds/', import.meta.url));

export const TRAINER_SEEDS = ['000_e5517e989040de79.txt', '001_7ea0495fc2fa6a7e.txt'] as const;
export const HOTSWAP_SEEDS = ['002_ce0de2fa46b5b8d3.txt', '003_ce5e5830ef703dc5.txt', '004_83e19e2319904856.txt'] as const;

export function loadSeed(file: string, dir = SEEDS_DIR): Seed {
  return parseSeed(file, fs.readFileSync(dir + file, 'utf8'));
}

export function parseSeed(file: string, text: string): Seed {
  if (text.includes('## Model inputs')) return parseBullets(file, text);
  if (/^\| Field \| Type \|/m.test(text)) return parsePipeTable(file, text);
  if (/^Field\tType\t/m.test(text)) return parsePageLines(file, text, 'page-tabs');
  if (/^Field Type Default value Description$/m.test(text)) return parsePageLines(file, text, 'page-text');
  throw new Error(`${file}: unknown seed layout`);
}

const TYPES: readonly string[] = ['string', 'integer', 'number', 'boolean'];

function asType(s: string, file: string, name: string): SeedType {
  if (!TYPES.includes(s)) throw new Error(`${file}: ${name}: unknown type ${JSON.stringify(s)}`);
  return s as SeedType;
}

/** JSON, or the Python repr Replicate's page prints ({'items': {'format': 'uri', ...}}). */
function parseOutputSchema(file: string, s: string): unknown {
  const start = s.indexOf('{');
  const end = s.lastIndexOf('}');
  if (start < 0 || end < start) throw new Error(`${file}: no output schema`);
  const body = s.slice(start, end + 1);
  try {
    return JSON.parse(body);
  } catch {
    return JSON.parse(
      body
        .replace(/'/g, '"')
        .replace(/\bTrue\b/g, 'true')
        .replace(/\bFalse\b/g, 'false')
        .replace(/\bNone\b/g, 'null'),
    );
  }
}

function modelName(text: string): string | undefined {
  const named = /^Model name: (\S+)$/m.exec(text);
  if (named) return named[1];
  // "fofr /flux-dev-day:0a9c0133" or "jan890 /flux_dev_ascii_art:cfe93c58"
  const page = /^(\S+) \/(\S+?):[0-9a-f]+\s*$/m.exec(text);
  return page ? `${page[1]}/${page[2]}` : undefined;
}

function parseBullets(file: string, text: string): Seed {
  const inputs = text.slice(text.indexOf('## Model inputs'), text.indexOf('## Model output schema'));
  const fields: SeedField[] = [];
  for (const line of inputs.split('\n')) {
    if (!line.startsWith('- ')) continue;
    const m = /^- ([a-z_0-9]+) \((required|optional)\): (.*) \((string|integer|number|boolean)\)$/.exec(line);
    if (!m) throw new Error(`${file}: unparsed bullet: ${line}`);
    fields.push({ name: m[1]!, required: m[2] === 'required', type: asType(m[4]!, file, m[1]!), description: m[3]! });
  }
  const output = parseOutputSchema(file, text.slice(text.indexOf('## Model output schema')));
  return { file, layout: 'bullets', model: modelName(text), fields, output };
}

/** Default / Options / Min / Max lines between the type and the description. */
function applyMeta(f: SeedField, lines: string[]): void {
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l === 'Options:') {
      f.options = lines[++i]!.split(',').map((s) => s.trim());
      continue;
    }
    // "Min: 256", "Max: 1440" or both on one line ("Min: -1 Max: 3"); a default may precede them ("0.8 Max: 1").
    let rest = l;
    const min = /Min: (-?[0-9.]+)/.exec(rest);
    const max = /Max: (-?[0-9.]+)/.exec(rest);
    if (min) f.min = Number(min[1]);
    if (max) f.max = Number(max[1]);
    rest = rest
      .replace(/Min: -?[0-9.]+/, '')
      .replace(/Max: -?[0-9.]+/, '')
      .trim();
    if (rest !== '') {
      if (f.default !== undefined) throw new Error(`${f.name}: two defaults (${f.default}, ${rest})`);
      f.default = rest;
    }
  }
}

function parsePageLines(file: string, text: string, layout: 'page-text' | 'page-tabs'): Seed {
  const header = layout === 'page-tabs' ? /^Field\tType\tDefault value\tDescription$/m : /^Field Type Default value Description$/m;
  const h = header.exec(text)!;
  const outAt = text.indexOf('Output schema', h.index);
  const lines = text
    .slice(h.index + h[0].length, outAt)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  // A field starts at an identifier line followed by a type line ("string", "string (enum)",
  // or in the tab layout "string" then "(enum)").
  const isStart = (i: number): boolean => /^[a-z_0-9]+$/.test(lines[i]!) && i + 1 < lines.length && TYPES.includes(lines[i + 1]!.replace(/ \(enum\)$/, ''));
  const starts: number[] = [];
  for (let i = 0; i < lines.length; i++) if (isStart(i)) starts.push(i);
  const fields: SeedField[] = [];
  for (let k = 0; k < starts.length; k++) {
    const chunk = lines.slice(starts[k]!, k + 1 < starts.length ? starts[k + 1]! : lines.length);
    const name = chunk[0]!;
    let typeLine = chunk[1]!;
    let i = 2;
    let isEnum = false;
    if (typeLine.endsWith(' (enum)')) {
      typeLine = typeLine.slice(0, -' (enum)'.length);
      isEnum = true;
    } else if (chunk[2] === '(enum)') {
      isEnum = true;
      i = 3;
    }
    const f: SeedField = { name, type: asType(typeLine, file, name), isEnum, description: chunk[chunk.length - 1]! };
    applyMeta(f, chunk.slice(i, chunk.length - 1));
    fields.push(f);
  }
  const output = parseOutputSchema(file, text.slice(outAt));
  return { file, layout, model: modelName(text), fields, output };
}

function parsePipeTable(file: string, text: string): Seed {
  const sep = text.indexOf('|---|---|---|---|');
  const outAt = text.indexOf('Output schema', sep);
  const table = text.slice(sep + '|---|---|---|---|'.length, outAt);
  const rowStart = /^\| ([a-z_0-9]+) \|/gm;
  const starts: number[] = [];
  for (let m = rowStart.exec(table); m; m = rowStart.exec(table)) starts.push(m.index);
  const fields: SeedField[] = [];
  for (let k = 0; k < starts.length; k++) {
    const row = table.slice(starts[k]!, k + 1 < starts.length ? starts[k + 1]! : table.length);
    // Cells: '', name, type, (meta, description) | (description, ''), trailing ''.
    const cells = row.split('|').map((c) => c.replace(/\s+/g, ' ').trim());
    const name = cells[1]!;
    const typeCell = cells[2]!;
    const hasMeta = cells[4] !== '' && cells[4] !== undefined;
    const description = hasMeta ? cells[4]! : cells[3]!;
    const f: SeedField =
      typeCell === 'None' ? { name, type: null, isEnum: true, description } : { name, type: asType(typeCell, file, name), isEnum: false, description };
    if (hasMeta) applyMeta(f, [cells[3]!]);
    fields.push(f);
  }
  const output = parseOutputSchema(file, text.slice(outAt));
  return { file, layout: 'pipe-table', model: modelName(text), fields, output };
}
