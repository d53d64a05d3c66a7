// The served models of a config: one ModelHost (the base model, loaded once, its LoRA state and
// safety checker) and one Predictor per registered model on it (profile, own LoRA, trigger word,
// input defaults), the base model itself included. The LoRA downloader (src/lora/sources.ts with a
// LoraCache) is wired into the host with the registered models as its registry, so
// `extra_lora: "owner/name"` of a registered fine-tune resolves to its LoRA without the network.

import { openApiDocument } from '../predictor/openapi.js';
import type { LoraMode } from '../predictor/loras.js';
import { downloadingLoraResolver } from '../predictor/lora-sources.js';
import { ModelHost, type Predictor, type HostOptions } from '../predictor/predictor.js';
import type { ProfileName } from '../predictor/profiles.js';
import type { LoraCache } from '../lora/cache.js';
import type { LoraEnv } from '../lora/sources.js';
import type { Backend } from '../tensor/backend.js';
import { ConfigError, type ServerConfig } from './config.js';
import { type ModelConfig, versionIdFor } from './models.js';

export interface HostedModelsOptions {
  readonly modelDir: string;
  readonly backend: Backend;
  /** owner/name of the base model itself. */
  readonly baseName: string;
  readonly profile: ProfileName;
  readonly safety?: HostOptions['safety'];
  readonly loraMode?: LoraMode;
  /** Hub tokens (default: the process environment). Never taken from requests. */
  readonly env?: LoraEnv;
  /** Overrides of the config's lora_cache.dir / allow_local_loras (CLI flags). */
  readonly loraCacheDir?: string | undefined;
  readonly allowLocalLoras?: boolean | undefined;
  /** Where data: URI LoRAs are written. */
  readonly loraDataDir?: string | undefined;
}

export interface HostedModels {
  readonly host: ModelHost;
  readonly cache: LoraCache;
  /** The model the Cog routes serve. */
  readonly cogPredictor: Predictor;
  readonly cogModel: string;
  /** For buildServer's `models`. */
  readonly models: ModelConfig[];
  dispose(): void;
}

/** Builds the host and the per-model Predictors (nothing is loaded until setup). Throws ConfigError. */
export function hostModels(
  config: Pick<ServerConfig, 'models' | 'defaultModel' | 'allowLocalLoras' | 'loraCache' | 'hubEndpoints'>,
  opts: HostedModelsOptions,
): HostedModels {
  const byName = new Map<string, { lora: string | undefined; versionId: string }>();
  const registry = (ref: string): string | undefined => {
    const colon = ref.indexOf(':');
    const name = colon < 0 ? ref : ref.slice(0, colon);
    const m = byName.get(name);
    if (!m || m.lora === undefined) return undefined;
    if (colon >= 0 && ref.slice(colon + 1) !== m.versionId) return undefined;
    return m.lora;
  };
  const cacheDir = opts.loraCacheDir ?? config.loraCache?.dir;
  const { resolver, cache } = downloadingLoraResolver({
    cache: {
      ...(cacheDir !== undefined ? { dir: cacheDir } : {}),
      ...(config.loraCache?.maxBytes !== undefined ? { maxBytes: config.loraCache.maxBytes } : {}),
    },
    ...(opts.env ? { env: opts.env } : {}),
    registry,
    allowLocal: opts.allowLocalLoras ?? config.allowLocalLoras ?? false,
    endpoints: config.hubEndpoints,
  });
  const host = new ModelHost({
    modelDir: opts.modelDir,
    backend: opts.backend,
    ...(opts.safety !== undefined ? { safety: opts.safety } : {}),
    resolveLora: resolver,
    allowLocalLoras: opts.allowLocalLoras ?? config.allowLocalLoras ?? false,
    ...(opts.loraMode ? { loraMode: opts.loraMode } : {}),
    ...(opts.loraDataDir ? { loraDataDir: opts.loraDataDir } : {}),
  });

  const base = host.predictor({ profile: opts.profile });
  const models: ModelConfig[] = [{ name: opts.baseName, predictor: base }];
  byName.set(opts.baseName, { lora: undefined, versionId: versionIdFor(opts.baseName, openApiDocument(base.profile)) });
  for (const [i, m] of config.models.entries()) {
    const name = `${m.owner}/${m.name}`;
    if (byName.has(name)) throw new ConfigError(`models[${i}].name`, `${name} is already the base model's name`);
    const predictor = host.predictor({
      profile: m.profile,
      replicateWeights: m.replicateWeights,
      ownLora:
        m.lora === undefined
          ? undefined
          : { ref: m.lora, ...(m.loraScale !== undefined ? { scale: m.loraScale } : {}), ...(m.triggerWord ? { triggerWord: m.triggerWord } : {}) },
    });
    const what = m.lora !== undefined ? `a LoRA fine-tune of ${opts.baseName}` : `${opts.baseName}`;
    const description = m.description ?? `FLUX.1 served by fluxserve: ${what} (${m.profile} inputs)${m.triggerWord ? `; trigger word: ${m.triggerWord}` : ''}`;
    models.push({ name, predictor, defaults: m.defaults, description });
    byName.set(name, { lora: m.lora, versionId: versionIdFor(name, openApiDocument(predictor.profile)) });
  }
  const cogModel = config.defaultModel ?? opts.baseName;
  const cog = models.find((m) => m.name === cogModel);
  if (!cog) throw new ConfigError('default_model', `${cogModel} is not a served model (served: ${models.map((m) => m.name).join(', ')})`);
  return {
    host,
    cache,
    cogPredictor: cog.predictor as Predictor,
    cogModel,
    models,
    dispose: () => host.dispose(),
  };
}
