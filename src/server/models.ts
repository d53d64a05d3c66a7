// The served models, in the terms both APIs and the service share: what a predictor must offer the
// server (ServedPredictor), a model as configured (ModelConfig: `owner/name`, predictor, defaults),
// and a model as served (ServedModel: with its version id). Neither API plugin owns these; the
// config loader (registry.ts) builds ModelConfigs, buildServer turns them into ModelEntries.

import { createHash } from 'node:crypto';
import { openApiDocument } from '../predictor/openapi.js';
import type { PredictCallbacks, PredictionResult } from '../predictor/predictor.js';
import type { Profile } from '../predictor/profiles.js';

/** What the server needs of a predictor (src/predictor/predictor.ts `Predictor` is one). */
export interface ServedPredictor {
  readonly profile: Profile<unknown>;
  /** Cog's setup(); may be synchronous. Called once per server, before any predict(). */
  setup(log: (line: string) => void): void | Promise<void>;
  predict(raw: Record<string, unknown>, cb?: PredictCallbacks): Promise<PredictionResult>;
  /**
   * Checks an input before it is queued (throws InputValidationError with Cog's 422 body). When
   * absent, the server validates against `profile` alone.
   */
  validate?(raw: unknown): { readonly input: unknown };
}

/** A model the /v1 API serves, as configured. */
export interface ModelConfig {
  /** `owner/name`. */
  readonly name: string;
  /** Default: the server's predictor. */
  readonly predictor?: ServedPredictor;
  /** Input values used where the request gives none (a fine-tune's trigger word, steps...). */
  readonly defaults?: Readonly<Record<string, unknown>>;
  readonly description?: string;
}

/** A model as the routes see it: its name, description, schema and version. */
export interface ServedModel {
  readonly owner: string;
  readonly name: string;
  readonly description: string;
  readonly profile: Profile<unknown>;
  /** 64 hex digits, derived from the name and the schema (versionIdFor). */
  readonly versionId: string;
  readonly createdAt: Date;
}

/** A served model with what runs it (the in-process service's view). */
export interface ModelEntry extends ServedModel {
  readonly predictor: ServedPredictor;
  readonly defaults: Readonly<Record<string, unknown>>;
}

export const modelRef = (m: Pick<ServedModel, 'owner' | 'name'>): string => `${m.owner}/${m.name}`;

const MODEL_NAME = /^([A-Za-z0-9][A-Za-z0-9._-]*)\/([A-Za-z0-9][A-Za-z0-9._-]*)$/;

/** A deterministic 64-hex version id for a model: its name and its schema. */
export function versionIdFor(name: string, schema: unknown): string {
  return createHash('sha256').update(name).update('\0').update(JSON.stringify(schema)).digest('hex');
}

/** The entries of `configs` (default: `predictor` as `fluxserve/tiny`); throws on a bad or repeated name. */
export function modelEntries(configs: readonly ModelConfig[] | undefined, predictor: ServedPredictor): ModelEntry[] {
  const seen = new Set<string>();
  return (configs ?? [{ name: 'fluxserve/tiny' }]).map((c) => {
    const m = MODEL_NAME.exec(c.name);
    if (!m) throw new Error(`model name must be owner/name (got '${c.name}')`);
    if (seen.has(c.name)) throw new Error(`model ${c.name} is configured twice`);
    seen.add(c.name);
    const p = c.predictor ?? predictor;
    return {
      owner: m[1]!,
      name: m[2]!,
      predictor: p,
      profile: p.profile,
      defaults: { ...(c.defaults ?? {}) },
      description: c.description ?? `FLUX.1 served by fluxserve (${p.profile.name} inputs)`,
      versionId: versionIdFor(c.name, openApiDocument(p.profile)),
      createdAt: new Date(),
    };
  });
}

export function findModel<M extends ServedModel>(models: readonly M[], owner: string, name: string): M | undefined {
  return models.find((m) => m.owner === owner && m.name === name);
}

/** `version` of POST /v1/predictions: a version id, `owner/name:id` or `owner/name`. */
export function modelForVersion<M extends ServedModel>(models: readonly M[], version: string): M | undefined {
  const m = /^([^/]+)\/([^/:]+)(?::(.+))?$/.exec(version);
  if (m) {
    const entry = findModel(models, m[1]!, m[2]!);
    return entry && (m[3] === undefined || m[3] === entry.versionId) ? entry : undefined;
  }
  return models.find((e) => e.versionId === version);
}
