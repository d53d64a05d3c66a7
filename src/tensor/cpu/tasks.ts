// The work the pool can split: each task kind has a "run units [u0, u1)" function. Tasks hold
// only numbers and float32 arrays (the pool stages the arrays into shared memory).

import { type AttentionTask, attentionRows } from './attention-kernel.js';
import { type ConvTask, convRows } from './conv-kernel.js';
import { type GemmTask, gemmRange } from './gemm-task.js';
import { type GroupNormTask, groupNormRange } from './groupnorm-kernel.js';

export type Task = GemmTask | ConvTask | AttentionTask | GroupNormTask;

export function runTask(t: Task, u0: number, u1: number): void {
  u0 |= 0;
  u1 |= 0;
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
    case 'groupNorm':
      groupNormRange(t, u0, u1);
      return;
  }
}

/** The output array of each task kind; a task overwrites every element of it. */
export const TASK_OUTPUT: Record<Task['kind'], string> = { gemm: 'C', conv: 'out', attention: 'out', groupNorm: 'out' };
