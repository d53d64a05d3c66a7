// `fluxserve tiny [--out DIR]`: write the built-in tiny model (both layouts) and print its folder.

import { resolve } from 'node:path';
import { ensureTinyModel, writeTinyModel } from '../../tiny/generate.js';
import { type FlagSpec, flag, helpText, parseArgs } from '../args.js';

const FLAGS: FlagSpec[] = [
  { name: 'out', short: 'o', kind: 'string', help: 'write into this folder (default: the cache, $FLUXSERVE_CACHE or ~/.cache/fluxserve)' },
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

export async function tinyCommand(argv: readonly string[], out: (s: string) => void): Promise<number> {
  const args = parseArgs(argv, FLAGS);
  if (args.bools.has('help')) {
    out(helpText('usage: fluxserve tiny [--out DIR]', FLAGS));
    return 0;
  }
  const dir = flag(args, 'out');
  if (dir) {
    writeTinyModel(resolve(dir));
    out(resolve(dir));
  } else {
    out(ensureTinyModel());
  }
  return 0;
}
