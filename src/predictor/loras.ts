// The Predictor's LoRA step (cog-flux-behaviour.md §1.4, §1.5, §4; docs/behaviour.md "LoRAs"):
// before sampling, work out which LoRAs the prediction wants, resolve each reference to a local
// .safetensors file, parse it against the loaded transformer (cached by path + mtime), and make the
// model's weights "base + that list" (LoraManager, fused; or RuntimeLoraManager, adapters).
//
//   main   replicate_weights (hotswap), else the model's own LoRA (PredictorOptions.ownLora: the
//          fine-tune a trainer / fixed-weights model was registered with), at lora_scale
//          (x ownLora.scale for the own LoRA)
//   extra  extra_lora at extra_lora_scale; applied alone when there is no main LoRA (cog-flux's
//          BFL engines promote it to main with the same scale)
//
// The strength is applied once: ΔW·scale (cog-flux's diffusers path applies lora_scale twice).
// A LoRA at scale 0 is resolved and parsed (so a bad reference still fails) but not applied, so
// the weights are exactly the base's. An unchanged list does nothing.
//
// Errors name the input field: a file that is not a FLUX LoRA, or that targets modules the loaded
// model lacks, is an InputValidationError (`replicate_weights: not a FLUX LoRA (...)`); problems
// with the model's own LoRA (server configuration) are plain errors. References are redacted in
// every log line and message (no query strings, no tokens).

import { statSync } from 'node:fs';
import { SafetensorsError, SafetensorsFile } from '../io/safetensors.js';
import { LoraApplyError, LoraManager, planLoras, type LoraEntry } from '../lora/apply.js';
import { LoraFormatError, parseLora } from '../lora/formats.js';
import { basicLoraResolver, basicRefKind, type LoraResolver, redactRef, redactText } from '../lora/resolve-basic.js';
import { RuntimeLoraManager } from '../lora/runtime.js';
import type { LoraTarget, ParsedLora } from '../lora/types.js';
import type { Flux } from '../models/flux/model.js';
import { InputValidationError, inputLoc } from './errors.js';

/** The LoRA a registered fine-tune brings (the server's model config). */
export interface OwnLora {
  /** Any reference the resolver accepts (URL, owner/name, data: URI, local path when allowed). */
  readonly ref: string;
  /** Multiplies lora_scale for this LoRA (default 1). */
  readonly scale?: number;
  /** The fine-tune's trigger word; the log notes when a prompt lacks it. */
  readonly triggerWord?: string;
}

export type LoraMode = 'fused' | 'runtime';

export interface LoraStepOptions {
  readonly ownLora?: OwnLora | undefined;
  /** Resolves references the built-in resolver does not handle (src/lora/sources.ts). */
  readonly resolveLora?: LoraResolver | undefined;
  /** Accept local file paths as LoRA references (default false). */
  readonly allowLocalLoras?: boolean | undefined;
  /**
   * 'fused': deltas merged into the weights; 'runtime': low-rank adapters at forward time. Default:
   * 'runtime' on the CUDA backend (switching writes no weights: fusing reads and rewrites every
   * touched row through the host), 'fused' elsewhere (no per-step cost).
   */
  readonly loraMode?: LoraMode | undefined;
  /** Credential passed to the resolver for gated downloads when the request brings none. */
  readonly loraToken?: string | undefined;
  /** Bound of the parsed-LoRA cache, bytes of delta data (default 1 GiB). */
  readonly loraCacheBytes?: number | undefined;
  /** Where data: URIs are written (default: <tmpdir>/fluxserve-lora-data). */
  readonly loraDataDir?: string | undefined;
}

export interface LoraStepContext {
  readonly log: (line: string) => void;
  readonly signal?: AbortSignal | undefined;
  /** A per-request credential for the resolver; overrides LoraStepOptions.loraToken. */
  readonly token?: string | undefined;
  /**
   * The LoRA of the model this prediction runs as (a per-model view on a shared ModelHost); when
   * the key is present it replaces LoraStepOptions.ownLora, even when undefined.
   */
  readonly ownLora?: OwnLora | undefined;
  /** This prediction runs go_fast (fp8): the main LoRA's strength is multiplied by 1.5 (cog-flux). */
  readonly goFast?: boolean | undefined;
}

/**
 * cog-flux's fp8 path multiplies the main LoRA's strength by 1.5 (an extra LoRA only when it takes
 * the main one's place) to make up for what fp8 re-quantisation loses (cog-flux-behaviour.md §4.6).
 */
export const GO_FAST_LORA_MULTIPLIER = 1.5;

interface Wanted {
  /** The input field the reference came from, or undefined for the model's own LoRA. */
  readonly field: 'replicate_weights' | 'extra_lora' | undefined;
  readonly ref: string;
  readonly scale: number;
  readonly label: string;
}

interface CacheEntry {
  readonly parsed: ParsedLora;
  readonly bytes: number;
}

const OWN = "the model's own LoRA";

function parsedBytes(p: ParsedLora): number {
  let n = 0;
  for (const d of p.deltas) {
    switch (d.kind) {
      case 'lowrank':
        n += d.down.byteLength + d.up.byteLength;
        break;
      case 'full':
        n += d.delta.byteLength;
        break;
      case 'lokr':
        n += d.w1.byteLength + d.w2.byteLength;
        break;
      case 'loha':
        n += d.w1a.byteLength + d.w1b.byteLength + d.w2a.byteLength + d.w2b.byteLength;
        break;
    }
  }
  for (const o of p.overrides) n += o.value.byteLength;
  return n;
}

const present = (v: unknown): v is string => typeof v === 'string' && v.trim() !== '';

/** The LoRA state of one loaded transformer. */
export class PredictorLoras {
  readonly manager: LoraManager | RuntimeLoraManager;
  readonly target: LoraTarget;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly cacheLimit: number;
  private readonly basic: LoraResolver;
  /** For the model's own LoRA (server configuration, trusted): local paths always accepted. */
  private readonly basicOwn: LoraResolver;
  /** Counters for logs and tests. */
  readonly stats = { resolved: 0, parsed: 0, cacheHits: 0 };

  constructor(
    readonly flux: Flux,
    readonly opts: LoraStepOptions,
  ) {
    const mode = opts.loraMode ?? (flux.backend.name === 'cuda' ? 'runtime' : 'fused');
    this.manager = mode === 'runtime' ? new RuntimeLoraManager(flux) : new LoraManager(flux);
    this.target = this.manager.target;
    this.cacheLimit = opts.loraCacheBytes ?? 1024 ** 3;
    this.basic = basicLoraResolver({ allowLocal: opts.allowLocalLoras === true, ...(opts.loraDataDir ? { dataDir: opts.loraDataDir } : {}) });
    this.basicOwn = basicLoraResolver({ allowLocal: true, ...(opts.loraDataDir ? { dataDir: opts.loraDataDir } : {}) });
  }

  /** The LoRAs a validated input asks for, in order (main, extra). */
  wanted(input: Readonly<Record<string, unknown>>, log: (line: string) => void, ownLora: OwnLora | undefined = this.opts.ownLora): Wanted[] {
    const out: Wanted[] = [];
    const loraScale = typeof input['lora_scale'] === 'number' ? input['lora_scale'] : 1;
    const own = ownLora;
    if (present(input['replicate_weights'])) {
      out.push({ field: 'replicate_weights', ref: input['replicate_weights'], scale: loraScale, label: 'replicate_weights' });
    } else if (own && present(own.ref)) {
      out.push({ field: undefined, ref: own.ref, scale: loraScale * (own.scale ?? 1), label: OWN });
      if (own.triggerWord && present(input['prompt']) && !input['prompt'].toLowerCase().includes(own.triggerWord.toLowerCase())) {
        log(`Note: the prompt does not contain this model's trigger word "${own.triggerWord}"`);
      }
    }
    if (present(input['extra_lora'])) {
      const scale = typeof input['extra_lora_scale'] === 'number' ? input['extra_lora_scale'] : 1;
      if (out.length === 0) log(`extra_lora was given without a main LoRA: applying it alone at extra_lora_scale ${scale}`);
      out.push({ field: 'extra_lora', ref: input['extra_lora'], scale, label: 'extra_lora' });
    }
    return out;
  }

  /** Makes the model's weights base + the LoRAs `input` asks for. */
  async apply(input: Readonly<Record<string, unknown>>, ctx: LoraStepContext): Promise<void> {
    const token = ctx.token ?? this.opts.loraToken;
    const secrets = [token];
    const log = (line: string) => ctx.log(redactText(line, secrets));
    let wanted = this.wanted(input, log, 'ownLora' in ctx ? ctx.ownLora : this.opts.ownLora);
    if (ctx.goFast === true && wanted.length > 0) {
      // the first entry is the main LoRA, or an extra LoRA applied alone in its place
      const [main, ...rest] = wanted;
      wanted = [{ ...main!, scale: main!.scale * GO_FAST_LORA_MULTIPLIER }, ...rest];
      log(
        `go_fast: ${main!.label} strength x${GO_FAST_LORA_MULTIPLIER} on the fp8 path (as cog-flux does), ${main!.scale} -> ${main!.scale * GO_FAST_LORA_MULTIPLIER}`,
      );
    }

    const entries: LoraEntry[] = [];
    for (const w of wanted) {
      const extra = w.field === 'extra_lora';
      log(`${extra ? 'Loading extra LoRA weights' : 'Loading LoRA weights'} from ${redactRef(w.ref)}`);
      const t0 = performance.now();
      const { path, id, source } = await this.resolve(w, token, log, secrets, ctx.signal);
      ctx.signal?.throwIfAborted();
      const parsed = this.parse(w, path, id, secrets);
      this.check(w, parsed, secrets);
      for (const warning of parsed.warnings) log(`${w.label}: ${warning}`);
      const modules = new Set(parsed.deltas.map((d) => d.module)).size;
      const rank = parsed.rank ?? (parsed.ranks.length > 0 ? parsed.ranks.join('/') : 'n/a');
      log(`${w.label}: ${parsed.format} LoRA from ${source}, ${modules} modules, rank ${rank} (${((performance.now() - t0) / 1000).toFixed(2)} s)`);
      log(`${extra ? 'Extra LoRA scale' : 'LoRA scale'}: ${w.scale}`);
      if (w.scale === 0) {
        log(`${w.label}: scale 0, not applied`);
        continue;
      }
      entries.push({ parsed, scale: w.scale, id });
    }

    const before = this.manager.loaded.length;
    const hitsBefore = this.manager instanceof RuntimeLoraManager ? this.manager.stats.cacheHits : 0;
    const t0 = performance.now();
    let changed: boolean;
    try {
      changed = this.manager.setLoras(entries);
    } catch (e) {
      if (e instanceof LoraApplyError) throw new Error(`LoRA could not be applied: ${redactText(e.message, secrets)}`);
      throw e;
    }
    if (!changed) {
      if (entries.length > 0) log('LoRA weights already loaded');
      return;
    }
    const s = ((performance.now() - t0) / 1000).toFixed(2);
    if (entries.length === 0) log(`Unloaded ${before} LoRA(s) in ${s} s; running the base model`);
    else if (this.manager instanceof RuntimeLoraManager) {
      const m = this.manager;
      const cached = m.stats.cacheHits > hitsBefore ? ', re-attached from the adapter cache' : '';
      log(
        `Loaded ${entries.length} LoRA(s) as runtime adapters on ${m.stats.adapters} layers in ${s} s${cached}${m.stats.fallbackEntries > 0 ? ' (non-low-rank parts fused)' : ''}`,
      );
    } else log(`Loaded ${entries.length} LoRA(s) in ${s} s (fused into the weights)`);
  }

  private async resolve(
    w: Wanted,
    token: string | undefined,
    log: (line: string) => void,
    secrets: readonly (string | undefined)[],
    signal: AbortSignal | undefined,
  ): Promise<{ path: string; id: string; source: string }> {
    const basic = w.field === undefined ? this.basicOwn : this.basic;
    const resolver = basicRefKind(w.ref) !== undefined || !this.opts.resolveLora ? basic : this.opts.resolveLora;
    let path: string;
    let source: string;
    try {
      ({ path, source } = await resolver(w.ref.trim(), { signal, log, token }));
      this.stats.resolved++;
    } catch (e) {
      if (signal?.aborted || (e instanceof Error && e.name === 'AbortError')) throw e;
      throw this.fail(w, `could not be loaded (${e instanceof Error ? e.message : String(e)})`, secrets);
    }
    let st;
    try {
      st = statSync(path);
    } catch {
      throw this.fail(w, 'the resolved file does not exist', secrets);
    }
    return { path, id: `${path}|${st.mtimeMs}|${st.size}`, source: redactText(source, secrets) };
  }

  /** Parses (or takes from the cache) a resolved file. */
  private parse(w: Wanted, path: string, id: string, secrets: readonly (string | undefined)[]): ParsedLora {
    const hit = this.cache.get(id);
    if (hit) {
      this.cache.delete(id);
      this.cache.set(id, hit);
      this.stats.cacheHits++;
      return hit.parsed;
    }
    let parsed: ParsedLora;
    let f: SafetensorsFile | undefined;
    try {
      f = SafetensorsFile.open(path);
      parsed = parseLora(f, this.target);
    } catch (e) {
      if (e instanceof SafetensorsError) throw this.fail(w, `not a valid .safetensors file (${e.problem})`, secrets);
      if (e instanceof LoraFormatError) throw this.fail(w, `${formatErrorText(e)} (${e.message})`, secrets);
      throw e;
    } finally {
      f?.close();
    }
    this.stats.parsed++;
    const bytes = parsedBytes(parsed);
    this.cache.set(id, { parsed, bytes });
    let total = 0;
    for (const c of this.cache.values()) total += c.bytes;
    for (const [k, c] of this.cache) {
      if (total <= this.cacheLimit || k === id) break;
      this.cache.delete(k);
      total -= c.bytes;
    }
    return parsed;
  }

  /** Checks one LoRA against the loaded model on its own, so an error names its field. */
  private check(w: Wanted, parsed: ParsedLora, secrets: readonly (string | undefined)[]): void {
    try {
      planLoras([{ parsed, scale: w.scale, id: w.label }], (key) => this.target.keys.get(key));
    } catch (e) {
      if (e instanceof LoraApplyError) throw this.fail(w, `does not fit the loaded model (${e.message})`, secrets);
      throw e;
    }
  }

  private fail(w: Wanted, what: string, secrets: readonly (string | undefined)[]): Error {
    const msg = redactText(`${w.label}: ${what}`, secrets);
    if (w.field === undefined) return new Error(msg);
    return new InputValidationError([{ loc: inputLoc(w.field), msg, type: 'value_error' }]);
  }

  /** Parsed LoRAs held in memory (for tests). */
  get cachedCount(): number {
    return this.cache.size;
  }

  dispose(): void {
    if (this.manager instanceof RuntimeLoraManager) this.manager.dispose();
    this.cache.clear();
  }
}

function formatErrorText(e: LoraFormatError): string {
  switch (e.kind) {
    case 'not-flux':
      return 'not a FLUX LoRA';
    case 'not-lora':
      return 'not a LoRA file';
    case 'unmapped':
      return 'targets modules the loaded model does not have';
    case 'shape':
      return "does not fit the loaded model's layer shapes";
    default:
      return 'cannot be used as a FLUX LoRA';
  }
}
