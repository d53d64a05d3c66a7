// Every error the two APIs answer, declared once: one table from the error's kind to its HTTP
// status and body in the Cog API (FastAPI's `{detail: [{loc, msg, type}]}` for field errors, else
// `{error, status: "failed"}`, or `{}`; https://github.com/replicate/cog/blob/main/docs/http.md and
// cog's python/cog/server/http.py) and in Replicate's (application/problem+json `{title, detail,
// status}` with `invalid_fields` for input errors; https://replicate.com/docs/reference/http).
// The service and the routes throw ServiceError; each plugin installs errorHandler(style), which
// also renders fastify's own errors (schema validation, bad JSON, body too large) through the table.

import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { ValidationErrorItem } from '../predictor/errors.js';

export type ErrorKind =
  | 'invalid-request'
  | 'invalid-input'
  | 'input-fetch-failed'
  | 'file-not-found'
  | 'unknown-version'
  | 'setup-starting'
  | 'setup-failed'
  | 'at-capacity'
  | 'backlog-full'
  | 'shutting-down'
  | 'not-found'
  | 'unauthenticated'
  | 'unsupported-media-type'
  | 'payload-too-large'
  | 'bad-request'
  | 'internal';

/** One field of a request that was refused. */
export interface FieldProblem {
  /** Where, as Cog (FastAPI) says it: ['body', 'input', 'width'], ['body', 'webhook']. */
  readonly loc: readonly (string | number)[];
  readonly msg: string;
  /** Cog's error type (pydantic's names: value_error, missing, ...). */
  readonly type: string;
  /** Replicate's `invalid_fields` entry, where it differs from `type` and `loc` without 'body'. */
  readonly replicate?: { readonly type?: string; readonly field?: string };
}

export class ServiceError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message = '',
    readonly fields: readonly FieldProblem[] = [],
    /** Only for fastify's own 4xx errors that have no kind of their own (e.g. 406). */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ServiceError';
  }
}

interface ErrorSpec {
  /** Cog's status and body; a fixed `message` replaces the error's. */
  readonly cog: { readonly status: number; readonly body: 'fields' | 'error' | 'empty'; readonly message?: string };
  /** Replicate's status, problem title and (fixed) detail. */
  readonly replicate: { readonly status: number; readonly title: string; readonly detail?: string; readonly retryAfterS?: number };
}

const INVALID = 'Input validation failed';
const AT_CAPACITY = 'At capacity - all prediction slots busy';

export const ERRORS: Readonly<Record<ErrorKind, ErrorSpec>> = {
  'invalid-request': { cog: { status: 422, body: 'fields' }, replicate: { status: 422, title: INVALID } },
  'invalid-input': { cog: { status: 422, body: 'fields' }, replicate: { status: 422, title: INVALID } },
  'input-fetch-failed': { cog: { status: 422, body: 'fields' }, replicate: { status: 422, title: INVALID } },
  'file-not-found': { cog: { status: 422, body: 'fields' }, replicate: { status: 422, title: INVALID } },
  'unknown-version': {
    cog: { status: 422, body: 'error' },
    replicate: {
      status: 422,
      title: 'Invalid version or not permitted',
      detail: "The specified version does not exist (or perhaps you don't have permission to use it?)",
    },
  },
  // Cog refuses predictions while setup runs (coglet answers 503); /v1 predictions wait for it.
  'setup-starting': {
    cog: { status: 503, body: 'error', message: 'Setup has not finished yet. Wait until it has finished, or GET /health-check for status.' },
    replicate: { status: 503, title: 'Service Unavailable', detail: 'Model setup has not finished yet' },
  },
  'setup-failed': {
    cog: { status: 503, body: 'error', message: 'Setup failed; see GET /health-check for the logs.' },
    replicate: { status: 503, title: 'Model setup failed', detail: 'The model failed to load; predictions cannot run.' },
  },
  // Cog answers 409 instead of queueing when every slot is busy.
  'at-capacity': { cog: { status: 409, body: 'error', message: AT_CAPACITY }, replicate: { status: 503, title: 'Service Unavailable', detail: AT_CAPACITY } },
  'backlog-full': { cog: { status: 409, body: 'error', message: AT_CAPACITY }, replicate: { status: 503, title: 'Service Unavailable', retryAfterS: 1 } },
  'shutting-down': {
    cog: { status: 503, body: 'error', message: 'The server is shutting down' },
    replicate: { status: 503, title: 'Service Unavailable', detail: 'The server is shutting down' },
  },
  'not-found': { cog: { status: 404, body: 'empty' }, replicate: { status: 404, title: 'Not found' } },
  unauthenticated: { cog: { status: 401, body: 'error' }, replicate: { status: 401, title: 'Unauthenticated' } },
  'unsupported-media-type': { cog: { status: 415, body: 'error' }, replicate: { status: 415, title: 'Unsupported Media Type' } },
  'payload-too-large': { cog: { status: 413, body: 'error' }, replicate: { status: 413, title: 'Payload Too Large' } },
  'bad-request': { cog: { status: 400, body: 'error' }, replicate: { status: 400, title: 'Bad Request' } },
  internal: {
    cog: { status: 500, body: 'error', message: 'The server failed to handle this request' },
    replicate: { status: 500, title: 'Internal Server Error', detail: 'The server failed to handle this request' },
  },
};

/** Input the model's schema refused (src/predictor/validate.ts), every field listed. */
export function invalidInputError(detail: readonly ValidationErrorItem[]): ServiceError {
  return new ServiceError(
    'invalid-input',
    detail.map((d) => `- ${d.msg}`).join('\n'),
    detail.map((d) => ({ loc: d.loc, msg: d.msg, type: d.type })),
  );
}

/** Cog's 422 body for field errors. */
export function cogFieldErrors(fields: readonly FieldProblem[]): { detail: { loc: (string | number)[]; msg: string; type: string }[] } {
  return { detail: fields.map((f) => ({ loc: [...f.loc], msg: f.msg, type: f.type })) };
}

/** Replicate's `invalid_fields`. */
export function replicateInvalidFields(fields: readonly FieldProblem[]): { type: string; field: string; description: string }[] {
  return fields.map((f) => ({ type: f.replicate?.type ?? f.type, field: f.replicate?.field ?? f.loc.slice(1).join('.'), description: f.msg }));
}

interface SchemaError {
  readonly keyword: string;
  readonly instancePath: string;
  readonly message?: string | undefined;
  readonly params: Record<string, unknown>;
}

/** A fastify (ajv) schema error as a field problem that names the field. */
function schemaProblem(part: string, e: SchemaError): FieldProblem {
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));
  const at = path.join('.');
  const loc = [part, ...path];
  if (e.keyword === 'required') {
    const missing = String(e.params['missingProperty']);
    return { loc: [...loc, missing], msg: `${missing} is required`, type: 'missing', replicate: { type: 'required', field: at } };
  }
  if (e.keyword === 'additionalProperties') {
    const extra = String(e.params['additionalProperty']);
    return {
      loc: [...loc, extra],
      msg: `Additional property ${extra} is not allowed`,
      type: 'extra_forbidden',
      replicate: { type: 'additional_property_not_allowed', field: at },
    };
  }
  const allowed = Array.isArray(e.params['allowedValues']) ? `: ${(e.params['allowedValues'] as unknown[]).join(', ')}` : '';
  return {
    loc,
    msg: `${at || part} ${e.message ?? 'is invalid'}${allowed}`,
    type: e.keyword === 'type' ? 'type_error' : 'value_error',
    replicate: { type: e.keyword === 'type' ? 'invalid_type' : 'invalid', field: at },
  };
}

const KIND_BY_STATUS: Readonly<Record<number, ErrorKind>> = { 404: 'not-found', 413: 'payload-too-large', 415: 'unsupported-media-type' };

/** Any error as a ServiceError: fastify's schema errors name the field, its 4xx errors keep their message. */
export function asServiceError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  const e = err as Partial<FastifyError> & { validation?: readonly SchemaError[]; validationContext?: string };
  if (Array.isArray(e.validation)) {
    const part = e.validationContext === 'querystring' ? 'query' : (e.validationContext ?? 'body');
    const fields = e.validation.map((v) => schemaProblem(part, v));
    const message = fields.map((f) => f.msg).join('; ');
    return part === 'body' ? new ServiceError('invalid-request', message, fields) : new ServiceError('bad-request', message, fields);
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    const kind = KIND_BY_STATUS[status] ?? 'bad-request';
    return new ServiceError(kind, e.message ?? '', [], kind === 'bad-request' ? status : undefined);
  }
  return new ServiceError('internal');
}

/** Whose error layout: Cog's, Replicate's problem+json, or `{detail}` (output file URLs). */
export type ErrorStyle = 'cog' | 'replicate' | 'delivery';

/** Sends `err` in `style`'s layout with its status from the table. */
export function sendError(reply: FastifyReply, style: ErrorStyle, err: unknown): FastifyReply {
  const e = asServiceError(err);
  const spec = ERRORS[e.kind];
  if (style === 'cog') {
    const status = e.status ?? spec.cog.status;
    if (spec.cog.body === 'fields') return reply.code(status).send(cogFieldErrors(e.fields));
    if (spec.cog.body === 'empty') return reply.code(status).send({});
    return reply.code(status).send({ error: spec.cog.message ?? e.message, status: 'failed' });
  }
  const r = spec.replicate;
  const status = e.status ?? r.status;
  const detail = r.detail ?? e.message;
  if (style === 'delivery') return reply.code(status).send({ detail: e.kind === 'not-found' ? 'Not found' : detail });
  if (r.retryAfterS !== undefined) reply.header('retry-after', String(r.retryAfterS));
  const body: Record<string, unknown> = { title: r.title, detail, status };
  if (e.fields.length > 0 && status === 422) body['invalid_fields'] = replicateInvalidFields(e.fields);
  return reply.code(status).type('application/problem+json').send(body);
}

/** The error handler of a plugin: the table above, in that plugin's layout; 5xx are logged. */
export function errorHandler(style: ErrorStyle) {
  return (err: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (asServiceError(err).kind === 'internal') req.log.error({ err }, 'request failed');
    return sendError(reply, style, err);
  };
}
