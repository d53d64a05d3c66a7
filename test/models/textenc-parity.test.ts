// T5 v1.1 encoder and CLIP text model against fixtures computed by the public `transformers` code
// (scripts/fixtures/make_textenc_fixtures.py; torch and transformers versions in each cases file's
// metadata). Tolerance: relative error 1e-5 in float32 (different reduction orders only).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { CLIPTextModel, parseClipTextConfig } from '../../src/models/clip.js';
import { T5EncoderModel, parseT5Config } from '../../src/models/t5.js';
import { availableBackends } from '../../src/tensor/registry.js';

const ROOT = fileURLToPath(new URL('../../../test/fixtures/textenc', import.meta.url));
const TOL = 1e-5;

function relErr(ours: Float32Array, ref: Float32Array): number {
  assert.equal(ours.length, ref.length, 'output sizes differ');
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (ours[i]! - ref[i]!) ** 2;
    den += ref[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

function rows(ids: Int32Array, shape: readonly number[]): Int32Array[] {
  const [B, L] = shape as [number, number];
  return Array.from({ length: B }, (_, b) => ids.slice(b * L, (b + 1) * L));
}

function open(name: string) {
  const dir = join(ROOT, name);
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const weights = SafetensorsFile.open(join(dir, 'model.safetensors'));
  const cases = SafetensorsFile.open(join(dir, 'cases.safetensors'));
  const get = (k: string) => ({ info: cases.info(k)!, data: cases.read(k) });
  return { config, weights, cases, get };
}

// on every backend: the CUDA backend (or its emulator, test/native/emulator.test.ts) runs T5's
// relative-position-bias attention and CLIP's causal attention through its own kernels
describe('text encoders vs transformers', () => {
  for (const be of availableBackends()) {
    it(`T5EncoderModel: last_hidden_state (40 tokens with padding, log buckets; and 7 tokens) [${be.name}]`, () => {
      const f = open('t5');
      assert.match(f.cases.metadata['transformers'] ?? '', /^\d/, 'fixture records the transformers version');
      const model = T5EncoderModel.load(f.weights, be, parseT5Config(f.config));
      try {
        for (const prefix of ['', 'short.']) {
          const ids = f.get(`${prefix}ids`);
          const ref = f.get(`${prefix}last_hidden_state`).data as Float32Array;
          const out = model.forward(rows(ids.data as Int32Array, ids.info.shape));
          const e = relErr(out.toFloat32(), ref);
          out.dispose();
          assert.ok(e <= TOL, `T5 ${prefix}last_hidden_state rel err ${e.toExponential(2)} > ${TOL}`);
          console.log(`T5 ${prefix}last_hidden_state rel err ${e.toExponential(2)}`);
        }
      } finally {
        model.dispose();
        f.weights.close();
        f.cases.close();
      }
    });

    for (const name of ['clip-legacy-eos', 'clip-eos']) {
      it(`CLIPTextModel (${name}): last_hidden_state and pooled output [${be.name}]`, () => {
        const f = open(name);
        const model = CLIPTextModel.load(f.weights, be, parseClipTextConfig(f.config));
        try {
          const ids = f.get('ids');
          const out = model.forward(rows(ids.data as Int32Array, ids.info.shape));
          const eh = relErr(out.last_hidden_state.toFloat32(), f.get('last_hidden_state').data as Float32Array);
          const ep = relErr(out.pooled.toFloat32(), f.get('pooled').data as Float32Array);
          out.last_hidden_state.dispose();
          out.pooled.dispose();
          assert.ok(eh <= TOL, `CLIP last_hidden_state rel err ${eh.toExponential(2)} > ${TOL}`);
          assert.ok(ep <= TOL, `CLIP pooled rel err ${ep.toExponential(2)} > ${TOL}`);
          console.log(`${name}: last_hidden_state rel err ${eh.toExponential(2)}, pooled ${ep.toExponential(2)}`);
        } finally {
          model.dispose();
          f.weights.close();
          f.cases.close();
        }
      });
    }
  }
});
