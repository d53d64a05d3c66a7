// A prediction's events in memory (the in-process service's): what happened so far (history) and
// who is listening now (subscribers). A subscriber first gets the history (from just after an
// event id), then live events; the log closes after `done`. The events themselves: events.ts.

import type { StreamEvent, StreamEventName } from '../events.js';

export type Subscriber = (e: StreamEvent) => void;

export class EventLog {
  private readonly history: StreamEvent[] = [];
  private readonly subscribers = new Set<Subscriber>();
  private closedFlag = false;

  /** History kept for late subscribers (the oldest `log`/`progress` events go first beyond it). */
  constructor(private readonly maxHistory = 4096) {}

  get closed(): boolean {
    return this.closedFlag;
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  get events(): readonly StreamEvent[] {
    return this.history;
  }

  emit(event: StreamEventName, data: string): void {
    if (this.closedFlag) return;
    const e: StreamEvent = { id: this.nextId++, event, data };
    this.history.push(e);
    if (this.history.length > this.maxHistory) {
      const i = this.history.findIndex((x) => x.event === 'log' || x.event === 'progress');
      if (i >= 0) this.history.splice(i, 1);
    }
    for (const s of [...this.subscribers]) s(e);
    if (event === 'done') {
      this.closedFlag = true;
      this.subscribers.clear();
    }
  }

  private nextId = 1;

  /**
   * Replays the history after `afterId` to `fn`, then (unless closed) delivers live events until
   * the returned function is called or `done` has been delivered.
   */
  subscribe(fn: Subscriber, afterId = 0): () => void {
    for (const e of this.history) if (e.id > afterId) fn(e);
    if (this.closedFlag) return () => {};
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
    };
  }
}
