// Binds the addon's op-table exports (op-table.ts) to named arguments: each op takes one args
// object and passes the addon its positional arguments in table order, the dispatch key first,
// with dtypes, activations and binary ops turned into their codes and flags into 0 / 1.

import { dtypeSize } from '../dtype.js';
import {
  ACTIVATION_CODES,
  type ArgKind,
  type AttnSegArgs,
  BINARY_OP_CODES,
  type CudaOps,
  DTYPE_CODES,
  type Dispatch,
  OP_TABLE,
  type OpSpec,
} from './op-table.js';

/** What the addon receives: BigInt pointers (0n / undefined: absent), numbers, arrays, segments. */
export type RawArg = bigint | number | undefined | readonly number[] | (bigint | number)[] | null;
/** The addon's exports as loaded; its op-table exports take positional `RawArg`s. */
export type RawOps = Readonly<Record<string, unknown>>;

const seg = (s: AttnSegArgs | undefined): RawArg => (s ? [s.x, s.L, s.C, s.col, s.qScale, DTYPE_CODES[s.qScaleDt], s.kScale, DTYPE_CODES[s.kScaleDt]] : null);

type Writer = (args: Record<string, unknown>, out: RawArg[]) => void;

/** How one argument is written into the positional list. */
function writer(name: string, kind: ArgKind): Writer {
  switch (kind) {
    case 'cptr':
    case 'ptr':
    case 'f32ptr':
    case 'i32ptr':
    case 'i64':
    case 'size':
    case 'f32':
    case 'f64':
    case 'dims':
    case 'dimsLike':
      return (a, out) => void out.push(a[name] as RawArg);
    case 'cptrOpt':
    case 'ptrOpt':
      return (a, out) => void out.push((a[name] as bigint | undefined) ?? 0n);
    case 'dtype':
    case 'anyDtype':
      return (a, out) => void out.push(DTYPE_CODES[a[name] as keyof typeof DTYPE_CODES]);
    case 'dtypeOpt':
      return (a, out) => {
        const dt = a[name] as keyof typeof DTYPE_CODES | undefined;
        out.push(dt === undefined ? 0 : DTYPE_CODES[dt]);
      };
    case 'act':
      return (a, out) => void out.push(ACTIVATION_CODES[a[name] as keyof typeof ACTIVATION_CODES]);
    case 'binop':
      return (a, out) => void out.push(BINARY_OP_CODES[a[name] as keyof typeof BINARY_OP_CODES]);
    case 'flag':
      return (a, out) => void out.push(a[name] ? 1 : 0);
    case 'attnSegs':
      return (a, out) => {
        const segs = a[name] as readonly AttnSegArgs[];
        out.push(seg(segs[0]), seg(segs[1]));
      };
  }
}

/** The dispatch key's writer: a dtype code, element bytes, or the cast's target dtype code. */
function keyWriter(by: Dispatch): Writer | undefined {
  switch (by) {
    case 'dtype':
      return (a, out) => void out.push(DTYPE_CODES[a['dt'] as keyof typeof DTYPE_CODES]);
    case 'elem':
      return (a, out) => void out.push(dtypeSize(a['elem'] as keyof typeof DTYPE_CODES));
    case 'cast':
      return (a, out) => void out.push(DTYPE_CODES[a['to'] as keyof typeof DTYPE_CODES]);
    case 'none':
      return undefined;
  }
}

/** The positional arguments op `spec` is called with for `args` (exported for the tests). */
export function positional(spec: OpSpec, args: Record<string, unknown>): RawArg[] {
  return marshaller(spec)(args);
}

function marshaller(spec: OpSpec): (args: Record<string, unknown>) => RawArg[] {
  const key = keyWriter(spec.by);
  const writers = [...(key ? [key] : []), ...spec.args.map(([n, k]) => writer(n, k))];
  return (args) => {
    const out: RawArg[] = [];
    for (const w of writers) w(args, out);
    return out;
  };
}

/** The table's ops over a loaded addon; an export the addon lacks fails when it is bound. */
export function bindOps(raw: RawOps): CudaOps {
  const ops: Record<string, (args: Record<string, unknown>) => unknown> = {};
  for (const [name, spec] of Object.entries(OP_TABLE) as [string, OpSpec][]) {
    const fn = raw[name];
    if (typeof fn !== 'function') throw new Error(`the addon has no op ${name} (rebuild it)`);
    const call = fn as (...args: RawArg[]) => unknown;
    const toPositional = marshaller(spec);
    ops[name] = (args) => call(...toPositional(args));
  }
  return ops as unknown as CudaOps;
}
