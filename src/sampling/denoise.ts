// The Euler flow-matching loop (black-forest-labs/flux@802fb47 src/flux/sampling.py `denoise`,
// flux-spec §3.2): for each (t_curr, t_prev) pair, pred = model(img, t_curr) and
// img ← img + (t_prev − t_curr)·pred. The update is two ops in the latent dtype, like BFL's
// `img + (t_prev - t_curr) * pred`: bf16(dt·pred) then bf16(img + ·) for bf16 models, the same
// two fp32 roundings for f32 models. Number of model evaluations = timesteps.length − 1.

import { add, affine, cast, fromArray, zeros } from '../tensor/ops.js';
import { tidy } from '../tensor/scope.js';
import type { CapturedGraph, StreamMark } from '../tensor/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Flux, Ids } from '../models/flux/model.js';
import { timestepEmbeddingF32 } from '../models/flux/math.js';

export interface DenoiseInputs {
  /** Packed latents [B, L_img, 64] at σ = timesteps[0]. Not disposed by denoise. */
  img: Tensor;
  img_ids: Ids;
  /** Text embeddings [B, L_txt, ctx]. */
  txt: Tensor;
  txt_ids: Ids;
  /** Pooled text vector [B, vec_in_dim]. */
  vec: Tensor;
  /** σ schedule, decreasing, including the final value (0 for a full run). */
  timesteps: Float32Array;
  /** Guidance scale for guidance-distilled models (ignored by models without guidance_in). */
  guidance?: number | undefined;
}

export interface DenoiseProgress {
  /**
   * 1-based index of the step just finished (on an asynchronous backend: queued; the GPU may still
   * be running it and the one before, LOOKAHEAD_STEPS).
   */
  step: number;
  total: number;
  t_curr: number;
  t_prev: number;
  /**
   * The latents after this step (after `afterStep`), [B, L_img, 64]. Borrowed: valid only during
   * the callback; read it, do not keep or dispose it.
   */
  latents: Tensor;
}

export interface DenoiseOptions {
  onStep?: (p: DenoiseProgress) => void;
  /** Checked before every step; an abort rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
  /**
   * Runs synchronously after the Euler update of step `i` (0-based), inside that step's tidy(),
   * and returns the latents to continue from: its argument, or a new tensor made from it
   * (inpainting blends the re-noised original back here). Intermediates it creates are freed.
   */
  afterStep?: ((img: Tensor, i: number) => Tensor) | undefined;
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Steps the host may have queued on an asynchronous backend (CUDA) before it waits for the oldest:
 * two keep the GPU busy (the next step is queued while one runs) and keep progress reports and
 * cancellation within two steps of the GPU instead of the whole loop ahead of it.
 */
const LOOKAHEAD_STEPS = 2;

let graphWarned = false;

/**
 * One denoising step's transformer forward as a CUDA graph (backend.captureGraph), replayed for
 * every step after the first: the step's ~1000 launches become one. The graph reads fixed input
 * tensors (latents, timestep and guidance embeddings as f32 host values), refreshed before each
 * replay; the Euler update stays outside (its dt differs per step). Same kernels in the same order
 * as the eager forward, so the same bits. Off with FLUXSERVE_CUDA_GRAPH=0; a capture that fails
 * (an op that needs the host inside the forward) warns once and the loop runs eagerly.
 */
export class StepGraph {
  private graph: CapturedGraph | undefined;
  /** The graph's fixed inputs: latents, and the f32 timestep (and guidance) embeddings. */
  private statics: Tensor[] = [];

  /** `inp`: the step's other inputs (img and timesteps are given per step); `guidance` as for forward. */
  constructor(
    private readonly model: Flux,
    private readonly inp: Pick<DenoiseInputs, 'img_ids' | 'txt' | 'txt_ids' | 'vec'>,
    private readonly guidance: ArrayLike<number> | undefined,
    private readonly pe: Tensor,
  ) {}

  /** Captures the forward for latents shaped like `img`; after a failure (warned once) replay gives undefined. */
  capture(img: Tensor): void {
    const be = this.model.backend;
    if (!be.captureGraph || !be.copyInto || process.env['FLUXSERVE_CUDA_GRAPH'] === '0') return;
    const B = img.shape[0]!;
    const imgS = zeros(be, img.shape, img.dtype);
    const t = zeros(be, [B, 256], 'f32');
    const guidance = this.guidance ? fromArray(be, [B, 256], timestepEmbeddingF32(this.guidance, this.model.dtype)) : undefined;
    this.statics = guidance ? [imgS, t, guidance] : [imgS, t];
    try {
      const { inp, pe } = this;
      const zero = new Array<number>(B).fill(0); // ignored: the embeddings are given
      this.graph = be.captureGraph(() =>
        this.model.forward(imgS, inp.img_ids, inp.txt, inp.txt_ids, zero, inp.vec, this.guidance && zero, { pe, embeddings: { t, guidance } }),
      );
    } catch (e) {
      this.dispose();
      if (!graphWarned) {
        graphWarned = true;
        console.warn(`fluxserve: CUDA graph capture of a denoising step failed (${(e as Error).message}); steps run eagerly`);
      }
    }
  }

  /** Whether a capture succeeded (replay gives predictions). */
  get captured(): boolean {
    return this.graph !== undefined;
  }

  /** The prediction for latents `img` at timesteps `t` from a replay (owned by the graph), or undefined. */
  replay(img: Tensor, t: ArrayLike<number>): Tensor | undefined {
    const { graph } = this;
    if (!graph) return undefined;
    const be = this.model.backend;
    const [imgS, tS] = this.statics as [Tensor, Tensor];
    be.write(tS.storage, 'f32', timestepEmbeddingF32(t, this.model.dtype), 0);
    be.copyInto!(imgS, img);
    graph.replay();
    return graph.output;
  }

  dispose(): void {
    this.graph?.dispose();
    for (const t of this.statics) t.dispose();
    this.graph = undefined;
    this.statics = [];
  }
}

/**
 * Runs the sampling loop; returns new latents [B, L_img, 64] in the model's dtype, owned by the
 * caller. Async only so that cancellation and progress can interleave with other work between
 * steps; each step runs synchronously inside its own tidy(). Call it outside any tidy().
 */
export async function denoise(model: Flux, inp: DenoiseInputs, opts: DenoiseOptions = {}): Promise<Tensor> {
  const ts = inp.timesteps;
  if (ts.length < 2) throw new Error(`denoise: needs at least 2 timesteps (got ${ts.length})`);
  const B = inp.img.shape[0]!;
  const Li = inp.img.shape[1]!;
  const Lt = inp.txt.shape[1]!;
  // BFL: torch.full((B,), guidance, dtype=img.dtype); the model rounds host values to its dtype.
  const guidance = model.guidance_in ? new Array<number>(B).fill(inp.guidance ?? 0) : undefined;
  if (model.guidance_in && inp.guidance === undefined) throw new Error('denoise: this guidance-distilled model needs a guidance value');

  const pe = tidy(() => model.positionEmbedding(inp.txt_ids, inp.img_ids, B, Lt, Li)); // [B|1, L, Dh/2, 2, 2]
  let img = inp.img.dtype === model.dtype ? inp.img : tidy(() => cast(inp.img, model.dtype)); // [B, Li, 64]
  const marks: StreamMark[] = []; // one per queued step, oldest first (asynchronous backends)
  const graph = new StepGraph(model, inp, guidance, pe);
  try {
    for (let i = 0; i < ts.length - 1; i++) {
      opts.signal?.throwIfAborted();
      const t_curr = ts[i]!;
      const t_prev = ts[i + 1]!;
      const t_vec = new Array<number>(B).fill(t_curr);
      const dt = Math.fround(t_prev - t_curr); // the Python float enters the op as an fp32 scalar
      // step 0 runs eagerly (lazy set-up happens there); later steps replay its CUDA graph if any
      if (i === 1) graph.capture(img);
      const next = tidy(() => {
        const pred = graph.replay(img, t_vec) ?? model.forward(img, inp.img_ids, inp.txt, inp.txt_ids, t_vec, inp.vec, guidance, { pe }); // [B, Li, 64]
        const stepped = add(img, affine(pred, dt)); // [B, Li, 64]
        return opts.afterStep ? opts.afterStep(stepped, i) : stepped;
      });
      if (next === img || next === inp.img) throw new Error('denoise: afterStep must return its argument or a new tensor');
      if (img !== inp.img) img.dispose();
      img = next;
      const mark = model.backend.mark?.();
      if (mark) marks.push(mark);
      while (marks.length > LOOKAHEAD_STEPS) marks.shift()!.wait();
      opts.onStep?.({ step: i + 1, total: ts.length - 1, t_curr, t_prev, latents: img });
      if (i < ts.length - 2) await nextTick();
    }
  } catch (e) {
    if (img !== inp.img) img.dispose();
    throw e;
  } finally {
    for (const m of marks) m.release();
    graph.dispose();
    pe.dispose();
  }
  return img;
}
