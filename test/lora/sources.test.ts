// resolveLora against fake hubs on 127.0.0.1: every accepted form, cache hits without network,
// token-keyed entries, registry, and redaction of tokens and signed queries everywhere.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { LoraCache } from '../../src/lora/cache.js';
import { LoraSourceError, parseLoraRef, resolveLora, type ResolveContext } from '../../src/lora/sources.js';
import { type FakeHubs, makeSafetensors, makeTar, startFakeHubs, trainedModelTar } from '../helpers/fake-hubs.js';

const HF_TOKEN = 'hf_SECRETtokenAAAAAAAAAAAAAAAA';
const CIV_TOKEN = 'civSECRETtokenBBBBBBBBBBBBBB';
const REP_TOKEN = 'r8_SECRETtokenCCCCCCCCCCCCCCC';

let hubs: FakeHubs;
let root: string;
const logs: string[] = [];
const errors: string[] = [];
const L = {
  plain: makeSafetensors(1),
  gated: makeSafetensors(2),
  civ: makeSafetensors(3),
  civGated: makeSafetensors(4),
  rep1: makeSafetensors(5),
  rep2: makeSafetensors(6),
  url: makeSafetensors(7),
  multi: makeSafetensors(8),
};

function newCache(name: string, opts: ConstructorParameters<typeof LoraCache>[0] = {}): LoraCache {
  return new LoraCache({ dir: join(root, name), log: (l) => logs.push(l), ...opts });
}

function ctxOf(cache: LoraCache, extra: Partial<ResolveContext> = {}): ResolveContext {
  return { cache, endpoints: hubs.endpoints, log: (l) => logs.push(l), ...extra };
}

async function expectError(p: Promise<unknown>, code: string, re?: RegExp): Promise<LoraSourceError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof LoraSourceError, `expected LoraSourceError, got ${String(e)}`);
    errors.push(e.message);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return e;
  }
  assert.fail(`expected a ${code} error`);
}

const hitCount = () => hubs.hits.length;

before(async () => {
  hubs = await startFakeHubs();
  root = mkdtempSync(join(tmpdir(), 'fluxserve-lora-src-'));
  hubs.hfRepos.set('alice/flux-style', { files: { 'lora.safetensors': L.plain } });
  hubs.hfRepos.set('alice/gated', { files: { 'flux_lora.safetensors': L.gated }, token: HF_TOKEN });
  hubs.hfRepos.set('alice/many', { files: { 'a.safetensors': L.multi, 'b/c.safetensors': L.plain } });
  hubs.hfRepos.set('alice/many-diffusers', { files: { 'pytorch_lora_weights.safetensors': L.multi, 'old.safetensors': L.plain } });
  hubs.civitaiModels.set(111, {
    versions: [
      { id: 2000, files: [{ id: 1, name: 'old.safetensors', data: L.plain, primary: true }] },
      {
        id: 2001,
        files: [
          { id: 3, name: 'training.zip', data: Buffer.from('zip'), type: 'Training Data', format: 'Other' },
          { id: 2, name: 'style.safetensors', data: L.civ, primary: true },
        ],
      },
    ],
  });
  hubs.civitaiModels.set(222, { versions: [{ id: 3001, files: [{ id: 9, name: 'gated.safetensors', data: L.civGated, primary: true }] }], token: CIV_TOKEN });
  hubs.replicateModels.set('bob/my-flux', {
    token: REP_TOKEN,
    versions: [
      { id: 'aaaa1111', tar: trainedModelTar(L.rep1) },
      { id: 'bbbb2222', tar: trainedModelTar(L.rep2) },
    ],
  });
  hubs.fileHost.set('/plain/style.safetensors', L.url);
});

after(async () => {
  await hubs.close();
  // Nothing secret anywhere: logs, error messages, cache file names and sidecars.
  const secrets = [HF_TOKEN, CIV_TOKEN, REP_TOKEN, hubs.signature, 'sigQUERYsecret123'];
  const names: string[] = [];
  const sidecars: string[] = [];
  for (const d of readdirSync(root, { withFileTypes: true })
    .filter((x) => x.isDirectory())
    .map((x) => x.name)) {
    for (const f of readdirSync(join(root, d))) {
      names.push(f);
      if (f.endsWith('.json')) sidecars.push(readFileSync(join(root, d, f), 'utf8'));
    }
  }
  for (const s of secrets) {
    for (const text of [...logs, ...errors, ...names, ...sidecars]) assert.ok(!text.includes(s), `secret leaked into: ${text}`);
  }
  assert.ok(logs.length > 0 && names.length > 0);
  rmSync(root, { recursive: true, force: true });
});

describe('parseLoraRef', () => {
  test('forms', () => {
    assert.deepEqual(parseLoraRef('huggingface.co/a/b'), { kind: 'hf', owner: 'a', repo: 'b', rev: 'main' });
    assert.deepEqual(parseLoraRef('https://huggingface.co/a/b/resolve/main/x/y.safetensors?download=true'), {
      kind: 'hf',
      owner: 'a',
      repo: 'b',
      rev: 'main',
      file: 'x/y.safetensors',
    });
    assert.deepEqual(parseLoraRef('huggingface.co/a/b/lora.safetensors'), { kind: 'hf', owner: 'a', repo: 'b', rev: 'main', file: 'lora.safetensors' });
    assert.deepEqual(parseLoraRef('https://civitai.com/models/123/some-name?modelVersionId=456'), { kind: 'civitai-model', modelId: '123', versionId: '456' });
    assert.deepEqual(parseLoraRef('civitai.com/models/123'), { kind: 'civitai-model', modelId: '123' });
    assert.deepEqual(parseLoraRef('https://civitai.com/api/download/models/77?type=Model&token=abc'), {
      kind: 'civitai-download',
      versionId: '77',
      query: '?type=Model',
      token: 'abc',
    });
    assert.deepEqual(parseLoraRef('bob/my-flux'), { kind: 'replicate', owner: 'bob', name: 'my-flux' });
    assert.deepEqual(parseLoraRef('bob/my-flux:abc123'), { kind: 'replicate', owner: 'bob', name: 'my-flux', version: 'abc123' });
    assert.deepEqual(parseLoraRef('https://replicate.com/bob/my-flux/versions/abc123'), {
      kind: 'replicate',
      owner: 'bob',
      name: 'my-flux',
      version: 'abc123',
    });
    assert.deepEqual(parseLoraRef('bob/my-flux/abc123'), { kind: 'replicate', owner: 'bob', name: 'my-flux', version: 'abc123' });
    assert.equal(parseLoraRef('https://x.example/a.safetensors?sig=1').kind, 'url');
    assert.equal(parseLoraRef('data:application/octet-stream;base64,AAAA').kind, 'data');
    assert.equal(parseLoraRef('./x.safetensors', true).kind, 'local');
  });
  test('errors', () => {
    assert.throws(
      () => parseLoraRef('./x.safetensors'),
      (e: LoraSourceError) => e.code === 'local-not-allowed',
    );
    assert.throws(
      () => parseLoraRef('/abs/x.safetensors'),
      (e: LoraSourceError) => e.code === 'local-not-allowed',
    );
    assert.throws(
      () => parseLoraRef('huggingface.co/a'),
      (e: LoraSourceError) => e.code === 'bad-ref',
    );
    assert.throws(
      () => parseLoraRef('civitai.com/user/x'),
      (e: LoraSourceError) => e.code === 'bad-ref',
    );
    assert.throws(
      () => parseLoraRef('just words here'),
      (e: LoraSourceError) => e.code === 'bad-ref' && /Replicate model/.test(e.message),
    );
    assert.throws(
      () => parseLoraRef('ftp://x/y.safetensors'),
      (e: LoraSourceError) => e.code === 'bad-ref',
    );
  });
});

describe('resolveLora: Hugging Face', () => {
  test('repo with one .safetensors: API siblings, then a cache hit without network', async () => {
    const cache = newCache('hf1');
    const a = await resolveLora('huggingface.co/alice/flux-style', ctxOf(cache));
    assert.deepEqual(readFileSync(a.path), L.plain);
    assert.equal(a.downloaded, true);
    assert.equal(a.source, 'huggingface.co/alice/flux-style/lora.safetensors');
    const n = hitCount();
    const b = await resolveLora('huggingface.co/alice/flux-style', ctxOf(cache));
    assert.equal(b.path, a.path);
    assert.equal(b.downloaded, false);
    assert.equal(hitCount(), n, 'no network on the second request');
    // The explicit file and resolve URL forms name the same entry.
    const c = await resolveLora('https://huggingface.co/alice/flux-style/resolve/main/lora.safetensors', ctxOf(cache));
    assert.equal(c.path, a.path);
    assert.equal(hitCount(), n);
  });

  test('several files: preferred name, else an error listing them', async () => {
    const cache = newCache('hf2');
    const a = await resolveLora('huggingface.co/alice/many-diffusers', ctxOf(cache));
    assert.deepEqual(readFileSync(a.path), L.multi);
    await expectError(resolveLora('huggingface.co/alice/many', ctxOf(cache)), 'ambiguous', /a\.safetensors, b\/c\.safetensors/);
    const b = await resolveLora('huggingface.co/alice/many/b/c.safetensors', ctxOf(cache));
    assert.deepEqual(readFileSync(b.path), L.plain);
  });

  test('gated repo: 401 without a token, works with the env or request token, token-keyed entry', async () => {
    const cache = newCache('hf3');
    const ref = 'https://huggingface.co/alice/gated/resolve/main/flux_lora.safetensors';
    const e = await expectError(resolveLora(ref, ctxOf(cache)), 'auth', /authentication required.*huggingface\.co\/alice\/gated.*HF_TOKEN/);
    assert.equal(e.status, 401);
    await expectError(resolveLora(ref, ctxOf(cache, { requestTokens: { hf: 'hf_wrongWRONGwrong' } })), 'auth', /failed/);
    const a = await resolveLora(ref, ctxOf(cache, { env: { HF_TOKEN } }));
    assert.deepEqual(readFileSync(a.path), L.gated);
    // The token went to the hub only, not to the CDN the hub redirected to.
    const cdn = hubs.hits.filter((h) => h.server === 'files' && h.path.includes('alice/gated'));
    assert.ok(cdn.length > 0 && cdn.every((h) => h.authorization === undefined));
    assert.ok(hubs.hits.some((h) => h.server === 'hf' && h.authorization === `Bearer ${HF_TOKEN}`));
    // Same token again: a hit. No token: not a hit; the hub is asked and says 401.
    const n = hitCount();
    assert.equal((await resolveLora(ref, ctxOf(cache, { requestTokens: { hf: HF_TOKEN } }))).path, a.path);
    assert.equal(hitCount(), n);
    await expectError(resolveLora(ref, ctxOf(cache)), 'auth');
    assert.ok(hitCount() > n, 'the token-less request went to the network');
    assert.ok(!readdirSync(cache.dir).some((f) => f.includes(HF_TOKEN)));
  });

  test('missing repo and file', async () => {
    const cache = newCache('hf4');
    await expectError(resolveLora('huggingface.co/alice/nope/x.safetensors', ctxOf(cache)), 'auth', /RepoNotFound/);
    await expectError(resolveLora('huggingface.co/alice/nope/x.safetensors', ctxOf(cache, { env: { HF_TOKEN } })), 'not-found');
    await expectError(resolveLora('huggingface.co/alice/flux-style/missing.safetensors', ctxOf(cache)), 'not-found', /EntryNotFound/);
  });
});

describe('resolveLora: CivitAI', () => {
  test('model page URL -> API -> newest version primary SafeTensor file (not the model id as version id)', async () => {
    const cache = newCache('civ1');
    const a = await resolveLora('https://civitai.com/models/111/cool-style', ctxOf(cache));
    assert.deepEqual(readFileSync(a.path), L.civ);
    assert.match(a.source, /version 2001, style\.safetensors/);
    assert.ok(hubs.hits.some((h) => h.path === '/api/v1/models/111'));
    assert.ok(!hubs.hits.some((h) => h.path === '/api/download/models/111'), 'cog-flux bug not reproduced');
    const n = hitCount();
    assert.equal((await resolveLora('civitai.com/models/111', ctxOf(cache))).path, a.path);
    assert.equal(hitCount(), n);
  });

  test('modelVersionId and the download URL form', async () => {
    const cache = newCache('civ2');
    const a = await resolveLora('https://civitai.com/models/111?modelVersionId=2000', ctxOf(cache));
    assert.deepEqual(readFileSync(a.path), L.plain);
    await expectError(resolveLora('https://civitai.com/models/222?modelVersionId=2000', ctxOf(cache)), 'not-found', /belongs to model 111/);
    const b = await resolveLora('https://civitai.com/api/download/models/2001', ctxOf(cache));
    assert.deepEqual(readFileSync(b.path), L.civ);
    await expectError(resolveLora('civitai.com/models/999', ctxOf(cache)), 'not-found');
  });

  test('login-required file: 401 without token; header token from env/request or a token= parameter', async () => {
    const cache = newCache('civ3');
    await expectError(resolveLora('civitai.com/models/222', ctxOf(cache)), 'auth', /CIVITAI_API_TOKEN/);
    const a = await resolveLora('civitai.com/models/222', ctxOf(cache, { env: { CIVITAI_API_TOKEN: CIV_TOKEN } }));
    assert.deepEqual(readFileSync(a.path), L.civGated);
    await expectError(resolveLora('civitai.com/models/222', ctxOf(cache)), 'auth');
    const b = await resolveLora(`https://civitai.com/api/download/models/3001?token=${CIV_TOKEN}`, ctxOf(cache));
    assert.deepEqual(readFileSync(b.path), L.civGated);
    // The token= parameter was sent as a header, never in a URL.
    assert.ok(!hubs.hits.some((h) => h.url.includes(CIV_TOKEN)));
  });
});

describe('resolveLora: Replicate', () => {
  test('owner/name with a token: API latest version -> _weights tar -> lora.safetensors', async () => {
    const cache = newCache('rep1');
    const a = await resolveLora('bob/my-flux', ctxOf(cache, { env: { REPLICATE_API_TOKEN: REP_TOKEN } }));
    assert.deepEqual(readFileSync(a.path), L.rep2);
    assert.equal(a.source, 'replicate.com/bob/my-flux:bbbb2222');
    assert.ok(hubs.hits.some((h) => h.path === '/v1/models/bob/my-flux' && h.authorization === `Bearer ${REP_TOKEN}`));
    const n = hitCount();
    assert.equal((await resolveLora('bob/my-flux', ctxOf(cache, { env: { REPLICATE_API_TOKEN: REP_TOKEN } }))).path, a.path);
    assert.equal(hitCount(), n);
    const b = await resolveLora('https://replicate.com/bob/my-flux/versions/aaaa1111', ctxOf(cache, { requestTokens: { replicate: REP_TOKEN } }));
    assert.deepEqual(readFileSync(b.path), L.rep1);
    await expectError(resolveLora('bob/my-flux:ffff', ctxOf(cache, { env: { REPLICATE_API_TOKEN: REP_TOKEN } })), 'not-found');
    await expectError(resolveLora('bob/my-flux', ctxOf(cache, { env: { REPLICATE_API_TOKEN: 'r8_badBADbadBAD' } })), 'auth', /REPLICATE_API_TOKEN/);
  });

  test('without a token: the website _weights URL (cog-flux form)', async () => {
    const cache = newCache('rep2');
    const a = await resolveLora('bob/my-flux:aaaa1111', ctxOf(cache));
    assert.deepEqual(readFileSync(a.path), L.rep1);
    const n = hitCount();
    assert.equal((await resolveLora('bob/my-flux/versions/aaaa1111', ctxOf(cache))).path, a.path);
    assert.equal(hitCount(), n);
    await expectError(resolveLora('bob/unknown', ctxOf(cache)), 'not-found');
  });

  test('registry first', async () => {
    const cache = newCache('rep3');
    const local = join(root, 'registered.safetensors');
    writeFileSync(local, L.url);
    const registry = (n: string) => (n === 'me/style' ? local : n === 'me/hf' ? 'huggingface.co/alice/flux-style' : undefined);
    const a = await resolveLora('me/style', ctxOf(cache, { registry }));
    assert.equal(a.path, local);
    assert.match(a.source, /^me\/style \(registered: /);
    const b = await resolveLora('me/hf', ctxOf(cache, { registry }));
    assert.deepEqual(readFileSync(b.path), L.plain);
    const n = hitCount();
    await expectError(resolveLora('me/other', ctxOf(cache, { registry })), 'not-found');
    assert.ok(hitCount() > n, 'not registered: Replicate asked');
  });
});

describe('resolveLora: URLs, data: URIs, local files', () => {
  test('plain URL with a signed query: used for the request, never shown', async () => {
    const cache = newCache('url1');
    const ref = `${hubs.files}/plain/style.safetensors?X-Amz-Signature=sigQUERYsecret123&X-Amz-Expires=60`;
    const a = await resolveLora(ref, ctxOf(cache));
    assert.deepEqual(readFileSync(a.path), L.url);
    assert.equal(a.source, `${hubs.files}/plain/style.safetensors?…`);
    assert.ok(
      hubs.hits.some((h) => h.url.includes('sigQUERYsecret123')),
      'the signed query was sent',
    );
    const n = hitCount();
    assert.equal((await resolveLora(ref, ctxOf(cache))).path, a.path);
    assert.equal(hitCount(), n);
    // The same path without the signature is a different entry (the signature is a credential).
    hubs.switches.set('/plain/style.safetensors', { status: 403 });
    try {
      await expectError(resolveLora(`${hubs.files}/plain/style.safetensors`, ctxOf(cache)), 'auth');
    } finally {
      hubs.switches.delete('/plain/style.safetensors');
    }
  });

  test('a .tar URL (replicate.delivery style) and a gzip', async () => {
    const cache = newCache('url2');
    hubs.fileHost.set('/pbxt/xyz/trained_model.tar', trainedModelTar(L.rep1));
    const a = await resolveLora(`${hubs.files}/pbxt/xyz/trained_model.tar`, ctxOf(cache));
    assert.deepEqual(readFileSync(a.path), L.rep1);
    hubs.fileHost.set('/gz/lora.safetensors', gzipSync(L.rep2));
    const b = await resolveLora(`${hubs.files}/gz/lora.safetensors`, ctxOf(cache));
    assert.deepEqual(readFileSync(b.path), L.rep2);
    hubs.fileHost.set(
      '/two.tar',
      makeTar([
        { name: 'a.safetensors', data: L.rep1 },
        { name: 'b.safetensors', data: L.rep2 },
      ]),
    );
    await expectError(resolveLora(`${hubs.files}/two.tar`, ctxOf(cache)), 'ambiguous', /a\.safetensors, b\.safetensors/);
  });

  test('data: URIs: a safetensors file or a tar of one', async () => {
    const cache = newCache('data');
    const a = await resolveLora(`data:application/octet-stream;base64,${L.plain.toString('base64')}`, ctxOf(cache));
    assert.deepEqual(readFileSync(a.path), L.plain);
    assert.match(a.source, /^data: URI \(\d+ bytes/);
    const b = await resolveLora(`data:application/x-tar;base64,${makeTar([{ name: 'x/lora.safetensors', data: L.multi }]).toString('base64')}`, ctxOf(cache));
    assert.deepEqual(readFileSync(b.path), L.multi);
    await expectError(resolveLora('data:application/octet-stream;base64,aGVsbG8gd29ybGQ=', ctxOf(cache)), 'invalid', /not a safetensors file/);
    assert.deepEqual(
      readdirSync(cache.dir).filter((f) => f.startsWith('.tmp')),
      [],
    );
  });

  test('local paths only with allowLocal', async () => {
    const cache = newCache('local');
    const p = join(root, 'local.safetensors');
    writeFileSync(p, L.plain);
    await expectError(resolveLora(p, ctxOf(cache)), 'local-not-allowed');
    const a = await resolveLora(p, ctxOf(cache, { allowLocal: true }));
    assert.equal(a.path, p);
    await expectError(resolveLora(join(root, 'nope.safetensors'), ctxOf(cache, { allowLocal: true })), 'not-found');
  });
});
