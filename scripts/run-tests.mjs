#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's test runner.
// Usage: node scripts/run-tests.mjs [substring ...]  (only files whose path contains one of them)
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

// System packages the tests need, installed when missing (a fresh Debian machine with Node):
// g++ builds the CUDA kernels for the CPU emulator (test/native/emulator.test.ts).
const SYSTEM_PACKAGES = [{ command: 'g++', pkg: 'g++' }];
function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}
function ensureSystemPackages() {
  const missing = SYSTEM_PACKAGES.filter((p) => !have(p.command)).map((p) => p.pkg);
  if (missing.length === 0) return;
  const root = process.getuid?.() === 0;
  const sudo = !root && have('sudo') && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
  if (!have('apt-get') || (!root && !sudo)) {
    console.error(`run-tests: missing system packages (${missing.join(', ')}) and no apt-get/root to install them; the tests that need them will fail`);
    return;
  }
  const pre = root ? [] : ['sudo', '-n'];
  console.log(`run-tests: installing ${missing.join(', ')} (apt-get)`);
  const run = (args) => spawnSync(pre[0] ?? args[0], pre.length ? [...pre.slice(1), ...args] : args.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  run(['apt-get', 'update', '-qq']);
  run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...missing]);
}

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = walk('dist/test', [])
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error('run-tests: no test files found under dist/test (did the build run?)');
  process.exit(1);
}
ensureSystemPackages();
const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
