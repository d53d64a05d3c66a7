// The reference fixture test/fixtures/bfl-tiny-a (written by PyTorch + safetensors; its README says
// how) opens and lists its keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile, openSafetensors } from '../../src/io/safetensors.js';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/bfl-tiny-a/', import.meta.url));
const haveFixture = fs.existsSync(path.join(FIXTURE, 'weights-flux.safetensors'));

test('fixture files open and list their keys', { skip: !haveFixture && 'fixture not found' }, () => {
  const flux = SafetensorsFile.open(path.join(FIXTURE, 'weights-flux.safetensors'));
  assert.equal(flux.keys().length, 84);
  assert.deepEqual(flux.info('img_in.weight'), { dtype: 'f32', shape: [64, 64] });
  assert.deepEqual(flux.info('txt_in.weight'), { dtype: 'f32', shape: [64, 48] });
  assert.deepEqual(flux.info('single_blocks.1.linear1.weight'), { dtype: 'f32', shape: [448, 64] });
  assert.deepEqual(flux.info('double_blocks.0.img_attn.norm.query_norm.scale'), { dtype: 'f32', shape: [32] });
  const w = flux.read('img_in.weight') as Float32Array;
  assert.equal(w.length, 64 * 64);
  assert.ok(w.every(Number.isFinite));
  assert.ok(flux.keys().every((k) => flux.info(k)!.dtype === 'f32'));
  flux.close();

  const ae = SafetensorsFile.open(path.join(FIXTURE, 'weights-ae.safetensors'));
  assert.equal(ae.keys().length, 176);
  assert.ok(ae.keys().every((k) => ae.info(k)!.dtype === 'f32'));
  ae.close();

  const cases = SafetensorsFile.open(path.join(FIXTURE, 'cases.safetensors'));
  assert.equal(cases.metadata['torch'], '1.13.0a0');
  const stored = new Map<string, number>();
  for (const k of cases.keys()) stored.set(cases.storedDtype(k), (stored.get(cases.storedDtype(k)) ?? 0) + 1);
  assert.deepEqual(Object.fromEntries(stored), { F32: 23, BF16: 3, U8: 1 });
  assert.deepEqual(cases.info('noise.seed42.bf16'), { dtype: 'bf16', shape: [2, 16, 6, 10] });
  assert.ok(cases.read('noise.seed42.bf16') instanceof Uint16Array);
  assert.deepEqual(cases.info('sample.uint8'), { dtype: 'i32', shape: [2, 3, 48, 80] });
  const px = cases.read('sample.uint8');
  assert.ok(px instanceof Int32Array && px.length === 2 * 3 * 48 * 80);
  assert.ok(px.every((v) => v >= 0 && v <= 255));
  cases.close();

  // The directory holds several files and no index: merged.
  const all = openSafetensors(FIXTURE);
  assert.equal(all.keys().length, 84 + 176 + 27);
  all.close();
});
