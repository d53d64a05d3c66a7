// Shape and dtype guards: a bad call throws an OpError naming the op and the shapes it got.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import {
  OpError,
  attention,
  concat,
  conv2d,
  embedding,
  fromArray,
  gatedResidual,
  groupNorm,
  layerNorm,
  linear,
  matmul,
  modulatedLayerNorm,
  permute,
  reshape,
  rope,
  slice,
  splitHeads,
  add,
  zeros,
} from '../../src/tensor/ops.js';
import { forEachBackend } from '../helpers/backends.js';

function throwsOp(fn: () => unknown, op: string, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof OpError, `expected an OpError, got ${String(e)}`);
    assert.ok(e.message.startsWith(`${op}: `), `message should start with the op name '${op}': ${e.message}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message should mention '${f}': ${e.message}`);
    return true;
  });
}

describe('op guards', () => {
  forEachBackend('guards name the op and the shapes', (be) => {
    const z = (shape: number[], dtype: 'f32' | 'bf16' | 'i32' = 'f32') => zeros(be, shape, dtype);
    throwsOp(() => linear(z([2, 3]), z([4, 5])), 'linear', 'x [2, 3] f32', 'w [4, 5] f32', 'K=3');
    throwsOp(() => linear(z([2, 3]), z([4, 3]), { bias: z([5]) }), 'linear', 'bias [5]');
    throwsOp(() => linear(z([2, 3], 'i32'), z([4, 3])), 'linear', 'x [2, 3] i32');
    throwsOp(() => matmul(z([2, 3]), z([4, 5])), 'matmul', 'a [2, 3]', 'b [4, 5]');
    throwsOp(() => matmul(z([2, 3, 4]), z([3, 4, 5])), 'matmul', 'batch dims differ');
    throwsOp(() => attention(z([1, 2, 3, 4]), z([1, 2, 5, 6]), z([1, 2, 5, 4])), 'attention', 'q [1, 2, 3, 4]', 'k [1, 2, 5, 6]');
    throwsOp(() => attention(z([1, 2, 3, 4]), z([1, 2, 5, 4]), z([1, 2, 5, 4]), { bias: z([1, 2, 3, 4]) }), 'attention', 'bias [1, 2, 3, 4]');
    throwsOp(() => attention(z([1, 1, 3, 4]), z([1, 1, 5, 4]), z([1, 1, 5, 4]), { causal: true }), 'attention', 'causal');
    throwsOp(() => layerNorm(z([2, 3]), { weight: z([4]), eps: 1e-5 }), 'layerNorm', 'weight [4]');
    throwsOp(() => groupNorm(z([1, 6, 2, 2]), { groups: 4, weight: z([6]), bias: z([6]), eps: 1e-6 }), 'groupNorm', 'groups=4', 'x [1, 6, 2, 2]');
    throwsOp(() => modulatedLayerNorm(z([2, 3, 4]), z([2, 5]), z([2, 4])), 'modulatedLayerNorm', 'shift [2, 5]');
    throwsOp(() => gatedResidual(z([2, 3, 4]), z([2, 4]), z([2, 3, 5])), 'gatedResidual', 'y [2, 3, 5]');
    throwsOp(() => add(z([2, 3]), z([4])), 'add', 'a [2, 3]', 'b [4]');
    throwsOp(() => rope(z([1, 2, 3, 4]), z([1, 3, 2, 2, 2], 'bf16')), 'rope', 'pe [1, 3, 2, 2, 2] bf16');
    throwsOp(() => conv2d(z([1, 3, 4, 4]), z([2, 4, 3, 3])), 'conv2d', 'x [1, 3, 4, 4]', 'w [2, 4, 3, 3]');
    throwsOp(() => conv2d(z([1, 3, 2, 2]), z([2, 3, 3, 3])), 'conv2d', 'larger than the padded input');
    throwsOp(() => concat([z([2, 3]), z([3, 3])], 1), 'concat', 'x0 [2, 3]', 'x1 [3, 3]');
    throwsOp(() => slice(z([2, 3]), 1, 2, 4), 'slice', 'x [2, 3]');
    throwsOp(() => reshape(z([2, 3]), [4, -1]), 'reshape', '[4, -1]');
    throwsOp(() => permute(z([2, 3]), [0, 0]), 'permute', 'x [2, 3]');
    throwsOp(() => splitHeads(z([1, 2, 10]), 3, 2), 'splitHeads', 'x [1, 2, 10]');
    throwsOp(() => embedding(z([4, 2]), z([3])), 'embedding', 'ids [3] f32');
  });

  forEachBackend('a disposed input is refused by name', (be) => {
    const a = fromArray(be, [2], [1, 2]);
    const b = fromArray(be, [2], [3, 4]);
    b.dispose();
    throwsOp(() => add(a, b), 'add', 'after dispose');
  });
});
