// The work the pool can split: each task kind has a "run units [u0, u1)" function. Tasks hold
// only numbers and shared typed arrays, so they cross to workers without copies.

import { type AttentionTask, attentionRows } from './attention-kernel.js';
import { type ConvTask, convRows } from './conv-kernel.js';
import { type GemmTask, gemmRange } from './gemm-task.js';

export type Task = GemmTask | ConvTask | AttentionTask;

export function runTask(t: Task, u0: number, u1: number): void {
  switch (t.kind) {
    case 'gemm':
      gemmRange(t, u0, u1);
      return;
    case 'conv':
      convRows(t, u0, u1);
      return;
    case 'attention':
      attentionRows(t, u0, u1);
      return;
  }
}

/** Whether every array of the task lives in shared memory (else a worker would write a copy). */
export function taskIsShareable(t: Task): boolean {
  for (const v of Object.values(t)) {
    if (ArrayBuffer.isView(v) && !(v.buffer instanceof SharedArrayBuffer)) return false;
  }
  return true;
}
