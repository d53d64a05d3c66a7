// Writes the CUDA addon's op binding from the op table (src/tensor/cuda/op-table.ts):
//   native/ops.gen.h   the codes and the C declarations of the launchers (fluxserve_cuda.h includes it)
//   native/ops.gen.inc the Node-API wrappers (addon.cc includes it)
// Run after changing the table: `npx tsc -p . && node dist/scripts/gen-addon-ops.js`.
// test/native/op-table.test.ts fails while the checked-in files differ from what this renders.
import { writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

import {
  ACTIVATION_CODES,
  ADDON_ABI_VERSION,
  type ArgKind,
  BINARY_OP_CODES,
  DTYPE_CODES,
  FLOAT_DTYPES,
  MAX_RANK,
  OP_TABLE,
  type OpSpec,
  WIDTHS,
} from '../src/tensor/cuda/op-table.js';

const HEADER = '// Generated from src/tensor/cuda/op-table.ts by scripts/gen-addon-ops.ts; do not edit by hand.';
const ops = Object.entries(OP_TABLE) as [string, OpSpec][];

/** camelCase -> snake_case for C names; names without a lower-upper boundary (Lq, BC) stay. */
function cName(name: string): string {
  return /[a-z0-9][A-Z]/.test(name) ? name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase() : name;
}

/** The C parameters one table argument stands for. */
function cParams(name: string, kind: ArgKind): string[] {
  const n = cName(name);
  switch (kind) {
    case 'cptr':
    case 'cptrOpt':
      return [`const void* ${n}`];
    case 'ptr':
    case 'ptrOpt':
      return [`void* ${n}`];
    case 'f32ptr':
      return [`const float* ${n}`];
    case 'i32ptr':
      return [`const int32_t* ${n}`];
    case 'dtype':
    case 'dtypeOpt':
    case 'anyDtype':
    case 'act':
    case 'binop':
    case 'flag':
      return [`int ${n}`];
    case 'i64':
      return [`int64_t ${n}`];
    case 'size':
      return [`size_t ${n}`];
    case 'f32':
      return [`float ${n}`];
    case 'f64':
      return [`double ${n}`];
    case 'dims':
      return ['int rank', `const int64_t* ${n}`];
    case 'dimsLike':
      return [`const int64_t* ${n}`];
    case 'attnSegs':
      return ['FxsAttnSeg s0', 'FxsAttnSeg s1', 'int nseg'];
  }
}

/** The dispatch suffixes of an op's launchers, in the order of their selector codes. */
function suffixes(spec: OpSpec): string[] {
  switch (spec.by) {
    case 'dtype':
      return [...FLOAT_DTYPES];
    case 'elem':
      return WIDTHS.map(([, s]) => s);
    case 'cast':
      return Object.keys(DTYPE_CODES);
    case 'none':
      return [''];
  }
}
const launcher = (spec: OpSpec, suffix: string): string => `fxs_${spec.c}${suffix ? `_${suffix}` : ''}`;

function cSignature(spec: OpSpec): string {
  const params = spec.args.flatMap(([n, k]) => cParams(n, k));
  if (spec.ret === 'ptr') params.push('void** out');
  if (spec.ret === 'f32') params.push('float* out');
  return params.length ? params.join(', ') : 'void';
}

/** `// text` wrapped at 100 columns. */
function comment(text: string): string[] {
  const lines: string[] = [];
  let line = '//';
  for (const word of text.split(' ')) {
    if (line.length + 1 + word.length > 100 && line !== '//') {
      lines.push(line);
      line = '//';
    }
    line += ` ${word}`;
  }
  return [...lines, line];
}

const enumOf = (prefix: string, codes: Record<string, number>): string =>
  `enum { ${Object.entries(codes)
    .map(([k, v]) => `${prefix}${k.toUpperCase()} = ${v}`)
    .join(', ')} };`;

export function renderOpsHeader(): string {
  const out = [
    HEADER,
    '// The codes and launcher declarations of the addon op table; included by fluxserve_cuda.h inside',
    '// its extern "C" block, after FxsAttnSeg.',
    '#pragma once',
    '',
    '// dtype codes, in the order of src/tensor/dtype.ts DTYPES',
    enumOf('FXS_DT_', DTYPE_CODES),
    '// activation codes (backend.ts Activation)',
    enumOf('FXS_ACT_', ACTIVATION_CODES),
    '// binary op codes (backend.ts BinaryOp)',
    enumOf('FXS_OP_', BINARY_OP_CODES),
    `#define FXS_MAX_RANK ${MAX_RANK}`,
    `#define FXS_FOR_FLOAT_DTYPES(X) ${FLOAT_DTYPES.map((d) => `X(${d})`).join(' ')}`,
    `#define FXS_FOR_WIDTHS(X) ${WIDTHS.map(([, s]) => `X(${s})`).join(' ')}`,
  ];
  for (const [name, spec] of ops) {
    out.push('', ...comment(`${name} (${spec.src}): ${spec.doc}`));
    for (const s of suffixes(spec)) out.push(`int ${launcher(spec, s)}(${cSignature(spec)});`);
  }
  return `${out.join('\n')}\n`;
}

/** The wrapper's statements reading argument `name` at JS position `at`, and the C arguments it yields. */
function reader(name: string, kind: ArgKind, at: number): { read: string; call: string[] } {
  const n = cName(name);
  const simple = (decl: string, expr: string) => ({ read: `${decl} ${n} = ${expr};`, call: [n] });
  switch (kind) {
    case 'cptr':
    case 'cptrOpt':
      return simple('const void*', `js.ptr(${at})`);
    case 'ptr':
    case 'ptrOpt':
      return simple('void*', `js.ptr(${at})`);
    case 'f32ptr':
      return simple('const float*', `(const float*)js.ptr(${at})`);
    case 'i32ptr':
      return simple('const int32_t*', `(const int32_t*)js.ptr(${at})`);
    case 'dtype':
    case 'dtypeOpt':
      return simple('const int', `js.dt(${at})`);
    case 'anyDtype':
      return simple('const int', `js.dt(${at}, true)`);
    case 'act':
    case 'binop':
    case 'flag':
      return simple('const int', `(int)js.i64(${at})`);
    case 'i64':
      return simple('const int64_t', `js.i64(${at})`);
    case 'size':
      return simple('const size_t', `(size_t)js.i64(${at})`);
    case 'f32':
      return simple('const float', `(float)js.f64(${at})`);
    case 'f64':
      return simple('const double', `js.f64(${at})`);
    case 'dims':
      return { read: `const std::vector<int64_t> ${n} = js.arr(${at});`, call: [`(int)${n}.size()`, `${n}.data()`] };
    case 'dimsLike':
      return { read: `const std::vector<int64_t> ${n} = js.arr(${at});`, call: [`${n}.data()`] };
    case 'attnSegs':
      return { read: `FxsAttnSeg seg[2] = {};\n  const int nseg = js.attnSegs(${at}, seg);`, call: ['seg[0]', 'seg[1]', 'nseg'] };
  }
}

function renderWrapper(name: string, spec: OpSpec): string {
  const body: string[] = [`  Args js(env, info, "${name}");`];
  let at = 0;
  let target = launcher(spec, '');
  if (spec.by !== 'none') {
    const table = suffixes(spec).map((s) => launcher(spec, s));
    body.push(`  static decltype(&${table[0]}) const launchers[] = {${table.join(', ')}};`);
    body.push(`  const int sel = ${spec.by === 'elem' ? 'js.width(0)' : spec.by === 'cast' ? 'js.dt(0, true)' : 'js.dt(0)'};`);
    target = 'launchers[sel]';
    at = 1;
  }
  const call: string[] = [];
  const checks: string[] = [];
  let dims = '';
  for (const [argName, kind] of spec.args) {
    const r = reader(argName, kind, at);
    body.push(`  ${r.read}`);
    call.push(...r.call);
    at += kind === 'attnSegs' ? 2 : 1;
    if (kind === 'dims') dims = cName(argName);
    if (kind === 'dimsLike') {
      const n = cName(argName);
      checks.push(`  if (${n}.size() != ${dims}.size()) return js.fail("${argName} and ${dims} lengths differ");`);
    }
  }
  body.push('  if (js.bad) return nullptr;', ...checks);
  if (spec.ret === 'ptr' || spec.ret === 'f32') {
    body.push(spec.ret === 'ptr' ? '  void* result = nullptr;' : '  float result = 0.f;');
    body.push(`  const int rc = ${target}(${[...call, '&result'].join(', ')});`);
    body.push(`  return rc ? js.done(rc) : js.${spec.ret === 'ptr' ? 'pointer' : 'number'}(result);`);
  } else {
    body.push(`  return js.done(${target}(${call.join(', ')}));`);
  }
  return [`// ${name}`, `napi_value Op_${name}(napi_env env, napi_callback_info info) {`, ...body, '}'].join('\n');
}

export function renderOpsBinding(): string {
  const out = [
    HEADER,
    '// The Node-API wrappers of the addon op table; included by addon.cc inside its anonymous namespace',
    '// (Args and OpExport are defined there). JS arguments: the dispatch key first (dtype code, element',
    '// bytes or target dtype code) when the op has one, then the table arguments in order.',
    '',
    `#define FXS_ADDON_ABI_VERSION ${ADDON_ABI_VERSION}`,
  ];
  for (const [name, spec] of ops) out.push('', renderWrapper(name, spec));
  out.push('', 'const OpExport kTableOps[] = {', ...ops.map(([name]) => `    {"${name}", Op_${name}},`), '};');
  return `${out.join('\n')}\n`;
}

/** The generated files, relative to the repository root. */
export function renderedFiles(): Record<string, string> {
  return { 'native/ops.gen.h': renderOpsHeader(), 'native/ops.gen.inc': renderOpsBinding() };
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  for (const [rel, text] of Object.entries(renderedFiles())) {
    const target = fileURLToPath(new URL(`../../${rel}`, import.meta.url)); // dist/scripts/ -> repo root
    writeFileSync(target, text);
    console.log(`wrote ${target}`);
  }
}
