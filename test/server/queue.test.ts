// The in-process queue: slots, bounded backlog, cancellation through the AbortSignal, shutdown.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type DropReason, PredictionQueue, QueueRefusal } from '../../src/server/service/queue.js';

/** A job that runs until released or aborted, recording what happened to it. */
function job(id: string, log: string[]) {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  return {
    release,
    job: {
      id,
      run: async (signal: AbortSignal) => {
        log.push(`start ${id}`);
        await new Promise<void>((resolve) => {
          void gate.then(resolve);
          signal.addEventListener('abort', () => resolve(), { once: true });
        });
        log.push(`${signal.aborted ? 'aborted' : 'done'} ${id}`);
      },
      drop: (reason: DropReason) => log.push(`drop ${id} ${reason}`),
    },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('PredictionQueue', () => {
  it('runs `concurrency` jobs at once, queues up to maxQueue, refuses beyond', async () => {
    const log: string[] = [];
    const q = new PredictionQueue({ concurrency: 2, maxQueue: 1 });
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((id) => job(id, log));
    q.enqueue(a!.job); // waits: the queue is not open yet (setup running)
    assert.throws(
      () => q.enqueue(b!.job),
      (e: unknown) => e instanceof QueueRefusal && e.reason === 'backlog-full',
    );
    assert.throws(
      () => q.runNow(b!.job),
      (e: unknown) => e instanceof QueueRefusal && e.reason === 'at-capacity',
    );
    q.start();
    q.enqueue(b!.job);
    q.enqueue(c!.job); // both slots busy: waits
    await tick();
    assert.deepEqual(log, ['start a', 'start b']);
    assert.equal(q.full, true);
    assert.throws(
      () => q.enqueue(d!.job),
      (e: unknown) => e instanceof QueueRefusal && e.reason === 'backlog-full',
    );
    a!.release();
    await tick();
    assert.deepEqual(log, ['start a', 'start b', 'done a', 'start c']);
    b!.release();
    c!.release();
    await tick();
    assert.equal(q.runningCount, 0);
    q.runNow(d!.job);
    d!.release();
    await tick();
    assert.equal(log.at(-1), 'done d');
  });

  it('cancel: a waiting job is dropped, a running one sees its signal abort', async () => {
    const log: string[] = [];
    const q = new PredictionQueue({ concurrency: 1, maxQueue: 5 });
    q.start();
    const [a, b] = ['a', 'b'].map((id) => job(id, log));
    q.enqueue(a!.job);
    q.enqueue(b!.job);
    await tick();
    assert.equal(q.cancel('b'), 'waiting');
    assert.equal(q.cancel('a'), 'running');
    assert.equal(q.cancel('zzz'), false);
    await tick();
    assert.deepEqual(log, ['start a', 'drop b canceled', 'aborted a']);
    assert.equal(q.runningCount, 0);
  });

  it('shutdown drops the backlog, aborts running jobs after the grace period and waits for them', async () => {
    const log: string[] = [];
    const q = new PredictionQueue({ concurrency: 1, maxQueue: 5 });
    q.start();
    const [a, b] = ['a', 'b'].map((id) => job(id, log));
    q.enqueue(a!.job);
    q.enqueue(b!.job);
    await tick();
    await q.shutdown(20);
    assert.deepEqual(log, ['start a', 'drop b shutdown', 'aborted a']);
    assert.throws(
      () => q.enqueue(job('c', log).job),
      (e: unknown) => e instanceof QueueRefusal && e.reason === 'closed',
    );
  });
});
