// The openapi.json a Cog container serves for a profile (api-compat.md A.5). Layout of the Python
// Cog server, which Replicate's published schemas come from: OpenAPI 3.0.2, info {title: "Cog"},
// components.schemas Input (properties in x-order, `required` list), Output, one enum component per
// choice input (named after the input, referenced from the property through allOf), then
// PredictionRequest, PredictionResponse, Status, WebhookEvent, HTTPValidationError, ValidationError;
// paths /, /health-check, POST /predictions, PUT /predictions/{prediction_id},
// POST /predictions/{prediction_id}/cancel, POST /shutdown. Input property keys are sorted, as the
// current Go generator emits them (encoding/json sorts map keys).

import type { FieldDef } from './fields.js';
import type { Profile } from './profiles.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface OpenApiOptions {
  /** info.version: the Python Cog server says "0.1.0"; the Go generator puts the cog version. */
  readonly version?: string;
}

const SCHEMAS = '#/components/schemas/';
const ref = (name: string): JsonObject => ({ $ref: SCHEMAS + name });

function sortKeys(o: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k]!;
  return out;
}

/** One Input property, as Cog emits it. */
export function inputProperty(f: FieldDef): JsonObject {
  const p: JsonObject = { 'x-order': f.order, description: f.description };
  if (f.enumSchema !== undefined) {
    // Choices: no inline type and no title, only a reference to the enum component.
    p['allOf'] = [ref(f.enumSchema)];
  } else {
    p['title'] = f.title;
    p['type'] = f.type === 'file' ? 'string' : f.type;
    if (f.type === 'file') p['format'] = 'uri';
  }
  if (f.default !== undefined) p['default'] = f.default;
  if (f.minimum !== undefined) p['minimum'] = f.minimum;
  if (f.maximum !== undefined) p['maximum'] = f.maximum;
  return sortKeys(p);
}

/** components.schemas.Input. Optional inputs without a default (seed, width, image...) are simply not required. */
export function inputSchema(profile: Profile<unknown>): JsonObject {
  const properties: JsonObject = {};
  for (const f of [...profile.fields].sort((a, b) => a.order - b.order)) properties[f.name] = inputProperty(f);
  const required = profile.fields.filter((f) => f.required).map((f) => f.name);
  return { title: 'Input', ...(required.length > 0 ? { required } : {}), type: 'object', properties };
}

/** The enum components, in field order: {"title": name, "description": "An enumeration.", "enum": [...], "type": "string"}. */
export function enumSchemas(profile: Profile<unknown>): JsonObject {
  const out: JsonObject = {};
  for (const f of profile.fields) {
    if (f.enumSchema === undefined || f.choices === undefined) continue;
    out[f.enumSchema] = { title: f.enumSchema, description: 'An enumeration.', enum: [...f.choices], type: 'string' };
  }
  return out;
}

const jsonResponse = (schema: JsonObject): JsonObject => ({ content: { 'application/json': { schema } } });
const OK = (schema: JsonObject): JsonObject => ({ description: 'Successful Response', ...jsonResponse(schema) });
const VALIDATION_ERROR: JsonObject = { description: 'Validation Error', ...jsonResponse(ref('HTTPValidationError')) };
const PREFER_HEADER: JsonObject = { in: 'header', name: 'prefer', required: false, schema: { title: 'Prefer', type: 'string' } };
const PREDICTION_ID: JsonObject = { in: 'path', name: 'prediction_id', required: true, schema: { title: 'Prediction ID', type: 'string' } };
const WEBHOOK_EVENTS = ['start', 'output', 'logs', 'completed'];

function paths(): JsonObject {
  return {
    '/': { get: { summary: 'Root', operationId: 'root__get', responses: { '200': OK({ title: 'Response Root  Get' }) } } },
    '/health-check': {
      get: {
        summary: 'Healthcheck',
        operationId: 'healthcheck_health_check_get',
        responses: { '200': OK({ title: 'Response Healthcheck Health Check Get' }) },
      },
    },
    '/predictions': {
      post: {
        summary: 'Predict',
        description: 'Run a single prediction on the model',
        operationId: 'predict_predictions_post',
        parameters: [PREFER_HEADER],
        requestBody: jsonResponse(ref('PredictionRequest')),
        responses: { '200': OK(ref('PredictionResponse')), '422': VALIDATION_ERROR },
      },
    },
    '/predictions/{prediction_id}': {
      put: {
        summary: 'Predict Idempotent',
        description: 'Run a single prediction on the model (idempotent creation).',
        operationId: 'predict_idempotent_predictions__prediction_id__put',
        parameters: [PREDICTION_ID, PREFER_HEADER],
        requestBody: { ...jsonResponse({ title: 'Prediction Request', allOf: [ref('PredictionRequest')] }), required: true },
        responses: { '200': OK(ref('PredictionResponse')), '422': VALIDATION_ERROR },
      },
    },
    '/predictions/{prediction_id}/cancel': {
      post: {
        summary: 'Cancel',
        description: 'Cancel a running prediction',
        operationId: 'cancel_predictions__prediction_id__cancel_post',
        parameters: [PREDICTION_ID],
        responses: { '200': OK({ title: 'Response Cancel Predictions  Prediction Id  Cancel Post' }), '422': VALIDATION_ERROR },
      },
    },
    '/shutdown': {
      post: {
        summary: 'Start Shutdown',
        operationId: 'start_shutdown_shutdown_post',
        responses: { '200': OK({ title: 'Response Start Shutdown Shutdown Post' }) },
      },
    },
  };
}

function fixedSchemas(): JsonObject {
  const dateTime = (title: string): JsonObject => ({ title, type: 'string', format: 'date-time' });
  return {
    PredictionRequest: {
      title: 'PredictionRequest',
      type: 'object',
      properties: {
        input: ref('Input'),
        id: { title: 'Id', type: 'string' },
        created_at: dateTime('Created At'),
        output_file_prefix: { title: 'Output File Prefix', type: 'string' },
        webhook: { title: 'Webhook', type: 'string', format: 'uri', minLength: 1, maxLength: 65536 },
        webhook_events_filter: { type: 'array', items: ref('WebhookEvent'), default: [...WEBHOOK_EVENTS] },
      },
    },
    PredictionResponse: {
      title: 'PredictionResponse',
      type: 'object',
      properties: {
        input: ref('Input'),
        output: ref('Output'),
        id: { title: 'Id', type: 'string' },
        version: { title: 'Version', type: 'string' },
        created_at: dateTime('Created At'),
        started_at: dateTime('Started At'),
        completed_at: dateTime('Completed At'),
        logs: { title: 'Logs', type: 'string', default: '' },
        error: { title: 'Error', type: 'string' },
        status: ref('Status'),
        metrics: { title: 'Metrics', type: 'object' },
      },
    },
    Status: {
      title: 'Status',
      description: 'An enumeration.',
      enum: ['starting', 'processing', 'succeeded', 'canceled', 'failed'],
      type: 'string',
    },
    WebhookEvent: { title: 'WebhookEvent', description: 'An enumeration.', enum: [...WEBHOOK_EVENTS], type: 'string' },
    HTTPValidationError: {
      title: 'HTTPValidationError',
      type: 'object',
      properties: { detail: { title: 'Detail', type: 'array', items: ref('ValidationError') } },
    },
    ValidationError: {
      title: 'ValidationError',
      required: ['loc', 'msg', 'type'],
      type: 'object',
      properties: {
        loc: { title: 'Location', type: 'array', items: { anyOf: [{ type: 'string' }, { type: 'integer' }] } },
        msg: { title: 'Message', type: 'string' },
        type: { title: 'Error Type', type: 'string' },
      },
    },
  };
}

/** The whole openapi.json for a profile. */
export function openApiDocument(profile: Profile<unknown>, opts: OpenApiOptions = {}): JsonObject {
  const output: JsonObject = JSON.parse(JSON.stringify(profile.output)) as JsonObject;
  return {
    openapi: '3.0.2',
    info: { title: 'Cog', version: opts.version ?? '0.1.0' },
    paths: paths(),
    components: {
      schemas: {
        Input: inputSchema(profile),
        Output: output,
        ...enumSchemas(profile),
        ...fixedSchemas(),
      },
    },
  };
}

/** `fluxserve schema --profile trainer|hotswap`: the document as pretty JSON text (with a final newline). */
export function schemaCommand(profile: Profile<unknown>, opts: OpenApiOptions = {}): string {
  return `${JSON.stringify(openApiDocument(profile, opts), null, 2)}\n`;
}
