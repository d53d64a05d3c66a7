// The downloader wired into Predictors (serve, predict, lora inspect): src/lora/sources.ts
// `resolveLora` behind the LoraResolver interface the Predictor takes, with one LoraCache, the
// process's hub tokens (HF_TOKEN, REPLICATE_API_TOKEN, CIVITAI_API_TOKEN; never from requests),
// and the server's registered fine-tunes as the registry (`owner/name` of a registered model
// resolves to its LoRA without any network).

import { LoraCache, type LoraCacheOptions } from '../lora/cache.js';
import type { LoraResolver } from '../lora/resolve-basic.js';
import { type LoraEndpoints, type LoraEnv, resolveLora } from '../lora/sources.js';

export interface LoraSourceOptions {
  /** The download cache (default: a LoraCache at $FLUXSERVE_CACHE/loras). */
  readonly cache?: LoraCache | LoraCacheOptions | undefined;
  /** Hub tokens; default: the process environment. */
  readonly env?: LoraEnv | undefined;
  /** `owner/name[:version]` -> LoRA reference of a registered model (consulted first). */
  readonly registry?: ((ownerName: string) => string | undefined) | undefined;
  /** Local file paths as references (serve: off unless configured; predict: on). */
  readonly allowLocal?: boolean | undefined;
  /** Hub base URLs (tests point them at loopback). */
  readonly endpoints?: Partial<LoraEndpoints> | undefined;
}

/** The hub tokens of an environment (only these three names are read). */
export function loraEnvOf(env: NodeJS.ProcessEnv = process.env): LoraEnv {
  const v = (k: string) => (env[k] && env[k]!.trim() !== '' ? env[k] : undefined);
  return { HF_TOKEN: v('HF_TOKEN'), REPLICATE_API_TOKEN: v('REPLICATE_API_TOKEN'), CIVITAI_API_TOKEN: v('CIVITAI_API_TOKEN') };
}

/**
 * Hub base URLs from the environment: HF_ENDPOINT, as huggingface_hub reads it (a Hugging Face
 * mirror; `huggingface.co/...` references are then downloaded from there).
 */
export function endpointsFromEnv(env: NodeJS.ProcessEnv = process.env): { hf: string } | undefined {
  const hf = env['HF_ENDPOINT']?.trim();
  if (!hf) return undefined;
  if (!/^https?:\/\//.test(hf)) throw new Error(`HF_ENDPOINT must be an http(s) URL (got ${JSON.stringify(hf)})`);
  return { hf: hf.replace(/\/+$/, '') };
}

/** A LoraResolver over resolveLora; the secrets it was given are masked by the caller's logs too. */
export function downloadingLoraResolver(opts: LoraSourceOptions = {}): { resolver: LoraResolver; cache: LoraCache; secrets: string[] } {
  const cache = opts.cache instanceof LoraCache ? opts.cache : new LoraCache(opts.cache ?? {});
  const env = opts.env ?? loraEnvOf();
  const resolver: LoraResolver = async (ref, ctx) => {
    const r = await resolveLora(ref, {
      cache,
      env,
      registry: opts.registry,
      allowLocal: opts.allowLocal === true,
      endpoints: opts.endpoints ?? endpointsFromEnv(),
      signal: ctx.signal,
      log: ctx.log,
    });
    return { path: r.path, source: r.source };
  };
  const secrets = [env.HF_TOKEN, env.REPLICATE_API_TOKEN, env.CIVITAI_API_TOKEN].filter((s): s is string => !!s);
  return { resolver, cache, secrets };
}
