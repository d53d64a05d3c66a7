// `fluxserve serve` as a user runs it: the compiled bin in a child process, on the tiny model.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';

const BIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

describe('fluxserve serve', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fluxserve-serve-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('listens, serves health-check and /v1 (config-registered models too) with the token, and exits 0 after POST /shutdown', async () => {
    const config = join(dir, 'fluxserve.json');
    writeFileSync(config, JSON.stringify({ models: [{ owner: 'acme', name: 'hot', profile: 'hotswap', defaults: { num_inference_steps: 4 } }] }));
    const args = ['serve', '--config', config, '--port', '0', '--host', '127.0.0.1', '--token', 'cli-secret', '--upload-url', 'http://127.0.0.1:9/uploads'];
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, FLUXSERVE_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no address in 60 s: ${stderr}`)), 60_000);
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString();
        const m = /at (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
    });
    try {
      assert.match(stderr, /serving fluxserve\/tiny \(trainer inputs, built-in tiny model\)/);
      let h: Record<string, unknown> = {};
      for (let i = 0; i < 100 && h['status'] !== 'READY'; i++) {
        h = (await (await fetch(`${url}/health-check`)).json()) as Record<string, unknown>;
        if (h['status'] !== 'READY') await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(h['status'], 'READY');
      assert.equal((await fetch(`${url}/v1/models`)).status, 401);
      const models = (await (await fetch(`${url}/v1/models`, { headers: { authorization: 'Bearer cli-secret' } })).json()) as { results: { name: string }[] };
      assert.deepEqual(
        models.results.map((m) => m.name),
        ['tiny', 'hot'],
      );
      assert.match(stderr, /and 1 registered model\(s\) on it/);
      assert.equal((await fetch(`${url}/shutdown`, { method: 'POST' })).status, 200);
      assert.equal(await exited, 0);
      assert.equal(`${stdout}${stderr}`.includes('cli-secret'), false, 'the token is not logged');
    } finally {
      child.kill();
    }
  });

  it('rejects a bad config file, naming the field', async () => {
    const config = join(dir, 'bad.json');
    writeFileSync(config, JSON.stringify({ models: [{ owner: 'acme', name: 'x', profile: 'trainer', lora_scale: 'high', lora: 'acme/y' }] }));
    const child = spawn(process.execPath, [BIN, 'serve', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 2);
    assert.match(stderr, /bad\.json: models\[0\]\.lora_scale: must be a number \(got "high"\)/);
  });

  it('rejects a bad --port', async () => {
    const child = spawn(process.execPath, [BIN, 'serve', '--port', 'http'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 2);
    assert.match(stderr, /--port must be an integer/);
  });

  it('rejects an --upload-url that is not http(s)', async () => {
    const child = spawn(process.execPath, [BIN, 'serve', '--upload-url', 'ftp://example.com/x'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 2);
    assert.match(stderr, /--upload-url must be an http or https URL/);
  });
});
