// `fluxserve serve [--config FILE] [--port N] [--host H] [--profile trainer|hotswap] [--model DIR] [--token T] [--upload-url URL]`:
// the prediction server (Cog API at /, Replicate API at /v1) on one loaded model; the built-in tiny
// model when no --model is given. A config file registers fine-tunes (owner/name + LoRA + profile +
// defaults) served by that one model (src/server/config.ts, registry.ts). PORT env sets the default
// port (5000, as Cog).

import { basename, resolve } from 'node:path';
import { buildServer } from '../../server/app.js';
import { ConfigError, type ServerConfig, loadServerConfig } from '../../server/config.js';
import { hostModels } from '../../server/registry.js';
import { defaultBackend } from '../../tensor/registry.js';
import { ensureTinyModel } from '../../tiny/generate.js';
import { type FlagSpec, UsageError, flag, helpText, parseArgs } from '../args.js';
import { detectLayout } from '../../models/load.js';
import { LORA_MODE_FLAG, loraModeOption, safetyOption } from './predict.js';

const FLAGS: FlagSpec[] = [
  { name: 'config', short: 'c', kind: 'string', help: 'server config file (JSON): base model, registered fine-tunes, LoRA policy (docs/server.md)' },
  { name: 'port', kind: 'string', help: 'port to listen on (default: $PORT, else 5000)' },
  { name: 'host', kind: 'string', help: 'address to bind (default 0.0.0.0)' },
  { name: 'profile', short: 'p', kind: 'string', help: 'input profile: trainer (default) or hotswap' },
  { name: 'model', short: 'm', kind: 'string', help: 'model folder (diffusers or BFL layout); default: the built-in tiny model' },
  { name: 'name', kind: 'string', help: 'owner/name the /v1 API serves the model as (default fluxserve/tiny, or local/<folder>)' },
  { name: 'token', kind: 'string', help: 'require Authorization: Bearer TOKEN on /v1 (default: $FLUXSERVE_API_TOKEN, else open)' },
  { name: 'public-url', kind: 'string', help: 'absolute URL clients reach the server at; /v1 outputs become URLs under it' },
  { name: 'upload-url', kind: 'string', help: 'PUT output files to URL/<name> and return their URLs (as Cog does)' },
  { name: 'concurrency', kind: 'string', help: 'predictions at once (default 1)' },
  { name: 'max-queue', kind: 'string', help: '/v1 predictions that may wait for a slot (default 64)' },
  { name: 'safety-checker', kind: 'string', help: 'safety checker folder (safety_checker/ + falconsai/); default: <model>/safety' },
  { name: 'disable-safety-checker', kind: 'bool', help: 'run without the output safety checker (outputs are not checked)' },
  { name: 'allow-local-loras', kind: 'bool', help: 'accept local file paths as replicate_weights / extra_lora (default: refused)' },
  { name: 'lora-cache', kind: 'string', help: 'LoRA download cache folder (default: $FLUXSERVE_CACHE/loras, else ~/.cache/fluxserve/loras)' },
  LORA_MODE_FLAG,
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

export const SERVE_USAGE = helpText(
  'usage: fluxserve serve [--config FILE] [--port N] [--host H] [--profile trainer|hotswap] [--model DIR] [--token T]',
  FLAGS,
);

function intFlag(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max} (got ${v})`);
  return Number(v);
}

export async function serveCommand(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const args = parseArgs(argv, FLAGS);
  if (args.bools.has('help')) {
    out(SERVE_USAGE);
    return 0;
  }
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument '${args.positionals[0]}'`);
  const envPort = process.env['PORT'];
  const port = intFlag(flag(args, 'port') ?? (envPort || undefined), 'port', 0, 65535) ?? 5000;
  const host = flag(args, 'host') ?? '0.0.0.0';
  const configPath = flag(args, 'config');
  let config: ServerConfig = { models: [] };
  if (configPath !== undefined) {
    try {
      config = loadServerConfig(resolve(configPath));
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(`${configPath}: ${e.message}`);
      throw e;
    }
  }
  const profile = flag(args, 'profile') ?? config.profile ?? 'trainer';
  if (profile !== 'trainer' && profile !== 'hotswap') throw new UsageError(`--profile must be trainer or hotswap (got ${profile})`);
  const modelFlag = flag(args, 'model');
  const modelGiven = modelFlag !== undefined ? resolve(modelFlag) : config.model;
  const modelDir = modelGiven ?? ensureTinyModel();
  detectLayout(modelDir); // a wrong --model is the first thing to report
  const name = flag(args, 'name') ?? config.name ?? (modelGiven ? `local/${basename(modelDir).replace(/[^A-Za-z0-9._-]/g, '-') || 'model'}` : 'fluxserve/tiny');
  const token = flag(args, 'token') ?? (process.env['FLUXSERVE_API_TOKEN'] || undefined);
  const concurrency = intFlag(flag(args, 'concurrency'), 'concurrency', 1, 64);
  const maxQueue = intFlag(flag(args, 'max-queue'), 'max-queue', 0, 100_000);

  const uploadUrl = flag(args, 'upload-url');
  if (uploadUrl !== undefined && !/^https?:\/\/[^/]/i.test(uploadUrl)) throw new UsageError(`--upload-url must be an http or https URL (got ${uploadUrl})`);

  let hosted;
  try {
    hosted = hostModels(config, {
      modelDir,
      backend: defaultBackend(),
      baseName: name,
      profile,
      safety: safetyOption(args, modelDir),
      loraCacheDir: flag(args, 'lora-cache') !== undefined ? resolve(flag(args, 'lora-cache')!) : undefined,
      allowLocalLoras: args.bools.has('allow-local-loras') ? true : undefined,
      loraMode: loraModeOption(args),
    });
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(`${configPath ?? 'config'}: ${e.message}`);
    throw e;
  }
  let stopped!: () => void;
  const done = new Promise<void>((r) => (stopped = r));
  const app = buildServer({
    predictor: hosted.cogPredictor,
    models: hosted.models,
    auth: token,
    publicBaseUrl: flag(args, 'public-url'),
    uploadUrl,
    webhookAuthToken: process.env['WEBHOOK_AUTH_TOKEN'] || undefined,
    ...(concurrency !== undefined ? { concurrency } : {}),
    ...(maxQueue !== undefined ? { maxQueue } : {}),
    logger: { level: process.env['FLUXSERVE_LOG_LEVEL'] ?? 'info' },
  });
  app.addHook('onClose', async () => stopped());
  const stop = () => void app.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const address = await app.listen({ port, host });
  const others = hosted.models.length > 1 ? ` and ${hosted.models.length - 1} registered model(s) on it` : '';
  err(
    `fluxserve: serving ${name} (${profile} inputs, ${modelGiven ? modelDir : 'built-in tiny model'})${others} at ${address}${token ? ' (/v1 requires a bearer token)' : ''}`,
  );
  await done;
  hosted.dispose();
  return 0;
}
