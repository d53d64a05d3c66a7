// The tensor layer's public surface.
export * from './dtype.js';
export * from './tensor.js';
export * from './scope.js';
export * from './ops.js';
export type { Backend, Storage, Activation, OutSpec } from './backend.js';
