#!/usr/bin/env node
// Builds the CUDA addon for the CPU emulator: the same native/*.cu kernels and native/addon.cc,
// compiled as C++ against native/emu/ (a CPU cuda_runtime.h and cublasLt.h) into
// build/emu/fluxserve_cuda.node. Load it with FLUXSERVE_CUDA_ADDON=build/emu/fluxserve_cuda.node
// and every CUDA-backend test runs on any machine (docs/gpu.md, "The emulator").
//
//   node scripts/build-native-emu.mjs [--asan] [--out DIR]
//
// Each `kernel<<<grid, block[, smem[, stream]]>>>(args)` is rewritten into
// `fxs_emu::launch([=]() { kernel(args); }, grid, block[, smem[, stream]])`; nothing else changes.
// Needs a C++17 compiler (CXX, default g++) and Node-API headers (node-api-headers, else Node's).
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const asan = args.includes('--asan');
const outIdx = args.indexOf('--out');
const outDir = path.resolve(root, outIdx >= 0 ? args[outIdx + 1] : asan ? 'build/emu-asan' : 'build/emu');
const cxx = process.env.CXX || 'g++';

/** Rewrites CUDA launch syntax into a call of the emulator's launch(). Exported for the test. */
export function rewriteLaunches(src) {
  let out = '';
  let pos = 0;
  for (;;) {
    const at = src.indexOf('<<<', pos);
    if (at < 0) break;
    // the kernel expression: identifiers, ::, ## and balanced <...> to the left of <<<
    let s = at;
    for (;;) {
      const ch = src[s - 1];
      if (ch === undefined) break;
      if (/[A-Za-z0-9_:#]/.test(ch)) {
        s--;
        continue;
      }
      if (ch === '>') {
        let depth = 0,
          j = s - 1;
        for (; j >= 0; j--) {
          if (src[j] === '>') depth++;
          else if (src[j] === '<') {
            depth--;
            if (depth === 0) break;
          }
        }
        if (j < 0) throw new Error(`unbalanced template arguments before launch at ${at}`);
        s = j;
        continue;
      }
      break;
    }
    const kernel = src.slice(s, at);
    if (!/^[A-Za-z_]/.test(kernel)) throw new Error(`cannot find the kernel name before <<< at offset ${at}`);
    const cfgEnd = src.indexOf('>>>', at + 3);
    if (cfgEnd < 0) throw new Error(`unterminated <<< at offset ${at}`);
    const cfg = src.slice(at + 3, cfgEnd);
    let p = cfgEnd + 3;
    while (/\s/.test(src[p])) p++;
    if (src[p] !== '(') throw new Error(`expected ( after >>> at offset ${p}`);
    let depth = 0,
      e = p;
    for (; e < src.length; e++) {
      if (src[e] === '(') depth++;
      else if (src[e] === ')') {
        depth--;
        if (depth === 0) break;
      }
    }
    const callArgs = src.slice(p + 1, e);
    out += `${src.slice(pos, s)}fxs_emu::launch([=]() { ${kernel}(${callArgs}); }, ${cfg})`;
    pos = e + 1;
  }
  return out + src.slice(pos);
}

function nodeApiInclude() {
  if (process.env.NODE_INCLUDE_DIR) return process.env.NODE_INCLUDE_DIR;
  try {
    const req = createRequire(path.join(root, 'package.json'));
    const dir = path.join(path.dirname(req.resolve('node-api-headers/package.json')), 'include');
    if (fs.existsSync(path.join(dir, 'node_api.h'))) return dir;
  } catch {
    /* not installed */
  }
  const cands = [path.join(path.dirname(path.dirname(process.execPath)), 'include', 'node'), '/usr/include/node', '/usr/local/include/node'];
  return cands.find((d) => fs.existsSync(path.join(d, 'node_api.h')));
}

function run(cmd, argv) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit'] });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${argv.at(-1)} exited with ${code}`))));
  });
}

async function main() {
  try {
    execFileSync(cxx, ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error(`build-native-emu: no C++ compiler (${cxx}); install g++ or set CXX`);
  }
  const nodeInc = nodeApiInclude();
  if (!nodeInc) throw new Error('build-native-emu: node_api.h not found (npm ci installs node-api-headers; or set NODE_INCLUDE_DIR)');
  const srcDir = path.join(outDir, 'src');
  const objDir = path.join(outDir, 'obj');
  fs.mkdirSync(srcDir, { recursive: true });
  fs.mkdirSync(objDir, { recursive: true });
  const native = path.join(root, 'native');
  const units = [];
  for (const f of fs.readdirSync(native)) {
    const full = path.join(native, f);
    if (!fs.statSync(full).isFile()) continue;
    if (f.endsWith('.cu') || f.endsWith('.cuh') || f.endsWith('.h')) {
      const text = rewriteLaunches(fs.readFileSync(full, 'utf8'));
      const dst = path.join(srcDir, f.endsWith('.cu') ? f.replace(/\.cu$/, '.cc') : f);
      if (!fs.existsSync(dst) || fs.readFileSync(dst, 'utf8') !== text) fs.writeFileSync(dst, text);
      if (f.endsWith('.cu')) units.push(dst);
    }
  }
  const emuUnits = ['emu.cc', 'runtime_emu.cc'].map((f) => path.join(native, 'emu', f)); // the emulator (scheduler, runtime API)
  units.push(path.join(native, 'addon.cc'), ...emuUnits, path.join(native, 'emu', 'cublaslt_emu.cc'));
  const flags = [
    '-std=c++17',
    asan ? '-O1' : '-O2',
    '-g',
    '-fPIC',
    '-fvisibility=hidden',
    '-DFLUXSERVE_HAVE_CUBLASLT',
    '-DNODE_GYP_MODULE_NAME=fluxserve_cuda',
    `-I${path.join(native, 'emu')}`,
    `-I${srcDir}`,
    `-I${nodeInc}`,
    '-Wno-unused-function',
    '-Wno-unknown-pragmas',
  ];
  if (asan) flags.push('-fsanitize=address,undefined', '-fno-omit-frame-pointer');
  const jobs = Math.max(1, Number(process.env.JOBS) || os.availableParallelism?.() || 2);
  const objs = [];
  const queue = [...units];
  const t0 = Date.now();
  async function worker() {
    for (let u = queue.shift(); u; u = queue.shift()) {
      const o = path.join(objDir, path.basename(u).replace(/\.cc$/, '.o'));
      objs.push(o);
      // rebuild only what changed (sources and every header they may include)
      // (addon.cc includes native/ops.gen.inc, which is not copied)
      const newest = Math.max(
        fs.statSync(u).mtimeMs,
        ...[srcDir, native, path.join(native, 'emu')].flatMap((d) =>
          fs
            .readdirSync(d)
            .filter((f) => /\.(h|cuh|inc)$/.test(f))
            .map((f) => fs.statSync(path.join(d, f)).mtimeMs),
        ),
      );
      if (fs.existsSync(o) && fs.statSync(o).mtimeMs > newest) continue;
      await run(cxx, [...flags, '-c', u, '-o', o]);
    }
  }
  await Promise.all(Array.from({ length: jobs }, worker));
  const lib = path.join(outDir, 'fluxserve_cuda.node');
  const san = asan ? ['-fsanitize=address,undefined'] : [];
  await run(cxx, ['-shared', ...san, '-o', lib, ...objs, '-lpthread']);
  // the emulator's own checks: native/emu/selftest.cu, rewritten like the kernels
  const st = path.join(srcDir, 'emu_selftest.cc');
  const stText = rewriteLaunches(fs.readFileSync(path.join(native, 'emu', 'selftest.cu'), 'utf8'));
  if (!fs.existsSync(st) || fs.readFileSync(st, 'utf8') !== stText) fs.writeFileSync(st, stText);
  const emuObjs = objs.filter((o) => ['emu.o', 'runtime_emu.o'].includes(path.basename(o)));
  await run(cxx, [...flags, '-o', path.join(outDir, 'emu-selftest'), st, ...emuObjs, '-lpthread']);
  console.log(`build-native-emu: wrote ${path.relative(root, lib)} in ${((Date.now() - t0) / 1000).toFixed(1)} s${asan ? ' (ASan+UBSan)' : ''}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
}
