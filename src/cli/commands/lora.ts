// `fluxserve lora merge|inspect`: fuse LoRAs into a base transformer checkpoint, or describe a
// LoRA file (format, rank, alpha, the base-model parameters it changes, dropped keys).

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { downloadingLoraResolver } from '../../predictor/lora-sources.js';
import { bflTransformerKeys } from '../../io/names.js';
import { describeLora } from '../../lora/formats.js';
import { loraTargetOfSource, mergeLoraFiles, openBaseTransformer, parseLoraSpec, readLoraFile } from '../../lora/merge.js';
import { loraTargetFromKeys } from '../../lora/names.js';
import type { LoraTarget } from '../../lora/types.js';
import { FLUX_DEV } from '../../models/flux/config.js';
import { type FlagSpec, UsageError, flag, helpText, parseArgs } from '../args.js';

const MERGE_FLAGS: FlagSpec[] = [
  { name: 'base', short: 'b', kind: 'string', help: 'base transformer: a .safetensors file (BFL or diffusers names) or a model folder' },
  { name: 'lora', short: 'l', kind: 'string', repeat: true, help: 'a LoRA file, optionally with its strength: FILE[:SCALE] (default 1); repeatable' },
  { name: 'out', short: 'o', kind: 'string', help: 'write the merged checkpoint (BFL names, the base dtype) to this file' },
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

const INSPECT_FLAGS: FlagSpec[] = [
  { name: 'base', short: 'b', kind: 'string', help: 'check against this base transformer (default: the FLUX.1-dev key list)' },
  { name: 'lora-cache', kind: 'string', help: 'LoRA download cache folder (default: $FLUXSERVE_CACHE/loras, else ~/.cache/fluxserve/loras)' },
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

const USAGE = `usage: fluxserve lora merge --base FILE|DIR --lora FILE[:SCALE] [--lora FILE[:SCALE] ...] --out FILE
       fluxserve lora inspect FILE|REF [--base FILE|DIR] [--lora-cache DIR]`;

function withBase<T>(base: string | undefined, fn: (target: LoraTarget) => T): T {
  if (base === undefined) return fn(loraTargetFromKeys(bflTransformerKeys(FLUX_DEV)));
  const b = openBaseTransformer(resolve(base));
  try {
    return fn(loraTargetOfSource(b.source));
  } finally {
    b.close();
  }
}

export async function loraCommand(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    out(`${USAGE}\n\nRun 'fluxserve lora merge --help' or 'fluxserve lora inspect --help' for the options.\n`);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'merge') {
    const args = parseArgs(rest, MERGE_FLAGS);
    if (args.bools.has('help')) {
      out(helpText(USAGE.split('\n')[0]!, MERGE_FLAGS));
      return 0;
    }
    if (args.positionals.length) throw new UsageError(`merge takes no positional arguments (got ${args.positionals.join(' ')})`);
    const base = flag(args, 'base');
    const dest = flag(args, 'out');
    const loras = args.flags.get('lora') ?? [];
    if (!base) throw new UsageError('merge needs --base');
    if (!dest) throw new UsageError('merge needs --out');
    if (loras.length === 0) throw new UsageError('merge needs at least one --lora FILE[:SCALE]');
    const specs = loras.map((s) => {
      try {
        return parseLoraSpec(s);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    });
    const r = mergeLoraFiles(resolve(base), specs, dest);
    for (const l of r.loras) {
      const modules = new Set(l.parsed.deltas.map((d) => d.module)).size + l.parsed.overrides.length;
      err(`${l.src}: ${l.parsed.format}, scale ${l.scale}, ${l.parsed.deltas.length} delta(s) on ${modules} parameter(s)`);
      for (const w of l.parsed.warnings) err(`  warning: ${w}`);
    }
    err(`merged ${r.loras.length} LoRA(s) into ${r.params} of ${r.total} parameters (${r.layout} base)`);
    out(r.out);
    return 0;
  }
  if (sub === 'inspect') {
    const args = parseArgs(rest, INSPECT_FLAGS);
    if (args.bools.has('help')) {
      out(helpText(`usage: ${USAGE.split('\n')[1]!.trim()}`, INSPECT_FLAGS));
      return 0;
    }
    if (args.positionals.length !== 1) throw new UsageError('inspect takes one LoRA file or reference');
    const ref = args.positionals[0]!;
    let file = resolve(ref);
    if (!existsSync(file)) {
      // A reference (owner/name, huggingface.co/..., civitai.com/..., https://..., data:): resolved
      // and cached exactly as predictions resolve it (tokens from the environment).
      const cacheDir = flag(args, 'lora-cache');
      const { resolver } = downloadingLoraResolver({ cache: cacheDir !== undefined ? { dir: resolve(cacheDir) } : {}, allowLocal: true });
      try {
        const r = await resolver(ref, { log: err });
        err(`resolved from ${r.source}`);
        file = r.path;
      } catch (e) {
        throw new UsageError(`cannot resolve ${ref.startsWith('data:') ? 'the data: URI' : JSON.stringify(ref.replace(/\?.*$/, ''))}: ${(e as Error).message}`);
      }
    }
    const base = flag(args, 'base');
    const text = withBase(base, (target) => describeLora(readLoraFile(file, target)));
    out(`file: ${file}\nbase: ${base ? resolve(base) : 'FLUX.1-dev key list'}\n${text}`);
    return 0;
  }
  throw new UsageError(`unknown lora command ${JSON.stringify(sub)} (known: merge, inspect)`);
}
