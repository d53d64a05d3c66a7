// `fluxserve debug reference-check DIR`: run every case of a BFL fixture folder (weights +
// config.json + cases.safetensors, like test/fixtures/bfl-tiny-a) through our model code, print
// each tensor's relative error, exit non-zero when one exceeds its tolerance.

import { resolve } from 'node:path';
import { referenceCheck } from '../../debug/reference-check.js';
import { defaultBackend } from '../../tensor/registry.js';
import { type FlagSpec, UsageError, helpText, parseArgs } from '../args.js';

const FLAGS: FlagSpec[] = [{ name: 'help', short: 'h', kind: 'bool', help: 'show this help' }];
const USAGE = helpText('usage: fluxserve debug reference-check DIR', FLAGS);

export async function debugCommand(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const args = parseArgs(argv, FLAGS);
  const [sub, dir, ...extra] = args.positionals;
  if (args.bools.has('help')) {
    out(USAGE);
    return 0;
  }
  if (sub !== 'reference-check') throw new UsageError(`unknown debug command ${JSON.stringify(sub ?? '')} (known: reference-check)`);
  if (!dir || extra.length) throw new UsageError('reference-check takes one fixture folder');
  const { results } = await referenceCheck(resolve(dir), { backend: defaultBackend(), log: err });
  const w = Math.max(...results.map((r) => r.name.length), 4);
  out(`${'case'.padEnd(w)}  ${'rel err'.padStart(10)}  ${'max |diff|'.padStart(10)}  ${'bound'.padStart(16)}  result`);
  for (const r of results) {
    const bound = `${r.metric} <= ${r.tol.toExponential(0)}`;
    const line = `${r.name.padEnd(w)}  ${r.relErr.toExponential(2).padStart(10)}  ${r.maxAbsDiff.toExponential(2).padStart(10)}  ${bound.padStart(16)}  ${r.ok ? 'ok' : 'FAIL'}`;
    out(r.note ? `${line}  ${r.note}` : line);
  }
  const failed = results.filter((r) => !r.ok).length;
  out(failed ? `${failed} of ${results.length} checks FAILED` : `all ${results.length} checks passed`);
  return failed ? 1 : 0;
}
