// Falconsai/nsfw_image_detection's classifier: transformers' `ViTForImageClassification`
// (models/vit/modeling_vit.py: ViTEmbeddings with cls_token, a patch projection with bias and
// position_embeddings; pre-LN ViTLayers; `vit.layernorm`; `classifier` on the CLS token).

import { type LayerNormParams, layerNormParams } from '../clip.js';
import { Conv2d, Linear } from '../nn.js';
import { type LoadOptions, Weights } from '../weights.js';
import type { TensorSource } from '../../io/source.js';
import type { Backend } from '../../tensor/backend.js';
import { add, attention, layerNorm, reshape, slice, splitHeads } from '../../tensor/ops.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { VitConfig } from './config.js';
import { imageTokens } from './image-tokens.js';

class ViTSelfAttention {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  constructor(cfg: VitConfig, w: Weights) {
    const D = cfg.hidden_size;
    this.query = new Linear(w.pp('query'), D, D, cfg.qkv_bias);
    this.key = new Linear(w.pp('key'), D, D, cfg.qkv_bias);
    this.value = new Linear(w.pp('value'), D, D, cfg.qkv_bias);
  }
}

class ViTLayer {
  readonly attention: { readonly attention: ViTSelfAttention; readonly output: { readonly dense: Linear } };
  readonly intermediate: { readonly dense: Linear };
  readonly output: { readonly dense: Linear };
  readonly layernorm_before: LayerNormParams;
  readonly layernorm_after: LayerNormParams;

  constructor(
    readonly cfg: VitConfig,
    w: Weights,
  ) {
    const D = cfg.hidden_size;
    this.attention = {
      attention: new ViTSelfAttention(cfg, w.pp('attention').pp('attention')),
      output: { dense: new Linear(w.pp('attention').pp('output').pp('dense'), D, D) },
    };
    this.intermediate = { dense: new Linear(w.pp('intermediate').pp('dense'), D, cfg.intermediate_size) };
    this.output = { dense: new Linear(w.pp('output').pp('dense'), cfg.intermediate_size, D) };
    this.layernorm_before = layerNormParams(w, 'layernorm_before', D);
    this.layernorm_after = layerNormParams(w, 'layernorm_after', D);
  }

  /** ViTLayer.forward: h += attn(layernorm_before h); h += output(intermediate(layernorm_after h)). */
  forward(h: Tensor): Tensor {
    const cfg = this.cfg;
    const eps = cfg.layer_norm_eps;
    const H = cfg.num_attention_heads;
    const n1 = layerNorm(h, { ...this.layernorm_before, eps });
    const a = this.attention.attention;
    const heads = (p: Linear) => splitHeads(p.forward(n1), 1, H)[0]!; // [B, H, L, hd]
    const ctx = attention(heads(a.query), heads(a.key), heads(a.value), { scale: 1 / Math.sqrt(cfg.hidden_size / H) }); // [B, L, D]
    const h1 = add(h, this.attention.output.dense.forward(ctx));
    const n2 = layerNorm(h1, { ...this.layernorm_after, eps });
    const mid = this.intermediate.dense.forward(n2, cfg.hidden_act);
    return add(h1, this.output.dense.forward(mid));
  }
}

class ViTEmbeddings {
  readonly cls_token: Tensor;
  readonly position_embeddings: Tensor;
  readonly patch_embeddings: { readonly projection: Conv2d };

  constructor(
    readonly cfg: VitConfig,
    w: Weights,
  ) {
    const D = cfg.hidden_size;
    const n = (cfg.image_size / cfg.patch_size) ** 2;
    this.cls_token = w.get('cls_token', [1, 1, D]);
    this.position_embeddings = w.get('position_embeddings', [1, n + 1, D]);
    this.patch_embeddings = { projection: new Conv2d(w.pp('patch_embeddings').pp('projection'), cfg.num_channels, D, cfg.patch_size, cfg.patch_size) };
  }

  forward(pixels: Tensor): Tensor {
    const patches = this.patch_embeddings.projection.forward(pixels); // [B, D, g, g]
    return imageTokens(patches, this.cls_token, this.position_embeddings); // [B, 1+g², D]
  }
}

export class ViTForImageClassification {
  readonly vit: { readonly embeddings: ViTEmbeddings; readonly encoder: { readonly layer: readonly ViTLayer[] }; readonly layernorm: LayerNormParams };
  readonly classifier: Linear;
  private readonly owned: readonly Tensor[];

  constructor(
    readonly config: VitConfig,
    w: Weights,
  ) {
    const before = w.tensors.length;
    const v = w.pp('vit');
    const layers = v.pp('encoder').pp('layer');
    this.vit = {
      embeddings: new ViTEmbeddings(config, v.pp('embeddings')),
      encoder: { layer: Array.from({ length: config.num_hidden_layers }, (_, i) => new ViTLayer(config, layers.pp(i))) },
      layernorm: layerNormParams(v, 'layernorm', config.hidden_size),
    };
    this.classifier = new Linear(w.pp('classifier'), config.hidden_size, config.labels.length);
    this.owned = w.tensors.slice(before);
  }

  static load(source: TensorSource, backend: Backend, config: VitConfig, opts: LoadOptions = {}): ViTForImageClassification {
    const w = Weights.from(source, backend, opts);
    const model = new ViTForImageClassification(config, w);
    w.finish();
    return model;
  }

  /** pixel_values [B, C, S, S] -> logits [B, num_labels] (classifier on layernorm(h)[:, 0]). */
  forward(pixels: Tensor): Tensor {
    const cfg = this.config;
    return tidy(() => {
      let h = this.vit.embeddings.forward(pixels);
      for (const layer of this.vit.encoder.layer) {
        const next = tidy(() => layer.forward(h));
        h.dispose();
        h = next;
      }
      const cls = reshape(slice(h, 1, 0, 1), [h.shape[0]!, cfg.hidden_size]);
      return this.classifier.forward(layerNorm(cls, { ...this.vit.layernorm, eps: cfg.layer_norm_eps }));
    });
  }

  /** The argmax label per image (`logits.argmax(-1)` -> id2label; the first maximum wins, like torch). */
  labels(pixels: Tensor): string[] {
    const logits = this.forward(pixels);
    try {
      const v = logits.toFloat32();
      const n = this.config.labels.length;
      return Array.from({ length: logits.shape[0]! }, (_, b) => {
        let best = 0;
        for (let j = 1; j < n; j++) if (v[b * n + j]! > v[b * n + best]!) best = j;
        return this.config.labels[best]!;
      });
    } finally {
      logits.dispose();
    }
  }

  dispose(): void {
    for (const t of this.owned) t.dispose();
  }
}
