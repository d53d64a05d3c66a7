// Naive float64 implementations of the safety networks' pieces, written from transformers'
// modeling_clip.py / modeling_vit.py, for safety-networks.test.ts.
import type { MapSource } from '../../src/io/source.js';

export type Get = (name: string) => Float64Array;

export function getter(src: MapSource): Get {
  return (name) => {
    const e = src.entries.get(name);
    if (!e) throw new Error(`reference: no weight ${name}`);
    return Float64Array.from(e.data as Float32Array);
  };
}

export function layerNorm64(x: Float64Array, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const n = x.length;
  let mean = 0;
  for (const v of x) mean += v;
  mean /= n;
  let vr = 0;
  for (const v of x) vr += (v - mean) ** 2;
  vr /= n;
  const inv = 1 / Math.sqrt(vr + eps);
  return x.map((v, i) => (v - mean) * inv * w[i]! + b[i]!);
}

export function linear64(x: Float64Array, w: Float64Array, b: Float64Array | undefined, out: number): Float64Array {
  const k = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o]! : 0;
    for (let i = 0; i < k; i++) s += w[o * k + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

/** erf by its everywhere-convergent positive series: 2/√π e^{-z²} Σ 2ⁿ z^{2n+1} / (2n+1)!!. */
function erf64(z: number): number {
  const a = Math.abs(z);
  if (a > 6) return Math.sign(z);
  let term = a;
  let sum = a;
  for (let n = 1; n < 400 && term > 1e-18 * sum; n++) {
    term *= (2 * a * a) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(z) * (2 / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum;
}

const ACT: Record<string, (x: number) => number> = {
  quick_gelu: (x) => x / (1 + Math.exp(-1.702 * x)),
  gelu: (x) => 0.5 * x * (1 + erf64(x / Math.SQRT2)),
};

export interface EncoderNames {
  ln1: string;
  q: string;
  k: string;
  v: string;
  o: string;
  ln2: string;
  fc1: string;
  fc2: string;
}

/** A pre-LN transformer encoder over tokens (no mask), both models' layer structure. */
export function encoder64(
  h: Float64Array[],
  get: Get,
  prefix: (i: number) => string,
  names: EncoderNames,
  cfg: { layers: number; heads: number; inter: number; act: string; eps: number },
): Float64Array[] {
  const D = h[0]!.length;
  const hd = D / cfg.heads;
  const act = ACT[cfg.act]!;
  for (let l = 0; l < cfg.layers; l++) {
    const p = prefix(l);
    const n1 = h.map((x) => layerNorm64(x, get(`${p}${names.ln1}.weight`), get(`${p}${names.ln1}.bias`), cfg.eps));
    const proj = (nm: string) => n1.map((x) => linear64(x, get(`${p}${nm}.weight`), get(`${p}${nm}.bias`), D));
    const q = proj(names.q);
    const k = proj(names.k);
    const v = proj(names.v);
    const ctx = h.map(() => new Float64Array(D));
    for (let head = 0; head < cfg.heads; head++) {
      for (let i = 0; i < h.length; i++) {
        const s = k.map((kj) => {
          let d = 0;
          for (let c = 0; c < hd; c++) d += q[i]![head * hd + c]! * kj[head * hd + c]!;
          return d / Math.sqrt(hd);
        });
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j < h.length; j++) for (let c = 0; c < hd; c++) ctx[i]![head * hd + c]! += (e[j]! / z) * v[j]![head * hd + c]!;
      }
    }
    h = h.map((x, i) => {
      const a = linear64(ctx[i]!, get(`${p}${names.o}.weight`), get(`${p}${names.o}.bias`), D);
      return x.map((val, c) => val + a[c]!);
    });
    h = h.map((x) => {
      const n2 = layerNorm64(x, get(`${p}${names.ln2}.weight`), get(`${p}${names.ln2}.bias`), cfg.eps);
      const mid = linear64(n2, get(`${p}${names.fc1}.weight`), get(`${p}${names.fc1}.bias`), cfg.inter).map(act);
      const out = linear64(mid, get(`${p}${names.fc2}.weight`), get(`${p}${names.fc2}.bias`), D);
      return x.map((val, c) => val + out[c]!);
    });
  }
  return h;
}

/** Patch embedding: conv kernel = stride = patch over one CHW image -> g² tokens. */
export function patches64(pix: Float64Array, S: number, patch: number, w: Float64Array, b: Float64Array | undefined, D: number): Float64Array[] {
  const g = S / patch;
  const out: Float64Array[] = [];
  for (let py = 0; py < g; py++) {
    for (let px = 0; px < g; px++) {
      const t = new Float64Array(D);
      for (let o = 0; o < D; o++) {
        let s = b ? b[o]! : 0;
        for (let c = 0; c < 3; c++) {
          for (let ky = 0; ky < patch; ky++) {
            for (let kx = 0; kx < patch; kx++) {
              s += w[((o * 3 + c) * patch + ky) * patch + kx]! * pix[(c * S + py * patch + ky) * S + px * patch + kx]!;
            }
          }
        }
        t[o] = s;
      }
      out.push(t);
    }
  }
  return out;
}

export function relErr(got: Float32Array, want: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num = Math.max(num, Math.abs(got[i]! - want[i]!));
    den = Math.max(den, Math.abs(want[i]!));
  }
  return num / den;
}

export function randomPixels(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = (a / 4294967296) * 4 - 2;
  }
  return out;
}
