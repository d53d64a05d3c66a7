// bench/flux-gpu.ts end to end on the CPU with its --small model: every row kind is measured, the
// PyTorch reference rows are merged with ratios, and go_fast's quality table is filled.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

describe('bench/flux-gpu (small model, CPU)', () => {
  it('prints one table with our rows, the reference rows and ratios, and the go_fast quality rows', () => {
    const dir = fs.mkdtempSync(path.join(tmpdir(), 'fluxserve-bench-'));
    const torch = path.join(dir, 'torch.jsonl');
    // a reference row as scripts/device/bench_torch.py writes it (one partial line must be skipped)
    fs.writeFileSync(
      torch,
      `${JSON.stringify({ impl: 'torch-bfl', mode: 'compile', variant: 'dev', what: 'step', size: 128, ms: 1000, runs: 5 })}\n{"impl": "torch-bf`,
    );
    const out = path.join(dir, 'table.md');
    const json = path.join(dir, 'rows.jsonl');
    const env: NodeJS.ProcessEnv = { ...process.env, FLUXSERVE_BACKEND: 'cpu' };
    delete env['NODE_TEST_CONTEXT'];
    const r = spawnSync(
      process.execPath,
      ['dist/bench/flux-gpu.js', '--small', '--runs', '1', '--variants', 'dev', '--torch', torch, '--out', out, '--json', json],
      {
        cwd: ROOT,
        env,
        encoding: 'utf8',
        timeout: 600_000,
      },
    );
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const rows = fs
      .readFileSync(json, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { impl: string; mode: string; what: string; ms: number });
    const ours = rows.filter((x) => x.impl === 'fluxserve');
    assert.deepEqual(ours.map((x) => `${x.mode} ${x.what}`).sort(), ['bf16 e2e', 'bf16 step', 'go_fast e2e', 'go_fast step']);
    assert.ok(ours.every((x) => x.ms > 0 && Number.isFinite(x.ms)));
    const table = fs.readFileSync(out, 'utf8');
    assert.match(table, /\| fluxserve \| bf16 \| dev \| step \| 128² \| 1 \| [\d.]+ \| 1 \| {2}\| [\d.]+x \(torch-bfl compile\) \|/);
    assert.match(table, /\| torch-bfl \| compile \| dev \| step \| 128² \| 1 \| 1000\.0 \| 5 \|/);
    assert.match(table, /go_fast vs bf16, same seed:[\s\S]*\| dev \| 128² \| 3 \| [\d.e+-]+ \| [\d.]+ \| [\d.e+-]+ \| [\d.]+ \|/);
    assert.match(table, /LoRA switch \(runtime, rank 16 on 10 layers, [\d.]+ M params each\): median [\d.]+ ms over 1 switches/);
    assert.match(table, /LoRA switch \(fused, rank 16 on 10 layers/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
