// Full-size FLUX.1 pipelines with RANDOM weights, built in-process (real weights cannot be had on
// the device machine): the transformer, T5-XXL, CLIP-L and the AE at their real shapes, plus
// stand-in tokenizers with fixed ids. Used by scripts/gpu-random-predict.mjs and bench/flux-gpu.ts;
// imports nothing from node_modules, so it runs from dist/ alone.
//
// Weights: every tensor the constructors ask for is made up by RandomSource, copied (at memcpy
// speed) from a few 16 Mi-element pools of uniform random values, one pool per (mean, std), each
// chunk at a random shift so rows differ: matrices std 1/sqrt(fan_in), embeddings 0.5, norm gains
// 1 ± 0.1, biases 0.02. Transformer, T5 and CLIP in bf16 (as the released files), the AE in f32
// (like BFL's ae.safetensors). Host generation runs at ~825 M elements/s.

import type { TensorInfo, TensorSource } from '../io/source.js';
import { AutoEncoder } from '../models/autoencoder.js';
import { CLIPTextModel, CLIP_VIT_L14_TEXT, type ClipTextConfig } from '../models/clip.js';
import { FLUX_AE, FLUX_DEV, FLUX_SCHNELL, type AutoEncoderParams, type FluxParams } from '../models/flux/config.js';
import { Flux } from '../models/flux/model.js';
import type { FluxModels } from '../models/load.js';
import { T5EncoderModel, T5_V1_1_XXL, type T5Config } from '../models/t5.js';
import type { Backend } from '../tensor/backend.js';
import type { DType, RawArray } from '../tensor/dtype.js';
import type { TextTokenizer } from '../text/tokenizer.js';

const POOL = 1 << 24;

class Pools {
  private s = 0x2545f491 | 0;
  private readonly pools = new Map<string, Uint16Array | Float32Array>();

  next(): number {
    this.s ^= this.s << 13;
    this.s ^= this.s >>> 17;
    this.s ^= this.s << 5;
    return this.s;
  }

  private pool(mean: number, std: number, dtype: 'bf16' | 'f32'): Uint16Array | Float32Array {
    const key = `${dtype}:${mean}:${std}`;
    let p = this.pools.get(key);
    if (!p) {
      const f = new Float32Array(POOL + 4096);
      const hw = std * Math.sqrt(3);
      for (let i = 0; i < f.length; i++) f[i] = mean + hw * (this.next() * 4.656612873077393e-10);
      if (dtype === 'bf16') {
        const u = new Uint32Array(f.buffer);
        const b = new Uint16Array(f.length);
        for (let i = 0; i < f.length; i++) b[i] = (u[i]! + 0x8000) >>> 16; // rounds; no NaN/overflow here
        p = b;
      } else p = f;
      this.pools.set(key, p);
    }
    return p;
  }

  fill(n: number, mean: number, std: number, dtype: 'bf16' | 'f32'): Uint16Array | Float32Array {
    const out = dtype === 'bf16' ? new Uint16Array(n) : new Float32Array(n);
    const p = this.pool(mean, std, dtype);
    for (let o = 0; o < n; ) {
      const off = (this.next() >>> 0) % 4096;
      const m = Math.min(POOL, n - o);
      out.set(p.subarray(off, off + m), o);
      o += m;
    }
    return out;
  }
}

const POOLS = new Pools();

/** A TensorSource that makes up every tensor a model constructor asks for (see the file comment). */
export class RandomSource implements TensorSource {
  readonly label: string;
  private readonly shapes = new Map<string, number[]>();
  /** Elements handed out so far. */
  elements = 0;

  constructor(
    label: string,
    readonly dtype: 'bf16' | 'f32',
  ) {
    this.label = `random:${label}`;
  }

  keys(): string[] {
    return [...this.shapes.keys()];
  }

  info(name: string): TensorInfo | undefined {
    const s = this.shapes.get(name);
    return s && { dtype: this.dtype as DType, shape: s };
  }

  provide(name: string, shape: readonly number[]): TensorInfo | undefined {
    this.shapes.set(name, [...shape]);
    return this.info(name);
  }

  read(name: string): RawArray {
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`${this.label}: no tensor ${name}`);
    const n = shape.reduce((a, b) => a * b, 1);
    this.elements += n;
    const leaf = name.slice(name.lastIndexOf('.') + 1);
    if (shape.length >= 2) {
      const emb = /embedding|shared|embed_tokens|relative_attention_bias/.test(name);
      return POOLS.fill(n, 0, emb ? 0.5 : 1 / Math.sqrt(n / shape[0]!), this.dtype);
    }
    if (leaf === 'scale' || (leaf === 'weight' && /norm|layer_norm/.test(name))) return POOLS.fill(n, 1, 0.1, this.dtype);
    return POOLS.fill(n, 0, 0.02, this.dtype);
  }
}

/** A tokenizer stand-in: fixed ids inside the real vocabulary, the real special ids and lengths. */
export function stubTokenizer(kind: 'clip' | 't5', maxLength: number, vocab: number): TextTokenizer {
  const [bos, eos, pad] = kind === 'clip' ? [49406, 49407, 49407] : [undefined, 1, 0];
  const body = Array.from({ length: 12 }, (_, i) => 320 + ((i * 7919) % (vocab - 400)));
  return {
    kind,
    maxLength,
    padId: pad,
    eosId: eos,
    bosId: bos,
    maxId: vocab - 1,
    encode() {
      const ids = new Int32Array(maxLength).fill(pad);
      const toks = [...(bos === undefined ? [] : [bos]), ...body, eos];
      ids.set(toks.slice(0, maxLength));
      return { ids, truncated: false, tokenCount: body.length };
    },
    tokenize: () => body.map(String),
    decode: () => '',
  };
}

export interface RandomModelOptions {
  variant: 'dev' | 'schnell';
  /** A reduced config (hidden 256, 1+1 blocks, T5/CLIP 1 layer, AE ch 32) for CPU smoke tests. */
  small?: boolean;
  /** Called once per model with its parameter count and load time. */
  log?: (line: string) => void;
}

export function randomConfigs(o: RandomModelOptions): { flux: FluxParams; t5: T5Config; clip: ClipTextConfig; ae: AutoEncoderParams } {
  const base = o.variant === 'dev' ? FLUX_DEV : FLUX_SCHNELL;
  if (!o.small) return { flux: base, t5: T5_V1_1_XXL, clip: CLIP_VIT_L14_TEXT, ae: FLUX_AE };
  const t5 = { ...T5_V1_1_XXL, d_model: 128, d_ff: 256, num_layers: 1, num_heads: 2, d_kv: 64 };
  const clip = { ...CLIP_VIT_L14_TEXT, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 2, projection_dim: 64 };
  return {
    flux: { ...base, hidden_size: 256, num_heads: 2, depth: 1, depth_single_blocks: 1, context_in_dim: t5.d_model, vec_in_dim: clip.hidden_size },
    t5,
    clip,
    ae: { ...FLUX_AE, ch: 32, num_res_blocks: 1 },
  };
}

/** The whole random pipeline on `be` (FluxModels, like loadModels gives), and its parameter count. */
export function randomModels(be: Backend, o: RandomModelOptions): { models: FluxModels; params: number } {
  const cfg = randomConfigs(o);
  const log = o.log ?? (() => {});
  let params = 0;
  const loadOne = <T>(label: string, dtype: 'bf16' | 'f32', make: (s: RandomSource) => T): T => {
    const t = performance.now();
    const src = new RandomSource(label, dtype);
    const m = make(src);
    be.synchronize();
    params += src.elements;
    log(`${label}: ${(src.elements / 1e9).toFixed(3)} B params ${dtype} in ${((performance.now() - t) / 1e3).toFixed(1)} s`);
    return m;
  };
  const flux = loadOne('transformer', 'bf16', (s) => Flux.load(cfg.flux, s, be));
  const t5 = loadOne('t5', 'bf16', (s) => T5EncoderModel.load(s, be, cfg.t5));
  const clip = loadOne('clip', 'bf16', (s) => CLIPTextModel.load(s, be, cfg.clip));
  const ae = loadOne('ae', 'f32', (s) => AutoEncoder.load(cfg.ae, s, be));
  const models: FluxModels = {
    dir: 'random',
    layout: 'bfl',
    variant: o.variant,
    flux,
    ae,
    t5,
    clip,
    clipTokenizer: stubTokenizer('clip', 77, cfg.clip.vocab_size),
    t5Tokenizer: stubTokenizer('t5', o.variant === 'dev' ? 512 : 256, cfg.t5.vocab_size),
    dispose() {
      for (const m of [flux, ae, t5, clip]) m.dispose();
    },
  };
  return { models, params };
}
