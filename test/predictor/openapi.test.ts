// The openapi.json layout Cog generates (shared/reference/api-compat.md A.5), per profile.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type JsonObject, type JsonValue, openApiDocument, schemaCommand } from '../../src/predictor/openapi.js';
import { HOTSWAP, HOTSWAP_FIXED, type Profile, TRAINER } from '../../src/predictor/profiles.js';
import { HOTSWAP_SEEDS, TRAINER_SEEDS, loadSeed } from './seeds.js';

const obj = (v: JsonValue | undefined): JsonObject => {
  assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v), `not an object: ${JSON.stringify(v)}`);
  return v as JsonObject;
};
const schemas = (p: Profile<unknown>): JsonObject => obj(obj(openApiDocument(p)['components'])['schemas']);

/** Every {"$ref": ...} in the document. */
function refs(v: JsonValue, out: string[] = []): string[] {
  if (Array.isArray(v)) for (const x of v) refs(x, out);
  else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === '$ref' && typeof x === 'string') out.push(x);
      else refs(x, out);
    }
  }
  return out;
}

const CASES: readonly [Profile<unknown>, string][] = [
  [TRAINER, TRAINER_SEEDS[0]],
  [HOTSWAP, HOTSWAP_SEEDS[0]],
  [HOTSWAP_FIXED, HOTSWAP_SEEDS[1]],
];

describe('openApiDocument', () => {
  for (const [p, seedFile] of CASES) {
    const label = `${p.name}/${p.variant}`;

    it(`${label}: top level and components as Cog lays them out`, () => {
      const doc = openApiDocument(p);
      assert.equal(doc['openapi'], '3.0.2');
      assert.deepEqual(doc['info'], { title: 'Cog', version: '0.1.0' });
      assert.deepEqual(openApiDocument(p, { version: '0.16.12' })['info'], { title: 'Cog', version: '0.16.12' });
      const names = Object.keys(schemas(p));
      const enums = p.fields.filter((f) => f.choices !== undefined).map((f) => f.name);
      assert.deepEqual(names, [
        'Input',
        'Output',
        ...enums,
        'PredictionRequest',
        'PredictionResponse',
        'Status',
        'WebhookEvent',
        'HTTPValidationError',
        'ValidationError',
      ]);
    });

    it(`${label}: Input properties in x-order, matching the seed's field order`, () => {
      const input = obj(schemas(p)['Input']);
      assert.equal(input['title'], 'Input');
      assert.equal(input['type'], 'object');
      assert.deepEqual(input['required'], ['prompt']);
      const props = obj(input['properties']);
      const names = Object.keys(props);
      assert.deepEqual(
        names,
        loadSeed(seedFile).fields.map((f) => f.name),
      );
      names.forEach((n, i) => assert.equal(obj(props[n])['x-order'], i, n));
    });

    it(`${label}: plain properties carry title, type, default, bounds, description`, () => {
      const props = obj(obj(schemas(p)['Input'])['properties']);
      for (const f of p.fields.filter((g) => g.choices === undefined)) {
        const prop = obj(props[f.name]);
        const expected: JsonObject = {
          description: f.description,
          title: f.title,
          type: f.type === 'file' ? 'string' : f.type,
          'x-order': f.order,
        };
        if (f.type === 'file') expected['format'] = 'uri';
        if (f.default !== undefined) expected['default'] = f.default;
        if (f.minimum !== undefined) expected['minimum'] = f.minimum;
        if (f.maximum !== undefined) expected['maximum'] = f.maximum;
        assert.deepEqual(prop, expected, f.name);
        assert.deepEqual(Object.keys(prop), Object.keys(prop).sort(), `${f.name}: keys sorted as Cog's Go generator emits them`);
      }
      // Optional inputs without a default (seed, width, height, image, ...) have no default key and are not required.
      for (const n of ['seed', 'width', 'height', 'image', 'mask', 'extra_lora']) assert.ok(!('default' in obj(props[n])), n);
      assert.deepEqual(obj(props['image'])['format'], 'uri');
    });

    it(`${label}: choices become enum components referenced through allOf`, () => {
      const s = schemas(p);
      const props = obj(obj(s['Input'])['properties']);
      for (const f of p.fields.filter((g) => g.choices !== undefined)) {
        // The A.5 example: {"allOf":[{"$ref":"#/components/schemas/aspect_ratio"}],"default":"1:1","description":...,"x-order":N}
        assert.deepEqual(props[f.name], {
          allOf: [{ $ref: `#/components/schemas/${f.name}` }],
          default: f.default!,
          description: f.description,
          'x-order': f.order,
        });
        assert.deepEqual(s[f.name], { title: f.name, description: 'An enumeration.', enum: [...f.choices!], type: 'string' });
      }
    });

    it(`${label}: Output is the seed's output schema`, () => {
      assert.deepEqual(schemas(p)['Output'], loadSeed(seedFile).output);
    });

    it(`${label}: every $ref resolves`, () => {
      const doc = openApiDocument(p);
      const s = schemas(p);
      for (const r of refs(doc)) {
        assert.ok(r.startsWith('#/components/schemas/'), r);
        assert.ok(r.slice('#/components/schemas/'.length) in s, `unresolved ${r}`);
      }
    });
  }

  it('request, response, status, webhook and validation-error schemas', () => {
    const s = schemas(TRAINER);
    const req = obj(obj(s['PredictionRequest'])['properties']);
    assert.deepEqual(req['input'], { $ref: '#/components/schemas/Input' });
    assert.deepEqual(req['webhook_events_filter'], {
      type: 'array',
      items: { $ref: '#/components/schemas/WebhookEvent' },
      default: ['start', 'output', 'logs', 'completed'],
    });
    const res = obj(obj(s['PredictionResponse'])['properties']);
    assert.deepEqual(res['output'], { $ref: '#/components/schemas/Output' });
    assert.deepEqual(res['status'], { $ref: '#/components/schemas/Status' });
    assert.deepEqual(obj(s['Status'])['enum'], ['starting', 'processing', 'succeeded', 'canceled', 'failed']);
    assert.deepEqual(s['HTTPValidationError'], {
      title: 'HTTPValidationError',
      type: 'object',
      properties: { detail: { title: 'Detail', type: 'array', items: { $ref: '#/components/schemas/ValidationError' } } },
    });
    assert.deepEqual(obj(s['ValidationError'])['required'], ['loc', 'msg', 'type']);
  });

  it('paths: predict with 422, idempotent PUT, cancel, health-check, shutdown', () => {
    const paths = obj(openApiDocument(HOTSWAP)['paths']);
    assert.deepEqual(Object.keys(paths), [
      '/',
      '/health-check',
      '/predictions',
      '/predictions/{prediction_id}',
      '/predictions/{prediction_id}/cancel',
      '/shutdown',
    ]);
    const predict = obj(obj(paths['/predictions'])['post']);
    assert.equal(predict['operationId'], 'predict_predictions_post');
    assert.deepEqual(obj(predict['responses'])['422'], {
      description: 'Validation Error',
      content: { 'application/json': { schema: { $ref: '#/components/schemas/HTTPValidationError' } } },
    });
    assert.equal(obj(obj(paths['/predictions/{prediction_id}/cancel'])['post'])['operationId'], 'cancel_predictions__prediction_id__cancel_post');
  });

  it('the document is plain JSON and does not alias the profile', () => {
    const doc = openApiDocument(TRAINER);
    assert.deepEqual(JSON.parse(JSON.stringify(doc)), doc);
    (obj(obj(obj(doc['components'])['schemas'])['Output'])['items'] as JsonObject)['format'] = 'changed';
    assert.equal(TRAINER.output.items.format, 'uri');
  });
});

describe('schemaCommand', () => {
  it('prints the document as JSON text', () => {
    for (const p of [TRAINER, HOTSWAP]) {
      const text = schemaCommand(p);
      assert.ok(text.endsWith('}\n'));
      assert.deepEqual(JSON.parse(text), openApiDocument(p));
    }
  });
});
