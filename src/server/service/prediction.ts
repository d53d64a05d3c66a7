// A prediction as the in-process service tracks it: its inputs, its mutable status, its event log
// and webhook sender. Routes never see this object; they get snapshot() copies (PredictionState).

import type { InputValidationError } from '../../predictor/errors.js';
import { newId } from '../files.js';
import type { ModelEntry, ServedPredictor } from '../models.js';
import type { WebhookEvent, WebhookSender } from '../webhooks.js';
import { EventLog } from './event-log.js';
import { type ApiName, type PredictionState, type PredictionStatus, isTerminal } from './types.js';

export type OutputMode = { readonly kind: 'data-uri' } | { readonly kind: 'url'; readonly baseUrl: string };

export interface PredictionSpec {
  readonly id: string;
  readonly api: ApiName;
  readonly predictor: ServedPredictor;
  readonly model?: ModelEntry | undefined;
  /** Echoed as `input` (Cog: the validated input; Replicate: as submitted). */
  readonly input: Record<string, unknown>;
  /** What predictor.predict() receives (defaults merged, file inputs resolved to data URIs). */
  readonly predictInput: Record<string, unknown>;
  readonly outputMode: OutputMode;
  readonly createdAt?: Date | undefined;
  readonly webhook?: string | undefined;
  readonly webhookEvents?: readonly WebhookEvent[] | undefined;
}

let nextSeq = 0;

export class Prediction {
  /** Creation order, for listing and cursors. */
  readonly seq = ++nextSeq;
  readonly id: string;
  readonly createdAt: Date;
  status: PredictionStatus = 'starting';
  output: string[] | null = null;
  readonly logLines: string[] = [];
  error: string | null = null;
  /** Set when predict() itself rejected the input (Cog's sync route answers 422 with it). */
  validationError: InputValidationError | undefined;
  startedAt: Date | undefined;
  completedAt: Date | undefined;
  predictTime: number | undefined;
  webhook: WebhookSender | undefined;
  /** The JSON object this prediction is shown as in webhooks (Cog's or Replicate's). */
  view: () => Record<string, unknown> = () => ({});
  /** Ids of output files in the service's FileStore (URL outputs). */
  readonly outputFileIds: string[] = [];
  /** Progress, logs and outputs (history for late subscribers). */
  readonly events = new EventLog();
  readonly streamKey = newId();
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(readonly spec: PredictionSpec) {
    this.id = spec.id;
    this.createdAt = spec.createdAt ?? new Date();
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get api(): ApiName {
    return this.spec.api;
  }

  get terminal(): boolean {
    return isTerminal(this.status);
  }

  /** Moves to a terminal status once; later calls are ignored (a cancel wins over a late result). */
  finish(status: 'succeeded' | 'failed' | 'canceled', error: string | null = null, now = new Date()): boolean {
    if (this.terminal) return false;
    this.status = status;
    this.error = status === 'failed' ? (error ?? 'Prediction failed') : null;
    this.completedAt = now;
    if (this.predictTime === undefined && this.startedAt) this.predictTime = (now.getTime() - this.startedAt.getTime()) / 1000;
    this.resolveDone();
    return true;
  }

  snapshot(): PredictionState {
    const m = this.spec.model;
    return {
      id: this.id,
      api: this.spec.api,
      model: m ? { owner: m.owner, name: m.name, versionId: m.versionId } : undefined,
      input: this.spec.input,
      output: this.output ? [...this.output] : null,
      logs: this.logLines.length === 0 ? '' : `${this.logLines.join('\n')}\n`,
      error: this.error,
      status: this.status,
      createdAt: this.createdAt,
      startedAt: this.startedAt,
      completedAt: this.completedAt,
      predictTime: this.predictTime,
      webhook: this.spec.webhook,
      webhookEventsFilter: this.spec.webhookEvents,
      streamKey: this.streamKey,
      inputErrors: this.validationError?.detail,
    };
  }
}
