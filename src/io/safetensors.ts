// Safetensors reading (validated up front, one tensor's byte range at a time), sharded checkpoints
// (`*.safetensors.index.json`), and atomic writing.
//
// File layout (https://github.com/huggingface/safetensors, README "Format"):
//   8 bytes   little-endian u64 N, the header length
//   N bytes   UTF-8 JSON object: { "__metadata__"?: {str: str}, name: {dtype, shape, data_offsets}, ... }
//   rest      the data section; data_offsets [begin, end) are relative to its start
//
// The whole header is checked when a file is opened (see docs/safetensors.md for the rules), so a
// truncated or inconsistent file fails at `open` with a message naming the file and the problem,
// never halfway through loading a model. Tensor bytes are read only when asked for, with
// positioned reads of exactly that tensor's range: nothing ever holds the whole file.
//
// This file is the public entry; the parts live in safetensors/: header (parsing and validation),
// reader (one file), sharded-reader (index + shards, merged directories, openSafetensors), writer,
// sharded-writer, file-io (chunked and atomic I/O), errors.

export { SafetensorsError } from './safetensors/errors.js';
export { DEFAULT_MAX_HEADER_BYTES } from './safetensors/header.js';
export { type OpenOptions, SafetensorsFile } from './safetensors/reader.js';
export { MergedSafetensors, ShardedSafetensors, openSafetensors } from './safetensors/sharded-reader.js';
export { type TensorToWrite, writeSafetensors } from './safetensors/writer.js';
export { writeShardedSafetensors } from './safetensors/sharded-writer.js';
