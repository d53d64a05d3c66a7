// Checkpoints in several files: Hugging Face shards named by a `*.safetensors.index.json`, or a
// directory of files merged; and `openSafetensors`, which picks the right reader for a path.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RawArray } from '../../tensor/dtype.js';
import type { TensorInfo, TensorSource } from '../source.js';
import { SafetensorsError, describe, isPlainObject } from './errors.js';
import { type OpenOptions, SafetensorsFile } from './reader.js';

/**
 * Several open safetensors files read as one TensorSource: each tensor name belongs to exactly one
 * file (a name in two files is an error naming both), keys in file order.
 */
abstract class MultiFileSafetensors implements TensorSource {
  private readonly where = new Map<string, SafetensorsFile>();
  private readonly order: string[] = [];

  constructor(
    readonly label: string,
    readonly files: readonly SafetensorsFile[],
  ) {
    for (const f of files) {
      for (const k of f.keys()) {
        const prev = this.where.get(k);
        if (prev) throw new SafetensorsError(label, `tensor "${k}" is in both ${prev.label} and ${f.label}`);
        this.where.set(k, f);
        this.order.push(k);
      }
    }
  }

  keys(): string[] {
    return [...this.order];
  }

  info(name: string): TensorInfo | undefined {
    return this.where.get(name)?.info(name);
  }

  read(name: string): RawArray {
    return this.fileOf(name).read(name);
  }

  /** The file holding a tensor (for byteRange/readBytes/storedDtype). */
  fileOf(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new SafetensorsError(this.label, `no tensor named "${name}"`);
    return f;
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

export class ShardedSafetensors extends MultiFileSafetensors {
  private constructor(
    label: string,
    /** The index's "metadata" object as written (`total_size` is a number in Hugging Face indexes). */
    readonly metadata: Record<string, unknown>,
    /** Shard file name (as written in weight_map) -> open file, in file-name order. */
    readonly shards: ReadonlyMap<string, SafetensorsFile>,
  ) {
    // The index check in open() already guarantees each tensor is in exactly one shard.
    super(label, [...shards.values()]);
  }

  /**
   * Reads the index and opens (and validates) every shard it names. Every weight_map key must be
   * in its shard, and every tensor of a shard must be listed in weight_map for that shard.
   */
  static open(indexPath: string, opts: OpenOptions = {}): ShardedSafetensors {
    let text: string;
    try {
      text = fs.readFileSync(indexPath, 'utf8');
    } catch (e) {
      throw new SafetensorsError(indexPath, `cannot read index: ${(e as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new SafetensorsError(indexPath, `index is not valid JSON (${(e as Error).message})`);
    }
    if (!isPlainObject(json)) throw new SafetensorsError(indexPath, `index is JSON ${describe(json)}, not an object`);
    const meta = json['metadata'] ?? {};
    if (!isPlainObject(meta)) throw new SafetensorsError(indexPath, `index "metadata" is ${describe(meta)}, not an object`);
    const map = json['weight_map'];
    if (!isPlainObject(map)) throw new SafetensorsError(indexPath, `index "weight_map" is ${describe(map)}, not an object`);

    const dir = path.dirname(indexPath);
    const byShard = new Map<string, string[]>();
    for (const [key, shard] of Object.entries(map)) {
      if (typeof shard !== 'string' || shard === '') {
        throw new SafetensorsError(indexPath, `weight_map entry "${key}" is ${JSON.stringify(shard)}, not a file name`);
      }
      let list = byShard.get(shard);
      if (!list) byShard.set(shard, (list = []));
      list.push(key);
    }

    const shards = new Map<string, SafetensorsFile>();
    try {
      for (const shard of [...byShard.keys()].sort()) {
        const keys = byShard.get(shard)!;
        const p = path.resolve(dir, shard);
        const rel = path.relative(path.resolve(dir), p);
        if (path.isAbsolute(shard) || rel.startsWith('..') || path.isAbsolute(rel)) {
          throw new SafetensorsError(indexPath, `shard "${shard}" is outside the index's directory`);
        }
        if (!fs.existsSync(p)) {
          throw new SafetensorsError(indexPath, `shard "${shard}" (holding "${keys[0]}" and ${keys.length - 1} more tensors) does not exist at ${p}`);
        }
        const f = SafetensorsFile.open(p, opts);
        shards.set(shard, f);
        for (const k of keys) {
          if (!f.has(k)) {
            throw new SafetensorsError(indexPath, `weight_map puts "${k}" in shard "${shard}" but that shard has no such tensor`);
          }
        }
        for (const k of f.keys()) {
          const mapped = Object.hasOwn(map, k) ? map[k] : undefined;
          if (mapped === undefined) {
            throw new SafetensorsError(indexPath, `shard "${shard}" holds tensor "${k}" that weight_map does not list`);
          }
          if (mapped !== shard) {
            throw new SafetensorsError(indexPath, `shard "${shard}" holds tensor "${k}" but weight_map assigns it to shard ${JSON.stringify(mapped)}`);
          }
        }
      }
    } catch (e) {
      for (const f of shards.values()) f.close();
      throw e;
    }
    return new ShardedSafetensors(indexPath, meta, shards);
  }
}

/** Several safetensors files read as one (a directory without an index); keys must be unique. */
export class MergedSafetensors extends MultiFileSafetensors {}

/**
 * Opens a checkpoint given as a `.safetensors` file, a `*.safetensors.index.json`, or a directory
 * (its single `*.safetensors.index.json`, else its `*.safetensors` files, merged when several).
 */
export function openSafetensors(p: string, opts: OpenOptions = {}): TensorSource & { close(): void } {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e) {
    throw new SafetensorsError(p, `cannot open: ${(e as Error).message}`);
  }
  if (!st.isDirectory()) {
    return p.endsWith('.json') ? ShardedSafetensors.open(p, opts) : SafetensorsFile.open(p, opts);
  }
  const names = fs
    .readdirSync(p)
    .filter((n) => !n.startsWith('.'))
    .sort();
  const indexes = names.filter((n) => n.endsWith('.safetensors.index.json'));
  if (indexes.length > 1) {
    throw new SafetensorsError(p, `directory has several indexes (${indexes.join(', ')}); name the one to use`);
  }
  if (indexes.length === 1) return ShardedSafetensors.open(path.join(p, indexes[0]!), opts);
  const files = names.filter((n) => n.endsWith('.safetensors'));
  if (files.length === 0) throw new SafetensorsError(p, 'directory has no *.safetensors files and no *.safetensors.index.json');
  if (files.length === 1) return SafetensorsFile.open(path.join(p, files[0]!), opts);
  const opened: SafetensorsFile[] = [];
  try {
    for (const n of files) opened.push(SafetensorsFile.open(path.join(p, n), opts));
    return new MergedSafetensors(p, opened);
  } catch (e) {
    for (const f of opened) f.close();
    throw e;
  }
}
