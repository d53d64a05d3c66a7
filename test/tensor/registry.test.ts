import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { OP_NAMES } from '../../src/tensor/ops.js';
import { cpuBackend } from '../../src/tensor/cpu/index.js';
import { availableBackends, defaultBackend } from '../../src/tensor/registry.js';

describe('backend registry', () => {
  it('lists the cpu backend first, and every backend implements every op', () => {
    const all = availableBackends();
    assert.equal(all[0], cpuBackend);
    for (const be of all) {
      for (const op of OP_NAMES) assert.equal(typeof (be as unknown as Record<string, unknown>)[op], 'function', `${be.name}.${op}`);
    }
  });

  it('defaultBackend honours FLUXSERVE_BACKEND', () => {
    const cuda = availableBackends().find((b) => b.name === 'cuda');
    assert.equal(defaultBackend({}), cuda ?? cpuBackend);
    assert.equal(defaultBackend({ FLUXSERVE_BACKEND: 'cpu' }), cpuBackend);
    if (!cuda) assert.throws(() => defaultBackend({ FLUXSERVE_BACKEND: 'cuda' }), /cuda backend is not available/);
    assert.throws(() => defaultBackend({ FLUXSERVE_BACKEND: 'gpu' }), /must be one of cpu, cuda \(got 'gpu'\)/);
  });
});
