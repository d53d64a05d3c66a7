#!/usr/bin/env node
// The fluxserve command: dispatches to one module per subcommand.

import { UsageError } from './args.js';
import { predictCommand } from './commands/predict.js';
import { debugCommand } from './commands/debug.js';
import { loraCommand } from './commands/lora.js';
import { schemaCliCommand } from './commands/schema.js';
import { serveCommand } from './commands/serve.js';
import { tinyCommand } from './commands/tiny.js';

const USAGE = `usage: fluxserve <command> [options]

commands:
  predict -i key=value ... [-o DIR] [--model DIR]   run one prediction (trainer or hotswap inputs), print the output paths
  schema [--profile trainer|hotswap]                print the profile's OpenAPI document (Cog layout)
  serve [--config F] [--port N] [--model DIR]       run the prediction server (Cog API at /, Replicate API at /v1)
  tiny [--out DIR]                                  write the built-in tiny model, print its folder
  debug reference-check DIR                         check the model code against a BFL fixture folder
  lora merge --base F --lora F[:S] ... --out F      fuse LoRAs into a base transformer checkpoint
  lora inspect FILE|REF [--base F]                  describe a LoRA file or reference (format, rank, modules)

Run 'fluxserve <command> --help' for a command's options.
`;

type Command = (argv: readonly string[], out: (s: string) => void, err: (s: string) => void) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  predict: predictCommand,
  tiny: tinyCommand,
  debug: debugCommand,
  schema: schemaCliCommand,
  serve: serveCommand,
  lora: loraCommand,
};

export async function main(argv: readonly string[]): Promise<number> {
  const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
  const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    out(USAGE);
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    err(`fluxserve: unknown command '${name}'\n\n${USAGE}`);
    return 2;
  }
  try {
    return await cmd(rest, out, err);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`fluxserve ${name}: ${e.message}`);
      return 2;
    }
    err(`fluxserve ${name}: ${e instanceof Error ? e.message : String(e)}`);
    if (process.env['FLUXSERVE_DEBUG']) err(String((e as Error).stack));
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`fluxserve: ${String(e)}\n`);
    process.exitCode = 1;
  },
);
