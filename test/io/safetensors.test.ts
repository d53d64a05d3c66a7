// Reading and writing one safetensors file (src/io/safetensors/reader.ts, writer.ts): round trips of
// every dtype, metadata, the padded header, widened integers, lazy positioned reads, large offsets,
// writing from a TensorSource and failed writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { MapSource } from '../../src/io/source.js';
import { type DType, type RawArray, bytesOf, dtypeSize } from '../../src/tensor/dtype.js';
import { assertErr, fill, numel, rawFile, tmpDir, tmpPath } from './safetensors-helpers.js';

const ALL: DType[] = ['f32', 'bf16', 'f16', 'f8e4m3', 'i32'];

test('round trip of every dtype, odd shapes, scalars and empty tensors', () => {
  const shapes: number[][] = [[3, 5, 7], [], [0], [2, 0, 3], [1], [13], [1, 1, 1, 9]];
  const tensors: [string, { dtype: DType; shape: number[]; data: RawArray }][] = [];
  let seed = 1;
  for (const dtype of ALL) {
    for (const shape of shapes) {
      tensors.push([`${dtype}.${shape.join('x') || 'scalar'}`, { dtype, shape, data: fill(dtype, shape, seed++) }]);
    }
  }
  // names JS objects would reorder, and odd characters
  tensors.push(['10', { dtype: 'f32', shape: [2], data: new Float32Array([1, 2]) }]);
  tensors.push(['2', { dtype: 'bf16', shape: [3], data: new Uint16Array([0x3f80, 0x7fc0, 0xff80]) }]);
  tensors.push(['ünï "q" \\ /', { dtype: 'f8e4m3', shape: [3], data: new Uint8Array([0x7f, 0x00, 0x80]) }]);
  const p = tmpPath('all.safetensors');
  writeSafetensors(p, tensors);

  const f = SafetensorsFile.open(p);
  try {
    assert.equal(f.label, p);
    assert.deepEqual(
      f.keys(),
      tensors.map(([k]) => k),
    );
    assert.deepEqual(f.metadata, {});
    let prevEnd = f.dataStart;
    for (const [name, t] of tensors) {
      const info = f.info(name)!;
      assert.equal(info.dtype, t.dtype, name);
      assert.deepEqual(info.shape, t.shape, name);
      const got = f.read(name);
      assert.equal(got.constructor, t.data.constructor, name);
      assert.equal(got.length, t.data.length, name);
      assert.deepEqual(Buffer.from(bytesOf(got)), Buffer.from(bytesOf(t.data)), name);
      assert.deepEqual(Buffer.from(f.readBytes(name)), Buffer.from(bytesOf(t.data)), name);
      const r = f.byteRange(name);
      assert.equal(r.start, prevEnd, `${name} follows the previous tensor`);
      assert.equal(r.end - r.start, numel(t.shape) * dtypeSize(t.dtype));
      prevEnd = r.end;
    }
    assert.equal(prevEnd, fs.statSync(p).size);
    assert.equal(f.info('nope'), undefined);
    assertErr(() => f.read('nope'), p, /no tensor named "nope"/);
  } finally {
    f.close();
  }
  assertErr(() => f.read('10'), p, /closed/);
});

test('metadata round trip', () => {
  const p = tmpPath('meta.safetensors');
  const metadata = { format: 'pt', 'modelspec.title': 'tiny ✓', empty: '', __proto__x: 'y' };
  writeSafetensors(p, [['a', { dtype: 'f32', shape: [2], data: new Float32Array([1.5, -2]) }]], metadata);
  const f = SafetensorsFile.open(p);
  assert.deepEqual(f.metadata, metadata);
  assert.deepEqual([...(f.read('a') as Float32Array)], [1.5, -2]);
  f.close();
});

test('header is compact JSON padded with spaces to a multiple of 8; data 8-aligned', () => {
  for (let extra = 0; extra < 10; extra++) {
    const p = tmpPath('pad.safetensors');
    const name = 'x'.repeat(extra + 1);
    writeSafetensors(p, [[name, { dtype: 'f16', shape: [1], data: new Uint16Array([0x3c00]) }]], { format: 'pt' });
    const buf = fs.readFileSync(p);
    const n = Number(buf.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    const text = buf.subarray(8, 8 + n).toString('utf8');
    const json = `{"__metadata__":{"format":"pt"},"${name}":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}`;
    assert.equal(text, json + ' '.repeat(n - json.length));
    assert.ok(n - json.length < 8);
    assert.deepEqual([...buf.subarray(8 + n)], [0x00, 0x3c]);
    const f = SafetensorsFile.open(p);
    assert.equal(f.dataStart % 8, 0);
    assert.equal(f.headerBytes, n);
    f.close();
  }
});

test('U8/I8/U16/I16/BOOL tensors are read widened to i32', () => {
  const p = rawFile(
    'ints.safetensors',
    {
      u8: { dtype: 'U8', shape: [3], data_offsets: [0, 3] },
      i8: { dtype: 'I8', shape: [3], data_offsets: [3, 6] },
      b: { dtype: 'BOOL', shape: [2], data_offsets: [6, 8] },
      u16: { dtype: 'U16', shape: [2], data_offsets: [8, 12] },
      i16: { dtype: 'I16', shape: [1, 2], data_offsets: [12, 16] },
    },
    new Uint8Array([0, 128, 255, 0x80, 0xff, 0x7f, 1, 0, 0xff, 0xff, 0x34, 0x12, 0x00, 0x80, 0xff, 0x7f]),
  );
  const f = SafetensorsFile.open(p);
  const r = (k: string) => {
    const a = f.read(k);
    assert.ok(a instanceof Int32Array);
    assert.equal(f.info(k)!.dtype, 'i32');
    return [...a];
  };
  assert.deepEqual(r('u8'), [0, 128, 255]);
  assert.deepEqual(r('i8'), [-128, -1, 127]);
  assert.deepEqual(r('b'), [1, 0]);
  assert.deepEqual(r('u16'), [65535, 0x1234]);
  assert.deepEqual(r('i16'), [-32768, 32767]);
  assert.equal(f.storedDtype('u8'), 'U8');
  assert.equal(f.storedDtype('i16'), 'I16');
  assert.deepEqual([...f.readBytes('u8')], [0, 128, 255]);
  f.close();
});

test("read() takes exactly one tensor's range, lazily, from a file with many tensors", () => {
  const src = new MapSource('many');
  for (let i = 0; i < 200; i++)
    src.set(
      `t${i}`,
      'f32',
      [i % 7, 3],
      Float32Array.from({ length: (i % 7) * 3 }, (_, j) => i * 1000 + j),
    );
  const p = tmpPath('many.safetensors');
  writeSafetensors(p, src);
  const f = SafetensorsFile.open(p);
  const got = f.read('t123') as Float32Array;
  assert.deepEqual(
    [...got],
    Array.from({ length: (123 % 7) * 3 }, (_, j) => 123000 + j),
  );
  const r = f.byteRange('t123');
  const whole = fs.readFileSync(p);
  assert.deepEqual(Buffer.from(bytesOf(got)), whole.subarray(r.start, r.end));

  // Bytes are read at read() time, not at open: change a tensor on disk and see the change...
  const fd = fs.openSync(p, 'r+');
  fs.writeSync(fd, Buffer.from(new Float32Array([-7]).buffer), 0, 4, r.start);
  assert.equal((f.read('t123') as Float32Array)[0], -7);
  // ...and cut the file off after t123: it (and earlier tensors) still read, later ones fail cleanly.
  fs.ftruncateSync(fd, r.end);
  fs.closeSync(fd);
  assert.equal((f.read('t123') as Float32Array)[1], 123001);
  assert.equal((f.read('t1') as Float32Array)[0], 1000);
  assertErr(() => f.read('t199'), p, /unexpected end of file reading tensor "t199"/);
  f.close();
});

test('tensors beyond 4 GB into a (sparse) file are read at the right offset', () => {
  const big = 1_200_000_000; // f32 elements: 4.8 GB, never read
  const header = {
    big: { dtype: 'F32', shape: [big], data_offsets: [0, big * 4] },
    tail: { dtype: 'F32', shape: [3], data_offsets: [big * 4, big * 4 + 12] },
  };
  const p = rawFile('sparse.safetensors', header, 0);
  const hdr = Number(fs.readFileSync(p).readBigUInt64LE(0));
  const fd = fs.openSync(p, 'r+');
  fs.ftruncateSync(fd, 8 + hdr + big * 4 + 12);
  fs.writeSync(fd, Buffer.from(new Float32Array([1, 2, 3]).buffer), 0, 12, 8 + hdr + big * 4);
  fs.closeSync(fd);
  const f = SafetensorsFile.open(p);
  assert.deepEqual([...(f.read('tail') as Float32Array)], [1, 2, 3]);
  assert.deepEqual(f.byteRange('tail'), { start: 8 + hdr + big * 4, end: 8 + hdr + big * 4 + 12 });
  f.close();
});

test('writing from a TensorSource copies it tensor by tensor, in keys() order', () => {
  const a = new MapSource('mem').set('z', 'bf16', [2, 2], new Uint16Array([1, 2, 3, 4])).set('a', 'i32', [], new Int32Array([-5]));
  const p1 = tmpPath('src1.safetensors');
  writeSafetensors(p1, a, { k: 'v' });
  const f1 = SafetensorsFile.open(p1);
  const p2 = tmpPath('src2.safetensors');
  writeSafetensors(p2, f1, f1.metadata);
  f1.close();
  assert.deepEqual(fs.readFileSync(p2), fs.readFileSync(p1));
  const f2 = SafetensorsFile.open(p2);
  assert.deepEqual(f2.keys(), ['z', 'a']);
  assert.deepEqual([...f2.read('a')], [-5]);
  f2.close();
});

test('a failed write leaves the previous file and no temporary files', () => {
  const d = tmpDir('atomic');
  const p = path.join(d, 'm.safetensors');
  writeSafetensors(p, [['a', { dtype: 'f32', shape: [1], data: new Float32Array([1]) }]]);
  const before = fs.readFileSync(p);
  const bad = new MapSource('bad').set('ok', 'f32', [1], new Float32Array([2]));
  const failing = {
    label: 'failing',
    keys: () => ['ok', 'boom'],
    info: (k: string) => (k === 'boom' ? { dtype: 'f32' as DType, shape: [2] } : bad.info(k)),
    read: (k: string) => {
      if (k === 'boom') throw new Error('disk on fire');
      return bad.read(k);
    },
  };
  assertErr(() => writeSafetensors(p, failing), p, /disk on fire/);
  assertErr(
    () => writeSafetensors(p, [['x', { dtype: 'bf16', shape: [1], data: new Float32Array([1]) }]]),
    p,
    /"x": dtype bf16 needs a Uint16Array .*got Float32Array/,
  );
  assertErr(
    () => writeSafetensors(p, [['x', { dtype: 'f32', shape: [3], data: new Float32Array([1]) }]]),
    p,
    /"x": shape \[3\] f32 needs 12 bytes, the data has 4/,
  );
  assertErr(() => writeSafetensors(p, [['x', { dtype: 'f32', shape: [1.5], data: new Float32Array([1]) }]]), p, /non-negative integers/);
  assert.deepEqual(fs.readFileSync(p), before);
  assert.deepEqual(fs.readdirSync(d), ['m.safetensors']);
});
