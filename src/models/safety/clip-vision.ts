// The CompVis checker's vision tower: transformers' CLIPVisionModel (models/clip/modeling_clip.py
// CLIPVisionEmbeddings, pre_layrnorm, the pre-LN encoder, post_layernorm on the CLS token).

import { CLIPEncoderLayer, type LayerNormParams, layerNormParams } from '../clip.js';
import type { Weights } from '../weights.js';
import { conv2d, layerNorm, reshape, slice } from '../../tensor/ops.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { ClipVisionConfig } from './config.js';
import { imageTokens } from './image-tokens.js';

class CLIPVisionEmbeddings {
  readonly class_embedding: Tensor;
  readonly patch_embedding: { readonly weight: Tensor };
  readonly position_embedding: { readonly weight: Tensor };

  constructor(
    readonly cfg: ClipVisionConfig,
    w: Weights,
  ) {
    const D = cfg.hidden_size;
    const P = cfg.patch_size;
    const n = (cfg.image_size / P) ** 2 + 1;
    this.class_embedding = w.get('class_embedding', [D]);
    this.patch_embedding = { weight: w.get('patch_embedding.weight', [D, cfg.num_channels, P, P]) }; // bias=False
    this.position_embedding = { weight: w.get('position_embedding.weight', [n, D]) };
  }

  /** pixel_values [B, C, S, S] -> [B, 1 + (S/P)², D]: [class, patches] + positions. */
  forward(pixels: Tensor): Tensor {
    const cfg = this.cfg;
    const patches = conv2d(pixels, this.patch_embedding.weight, { stride: cfg.patch_size }); // [B, D, g, g]
    const cls = reshape(this.class_embedding, [1, 1, cfg.hidden_size]);
    return imageTokens(patches, cls, this.position_embedding.weight); // [B, 1+g², D]
  }
}

export class CLIPVisionTransformer {
  readonly embeddings: CLIPVisionEmbeddings;
  readonly pre_layrnorm: LayerNormParams; // sic, as in the checkpoint
  readonly encoder: { readonly layers: readonly CLIPEncoderLayer[] };
  readonly post_layernorm: LayerNormParams;

  constructor(
    readonly cfg: ClipVisionConfig,
    w: Weights,
  ) {
    this.embeddings = new CLIPVisionEmbeddings(cfg, w.pp('embeddings'));
    this.pre_layrnorm = layerNormParams(w, 'pre_layrnorm', cfg.hidden_size);
    const layers = w.pp('encoder').pp('layers');
    this.encoder = { layers: Array.from({ length: cfg.num_hidden_layers }, (_, i) => new CLIPEncoderLayer(cfg, layers.pp(i), false)) };
    this.post_layernorm = layerNormParams(w, 'post_layernorm', cfg.hidden_size);
  }

  /** pixel_values [B, C, S, S] -> pooler_output [B, D] = post_layernorm(h[:, 0]). */
  forward(pixels: Tensor): Tensor {
    const eps = this.cfg.layer_norm_eps;
    return tidy(() => {
      let h = layerNorm(this.embeddings.forward(pixels), { ...this.pre_layrnorm, eps });
      for (const layer of this.encoder.layers) {
        const next = tidy(() => layer.forward(h));
        h.dispose();
        h = next;
      }
      const cls = reshape(slice(h, 1, 0, 1), [h.shape[0]!, this.cfg.hidden_size]); // [B, D]
      return layerNorm(cls, { ...this.post_layernorm, eps });
    });
  }
}
