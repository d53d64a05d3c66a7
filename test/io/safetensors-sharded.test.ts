// Checkpoints in several files (src/io/safetensors/sharded-reader.ts, sharded-writer.ts): the
// Hugging Face shard layout round trip, and openSafetensors on files and directories.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  MergedSafetensors,
  SafetensorsError,
  SafetensorsFile,
  ShardedSafetensors,
  openSafetensors,
  writeSafetensors,
  writeShardedSafetensors,
} from '../../src/io/safetensors.js';
import { MapSource } from '../../src/io/source.js';
import { bytesOf, dtypeSize } from '../../src/tensor/dtype.js';
import { assertErr, fill, numel, tmpDir } from './safetensors-helpers.js';

test('sharded write + read round trip (Hugging Face layout)', () => {
  const src = new MapSource('mem');
  for (let i = 0; i < 10; i++) src.set(`layer.${i}.weight`, i % 2 ? 'bf16' : 'f32', [4, 10], fill(i % 2 ? 'bf16' : 'f32', [4, 10], i));
  src.set('huge', 'f32', [100], fill('f32', [100], 99)); // bigger than a shard: gets its own
  src.set('scalar', 'f32', [], new Float32Array([3]));
  const d = path.join(tmpDir('sharded'), 'transformer');
  const files = writeShardedSafetensors(d, 'diffusion_pytorch_model', src, 250, { format: 'pt' });
  const names = files.map((f) => path.basename(f));
  const n = names.length - 1;
  assert.ok(n >= 3);
  const pad = (i: number) => String(i).padStart(5, '0');
  assert.deepEqual(names, [
    ...Array.from({ length: n }, (_, i) => `diffusion_pytorch_model-${pad(i + 1)}-of-${pad(n)}.safetensors`),
    'diffusion_pytorch_model.safetensors.index.json',
  ]);
  for (const f of files.slice(0, -1)) {
    const s = fs.statSync(f).size;
    const sf = SafetensorsFile.open(f);
    const dataBytes = s - sf.dataStart;
    assert.ok(dataBytes <= 250 || sf.keys().length === 1, `${f} has ${dataBytes} bytes`);
    assert.deepEqual(sf.metadata, { format: 'pt' });
    sf.close();
  }
  const index = JSON.parse(fs.readFileSync(files.at(-1)!, 'utf8'));
  const total = src.keys().reduce((a, k) => a + numel(src.info(k)!.shape) * dtypeSize(src.info(k)!.dtype), 0);
  assert.deepEqual(index.metadata, { total_size: total, format: 'pt' });
  assert.deepEqual(Object.keys(index.weight_map).sort(), src.keys().sort());

  for (const opened of [ShardedSafetensors.open(files.at(-1)!), openSafetensors(d), openSafetensors(files.at(-1)!)]) {
    assert.ok(opened instanceof ShardedSafetensors);
    assert.deepEqual(opened.keys(), src.keys());
    for (const k of src.keys()) {
      assert.deepEqual(opened.info(k), src.info(k) && { dtype: src.info(k)!.dtype, shape: src.info(k)!.shape });
      assert.deepEqual(Buffer.from(bytesOf(opened.read(k))), Buffer.from(bytesOf(src.read(k))));
    }
    assert.equal((opened as ShardedSafetensors).metadata['total_size'], total);
    opened.close();
  }
});

test('openSafetensors on a file, a one-file directory, and a multi-file directory', () => {
  const d = tmpDir('open');
  const p = path.join(d, 'only.safetensors');
  writeSafetensors(p, [['a', { dtype: 'f32', shape: [1], data: new Float32Array([1]) }]]);
  fs.writeFileSync(path.join(d, 'config.json'), '{}');
  for (const s of [openSafetensors(p), openSafetensors(d)]) {
    assert.ok(s instanceof SafetensorsFile);
    assert.equal(s.label, p);
    assert.deepEqual(s.keys(), ['a']);
    s.close();
  }
  writeSafetensors(path.join(d, 'b.safetensors'), [['b', { dtype: 'i32', shape: [2], data: new Int32Array([4, 5]) }]]);
  const m = openSafetensors(d);
  assert.ok(m instanceof MergedSafetensors);
  assert.deepEqual(m.keys(), ['b', 'a']);
  assert.deepEqual([...m.read('b')], [4, 5]);
  assert.deepEqual([...m.read('a')], [1]);
  m.close();

  writeSafetensors(path.join(d, 'c.safetensors'), [['a', { dtype: 'f32', shape: [1], data: new Float32Array([9]) }]]);
  assert.throws(
    () => openSafetensors(d),
    (e: unknown) => {
      assert.ok(e instanceof SafetensorsError);
      assert.match(e.message, /tensor "a" is in both .*c\.safetensors and .*only\.safetensors/);
      return true;
    },
  );
  assertErr(() => openSafetensors(tmpDir('empty')), 'empty', /no \*\.safetensors files/);
  assertErr(() => openSafetensors(path.join(d, 'missing.safetensors')), 'missing.safetensors', /cannot open/);
});
