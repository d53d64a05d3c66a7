// The CompVis decision rule (src/models/safety/compvis-decision.ts) against hand-computed cases:
// rounding to 3 decimals, the special-care adjustment.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { N_CONCEPTS, N_SPECIAL, compvisDecision, roundNumpy3 } from '../../src/models/safety.js';

const P = 4;

/** Concept tables for compvisDecision: every row orthogonal to the image (cos 0) with threshold 1 unless set. */
function tables() {
  const concept_embeds = new Float32Array(N_CONCEPTS * P);
  const special_care_embeds = new Float32Array(N_SPECIAL * P);
  for (let j = 0; j < N_CONCEPTS; j++) concept_embeds[j * P + 3] = 1;
  for (let j = 0; j < N_SPECIAL; j++) special_care_embeds[j * P + 3] = 1;
  return {
    concept_embeds,
    special_care_embeds,
    concept_embeds_weights: new Float32Array(N_CONCEPTS).fill(1),
    special_care_embeds_weights: new Float32Array(N_SPECIAL).fill(1),
  };
}

/** A row whose cosine with the image embedding [2, 0, 0, 0] is 0.6: [0.6, 0.8, 0, 0] scaled by 3. */
function setRow(table: Float32Array, j: number, row: number[]): void {
  table.set(row, j * P);
}
const IMAGE = new Float32Array([2, 0, 0, 0]);
const COS06 = [1.8, 2.4, 0, 0]; // cos ≈ 1.8 / 3 = 0.6 (normalised: 0.6, 0.8)
/** The cosine exactly as the checker gets it from the stored f32 row: f32(f32(1.8) / |row|) = 0.59999996423... */
const COS = Math.fround(Math.fround(1.8) / Math.hypot(Math.fround(1.8), Math.fround(2.4)));

describe('CompVis decision rule (diffusers StableDiffusionSafetyChecker.forward)', () => {
  it('numpy round(x, 3): rint(x·1000)/1000', () => {
    assert.equal(roundNumpy3(0.0004), 0);
    assert.equal(roundNumpy3(0.0006), 0.001);
    assert.equal(roundNumpy3(-0.0004), -0);
    assert.ok(!(roundNumpy3(-0.0004) > 0));
    assert.equal(roundNumpy3(0.0104), 0.01);
    assert.equal(roundNumpy3(0.0125), 0.012, 'a tie goes to even (12.5 -> 12)');
  });

  it('a concept 0.0004 above its threshold rounds to 0.0 and is not flagged', () => {
    const t = tables();
    setRow(t.concept_embeds, 5, COS06);
    t.concept_embeds_weights[5] = 0.5996;
    const r = compvisDecision(IMAGE, 0, P, t);
    // hand computation: COS = 0.59999996423..., minus f32(0.5996) = 0.59960001707...
    // -> 0.00039994717 -> x1000 = 0.39995 -> rint 0 -> 0.0, and 0.0 > 0 is false.
    const expectedRaw = COS - Math.fround(0.5996);
    assert.ok(expectedRaw > 0.00039 && expectedRaw < 0.0005, String(expectedRaw));
    assert.equal(r.concept[5], 0);
    assert.equal(r.nsfw, false);
    assert.deepEqual(r.special, [-1, -1, -1]);
    assert.equal(r.concept[0], -1);
  });

  it('a concept 0.0006 above rounds to 0.001 and is flagged', () => {
    const t = tables();
    setRow(t.concept_embeds, 16, COS06);
    t.concept_embeds_weights[16] = 0.5994;
    const r = compvisDecision(IMAGE, 0, P, t);
    assert.equal(r.concept[16], 0.001);
    assert.equal(r.nsfw, true);
  });

  it('a special-care hit adds 0.01 to the later special checks and to every concept check', () => {
    const t = tables();
    // special 0: cos 0.6 - 0.599 = 0.001 (> 0 after rounding) -> adjustment 0.01 from now on
    setRow(t.special_care_embeds, 0, COS06);
    t.special_care_embeds_weights[0] = 0.599;
    // special 1: cos 0.6 - 0.605 = -0.005, + 0.01 -> 0.005
    setRow(t.special_care_embeds, 1, COS06);
    t.special_care_embeds_weights[1] = 0.605;
    // special 2: cos 0 - 0.02 + 0.01 = -0.01
    t.special_care_embeds_weights[2] = 0.02;
    // concept 3: cos 0.6 - 0.6096 = -0.0096, + 0.01 = 0.0004 -> rounds to 0: not flagged alone
    setRow(t.concept_embeds, 3, COS06);
    t.concept_embeds_weights[3] = 0.6096;
    // concept 7: cos 0.6 - 0.6085 = -0.0085, + 0.01 = 0.0015 -> 0.002 (or 0.001): flagged only thanks to the adjustment
    setRow(t.concept_embeds, 7, COS06);
    t.concept_embeds_weights[7] = 0.6085;
    const r = compvisDecision(IMAGE, 0, P, t);
    assert.deepEqual(r.special, [0.001, 0.005, -0.01]);
    assert.equal(r.concept[3], 0);
    assert.ok(r.concept[7]! > 0, String(r.concept[7]));
    assert.equal(r.concept[0], -0.99, 'cos 0 - 1 + 0.01');
    assert.equal(r.nsfw, true);

    // Without the special-care hit the same concepts are not flagged.
    t.special_care_embeds_weights[0] = 0.6096; // 0.6 - 0.6096 = -0.0096 -> -0.01: no adjustment
    const r2 = compvisDecision(IMAGE, 0, P, t);
    assert.deepEqual(r2.special, [-0.01, -0.005, -0.02]);
    assert.equal(r2.concept[7], -0.009); // COS - f32(0.6085) = -0.0085000396 -> -8.50004 -> -9
    assert.equal(r2.nsfw, false);
  });

  it('a special score that rounds to 0 sets no adjustment', () => {
    const t = tables();
    setRow(t.special_care_embeds, 0, COS06);
    t.special_care_embeds_weights[0] = 0.5996; // +0.0004 -> 0.0
    setRow(t.concept_embeds, 0, COS06);
    t.concept_embeds_weights[0] = 0.6085; // -0.0085 -> would be > 0 with the adjustment
    const r = compvisDecision(IMAGE, 0, P, t);
    assert.equal(r.special[0], 0);
    assert.equal(r.concept[0], -0.009);
    assert.equal(r.nsfw, false);
  });

  it('reads the image row at its offset, and scale does not matter (cosine)', () => {
    const t = tables();
    setRow(t.concept_embeds, 0, COS06);
    t.concept_embeds_weights[0] = 0.5;
    const batch = new Float32Array([0, 0, 0, 5, 100, 0, 0, 0]);
    assert.equal(compvisDecision(batch, 0, P, t).nsfw, false);
    const r = compvisDecision(batch, P, P, t);
    assert.equal(r.concept[0], 0.1);
    assert.equal(r.nsfw, true);
  });
});
