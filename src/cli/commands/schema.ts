// `fluxserve schema --profile trainer|hotswap`: print that profile's OpenAPI document (Cog's layout).

import { getProfile, schemaCommand } from '../../predictor/index.js';
import { type FlagSpec, UsageError, flag, helpText, parseArgs } from '../args.js';

const FLAGS: FlagSpec[] = [
  { name: 'profile', short: 'p', kind: 'string', help: 'trainer (default) or hotswap' },
  { name: 'no-replicate-weights', kind: 'bool', help: 'hotswap without the replicate_weights input (a fine-tune with its own LoRA)' },
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

export async function schemaCliCommand(argv: readonly string[], out: (s: string) => void): Promise<number> {
  const args = parseArgs(argv, FLAGS);
  if (args.bools.has('help')) {
    out(helpText('usage: fluxserve schema [--profile trainer|hotswap]', FLAGS));
    return 0;
  }
  const name = flag(args, 'profile') ?? 'trainer';
  if (name !== 'trainer' && name !== 'hotswap') throw new UsageError(`--profile must be trainer or hotswap (got ${name})`);
  out(schemaCommand(getProfile(name, { replicateWeights: !args.bools.has('no-replicate-weights') })));
  return 0;
}
