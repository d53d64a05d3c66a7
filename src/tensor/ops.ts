// The closed op list. Every op FLUX, its VAE, T5, CLIP and the safety checkers use is here, once:
// its shape/dtype guards, its output shape, and its semantics in the doc comment. The backends
// (cpu/, cuda/) implement exactly these. Model code calls only these functions.
//
// This file is the list's table of contents: each family of ops lives in one file of ops/, and
// OP_NAMES below names every op a backend must implement.
//
// Layout conventions: tensors are contiguous row-major. Linear weights are [out, in] (PyTorch).
// Attention takes q/k/v as [B, H, L, D] and returns merged heads [B, Lq, H*D]. Conv2d is NCHW with
// weights [O, C, kh, kw]. RoPE tables are fp32 [B|1, L, D/2, 2, 2] (the layout of BFL's EmbedND,
// black-forest-labs/flux src/flux/modules/layers.py).

export { OpError } from './ops/guards.js';
export { fromArray, fromRaw, zeros } from './ops/creation.js';
export { attention, linear, matmul } from './ops/gemm.js';
export { gatedResidual, groupNorm, layerNorm, modulatedLayerNorm, rmsNorm } from './ops/norm.js';
export { newAmax } from './ops/amax.js';
export {
  activation,
  add,
  affine,
  broadcastShapes,
  gelu,
  geluTanh,
  mul,
  quickGelu,
  rope,
  silu,
  softmax,
  sub,
} from './ops/elementwise.js';
export { conv2d, upsampleNearest } from './ops/conv.js';
export { absMax, cast, concat, embedding, permute, reshape, slice, splitHeads } from './ops/layout.js';
export { attnPrep, attnPrepComposed, geluConcat, geluConcatComposed } from './ops/composite.js';

/** The names of every op, for backends' completeness checks and docs. */
export const OP_NAMES = [
  'linear',
  'matmul',
  'attention',
  'layerNorm',
  'rmsNorm',
  'groupNorm',
  'modulatedLayerNorm',
  'gatedResidual',
  'binary',
  'affine',
  'activation',
  'softmax',
  'rope',
  'conv2d',
  'upsampleNearest',
  'concat',
  'slice',
  'permute',
  'splitHeads',
  'embedding',
  'cast',
  'absMax',
] as const;
