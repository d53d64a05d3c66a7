// Worker entry of the CPU pool (pool.ts): runs a range of a task, reports errors on its port,
// counts itself done in the shared state and wakes the waiting caller.

import { type MessagePort, workerData } from 'node:worker_threads';
import { type Task, runTask } from './tasks.js';

const { state, index, port } = workerData as { state: Int32Array; index: number; port: MessagePort };

port.on('message', (msg: { task: Task; u0: number; u1: number }) => {
  try {
    runTask(msg.task, msg.u0, msg.u1);
  } catch (e) {
    port.postMessage({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
  Atomics.add(state, 0, 1);
  Atomics.notify(state, 0);
});

Atomics.store(state, 1 + index, 1);
Atomics.notify(state, 1 + index);
