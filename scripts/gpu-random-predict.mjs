#!/usr/bin/env node
// Device-session step (scripts/device.sh, docs/gpu.md): a whole txt2img prediction (T5 + CLIP,
// 28 dev steps, VAE decode) at 1024x1024 with RANDOM full-size weights built in-process — no
// checkpoint files. Reports load time, encode time, per-step time, decode time, total, and on
// cuda the allocator's peak. Imports only dist/ (no node_modules): the tokenizers are stand-ins
// that return fixed ids inside the real vocab sizes (the @huggingface/tokenizers package is not on
// the device).
//
// Weights: every tensor the constructors ask for is made up on the host by RandomSource: values
// are copied (at memcpy speed) from a few 16 Mi-element pools of uniform random bf16 values, one
// pool per (mean, std); matrices std 1/sqrt(fan_in), embeddings 0.5, norm gains 1 ± 0.1,
// biases 0.02. Transformer, T5 and CLIP bf16 (as the real files); the VAE f32 (like BFL ae).
//
// Usage: node scripts/gpu-random-predict.mjs [--size 1024] [--steps 28] [--small]
//   --small: a reduced config (hidden 256, 1+1 blocks, T5/CLIP 1 layer, VAE ch 32), for a CPU test.
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const small = args.includes('--small');
const size = Number(opt('--size', small ? '256' : '1024'));
const steps = Number(opt('--steps', small ? '3' : '28'));

const reg = await import('../dist/src/tensor/registry.js');
const cuda = await import('../dist/src/tensor/cuda/index.js');
const { Flux } = await import('../dist/src/models/flux/model.js');
const { FLUX_DEV, FLUX_AE } = await import('../dist/src/models/flux/config.js');
const { AutoEncoder } = await import('../dist/src/models/autoencoder.js');
const { T5EncoderModel, T5_V1_1_XXL } = await import('../dist/src/models/t5.js');
const { CLIPTextModel, CLIP_VIT_L14_TEXT } = await import('../dist/src/models/clip.js');
const { txt2img } = await import('../dist/src/sampling/txt2img.js');

const be = reg.defaultBackend();
const desc = cuda.cudaDeviceDescription();
console.log(`backend: ${be.name}${desc ? ` on ${desc}` : ''}; ${small ? 'SMALL config' : 'full-size FLUX.1-dev + T5-XXL + CLIP-L + AE'}; ${size}x${size}, ${steps} steps`);
const gib = (b) => (b / 2 ** 30).toFixed(2);
const mem = (label) => {
  const m = cuda.cudaMemStats();
  if (m) console.log(`${label}: allocated ${gib(m.allocated)} GiB, peak ${gib(m.peakAllocated)} GiB, reserved ${gib(m.reserved)} GiB`);
  return m;
};

// --- configs ------------------------------------------------------------------------------------
const t5cfg = small ? { ...T5_V1_1_XXL, d_model: 128, d_ff: 256, num_layers: 1, num_heads: 2, d_kv: 64 } : T5_V1_1_XXL;
const clipcfg = small ? { ...CLIP_VIT_L14_TEXT, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 2, projection_dim: 64 } : CLIP_VIT_L14_TEXT;
const fluxcfg = small
  ? { ...FLUX_DEV, hidden_size: 256, num_heads: 2, depth: 1, depth_single_blocks: 1, context_in_dim: t5cfg.d_model, vec_in_dim: clipcfg.hidden_size }
  : FLUX_DEV;
const aecfg = small ? { ...FLUX_AE, ch: 32, num_res_blocks: 1 } : FLUX_AE;

// --- random weights -----------------------------------------------------------------------------
const POOL = 1 << 24;
let rs = 0x2545f491 | 0;
const xorshift = () => {
  rs ^= rs << 13;
  rs ^= rs >>> 17;
  rs ^= rs << 5;
  return rs;
};
const pools = new Map();
/** Uniform values with the given mean and std, as bf16 bit patterns (Uint16Array) or f32. */
function pool(mean, std, dtype) {
  const key = `${dtype}:${mean}:${std}`;
  let p = pools.get(key);
  if (!p) {
    const f = new Float32Array(POOL + 4096);
    const hw = std * Math.sqrt(3);
    for (let i = 0; i < f.length; i++) f[i] = mean + hw * (xorshift() * 4.656612873077393e-10);
    if (dtype === 'bf16') {
      const u = new Uint32Array(f.buffer);
      p = new Uint16Array(f.length);
      for (let i = 0; i < f.length; i++) p[i] = (u[i] + 0x8000) >>> 16; // rounds; no NaN/overflow here
    } else p = f;
    pools.set(key, p);
  }
  return p;
}
function fill(n, mean, std, dtype) {
  const out = dtype === 'bf16' ? new Uint16Array(n) : new Float32Array(n);
  const p = pool(mean, std, dtype);
  for (let o = 0; o < n; ) {
    const off = (xorshift() >>> 0) % 4096; // a shifted copy each chunk, so rows differ
    const m = Math.min(POOL, n - o);
    out.set(p.subarray(off, off + m), o);
    o += m;
  }
  return out;
}
class RandomSource {
  constructor(label, dtype) {
    this.label = `random:${label}`;
    this.dtype = dtype;
    this.shapes = new Map();
    this.elements = 0;
  }
  keys() {
    return [...this.shapes.keys()];
  }
  info(name) {
    const s = this.shapes.get(name);
    return s && { dtype: this.dtype, shape: s };
  }
  provide(name, shape) {
    this.shapes.set(name, [...shape]);
    return this.info(name);
  }
  read(name) {
    const shape = this.shapes.get(name);
    const n = shape.reduce((a, b) => a * b, 1);
    this.elements += n;
    const leaf = name.slice(name.lastIndexOf('.') + 1);
    if (shape.length >= 2) {
      const emb = /embedding|shared|embed_tokens|relative_attention_bias/.test(name);
      return fill(n, 0, emb ? 0.5 : 1 / Math.sqrt(n / shape[0]), this.dtype);
    }
    if (leaf === 'scale' || (leaf === 'weight' && /norm|layer_norm/.test(name))) return fill(n, 1, 0.1, this.dtype);
    return fill(n, 0, 0.02, this.dtype);
  }
}

// --- stand-in tokenizers (fixed ids, real special-token ids and lengths) ---------------------------
function stubTokenizer(kind, maxLength, vocab) {
  const [bos, eos, pad] = kind === 'clip' ? [49406, 49407, 49407] : [undefined, 1, 0];
  const body = Array.from({ length: 12 }, (_, i) => 320 + ((i * 7919) % (vocab - 400)));
  return {
    kind, maxLength, padId: pad, eosId: eos, bosId: bos, maxId: vocab - 1,
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

// --- load ---------------------------------------------------------------------------------------
const t0 = performance.now();
const sources = [];
const loadOne = (label, dtype, make) => {
  const t = performance.now();
  const src = new RandomSource(label, dtype);
  const m = make(src);
  be.synchronize();
  sources.push(src);
  console.log(`  ${label}: ${(src.elements / 1e9).toFixed(3)} B params ${dtype} in ${((performance.now() - t) / 1e3).toFixed(1)} s`);
  return m;
};
console.log('building random weights on the host, uploading tensor by tensor:');
const flux = loadOne('transformer', 'bf16', (s) => Flux.load(fluxcfg, s, be));
const t5 = loadOne('t5', 'bf16', (s) => T5EncoderModel.load(s, be, t5cfg));
const clip = loadOne('clip', 'bf16', (s) => CLIPTextModel.load(s, be, clipcfg));
const ae = loadOne('ae', 'f32', (s) => AutoEncoder.load(aecfg, s, be));
const total = sources.reduce((a, s) => a + s.elements, 0);
console.log(`loaded ${(total / 1e9).toFixed(2)} B params in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
mem('after load (weights resident)');

const models = {
  dir: 'random',
  layout: 'bfl',
  variant: 'dev',
  flux,
  ae,
  t5,
  clip,
  clipTokenizer: stubTokenizer('clip', 77, clipcfg.vocab_size),
  t5Tokenizer: stubTokenizer('t5', 512, t5cfg.vocab_size),
  dispose() {
    for (const m of [flux, ae, t5, clip]) m.dispose();
  },
};

// --- predict ------------------------------------------------------------------------------------
cuda.cudaResetPeak();
const tStart = performance.now();
let tEncoded;
const stepEnds = [];
const images = await txt2img(
  models,
  { prompt: 'random weights', width: size, height: size, steps, guidance: 3.5, seed: 0, numOutputs: 1 },
  {
    log: (l) => {
      if (l.startsWith('Sampling')) {
        be.synchronize();
        tEncoded = performance.now();
      }
      console.log(`  ${l}`);
    },
    onStep: (p) => {
      be.synchronize();
      stepEnds.push(performance.now());
      if (p.step === 1 || p.step === p.total || p.step % 7 === 0) console.log(`  step ${p.step}/${p.total}: ${((stepEnds.at(-1) - (stepEnds.at(-2) ?? tEncoded)) / 1e3).toFixed(3)} s`);
    },
  },
);
be.synchronize();
const tEnd = performance.now();
const stepS = stepEnds.map((t, i) => (t - (i ? stepEnds[i - 1] : tEncoded)) / 1e3);
const sorted = [...stepS].sort((a, b) => a - b);
const px = images[0].chw;
let finite = true;
let sum = 0;
for (const v of px) {
  if (!Number.isFinite(v)) finite = false;
  sum += v * v;
}
console.log(`text encode ${((tEncoded - tStart) / 1e3).toFixed(2)} s; denoise ${steps} steps ${((stepEnds.at(-1) - tEncoded) / 1e3).toFixed(2)} s ` +
  `(per step: first ${stepS[0].toFixed(3)} s, median ${sorted[Math.floor(sorted.length / 2)].toFixed(3)} s, min ${sorted[0].toFixed(3)} s); ` +
  `VAE decode ${((tEnd - stepEnds.at(-1)) / 1e3).toFixed(2)} s; total ${((tEnd - tStart) / 1e3).toFixed(2)} s`);
console.log(`image [3, ${images[0].height}, ${images[0].width}] finite ${finite}, rms ${Math.sqrt(sum / px.length).toPrecision(4)}`);
const m = mem('prediction (peak since after load; weights included)');
console.log(JSON.stringify({ backend: be.name, small, size, steps, params: total, stepS, totalS: (tEnd - tStart) / 1e3, finite, mem: m }));
models.dispose();
process.exit(finite ? 0 : 1);
