import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
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
import { type DType, type RawArray, allocRaw, bytesOf, dtypeSize } from '../../src/tensor/dtype.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fluxserve-st-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
function tmpPath(name: string): string {
  return path.join(tmp, `${counter++}-${name}`);
}
function tmpDir(name: string): string {
  const d = tmpPath(name);
  fs.mkdirSync(d);
  return d;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Deterministic raw data covering all bit patterns of the element size. */
function fill(dtype: DType, shape: readonly number[], seed: number): RawArray {
  const a = allocRaw(dtype, numel(shape));
  const b = bytesOf(a);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < b.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return a;
}

/** A file built by hand: 8-byte header length (or an override), the header text, then data. */
function rawFile(name: string, header: unknown, data: Uint8Array | number = 0, lenOverride?: bigint): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const hb = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(hb.length));
  const body = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data);
  const p = tmpPath(name);
  fs.writeFileSync(p, Buffer.concat([len, hb, body]));
  return p;
}

function assertErr(fn: () => unknown, file: string, problem: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${String(e)}`);
    assert.ok(e.message.includes(path.basename(file)), `message "${e.message}" does not name ${file}`);
    assert.match(e.message, problem);
    return true;
  });
}

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
    assert.deepEqual(f.keys(), tensors.map(([k]) => k));
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

test('read() takes exactly one tensor\'s range, lazily, from a file with many tensors', () => {
  const src = new MapSource('many');
  for (let i = 0; i < 200; i++) src.set(`t${i}`, 'f32', [i % 7, 3], Float32Array.from({ length: (i % 7) * 3 }, (_, j) => i * 1000 + j));
  const p = tmpPath('many.safetensors');
  writeSafetensors(p, src);
  const f = SafetensorsFile.open(p);
  const got = f.read('t123') as Float32Array;
  assert.deepEqual([...got], Array.from({ length: (123 % 7) * 3 }, (_, j) => 123000 + j));
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
  const a = new MapSource('mem')
    .set('z', 'bf16', [2, 2], new Uint16Array([1, 2, 3, 4]))
    .set('a', 'i32', [], new Int32Array([-5]));
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
  assert.throws(() => openSafetensors(d), (e: unknown) => {
    assert.ok(e instanceof SafetensorsError);
    assert.match(e.message, /tensor "a" is in both .*c\.safetensors and .*only\.safetensors/);
    return true;
  });
  assertErr(() => openSafetensors(tmpDir('empty')), 'empty', /no \*\.safetensors files/);
  assertErr(() => openSafetensors(path.join(d, 'missing.safetensors')), 'missing.safetensors', /cannot open/);
});

// ---------------------------------------------------------------------------------------------
// Validation errors: each names the file and the problem.

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

// ---------------------------------------------------------------------------------------------
// The reference fixture (a copy of shared/fixtures/bfl-tiny-a, written by PyTorch + safetensors).

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
