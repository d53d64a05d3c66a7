// The token sequence both vision towers start from (transformers CLIPVisionEmbeddings and
// ViTEmbeddings): the class token, then the patch grid in row-major order, plus the positions.

import { add, concat, permute, reshape } from '../../tensor/ops.js';
import type { Tensor } from '../../tensor/tensor.js';

/** patches [B, D, g, g], cls [1, 1, D], positions [1+g², D] or [1, 1+g², D] -> [B, 1+g², D]. */
export function imageTokens(patches: Tensor, cls: Tensor, positions: Tensor): Tensor {
  const [B, D] = patches.shape as [number, number];
  const g2 = patches.shape[2]! * patches.shape[3]!;
  const seq = permute(reshape(patches, [B, D, g2]), [0, 2, 1]); // [B, g², D]
  const clsB =
    B === 1
      ? cls
      : concat(
          Array.from({ length: B }, () => cls),
          0,
        ); // [B, 1, D]
  return add(concat([clsB, seq], 1), positions); // [B, 1+g², D]
}
