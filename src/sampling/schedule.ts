// The FLUX sigma schedule, reproduced in float32 the way the BFL reference computes it
// (black-forest-labs/flux:src/flux/sampling.py `get_schedule`, `time_shift`, `get_lin_function`;
// replicate/cog-flux:flux/sampling.py is the same code), plus the img2img start-step rule.
//
//   timesteps = torch.linspace(1, 0, num_steps + 1)            # float32 tensor on the CPU
//   if shift:
//       mu = m * image_seq_len + b                              # Python doubles, line through
//                                                               # (256, base_shift), (4096, max_shift)
//       timesteps = math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** 1.0)
//
// float32 details (checked against torch 1.13.1 and 2.13.0 on x86-64):
// * `1 / t` and `math.exp(mu) / x` are `Tensor.__rtruediv__` = `x.reciprocal() * scalar`: a float
//   reciprocal, then a float multiply by the scalar rounded to float. `+ math.exp(mu)` adds the
//   scalar rounded to float. `** 1.0` is the identity. 1/0 = inf, so t = 0 maps to exactly 0.
// * `torch.linspace` (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp): step = (end - start) /
//   (steps - 1) in float; element i = start + step * i for i < steps/2, else end - step * (steps - 1 - i).
//   PyTorch >= 2.0 computes every element with that scalar formula (PR #89048 removed the vector
//   path) and its AVX2/AVX512 kernels are compiled with FMA contraction, so start + step*i is one
//   fused multiply-add: mode 'torch2' (default). PyTorch 1.13 used `Vectorized::arange` for the first
//   elements (blocks of 8 from a fused base, then base + k*step unfused): mode 'torch1.13' (the
//   fixture's torch). Both agree for 1..9 steps; for other step counts single elements can differ
//   by 1 float ulp (e.g. 28 steps).

import { fmaF32 } from './noise.js';

const fr = Math.fround;

export type LinspaceMode = 'torch2' | 'torch1.13';

export interface ScheduleOptions {
  /** dev: true (time-shifted by mu), schnell: false (plain linspace). */
  shift: boolean;
  /** Default 0.5. */
  baseShift?: number;
  /** Default 1.15. */
  maxShift?: number;
  /** Which PyTorch linspace to reproduce bit for bit (default 'torch2'). */
  linspace?: LinspaceMode;
}

/**
 * BFL `get_lin_function(x1=256, y1=baseShift, x2=4096, y2=maxShift)(imageSeqLen)`, in double like Python.
 * 1024x1024 (4096 tokens) -> 1.15, 512x512 (1024 tokens) -> 0.63; extrapolates above 4096 tokens.
 */
export function calculateMu(imageSeqLen: number, baseShift = 0.5, maxShift = 1.15): number {
  const x1 = 256;
  const x2 = 4096;
  const m = (maxShift - baseShift) / (x2 - x1);
  const b = baseShift - m * x1;
  return m * imageSeqLen + b;
}

/** float32 `torch.linspace(start, end, steps)` on the CPU. */
export function torchLinspaceF32(start: number, end: number, steps: number, mode: LinspaceMode = 'torch2'): Float32Array {
  if (!Number.isInteger(steps) || steps < 0) throw new RangeError(`linspace: steps must be a non-negative integer, got ${steps}`);
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const s = fr(start);
  const e = fr(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = fr(fr(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  // scalar element (fused multiply-add, as in the AVX2 builds)
  const scalarAt = (i: number): number => (i < halfway ? fmaF32(step, i, s) : fmaF32(-step, steps - i - 1, e));
  if (mode === 'torch2') {
    for (let i = 0; i < steps; i++) out[i] = scalarAt(i);
    return out;
  }
  // torch 1.13: cpu_serial_kernel_vec — pairs of 8-wide vectors while 16 elements remain, then scalar.
  let i = 0;
  for (; i + 16 <= steps; i += 16) {
    for (let v = 0; v < 2; v++) {
      const idx = i + 8 * v;
      const base = scalarAt(idx);
      for (let k = 0; k < 8; k++) out[idx + k] = k === 0 ? base : fr(base + fr(k * step));
    }
  }
  for (; i < steps; i++) out[i] = scalarAt(i);
  return out;
}

/**
 * BFL `get_schedule(steps, imageSeqLen, baseShift, maxShift, shift)`: `steps + 1` float32 sigmas
 * from 1 down to 0 (the final 0 included). `imageSeqLen` = packed image tokens = (H/16)·(W/16).
 */
export function getSchedule(steps: number, imageSeqLen: number, opts: ScheduleOptions): Float32Array {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be an integer >= 1, got ${steps}`);
  const t = torchLinspaceF32(1, 0, steps + 1, opts.linspace ?? 'torch2');
  if (!opts.shift) return t;
  if (!(imageSeqLen > 0)) throw new RangeError(`imageSeqLen must be > 0, got ${imageSeqLen}`);
  const mu = calculateMu(imageSeqLen, opts.baseShift ?? 0.5, opts.maxShift ?? 1.15);
  const expMu = fr(Math.exp(mu));
  const out = new Float32Array(t.length);
  for (let i = 0; i < t.length; i++) {
    const inv = fr(1 / t[i]!); // (1 / t) = t.reciprocal() * 1
    const d = fr(inv - 1); // (...) - 1, then ** 1.0 (identity)
    const den = fr(expMu + d); // exp(mu) + (...)
    out[i] = fr(fr(1 / den) * expMu); // exp(mu) / den = den.reciprocal() * exp(mu)
  }
  return out;
}

/** Image-token count of a W×H image: (H/16)·(W/16) with BFL's ceil (sizes are multiples of 16 anyway). */
export function imageSeqLen(width: number, height: number): number {
  return Math.ceil(height / 16) * Math.ceil(width / 16);
}

export type Img2ImgRule = 'cog-bfl' | 'diffusers';

export interface Img2ImgStart {
  /** Index into the full schedule of the first sigma used. */
  startIndex: number;
  /** The sigmas actually walked: `sigmas.slice(startIndex)` (length = steps run + 1). */
  sigmas: Float32Array;
  /** sigma used to mix noise and the encoded image: x = σ·noise + (1 − σ)·x0. */
  startSigma: number;
  /** Number of model evaluations (Euler steps) that remain. */
  stepsToRun: number;
}

/**
 * img2img: where denoising starts for a given `prompt_strength` (0..1, 1 = start from pure noise).
 *
 * 'cog-bfl' (default; replicate/cog-flux:bfl_predictor.py `BflBf16Predictor.predict`, the engine
 * behind flux-dev-lora img2img):
 *     t_idx = int((1.0 - prompt_strength) * num_inference_steps)   # double, truncated
 *     t = timesteps[t_idx]; timesteps = timesteps[t_idx:]
 *     x = t * noise + (1.0 - t) * init
 *   prompt_strength = 0 gives t_idx = N: timesteps = [0.0], no step runs (VAE round trip).
 * 'diffusers' (diffusers pipelines/flux/pipeline_flux_img2img.py FluxImg2ImgPipeline.get_timesteps,
 * used by the hotswap engine):
 *     init_timestep = min(N * strength, N); t_start = int(max(N - init_timestep, 0))
 *   and it refuses to run with fewer than 1 step (we throw a RangeError then, unless
 *   `opts.allowNoSteps`: then no step runs, as with 'cog-bfl').
 * The two differ only where the double rounding of (1-s)·N vs N - N·s crosses an integer.
 */
export function img2imgStart(sigmas: Float32Array, strength: number, rule: Img2ImgRule = 'cog-bfl', opts: { allowNoSteps?: boolean } = {}): Img2ImgStart {
  const n = sigmas.length - 1;
  if (n < 1) throw new RangeError('img2imgStart: the schedule must have at least one step');
  if (!(strength >= 0 && strength <= 1)) throw new RangeError(`prompt_strength must be in [0, 1], got ${strength}`);
  let startIndex: number;
  if (rule === 'cog-bfl') {
    startIndex = Math.trunc((1.0 - strength) * n);
  } else {
    const initTimestep = Math.min(n * strength, n);
    startIndex = Math.trunc(Math.max(n - initTimestep, 0));
    if (n - startIndex < 1 && !opts.allowNoSteps) {
      throw new RangeError(
        `After adjusting the num_inference_steps by strength parameter: ${strength}, the number of pipeline` +
          `steps is ${n - startIndex} which is < 1 and not appropriate for this pipeline.`,
      );
    }
  }
  const rest = sigmas.slice(startIndex);
  return { startIndex, sigmas: rest, startSigma: rest[0]!, stepsToRun: rest.length - 1 };
}
