// The addon op table (src/tensor/cuda/op-table.ts): the generated binding and declarations are
// what the table renders, and named args reach the addon in the positional order it reads.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { renderedFiles } from '../../scripts/gen-addon-ops.js';
import { type RawArg, bindOps, positional } from '../../src/tensor/cuda/bind-ops.js';
import { OP_TABLE } from '../../src/tensor/cuda/op-table.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

describe('the CUDA addon op table', () => {
  test('native/ops.gen.h and native/ops.gen.inc equal what the table renders (regenerate: node dist/scripts/gen-addon-ops.js)', () => {
    for (const [rel, text] of Object.entries(renderedFiles())) {
      assert.equal(fs.readFileSync(`${ROOT}${rel}`, 'utf8'), text, `${rel} is stale`);
    }
  });

  test('every launcher the table declares is defined by a .cu file', () => {
    const declared = new Set([...renderedFiles()['native/ops.gen.h']!.matchAll(/^int (fxs_\w+)\(/gm)].map((m) => m[1]!));
    const native = `${ROOT}native/`;
    const sources = fs
      .readdirSync(native)
      .filter((f) => f.endsWith('.cu'))
      .map((f) => fs.readFileSync(native + f, 'utf8'))
      .join('\n');
    // each declared launcher is defined: directly, or by a FXS_DEF_* macro expanded per suffix
    for (const name of declared) {
      const base = name.replace(/_(f32|bf16|f16|f8e4m3|i32|x32|x16|x8)$/, '');
      assert.ok(new RegExp(`\\b(${name}|${base}_##\\w+)\\s*\\(`).test(sources), `${name} is declared but no .cu file defines it`);
    }
  });

  test('named args become the positional list the binding reads (dispatch key first, codes, flags, absent pointers)', () => {
    assert.deepEqual(
      positional(OP_TABLE.gemm, {
        dt: 'bf16',
        a: 1n,
        b: 2n,
        bDt: 'f8e4m3',
        c: 3n,
        batch: 1,
        M: 4,
        N: 5,
        K: 6,
        bNK: true,
        strideA: 0,
        strideB: 0,
        strideC: 0,
        biasDt: undefined,
        alpha: 0.5,
        act: 'gelu_tanh',
      }),
      [1, 1n, 2n, 3, 3n, 1, 4, 5, 6, 1, 0, 0, 0, 0n, 0, 0.5, 1],
    );
    assert.deepEqual(positional(OP_TABLE.cast, { to: 'i32', x: 7n, xDt: 'f16', y: 8n, n: 9 }), [4, 7n, 2, 8n, 9]);
    assert.deepEqual(positional(OP_TABLE.permute, { elem: 'bf16', x: 1n, y: 2n, n: 6, outDims: [3, 2], inStrides: [1, 3] }), [2, 1n, 2n, 6, [3, 2], [1, 3]]);
    assert.deepEqual(positional(OP_TABLE.binary, { dt: 'f32', op: 'mul', a: 1n, b: 2n, bDt: 'bf16', out: 3n, dims: [4], strideA: [1], strideB: [0] }), [
      0,
      2,
      1n,
      2n,
      1,
      3n,
      [4],
      [1],
      [0],
    ]);
    const seg = { x: 1n, L: 2, C: 3, col: 4, qScale: 5n, qScaleDt: 'bf16', kScale: 6n, kScaleDt: 'f32' };
    assert.deepEqual(
      positional(OP_TABLE.attnPrep, { dt: 'f16', segments: [seg], pe: 7n, peBatched: false, q: 8n, k: 9n, v: 10n, B: 1, H: 2, Ltot: 2, Dh: 8, eps: 1e-6 }),
      [2, [1n, 2, 3, 4, 5n, 1, 6n, 0], null, 7n, 0, 8n, 9n, 10n, 1, 2, 2, 8, 1e-6],
    );
    assert.deepEqual(positional(OP_TABLE.markWait, { mark: 3n, release: true }), [3n, 1]);
  });

  test('bindOps calls the export of the same name with the positional list and returns its result', () => {
    const calls: [string, RawArg[]][] = [];
    const raw: Record<string, unknown> = {};
    for (const name of Object.keys(OP_TABLE)) {
      raw[name] = (...args: RawArg[]) => {
        calls.push([name, args]);
        return name === 'malloc' ? 42n : name === 'absMax' ? 1.5 : undefined;
      };
    }
    const ops = bindOps(raw);
    assert.equal(ops.malloc({ bytes: 16 }), 42n);
    assert.equal(ops.absMax({ dt: 'f32', x: 42n, n: 4 }), 1.5);
    ops.free({});
    assert.deepEqual(calls, [
      ['malloc', [16]],
      ['absMax', [0, 42n, 4]],
      ['free', [0n]],
    ]);
    delete raw['softmax'];
    assert.throws(() => bindOps(raw), /no op softmax/);
  });
});
