// Validation errors of the safetensors readers (src/io/safetensors/header.ts, reader.ts,
// sharded-reader.ts): each names the file and the problem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SafetensorsFile, ShardedSafetensors, openSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { assertErr, rawFile, tmpDir, tmpPath } from './safetensors-helpers.js';

const okEntry = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };

test('error: file shorter than 8 bytes', () => {
  const p = tmpPath('short.safetensors');
  fs.writeFileSync(p, Buffer.from([1, 2, 3]));
  assertErr(() => SafetensorsFile.open(p), p, /file of 3 bytes is shorter than the 8-byte header length/);
});

test('error: header larger than the file', () => {
  const p = rawFile('hdr-big.safetensors', { a: okEntry }, 8, 5000n);
  const size = fs.statSync(p).size;
  assertErr(() => SafetensorsFile.open(p), p, new RegExp(`header of 5000 bytes does not fit in a file of ${size} bytes`));
});

test('error: header larger than the cap', () => {
  const p = rawFile('hdr-cap.safetensors', { a: okEntry }, 8);
  assertErr(() => SafetensorsFile.open(p, { maxHeaderBytes: 16 }), p, /header length \d+ bytes exceeds the limit of 16 bytes/);
  const q = rawFile('hdr-huge.safetensors', { a: okEntry }, 8, 0xffff_ffff_ffff_fff0n);
  assertErr(() => SafetensorsFile.open(q), q, /header length 18446744073709551600 bytes exceeds the limit of 100000000 bytes/);
});

test('error: truncated file (tensor beyond the data section)', () => {
  const p = rawFile('trunc.safetensors', { a: okEntry, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, 20);
  assertErr(() => SafetensorsFile.open(p), p, /tensor "b" needs bytes \[8, 24\) of the data section but the file has only 20/);
});

test('error: overlapping tensors name both', () => {
  const p = rawFile(
    'overlap.safetensors',
    {
      a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      e: { dtype: 'F32', shape: [0], data_offsets: [4, 4] }, // empty: overlaps nothing
      b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] },
    },
    20,
  );
  assertErr(() => SafetensorsFile.open(p), p, /tensors "a" \[0, 16\) and "b" \[12, 20\) have overlapping data_offsets/);
});

test('error: dtype/shape byte-length mismatch', () => {
  const p = rawFile('mismatch.safetensors', { w: { dtype: 'BF16', shape: [3, 4], data_offsets: [0, 48] } }, 48);
  assertErr(() => SafetensorsFile.open(p), p, /tensor "w": dtype BF16 shape \[3, 4\] needs 24 bytes but data_offsets \[0, 48\) hold 48 bytes/);
});

test('error: unsupported dtypes are named with the tensor', () => {
  for (const dt of ['F64', 'I64', 'U32', 'F8_E5M2', 'Q4']) {
    const p = rawFile(`dtype-${dt}.safetensors`, { pos: { dtype: dt, shape: [1], data_offsets: [0, 8] } }, 8);
    assertErr(() => SafetensorsFile.open(p), p, new RegExp(`tensor "pos": unsupported dtype "${dt}" \\(supported: F32, BF16, F16, F8_E4M3, I32`));
  }
});

test('error: bad JSON, not UTF-8, not an object', () => {
  const p = rawFile('badjson.safetensors', '{"a": {"dtype": "F32",', 0);
  assertErr(() => SafetensorsFile.open(p), p, /header is not valid JSON/);
  const q = rawFile('arr.safetensors', '[1, 2]', 0);
  assertErr(() => SafetensorsFile.open(q), q, /header is JSON an array, not an object/);
  const r = tmpPath('utf8.safetensors');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(4n);
  fs.writeFileSync(r, Buffer.concat([len, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])]));
  assertErr(() => SafetensorsFile.open(r), r, /header of 4 bytes is not valid UTF-8/);
  const s = rawFile('meta.safetensors', { __metadata__: { a: 1 } }, 0);
  assertErr(() => SafetensorsFile.open(s), s, /__metadata__ value for "a" is number, not a string/);
  const t = rawFile('entry.safetensors', { a: 'F32' }, 0);
  assertErr(() => SafetensorsFile.open(t), t, /tensor "a": header entry is string, not an object/);
});

test('error: bad shapes and offsets', () => {
  const cases: [unknown, RegExp][] = [
    [{ dtype: 'F32', shape: [-1], data_offsets: [0, 0] }, /tensor "x": shape \[-1\] must hold non-negative integers/],
    [{ dtype: 'F32', shape: [1.5], data_offsets: [0, 0] }, /shape \[1\.5\] must hold non-negative integers/],
    [{ dtype: 'F32', shape: '2', data_offsets: [0, 8] }, /shape is string, not an array/],
    [{ dtype: 'F32', shape: [2], data_offsets: [8, 0] }, /tensor "x": data_offsets \[8, 0\] are out of order \(begin > end\)/],
    [{ dtype: 'F32', shape: [2], data_offsets: [-8, 0] }, /data_offsets \[-8, 0\] must be non-negative integers/],
    [{ dtype: 'F32', shape: [2], data_offsets: [0] }, /data_offsets must be an array \[begin, end\], got \[0\]/],
    [{ dtype: 'F32', shape: [2] }, /data_offsets must be an array \[begin, end\]/],
  ];
  for (const [entry, re] of cases) {
    const p = rawFile('bad-entry.safetensors', { x: entry }, 8);
    assertErr(() => SafetensorsFile.open(p), p, re);
  }
});

test('error: index problems (missing key, missing shard, unlisted tensor, wrong shard, bad JSON)', () => {
  const d = tmpDir('index');
  writeSafetensors(path.join(d, 'm-00001-of-00002.safetensors'), [
    ['a', { dtype: 'f32', shape: [1], data: new Float32Array([1]) }],
    ['b', { dtype: 'f32', shape: [1], data: new Float32Array([2]) }],
  ]);
  writeSafetensors(path.join(d, 'm-00002-of-00002.safetensors'), [['c', { dtype: 'f32', shape: [1], data: new Float32Array([3]) }]]);
  const idx = (name: string, map: Record<string, string>) => {
    const p = path.join(d, name);
    fs.writeFileSync(p, JSON.stringify({ metadata: { total_size: 12 }, weight_map: map }));
    return p;
  };
  const s1 = 'm-00001-of-00002.safetensors';
  const s2 = 'm-00002-of-00002.safetensors';
  const good = idx('good.safetensors.index.json', { a: s1, b: s1, c: s2 });
  const g = ShardedSafetensors.open(good);
  assert.deepEqual(g.keys(), ['a', 'b', 'c']);
  assert.equal(g.fileOf('c').label, path.join(d, s2));
  g.close();

  const p1 = idx('missing-key.json', { a: s1, b: s1, c: s2, zz: s2 });
  assertErr(() => ShardedSafetensors.open(p1), p1, /weight_map puts "zz" in shard "m-00002-of-00002.safetensors" but that shard has no such tensor/);
  const p2 = idx('missing-shard.json', { a: s1, b: s1, c: 'm-00003-of-00003.safetensors' });
  assertErr(() => ShardedSafetensors.open(p2), p2, /shard "m-00003-of-00003.safetensors" \(holding "c" and 0 more tensors\) does not exist/);
  const p3 = idx('unlisted.json', { a: s1, c: s2 });
  assertErr(() => ShardedSafetensors.open(p3), p3, /shard "m-00001-of-00002.safetensors" holds tensor "b" that weight_map does not list/);
  const p4 = idx('wrong.json', { a: s1, b: s2, c: s2 });
  assertErr(
    () => ShardedSafetensors.open(p4),
    p4,
    /shard "m-00001-of-00002.safetensors" holds tensor "b" but weight_map assigns it to shard "m-00002-of-00002.safetensors"/,
  );
  const p5 = path.join(d, 'bad.json');
  fs.writeFileSync(p5, '{"weight_map": ');
  assertErr(() => ShardedSafetensors.open(p5), p5, /index is not valid JSON/);
  const p6 = idx('escape.json', { a: '../x.safetensors' });
  assertErr(() => ShardedSafetensors.open(p6), p6, /outside the index's directory/);
  // several indexes in one directory
  idx('other.safetensors.index.json', { a: s1, b: s1, c: s2 });
  assertErr(() => openSafetensors(d), d, /several indexes/);
});
