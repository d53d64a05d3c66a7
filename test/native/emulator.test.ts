// The CUDA kernels (native/*.cu) and the Node-API addon, run on the CPU emulator
// (native/emu/, docs/gpu.md "The emulator"): every machine, CI included, runs the real kernel
// sources with block-level concurrency, the cuBLASLt call path and the caching allocator.
// What it cannot tell: speed, and how the real cuBLASLt differs from its documentation.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BUILD = path.join(ROOT, 'build', 'emu');
const ADDON = path.join(BUILD, 'fluxserve_cuda.node');
const ASAN_BUILD = path.join(ROOT, 'build', 'emu-asan');

/** The environment for a child that must not think it is a node:test worker. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env['NODE_TEST_CONTEXT'];
  delete env['FLUXSERVE_BACKEND'];
  return env;
}

function run(args: string[], extra: Record<string, string> = {}, timeoutMs = 600_000): { status: number | null; out: string } {
  const r = spawnSync(args[0]!, args.slice(1), { cwd: ROOT, env: childEnv(extra), encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function build(asan: boolean): void {
  const r = run([process.execPath, 'scripts/build-native-emu.mjs', ...(asan ? ['--asan'] : [])]);
  assert.equal(r.status, 0, `building the emulated addon failed:\n${r.out}`);
}

describe('CUDA kernels on the CPU emulator', () => {
  before(() => build(false));

  test('the launch rewrite keeps kernel, configuration and arguments', async () => {
    const mod = (await import(pathToFileURL(path.join(ROOT, 'scripts', 'build-native-emu.mjs')).href)) as {
      rewriteLaunches(src: string): string;
    };
    assert.equal(
      mod.rewriteLaunches('  fxs::k<FXS_DT_CODE_##dt><<<fxs::g(n), 256, 0, FXS_STREAM>>>(a, f(b, c), n);'),
      '  fxs_emu::launch([=]() { fxs::k<FXS_DT_CODE_##dt>(a, f(b, c), n); }, fxs::g(n), 256, 0, FXS_STREAM);',
    );
    assert.equal(mod.rewriteLaunches('x; k2<A, B<C>><<<dim3(1, 2), 64>>>(p);'), 'x; fxs_emu::launch([=]() { k2<A, B<C>>(p); }, dim3(1, 2), 64);');
    assert.equal(mod.rewriteLaunches('no launch here <<'), 'no launch here <<');
  });

  test('the emulator itself: barriers, shuffles, deadlock and exited-lane detection, launch limits, cp.async groups', () => {
    const r = run([path.join(BUILD, 'emu-selftest')]);
    assert.equal(r.status, 0, r.out);
    const oks = r.out.split('\n').filter((l) => l.startsWith('ok ')).length;
    assert.equal(oks, 8, r.out);
    assert.match(r.out, /emu-selftest: all ok/);
  });

  test('every op test, T5/CLIP against transformers, the go_fast forward pass and the autocast VAE decode on the emulated CUDA backend, cuBLASLt path required', () => {
    const r = run(
      [
        process.execPath,
        'scripts/run-tests.mjs',
        'dist/test/tensor/',
        'dist/test/models/textenc-parity',
        'dist/test/models/fp8',
        'dist/test/models/vae-autocast',
      ],
      {
        FLUXSERVE_CUDA_ADDON: ADDON,
        FXS_REQUIRE_CUBLASLT: '1',
        FXS_CONV_BAND_BYTES: '6000', // conv2d's im2col in many bands (the reference check below runs the default)
      },
    );
    const cudaPassed = r.out.split('\n').filter((l) => /✔ .*\[cuda\]/.test(l)).length;
    const cudaFailed = r.out.split('\n').filter((l) => /✖ .*\[cuda\]/.test(l));
    assert.deepEqual(cudaFailed, [], r.out.slice(-4000));
    assert.equal(r.status, 0, r.out.slice(-4000));
    // the CUDA backend must really have been registered: each op test runs once per backend
    const cpuPassed = r.out.split('\n').filter((l) => /✔ .*\[cpu\]/.test(l)).length;
    assert.ok(cpuPassed >= 50, `only ${cpuPassed} [cpu] op tests ran`);
    assert.equal(cudaPassed, cpuPassed, `${cudaPassed} [cuda] op tests passed, ${cpuPassed} on [cpu]`);
  });

  test('BFL tiny reference check passes with FLUXSERVE_BACKEND=cuda on the emulator', () => {
    const r = run([process.execPath, 'scripts/gpu-check.mjs', 'reference-check', 'test/fixtures/bfl-tiny-a'], {
      FLUXSERVE_BACKEND: 'cuda',
      FLUXSERVE_CUDA_ADDON: ADDON,
      FXS_REQUIRE_CUBLASLT: '1',
    });
    assert.equal(r.status, 0, r.out.slice(-4000));
    assert.match(r.out, /fluxserve CPU emulator/, 'the check must say it ran on the emulated device');
    assert.match(r.out, /reference-check: all within tolerance/);
    assert.match(r.out, /ok +forward\.out/);
  });

  test('the caching allocator releases its cache and retries when cudaMalloc fails', () => {
    const script = `
      const a = require(process.env.ADDON);
      a.init(0);
      const MB = 1 << 20;
      const p1 = a.malloc(6 * MB); a.free(p1);
      const s1 = a.memStats();
      const p2 = a.malloc(7 * MB);            // 6 cached + 7 > 10: only fits after the cache is released
      const s2 = a.memStats();
      let oom = '';
      try { a.malloc(5 * MB); } catch (e) { oom = String(e.message); }
      a.free(p2);
      console.log(JSON.stringify({ s1, s2, oom }));`;
    const r = run([process.execPath, '-e', script], { ADDON, FXS_EMU_MEM_LIMIT: String(10 << 20) });
    assert.equal(r.status, 0, r.out);
    const { s1, s2, oom } = JSON.parse(r.out.trim().split('\n').at(-1)!) as {
      s1: { allocated: number; reserved: number };
      s2: { allocated: number; reserved: number };
      oom: string;
    };
    assert.deepEqual([s1.allocated, s1.reserved], [0, 6 << 20], 'a freed block stays cached');
    assert.deepEqual([s2.allocated, s2.reserved], [7 << 20, 7 << 20], 'the cache was released, then the allocation retried');
    assert.match(oom, /out of memory/, 'an allocation that fits nowhere fails with a clear error');
  });

  test('the Hopper wgmma attention: on after its self-check, the other descriptor reading or the mma.sync kernel when the check says so', () => {
    const note = (extra: Record<string, string>) => {
      const script = "import('./dist/src/tensor/cuda/index.js').then((m) => { m.loadCudaBackend(); console.log('NOTE ' + m.cudaAttentionKernel()); })";
      const r = run([process.execPath, '-e', script], { FLUXSERVE_CUDA_ADDON: ADDON, ...extra });
      assert.equal(r.status, 0, r.out);
      return /NOTE (.*)/.exec(r.out)?.[1] ?? r.out;
    };
    // the kernel agrees with the mma.sync kernel on the emulator's reading of the PTX layouts
    assert.match(note({}), /^on \(self-check max diff bf16 [0-9.e-]+, f16 [0-9.e-]+\)$/);
    assert.equal(note({ FXS_ATTN_WGMMA: '0' }), 'off (FXS_ATTN_WGMMA=0)');
    // a GPU that read the descriptor's two offsets the other way round: the swapped variant is chosen
    assert.match(note({ FXS_EMU_WGMMA_SWAP: '1' }), /^on, LBO\/SBO swapped/);
    // tensor cores that compute something else: the kernel is not used
    assert.match(note({ FXS_EMU_WGMMA_BREAK: '1' }), /^off \(self-check failed/);
    // and the attention op tests pass in each of those worlds (wgmma swapped; mma.sync fallback)
    for (const extra of [{ FXS_EMU_WGMMA_SWAP: '1' }, { FXS_EMU_WGMMA_BREAK: '1' }] as Record<string, string>[]) {
      const r = run([process.execPath, 'scripts/run-tests.mjs', 'dist/test/tensor/attention'], { FLUXSERVE_CUDA_ADDON: ADDON, ...extra });
      assert.equal(r.status, 0, `${JSON.stringify(extra)}\n${r.out.slice(-4000)}`);
      assert.ok(r.out.split('\n').filter((l) => /✔ .*\[cuda\]/.test(l)).length >= 9, r.out.slice(-2000));
    }
  });

  test('the denoising loop never drains the GPU: small uploads go through the pinned staging ring, the run-ahead is bounded', () => {
    const child = (mode: string, staging?: string, extra: Record<string, string> = {}) => {
      const r = run([process.execPath, 'dist/test/native/stream-child.js', ...mode.split(' ')], {
        FLUXSERVE_CUDA_ADDON: ADDON,
        ...(staging !== undefined ? { FXS_STAGING_BYTES: staging } : {}),
        ...extra,
      });
      assert.equal(r.status, 0, r.out.slice(-4000));
      return JSON.parse(r.out.trim().split('\n').at(-1)!) as Record<string, unknown>;
    };
    // a 1 KiB ring: 200 uploads of 16..256 bytes wrap it dozens of times; each must land intact
    const ring = child('ring', '1024');
    assert.deepEqual(ring, { uploads: 200, uploadWaits: 0, mismatches: 0 });
    // the default ring: not one stream drain from the first step to the last; the host waits only
    // for the step two before the one it just queued (steps 3 and 4 wait for steps 1 and 2)
    const staged = child('denoise');
    assert.deepEqual(staged['perStep'], [0, 0, 0, 0], 'host waits counted after each of the 4 steps');
    assert.equal(staged['markWaits'], 2, 'the run-ahead is bounded at 2 queued steps');
    // a ring that wraps within every step, and no ring at all (every upload waits): the same bits
    const wrapping = child('denoise', '4096');
    const blocking = child('denoise', '0');
    assert.ok((blocking['perStep'] as number[])[3]! >= 4, `without staging each step waits at least once (${JSON.stringify(blocking['perStep'])})`);
    assert.equal(wrapping['bits'], staged['bits']);
    assert.equal(blocking['bits'], staged['bits']);
    // steps 2-4 replayed step 2's CUDA graph; without graphs (every step eager): the same bits
    assert.equal(staged['graphLaunches'], 3);
    const eager = child('denoise', undefined, { FLUXSERVE_CUDA_GRAPH: '0' });
    assert.equal(eager['graphLaunches'], 0);
    assert.equal(eager['bits'], staged['bits']);
    // go_fast (fp8 linears, amax from the producers): replays capture it too, no host waits, same bits
    const fp8Graph = child('denoise go_fast');
    const fp8Eager = child('denoise go_fast', undefined, { FLUXSERVE_CUDA_GRAPH: '0' });
    assert.deepEqual([fp8Graph['perStep'], fp8Graph['graphLaunches'], fp8Eager['graphLaunches']], [[0, 0, 0, 0], 3, 0]);
    assert.equal(fp8Graph['bits'], fp8Eager['bits']);
    assert.notEqual(fp8Graph['bits'], staged['bits'], 'go_fast really ran');
  });

  test("a CUDA graph replays on its inputs' current contents; a capture that needs the host is refused cleanly", () => {
    const r = run([process.execPath, 'dist/test/native/stream-child.js', 'graph'], { FLUXSERVE_CUDA_ADDON: ADDON });
    assert.equal(r.status, 0, r.out.slice(-4000));
    const g = JSON.parse(r.out.trim().split('\n').at(-1)!) as {
      first: number[];
      second: number[];
      held: number[];
      refused: string;
      after: number[];
      allocated: number;
    };
    assert.deepEqual(g.first, [3, 6, 9, 12, 15]);
    assert.deepEqual(g.second, [30, 60, 90, 120, 150], 'the replay read the rewritten input');
    assert.deepEqual(g.held, [110, 220, 330, 440, 550], "a tensor freed while capturing stays the graph's until it is destroyed");
    assert.match(g.refused, /capturing/, 'an upload inside the capture is refused');
    assert.deepEqual(g.after, [20, 40, 60, 80, 100], 'eager ops work after the refused capture');
    assert.equal(g.allocated, 0, 'nothing leaked: graph pool, refused upload');
  });

  test('the op tests under AddressSanitizer + UBSan (exact-size device buffers)', (t) => {
    build(true);
    const lib = (name: string): string => {
      const r = spawnSync(process.env['CXX'] ?? 'g++', [`-print-file-name=${name}`], { encoding: 'utf8' });
      return r.stdout.trim();
    };
    const asan = lib('libasan.so');
    const ubsan = lib('libubsan.so');
    assert.ok(fs.existsSync(asan) && fs.existsSync(ubsan), `the sanitizer runtimes must exist (${asan}, ${ubsan})`);
    const r = run([process.execPath, 'scripts/run-tests.mjs', 'dist/test/tensor/'], {
      FLUXSERVE_CUDA_ADDON: path.join(ASAN_BUILD, 'fluxserve_cuda.node'),
      FXS_REQUIRE_CUBLASLT: '1',
      FXS_EMU_EXACT_ALLOC: '1',
      LD_PRELOAD: `${asan} ${ubsan}`,
      ASAN_OPTIONS: 'detect_leaks=0:halt_on_error=1',
      UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
    });
    t.diagnostic(
      r.out
        .split('\n')
        .filter((l) => /^ℹ (tests|pass|fail)/.test(l))
        .join('; '),
    );
    assert.doesNotMatch(r.out, /AddressSanitizer|runtime error:/, r.out.slice(-4000));
    assert.equal(r.status, 0, r.out.slice(-4000));
  });
});
