// The running max|·| that go_fast's fp8 inputs use: made once per step, raised by the producers,
// read by the fp8 linear.

import type { Backend } from '../backend.js';
import type { Tensor } from '../tensor.js';
import { zeros } from './creation.js';
import { OpError } from './guards.js';
import { absMax } from './layout.js';

/**
 * A running max|·| for go_fast's fp8 inputs: an f32 [1] tensor holding 0, which producers
 * (modulatedLayerNorm, geluConcat with `amaxOut`) raise to the max |value| they write, in the same
 * pass on backends with `fusedAmax`. linear(..., { quantizeInput, inputAmax }) then skips its own
 * pass over x. A max is order-free, so the result is deterministic and equal to absMax(x).
 */
export function newAmax(be: Backend): Tensor {
  return zeros(be, [1], 'f32');
}

export function checkAmax(op: string, amax: Tensor, be: Backend): void {
  if (amax.backend !== be || amax.dtype !== 'f32' || amax.size !== 1) {
    throw new OpError(
      op,
      `an amax must be an f32 [1] tensor on the ${be.name} backend (newAmax); got ${amax.dtype} [${amax.shape.join(', ')}] on ${amax.backend.name}`,
    );
  }
}

/** amax = max(amax, max|y|) composed on the host, for backends without fusedAmax. */
/** amax = max(amax, max|y|) composed on the host, for backends without fusedAmax. */
export function raiseAmax(amax: Tensor, y: Tensor): void {
  const m = Math.max(amax.toFloat32()[0]!, absMax(y));
  amax.backend.write(amax.storage, 'f32', Float32Array.of(m), 0);
}
