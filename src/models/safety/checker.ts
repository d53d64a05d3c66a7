// The CompVis checker: `StableDiffusionSafetyChecker` (huggingface/diffusers
// src/diffusers/pipelines/stable_diffusion/safety_checker.py; weights CompVis/stable-diffusion-safety-checker):
// the CLIP vision tower, `visual_projection` (no bias), then the concept decision.

import { isClipBufferKey } from '../clip.js';
import { Linear } from '../nn.js';
import { type LoadOptions, Weights } from '../weights.js';
import type { TensorSource } from '../../io/source.js';
import type { Backend } from '../../tensor/backend.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { CLIPVisionTransformer } from './clip-vision.js';
import { type CompVisScores, compvisDecision } from './compvis-decision.js';
import { N_CONCEPTS, N_SPECIAL, type SafetyCheckerConfig } from './config.js';

export class StableDiffusionSafetyChecker {
  readonly vision_model: { readonly vision_model: CLIPVisionTransformer };
  readonly visual_projection: Linear;
  readonly concept_embeds: Tensor;
  readonly special_care_embeds: Tensor;
  readonly concept_embeds_weights: Tensor;
  readonly special_care_embeds_weights: Tensor;
  private readonly owned: readonly Tensor[];

  constructor(
    readonly config: SafetyCheckerConfig,
    w: Weights,
  ) {
    const before = w.tensors.length;
    const P = config.projection_dim;
    this.vision_model = { vision_model: new CLIPVisionTransformer(config.vision, w.pp('vision_model').pp('vision_model')) };
    this.visual_projection = new Linear(w.pp('visual_projection'), config.vision.hidden_size, P, false);
    this.concept_embeds = w.get('concept_embeds', [N_CONCEPTS, P]);
    this.special_care_embeds = w.get('special_care_embeds', [N_SPECIAL, P]);
    this.concept_embeds_weights = w.get('concept_embeds_weights', [N_CONCEPTS]);
    this.special_care_embeds_weights = w.get('special_care_embeds_weights', [N_SPECIAL]);
    this.owned = w.tensors.slice(before);
  }

  /** Load and verify every key (an old file's `position_ids` buffer is ignored). */
  static load(source: TensorSource, backend: Backend, config: SafetyCheckerConfig, opts: LoadOptions = {}): StableDiffusionSafetyChecker {
    const outer = opts.ignoreUnused;
    const w = Weights.from(source, backend, { ...opts, ignoreUnused: (k) => isClipBufferKey(k) || (outer?.(k) ?? false) });
    const model = new StableDiffusionSafetyChecker(config, w);
    w.finish();
    return model;
  }

  /** clip_input [B, 3, S, S] -> image_embeds [B, projection_dim]. */
  imageEmbeds(pixels: Tensor): Tensor {
    return tidy(() => this.visual_projection.forward(this.vision_model.vision_model.forward(pixels)));
  }

  /** Scores and has_nsfw_concept per image of the batch. */
  forward(pixels: Tensor): CompVisScores[] {
    const emb = this.imageEmbeds(pixels);
    try {
      const data = emb.toFloat32();
      const P = this.config.projection_dim;
      const w = {
        concept_embeds: this.concept_embeds.toFloat32(),
        special_care_embeds: this.special_care_embeds.toFloat32(),
        concept_embeds_weights: this.concept_embeds_weights.toFloat32(),
        special_care_embeds_weights: this.special_care_embeds_weights.toFloat32(),
      };
      return Array.from({ length: emb.shape[0]! }, (_, b) => compvisDecision(data, b * P, P, w));
    } finally {
      emb.dispose();
    }
  }

  dispose(): void {
    for (const t of this.owned) t.dispose();
  }
}
