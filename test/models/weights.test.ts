import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe, it } from 'node:test';

import { openSafetensors } from '../../src/io/safetensors.js';
import { MapSource } from '../../src/io/source.js';
import { fluxParamsFromBflConfig } from '../../src/models/flux/config.js';
import { Flux } from '../../src/models/flux/model.js';
import { CheckpointError } from '../../src/models/weights.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { BFL_TINY_A } from './fixture.js';

/** The fixture's transformer weights in memory, so that a test can break them. */
function fixtureWeights(): MapSource {
  const file = openSafetensors(`${BFL_TINY_A}/weights-flux.safetensors`);
  try {
    const src = new MapSource('fixture-flux');
    for (const k of file.keys()) {
      const info = file.info(k)!;
      src.set(k, info.dtype, info.shape, file.read(k));
    }
    return src;
  } finally {
    file.close();
  }
}

function params() {
  return fluxParamsFromBflConfig(JSON.parse(fs.readFileSync(`${BFL_TINY_A}/config.json`, 'utf8')));
}

function loadFails(src: MapSource, key: string, kind: 'missing' | 'unexpected' | 'misshaped'): void {
  assert.throws(
    () => Flux.load(params(), src, cpuBackend),
    (e: unknown) => {
      assert.ok(e instanceof CheckpointError, `expected a CheckpointError, got ${String(e)}`);
      assert.match(e.message, new RegExp(key.replace(/\./g, '\\.')));
      assert.ok(
        e[kind].some((s) => s.startsWith(key)),
        `${key} not listed as ${kind}: ${e.message}`,
      );
      return true;
    },
  );
}

describe('Flux weights through the prefix builder', () => {
  it('loads the fixture checkpoint with nothing missing or left over', () => {
    const model = Flux.load(params(), fixtureWeights(), cpuBackend);
    assert.equal(model.double_blocks.length, 2);
    assert.equal(model.single_blocks.length, 2);
    assert.deepEqual(model.double_blocks[1]!.img_mlp[0].weight.shape, [256, 64]);
    assert.deepEqual(model.final_layer.adaLN_modulation[1].weight.shape, [128, 64]);
    model.dispose();
  });

  it('names a missing tensor', () => {
    const src = fixtureWeights();
    src.entries.delete('double_blocks.1.txt_attn.norm.key_norm.scale');
    loadFails(src, 'double_blocks.1.txt_attn.norm.key_norm.scale', 'missing');
  });

  it('names an unexpected tensor', () => {
    const src = fixtureWeights();
    src.set('single_blocks.2.linear1.weight', 'f32', [448, 64], new Float32Array(448 * 64));
    loadFails(src, 'single_blocks.2.linear1.weight', 'unexpected');
  });

  it('names a mis-shaped tensor', () => {
    const src = fixtureWeights();
    src.set('single_blocks.0.linear2.weight', 'f32', [64, 256], new Float32Array(64 * 256));
    loadFails(src, 'single_blocks.0.linear2.weight', 'misshaped');
  });

  it('rejects a guidance embedder the config does not have', () => {
    const src = fixtureWeights();
    const p = { ...params(), guidance_embed: false };
    assert.throws(
      () => Flux.load(p, src, cpuBackend),
      (e: unknown) => e instanceof CheckpointError && e.unexpected.includes('guidance_in.in_layer.weight'),
    );
  });
});
