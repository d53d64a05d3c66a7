// LoraCache: single download under concurrency, LRU eviction under a byte budget, and each
// download failure mode as a named error with no partial file left behind.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LoraCache, credentialId } from '../../src/lora/cache.js';
import { redact, redactUrl } from '../../src/lora/source-errors.js';
import { listTar } from '../../src/lora/tar.js';
import { LoraSourceError, resolveLora } from '../../src/lora/sources.js';
import { type FakeHubs, makeSafetensors, startFakeHubs } from '../helpers/fake-hubs.js';

let hubs: FakeHubs;
let root: string;
const logs: string[] = [];
const errors: string[] = [];
const SECRET_Q = 'sig=QUERYsecretXYZ987654';

before(async () => {
  hubs = await startFakeHubs();
  root = mkdtempSync(join(tmpdir(), 'fluxserve-lora-cache-'));
});
after(async () => {
  await hubs.close();
  for (const t of [...logs, ...errors]) assert.ok(!t.includes('QUERYsecretXYZ987654'), `leak: ${t}`);
  rmSync(root, { recursive: true, force: true });
});

function cacheIn(name: string, opts: ConstructorParameters<typeof LoraCache>[0] = {}): LoraCache {
  return new LoraCache({ dir: join(root, name), log: (l) => logs.push(l), ...opts });
}

const fileUrl = (p: string) => `${hubs.files}${p}?${SECRET_Q}`;
const hitsOf = (p: string) => hubs.hits.filter((h) => h.path === p).length;

async function expectCode(p: Promise<unknown>, code: string, re?: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof LoraSourceError, String(e));
    errors.push(e.message);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return;
  }
  assert.fail(`expected ${code}`);
}

function noLeftovers(cache: LoraCache): void {
  assert.deepEqual(
    readdirSync(cache.dir).filter((f) => f.startsWith('.tmp')),
    [],
    'no temp files left',
  );
}

describe('LoraCache', () => {
  test('concurrent requests for one LoRA download it once', async () => {
    const data = makeSafetensors(10, 4096);
    hubs.fileHost.set('/conc.safetensors', data);
    hubs.switches.set('/conc.safetensors', { delayMs: 150 });
    const cache = cacheIn('conc');
    const rs = await Promise.all(Array.from({ length: 5 }, () => resolveLora(fileUrl('/conc.safetensors'), { cache })));
    assert.equal(hitsOf('/conc.safetensors'), 1);
    assert.equal(new Set(rs.map((r) => r.path)).size, 1);
    assert.deepEqual(readFileSync(rs[0]!.path), data);
    assert.equal(rs.filter((r) => r.downloaded).length, 5, 'all five waited for the one download');
    assert.equal(cache.stats.misses, 1);
    hubs.switches.delete('/conc.safetensors');
  });

  test('LRU eviction under a byte budget; a hit touches the entry', async () => {
    const files = [0, 1, 2, 3].map((i) => makeSafetensors(20 + i, 2048)); // ~16 KiB each
    files.forEach((d, i) => hubs.fileHost.set(`/lru${i}.safetensors`, d));
    const size = files[0]!.length;
    const cache = cacheIn('lru', { maxBytes: size * 2 + 100 });
    const get = (i: number) => resolveLora(`${hubs.files}/lru${i}.safetensors`, { cache });
    const p0 = (await get(0)).path;
    await new Promise((r) => setTimeout(r, 20));
    const p1 = (await get(1)).path;
    await new Promise((r) => setTimeout(r, 20));
    assert.equal((await get(0)).downloaded, false); // touch 0: 1 is now the least recently used
    await new Promise((r) => setTimeout(r, 20));
    const p2 = (await get(2)).path;
    const names = readdirSync(cache.dir).filter((f) => f.endsWith('.safetensors'));
    assert.deepEqual(names.sort(), [p0, p2].map((p) => p.slice(cache.dir.length + 1)).sort());
    assert.ok(!names.includes(p1.slice(cache.dir.length + 1)));
    assert.equal(cache.stats.evictions, 1);
    const before = hitsOf('/lru1.safetensors');
    assert.equal((await get(1)).downloaded, true, 'evicted entry downloads again');
    assert.equal(hitsOf('/lru1.safetensors'), before + 1);
    assert.ok(cache.entries().reduce((s, e) => s + e.bytes, 0) <= size * 2 + 100);
  });

  test('entries are keyed by credential; file names are hashes only', () => {
    const cache = cacheIn('keys');
    const a = cache.keyOf({ source: 'hf:a/b@main/x.safetensors' });
    const b = cache.keyOf({ source: 'hf:a/b@main/x.safetensors', credential: 'tok1' });
    const c = cache.keyOf({ source: 'hf:a/b@main/x.safetensors', credential: 'tok2' });
    assert.equal(new Set([a, b, c]).size, 3);
    assert.match(a, /^[0-9a-f]{40}$/);
    assert.equal(credentialId(undefined), 'anon');
    assert.ok(!credentialId('tok1').includes('tok1'));
    // A token request may use an anonymous entry; an anonymous request never a token entry.
    mkdirSync(cache.dir, { recursive: true });
    writeFileSync(cache.pathOf(b), 'x');
    assert.equal(cache.lookup({ source: 'hf:a/b@main/x.safetensors' }), undefined);
    assert.ok(cache.lookup({ source: 'hf:a/b@main/x.safetensors', credential: 'tok1' }));
    writeFileSync(cache.pathOf(a), 'x');
    assert.ok(cache.lookup({ source: 'hf:a/b@main/x.safetensors', credential: 'tok2' }));
  });
});

describe('download failure modes', () => {
  const good = makeSafetensors(30, 8192); // ~64 KiB
  before(() => hubs.fileHost.set('/f.safetensors', good));

  const cases: [string, Parameters<FakeHubs['switches']['set']>[1], string, RegExp, Partial<ConstructorParameters<typeof LoraCache>[0]>?][] = [
    ['401', { status: 401 }, 'auth', /authentication required/],
    ['403', { status: 403 }, 'auth', /authentication failed/],
    ['404', { status: 404 }, 'not-found', /not found \(HTTP 404\)/],
    ['500', { status: 503 }, 'server', /server error HTTP 503/],
    ['418', { status: 418 }, 'http', /HTTP 418/],
    ['truncated body', { truncateAt: 1000 }, 'truncated', /closed after \d+ of \d+ bytes|got \d+ bytes, Content-Length said/],
    ['oversized by Content-Length', {}, 'too-large', /over the LoRA size limit/, { maxFileBytes: 10_000 }],
    ['oversized while streaming', { chunked: true }, 'too-large', /more than the LoRA size limit/, { maxFileBytes: 10_000 }],
    ['slow headers', { delayMs: 2000 }, 'timeout', /no response within 200 ms/, { connectTimeoutMs: 200 }],
    ['stalled body', { stallAfter: 100 }, 'timeout', /stalled for 200 ms after 100 bytes/, { idleTimeoutMs: 200 }],
    ['redirect loop', { redirectLoop: true }, 'redirects', /more than 3 redirects/, { maxRedirects: 3 }],
  ];
  for (const [name, sw, code, re, opts] of cases) {
    test(name, async () => {
      hubs.switches.set('/f.safetensors', sw);
      const cache = cacheIn(`fail-${name.replace(/\W+/g, '-')}`, opts ?? {});
      try {
        await expectCode(resolveLora(fileUrl('/f.safetensors'), { cache, log: (l) => logs.push(l) }), code, re);
      } finally {
        hubs.switches.delete('/f.safetensors');
      }
      noLeftovers(cache);
      assert.deepEqual(
        readdirSync(cache.dir).filter((f) => f.endsWith('.safetensors')),
        [],
        'nothing cached',
      );
      // And the message names the URL without its query.
      assert.match(errors[errors.length - 1]!, new RegExp(`${hubs.files.replace(/[.]/g, '\\.')}/f\\.safetensors\\?…`));
    });
  }

  test('not a safetensors file (an HTML page)', async () => {
    hubs.fileHost.set('/page.safetensors', Buffer.from('<!doctype html><html><body>login</body></html>'));
    const cache = cacheIn('fail-html');
    await expectCode(resolveLora(fileUrl('/page.safetensors'), { cache }), 'invalid', /is not a safetensors file \(it looks like an HTML page\)/);
    noLeftovers(cache);
  });

  test('connection refused', async () => {
    const cache = cacheIn('fail-refused');
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    await expectCode(resolveLora(`http://127.0.0.1:${port}/x.safetensors?${SECRET_Q}`, { cache }), 'network', /ECONNREFUSED/);
  });

  test('abort signal', async () => {
    hubs.switches.set('/f.safetensors', { delayMs: 1000 });
    const cache = cacheIn('fail-abort');
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 50);
    try {
      await expectCode(resolveLora(fileUrl('/f.safetensors'), { cache, signal: ctl.signal }), 'aborted');
    } finally {
      hubs.switches.delete('/f.safetensors');
    }
  });

  test('a failed download is retried by the next request (failures are not cached)', async () => {
    const cache = cacheIn('retry');
    hubs.switches.set('/f.safetensors', { status: 500 });
    await expectCode(resolveLora(fileUrl('/f.safetensors'), { cache }), 'server');
    hubs.switches.delete('/f.safetensors');
    const r = await resolveLora(fileUrl('/f.safetensors'), { cache });
    assert.deepEqual(readFileSync(r.path), good);
  });
});

describe('helpers', () => {
  test('redaction', () => {
    assert.equal(redactUrl('https://u:p@h.example/a/b.safetensors?X-Amz-Signature=abc#x'), 'https://h.example/a/b.safetensors?…');
    assert.equal(redact('failed https://h/x?token=abc and key token=zzz', []), 'failed https://h/x?… and key token=***');
    assert.equal(redact('Bearer hf_abcdefgh failed', ['hf_abcdefgh']), 'Bearer *** failed');
  });

  test('our tar reader reads what GNU/bsd tar writes (long names too)', { skip: spawnSync('tar', ['--version']).status !== 0 }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'fluxserve-tar-'));
    try {
      const deep = join('output', 'flux_train_replicate', 'x'.repeat(90), 'y'.repeat(40));
      mkdirSync(join(dir, deep), { recursive: true });
      const st = makeSafetensors(40);
      writeFileSync(join(dir, deep, 'lora.safetensors'), st);
      writeFileSync(join(dir, 'output', 'flux_train_replicate', 'config.yaml'), 'a: 1\n');
      const r = spawnSync('tar', ['-cf', join(dir, 't.tar'), 'output'], { cwd: dir });
      assert.equal(r.status, 0, String(r.stderr));
      const members = listTar(join(dir, 't.tar'));
      const m = members.find((x) => x.name.endsWith('lora.safetensors'));
      assert.ok(m, JSON.stringify(members));
      assert.equal(m.name, `${deep}/lora.safetensors`);
      assert.deepEqual(readFileSync(join(dir, 't.tar')).subarray(m.offset, m.offset + m.size), st);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
