// Replicate's model and version resources under /v1 (https://replicate.com/docs/reference/http#models.get,
// #models.versions.list): the served models, each with one version whose `openapi_schema` is its
// profile's schema.

import type { FastifyPluginAsync } from 'fastify';
import { openApiDocument } from '../../predictor/openapi.js';
import { ServiceError } from '../errors.js';
import { type ServedModel, findModel, modelRef } from '../models.js';
import { pageSchema } from '../views.js';
import { type ReplicateApiOptions, baseUrlOf, nullableString } from './http.js';

const VERSION_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    created_at: { type: 'string' },
    cog_version: { type: 'string' },
    openapi_schema: { type: 'object', additionalProperties: true },
  },
} as const;

const MODEL_SCHEMA = {
  type: 'object',
  properties: {
    url: { type: 'string' },
    owner: { type: 'string' },
    name: { type: 'string' },
    description: { type: 'string' },
    visibility: { type: 'string' },
    github_url: nullableString,
    paper_url: nullableString,
    license_url: nullableString,
    run_count: { type: 'integer' },
    cover_image_url: nullableString,
    default_example: { type: 'null' },
    latest_version: VERSION_SCHEMA,
  },
} as const;

const MODEL_PARAMS = { type: 'object', properties: { owner: { type: 'string' }, name: { type: 'string' } }, required: ['owner', 'name'] } as const;

function versionView(m: ServedModel, cogVersion: string): Record<string, unknown> {
  return { id: m.versionId, created_at: m.createdAt.toISOString(), cog_version: cogVersion, openapi_schema: openApiDocument(m.profile) };
}

function modelView(m: ServedModel, base: string, cogVersion: string): Record<string, unknown> {
  return {
    url: `${base}/v1/models/${modelRef(m)}`,
    owner: m.owner,
    name: m.name,
    description: m.description,
    visibility: 'public',
    github_url: null,
    paper_url: null,
    license_url: null,
    run_count: 0,
    cover_image_url: null,
    default_example: null,
    latest_version: versionView(m, cogVersion),
  };
}

export const modelRoutes: FastifyPluginAsync<ReplicateApiOptions> = async (v1, opts) => {
  const { service } = opts;
  type ModelParams = { Params: { owner: string; name: string } };
  const served = (p: { owner: string; name: string }): ServedModel => {
    const m = findModel(service.models(), p.owner, p.name);
    if (!m) throw new ServiceError('not-found', `Model ${p.owner}/${p.name} not found`);
    return m;
  };

  v1.get('/models', { schema: { response: { 200: pageSchema(MODEL_SCHEMA) } } }, async (req) => {
    const base = baseUrlOf(req, opts.publicBaseUrl);
    return { next: null, previous: null, results: service.models().map((m) => modelView(m, base, opts.version)) };
  });

  v1.get<ModelParams>('/models/:owner/:name', { schema: { params: MODEL_PARAMS, response: { 200: MODEL_SCHEMA } } }, async (req) =>
    modelView(served(req.params), baseUrlOf(req, opts.publicBaseUrl), opts.version),
  );

  v1.get<ModelParams>('/models/:owner/:name/versions', { schema: { params: MODEL_PARAMS, response: { 200: pageSchema(VERSION_SCHEMA) } } }, async (req) => ({
    next: null,
    previous: null,
    results: [versionView(served(req.params), opts.version)],
  }));

  v1.get<{ Params: { owner: string; name: string; version: string } }>(
    '/models/:owner/:name/versions/:version',
    { schema: { response: { 200: VERSION_SCHEMA } } },
    async (req) => {
      const m = findModel(service.models(), req.params.owner, req.params.name);
      if (!m || m.versionId !== req.params.version) throw new ServiceError('not-found', 'Version not found');
      return versionView(m, opts.version);
    },
  );
};
