// Writing a checkpoint as Hugging Face style shards plus their `*.safetensors.index.json`.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { dtypeSize } from '../../tensor/dtype.js';
import type { TensorSource } from '../source.js';
import { SafetensorsError } from './errors.js';
import { writeAll, writeAtomically } from './file-io.js';
import { checkMetadata, writeSafetensors } from './writer.js';

function pad5(n: number): string {
  return String(n).padStart(5, '0');
}

/**
 * Writes `source` as Hugging Face style shards: `<baseName>-00001-of-0000N.safetensors`, ... and
 * `<baseName>.safetensors.index.json` ({"metadata": {"total_size": bytes, ...metadata},
 * "weight_map": {tensor: shard file}}). Tensors keep the source's key order; a shard is closed when
 * the next tensor would take it past `maxShardBytes` (a larger tensor gets a shard of its own).
 * Each file is written atomically and the index last. Returns the shard paths, then the index path.
 */
export function writeShardedSafetensors(
  dir: string,
  baseName: string,
  source: TensorSource,
  maxShardBytes: number,
  metadata?: Record<string, string>,
): string[] {
  const indexPath = path.join(dir, `${baseName}.safetensors.index.json`);
  if (!(maxShardBytes > 0)) throw new SafetensorsError(indexPath, `maxShardBytes must be positive, got ${maxShardBytes}`);
  checkMetadata(indexPath, metadata);
  fs.mkdirSync(dir, { recursive: true });

  const groups: string[][] = [];
  let cur: string[] = [];
  let curBytes = 0;
  let total = 0;
  for (const name of source.keys()) {
    const info = source.info(name);
    if (!info) throw new SafetensorsError(indexPath, `cannot write "${name}": ${source.label} lists it but has no info for it`);
    let n = 1;
    for (const d of info.shape) n *= d;
    const bytes = n * dtypeSize(info.dtype);
    if (cur.length > 0 && curBytes + bytes > maxShardBytes) {
      groups.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(name);
    curBytes += bytes;
    total += bytes;
  }
  if (cur.length > 0 || groups.length === 0) groups.push(cur);

  const written: string[] = [];
  const weightMap: [string, string][] = [];
  groups.forEach((keys, i) => {
    const shardName = `${baseName}-${pad5(i + 1)}-of-${pad5(groups.length)}.safetensors`;
    const shardPath = path.join(dir, shardName);
    const view: TensorSource = {
      label: source.label,
      keys: () => keys,
      info: (k) => source.info(k),
      read: (k) => source.read(k),
    };
    writeSafetensors(shardPath, view, metadata);
    written.push(shardPath);
    for (const k of keys) weightMap.push([k, shardName]);
  });

  const metaJson = [
    `"total_size": ${total}`,
    ...Object.entries(metadata ?? {})
      .filter(([k]) => k !== 'total_size')
      .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`),
  ];
  const mapJson = weightMap.map(([k, f]) => `    ${JSON.stringify(k)}: ${JSON.stringify(f)}`);
  const indexText = `{\n  "metadata": {\n    ${metaJson.join(',\n    ')}\n  },\n  "weight_map": {\n${mapJson.join(',\n')}\n  }\n}\n`;
  writeAtomically(indexPath, (fd) => writeAll(fd, new TextEncoder().encode(indexText)));
  written.push(indexPath);
  return written;
}
