// Replicate's REST API as a fastify plugin (https://replicate.com/docs/reference/http), enough for
// the official `replicate` npm client pointed at this server with `baseUrl`: one child plugin per
// resource (predictions, models and versions, files, streams), the API token checked on every /v1
// route except the capability URLs (streams.ts), every error application/problem+json
// {title, detail, status} from the one table in errors.ts.

import type { FastifyPluginAsync } from 'fastify';
import { ServiceError, errorHandler } from '../errors.js';
import { fileRoutes } from './files.js';
import { type ReplicateApiOptions, checkToken } from './http.js';
import { modelRoutes } from './models.js';
import { predictionRoutes } from './predictions.js';
import { capabilityRoutes, predictionStreamRoutes } from './streams.js';

export type { ReplicateApiOptions } from './http.js';

export const replicateApi: FastifyPluginAsync<ReplicateApiOptions> = async (app, opts) => {
  app.setErrorHandler(errorHandler('replicate'));
  // Only JSON and multipart bodies: anything else is 415 rather than parsed as a prediction.
  app.removeContentTypeParser('*');
  await app.register(capabilityRoutes, opts);
  await app.register(
    async (v1) => {
      const token = opts.auth;
      if (token !== undefined) v1.addHook('onRequest', async (req) => checkToken(req, token));
      v1.setNotFoundHandler(async (req) => {
        throw new ServiceError('not-found', `No route ${req.method} ${req.url.split('?')[0]}`);
      });
      for (const routes of [predictionRoutes, modelRoutes, fileRoutes, predictionStreamRoutes]) await v1.register(routes, opts);
    },
    { prefix: '/v1' },
  );
};
