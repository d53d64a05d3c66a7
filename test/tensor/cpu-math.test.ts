// The CPU backend's scalar math helpers against plain references.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { erf } from '../../src/tensor/cpu/activations.js';
import { expNonPositive } from '../../src/tensor/cpu/fastexp.js';
import { erfRef } from './naive.js';

describe('cpu math helpers', () => {
  it('erf matches the integral definition to 1e-13 and known values', () => {
    for (let x = -7; x <= 7; x += 0.01) {
      const e = erfRef(x);
      assert.ok(Math.abs(erf(x) - e) <= 1e-13, `erf(${x}) = ${erf(x)}, reference ${e}`);
    }
    assert.equal(erf(0), 0);
    assert.ok(Math.abs(erf(1) - 0.8427007929497149) < 1e-15);
    assert.ok(Math.abs(erf(3) - 0.9999779095030014) < 1e-15);
    assert.ok(Number.isNaN(erf(NaN)));
    assert.equal(erf(Infinity), 1);
    assert.equal(erf(-Infinity), -1);
  });

  it('expNonPositive is within 1e-9 relative of Math.exp on [-110, 0]', () => {
    // tolerance: 1e-9 relative, 60x below float32 resolution
    let worst = 0;
    for (let i = 0; i <= 200000; i++) {
      const x = (-110 * i) / 200000;
      worst = Math.max(worst, Math.abs(expNonPositive(x) - Math.exp(x)) / Math.exp(x));
    }
    assert.ok(worst < 1e-9, `max relative error ${worst}`);
    assert.equal(expNonPositive(0), 1);
    assert.equal(expNonPositive(-Infinity), 0);
    assert.equal(expNonPositive(-200), 0);
    assert.ok(Number.isNaN(expNonPositive(NaN)));
  });
});
