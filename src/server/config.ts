// The server config file (`fluxserve serve --config fluxserve.json`): one base model, the
// fine-tunes served on it (each an owner/name with a profile, a LoRA, a trigger word and input
// defaults), the LoRA download policy. parseServerConfig validates everything up front and throws
// ConfigError naming the field (`models[1].lora_scale: must be a number (got "x")`). Relative paths
// are relative to the config file's folder. docs/server.md "Config file" is the user's reference.

import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { InputValidationError } from '../predictor/errors.js';
import { type ProfileName, getProfile } from '../predictor/profiles.js';
import { validateInput } from '../predictor/validate.js';
import { basicRefKind } from '../lora/resolve-basic.js';
import { LoraSourceError } from '../lora/source-errors.js';
import { parseLoraRef } from '../lora/sources.js';

export interface RegisteredModel {
  readonly owner: string;
  readonly name: string;
  readonly profile: ProfileName;
  /** A LoRA reference (local paths already made absolute). */
  readonly lora?: string | undefined;
  readonly loraScale?: number | undefined;
  readonly triggerWord?: string | undefined;
  /** hotswap: serve the replicate_weights input (default: true without a LoRA, false with one). */
  readonly replicateWeights: boolean;
  readonly defaults: Readonly<Record<string, unknown>>;
  readonly description?: string | undefined;
}

export interface ServerConfig {
  /** Base model folder (absolute); undefined: the built-in tiny model. */
  readonly model?: string | undefined;
  /** owner/name the base model itself is served as (default fluxserve/tiny, or local/<folder>). */
  readonly name?: string | undefined;
  /** The base model's profile, and the default of every registered model's. */
  readonly profile?: ProfileName | undefined;
  /** The model the Cog routes serve (default: the base model). */
  readonly defaultModel?: string | undefined;
  readonly models: readonly RegisteredModel[];
  readonly allowLocalLoras?: boolean | undefined;
  readonly loraCache?: { readonly dir?: string | undefined; readonly maxBytes?: number | undefined } | undefined;
  readonly hubEndpoints?: { hf?: string; civitai?: string; replicate?: string; replicateWeb?: string } | undefined;
}

export class ConfigError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(field ? `${field}: ${message}` : message);
    this.name = 'ConfigError';
  }
}

type Obj = Record<string, unknown>;
const isObject = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}...` : v) : (JSON.stringify(v) ?? String(v)));
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function noExtraKeys(o: Obj, allowed: readonly string[], at: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new ConfigError(at ? `${at}.${k}` : k, `unknown field (known: ${allowed.join(', ')})`);
  }
}

function str(o: Obj, k: string, at: string, required = false): string | undefined {
  const v = o[k];
  if (v === undefined) {
    if (required) throw new ConfigError(at + k, 'is required');
    return undefined;
  }
  if (typeof v !== 'string' || v.trim() === '') throw new ConfigError(at + k, `must be a non-empty string (got ${show(v)})`);
  return v;
}

function bool(o: Obj, k: string, at: string): boolean | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new ConfigError(at + k, `must be true or false (got ${show(v)})`);
  return v;
}

function profileOf(o: Obj, at: string): ProfileName | undefined {
  const v = o['profile'];
  if (v === undefined) return undefined;
  if (v !== 'trainer' && v !== 'hotswap') throw new ConfigError(`${at}profile`, `must be "trainer" or "hotswap" (got ${show(v)})`);
  return v;
}

function url(v: unknown, field: string): string {
  if (typeof v !== 'string' || !/^https?:\/\/[^/]/i.test(v)) throw new ConfigError(field, `must be an http or https URL (got ${show(v)})`);
  return v;
}

/** Validates a parsed config; `baseDir` anchors relative paths. */
export function parseServerConfig(raw: unknown, baseDir: string): ServerConfig {
  if (!isObject(raw)) throw new ConfigError('', 'the config must be a JSON object');
  noExtraKeys(raw, ['model', 'name', 'profile', 'default_model', 'models', 'allow_local_loras', 'lora_cache', 'hub_endpoints'], '');
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const model = str(raw, 'model', '');
  const name = str(raw, 'name', '');
  if (name !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name))
    throw new ConfigError('name', `must be owner/name (got ${show(name)})`);
  const profile = profileOf(raw, '');
  const allowLocalLoras = bool(raw, 'allow_local_loras', '');

  let loraCache: ServerConfig['loraCache'];
  if (raw['lora_cache'] !== undefined) {
    const c = raw['lora_cache'];
    if (!isObject(c)) throw new ConfigError('lora_cache', `must be an object {dir, max_bytes} (got ${show(c)})`);
    noExtraKeys(c, ['dir', 'max_bytes'], 'lora_cache');
    const dir = str(c, 'dir', 'lora_cache.');
    const mb = c['max_bytes'];
    if (mb !== undefined && (typeof mb !== 'number' || !Number.isSafeInteger(mb) || mb <= 0))
      throw new ConfigError('lora_cache.max_bytes', `must be a positive integer (got ${show(mb)})`);
    loraCache = { dir: dir === undefined ? undefined : abs(dir), maxBytes: mb as number | undefined };
  }

  let hubEndpoints: ServerConfig['hubEndpoints'];
  if (raw['hub_endpoints'] !== undefined) {
    const h = raw['hub_endpoints'];
    if (!isObject(h)) throw new ConfigError('hub_endpoints', `must be an object (got ${show(h)})`);
    noExtraKeys(h, ['hf', 'civitai', 'replicate', 'replicate_web'], 'hub_endpoints');
    const e: { hf?: string; civitai?: string; replicate?: string; replicateWeb?: string } = {};
    if (h['hf'] !== undefined) e.hf = url(h['hf'], 'hub_endpoints.hf');
    if (h['civitai'] !== undefined) e.civitai = url(h['civitai'], 'hub_endpoints.civitai');
    if (h['replicate'] !== undefined) e.replicate = url(h['replicate'], 'hub_endpoints.replicate');
    if (h['replicate_web'] !== undefined) e.replicateWeb = url(h['replicate_web'], 'hub_endpoints.replicate_web');
    hubEndpoints = e;
  }

  const models: RegisteredModel[] = [];
  if (raw['models'] !== undefined && !Array.isArray(raw['models'])) throw new ConfigError('models', `must be a list (got ${show(raw['models'])})`);
  const seen = new Set<string>();
  for (const [i, m] of ((raw['models'] as unknown[] | undefined) ?? []).entries()) {
    const at = `models[${i}]`;
    if (!isObject(m)) throw new ConfigError(at, `must be an object (got ${show(m)})`);
    noExtraKeys(m, ['owner', 'name', 'profile', 'lora', 'lora_scale', 'trigger_word', 'replicate_weights', 'defaults', 'description'], at);
    const owner = str(m, 'owner', `${at}.`, true)!;
    const mname = str(m, 'name', `${at}.`, true)!;
    if (!NAME.test(owner)) throw new ConfigError(`${at}.owner`, `must be letters, digits, '.', '_' or '-' (got ${show(owner)})`);
    if (!NAME.test(mname)) throw new ConfigError(`${at}.name`, `must be letters, digits, '.', '_' or '-' (got ${show(mname)})`);
    const full = `${owner}/${mname}`;
    if (seen.has(full)) throw new ConfigError(`${at}.name`, `${full} is registered twice`);
    seen.add(full);
    const p = profileOf(m, `${at}.`) ?? profile ?? 'trainer';
    let lora = str(m, 'lora', `${at}.`);
    if (lora !== undefined) {
      if (basicRefKind(lora) === 'local' && !/^file:/i.test(lora.trim())) lora = abs(lora.trim());
      else if (basicRefKind(lora) === undefined) {
        try {
          parseLoraRef(lora, true);
        } catch (e) {
          if (e instanceof LoraSourceError) throw new ConfigError(`${at}.lora`, e.message);
          throw e;
        }
      }
    }
    const scale = m['lora_scale'];
    if (scale !== undefined && (typeof scale !== 'number' || !Number.isFinite(scale)))
      throw new ConfigError(`${at}.lora_scale`, `must be a number (got ${show(scale)})`);
    if (scale !== undefined && lora === undefined) throw new ConfigError(`${at}.lora_scale`, 'needs a lora');
    const trigger = str(m, 'trigger_word', `${at}.`);
    const rw = bool(m, 'replicate_weights', `${at}.`);
    if (rw !== undefined && p !== 'hotswap') throw new ConfigError(`${at}.replicate_weights`, 'only applies to the hotswap profile');
    const replicateWeights = p === 'hotswap' && (rw ?? lora === undefined);
    if (p === 'hotswap' && !replicateWeights && lora === undefined)
      throw new ConfigError(`${at}.replicate_weights`, 'false needs a lora (the model would have no way to get one)');
    const defaults = m['defaults'] ?? {};
    if (!isObject(defaults)) throw new ConfigError(`${at}.defaults`, `must be an object of input values (got ${show(defaults)})`);
    checkDefaults(defaults, p, replicateWeights, lora !== undefined, `${at}.defaults`);
    const description = str(m, 'description', `${at}.`);
    models.push({
      owner,
      name: mname,
      profile: p,
      lora,
      loraScale: scale as number | undefined,
      triggerWord: trigger,
      replicateWeights,
      defaults: { ...defaults },
      description,
    });
  }
  const defaultModel = str(raw, 'default_model', '');
  return {
    model: model === undefined ? undefined : abs(model),
    name,
    profile,
    defaultModel,
    models,
    allowLocalLoras,
    loraCache,
    hubEndpoints,
  };
}

/** Every default must be an input of the model's schema with a valid value. */
function checkDefaults(defaults: Obj, profile: ProfileName, replicateWeights: boolean, ownLora: boolean, at: string): void {
  const prof = getProfile(profile, { replicateWeights });
  const names = new Set(prof.fields.map((f) => f.name));
  for (const k of Object.keys(defaults)) {
    if (!names.has(k))
      throw new ConfigError(`${at}.${k}`, `is not an input of this model (${profile}${profile === 'hotswap' && !replicateWeights ? ', fixed weights' : ''})`);
  }
  try {
    validateInput(prof, { prompt: 'x', ...defaults }, { ownLora });
  } catch (e) {
    if (!(e instanceof InputValidationError)) throw e;
    const d = e.detail[0]!;
    const field = d.loc.slice(2).join('.');
    throw new ConfigError(`${at}.${field}`, d.msg.replace(new RegExp(`^${field}: `), ''));
  }
}

/** Reads and validates a config file (JSON). */
export function loadServerConfig(path: string): ServerConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError('', `cannot read the config file ${path}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError('', `the config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  return parseServerConfig(raw, dirname(resolve(path)));
}
