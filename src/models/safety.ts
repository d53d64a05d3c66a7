// The two image safety classifiers cog-flux runs on its outputs (replicate/cog-flux predict.py,
// Predictor.base_setup and postprocess), fields spelled like their checkpoints:
//
// - `StableDiffusionSafetyChecker` (huggingface/diffusers
//   src/diffusers/pipelines/stable_diffusion/safety_checker.py; weights
//   CompVis/stable-diffusion-safety-checker): a `CLIPVisionModel` (transformers modeling_clip.py:
//   CLIPVisionEmbeddings, pre_layrnorm, pre-LN encoder, post_layernorm on the CLS token) +
//   `visual_projection` (no bias), then cosine similarities with 17 concept and 3 special-care
//   embeddings against thresholds stored in the file (`compvisDecision`).
// - `ViTForImageClassification` (transformers modeling_vit.py; weights Falconsai/nsfw_image_detection):
//   ViTEmbeddings (cls_token, patch projection with bias, position_embeddings), pre-LN ViTLayers,
//   `vit.layernorm`, `classifier` on the CLS token; labels from config.id2label.
//
// Both are sized from their config.json (so the tiny model's small versions load through the same
// code) and compute in f32 here; cog-flux runs CompVis in fp16 on the GPU and Falconsai in f32 on
// the CPU. Image preprocessing specs (the preprocessor_config.json files) are parsed here; the
// resizing itself (sharp) is in src/predictor/safety.ts.
//
// This file is the public entry; the parts live in safety/: config (config.json), preprocess
// (preprocessor_config.json), clip-vision + compvis-decision + checker (CompVis), falconsai-vit.

export {
  type ClipVisionConfig,
  N_CONCEPTS,
  N_SPECIAL,
  SafetyConfigError,
  type SafetyCheckerConfig,
  type VitConfig,
  parseSafetyCheckerConfig,
  parseVitConfig,
} from './safety/config.js';
export {
  CLIP_MEAN,
  CLIP_STD,
  COMPVIS_PREPROCESS,
  FALCONSAI_PREPROCESS,
  type ImagePreprocess,
  type SafetyResample,
  centerCropBox,
  normalizePixels,
  parsePreprocessorConfig,
  shortestEdgeSize,
} from './safety/preprocess.js';
export { type CompVisScores, compvisDecision, roundNumpy3 } from './safety/compvis-decision.js';
export { StableDiffusionSafetyChecker } from './safety/checker.js';
export { ViTForImageClassification } from './safety/falconsai-vit.js';
