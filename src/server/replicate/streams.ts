// The ways to follow a /v1 prediction without polling, and its output files: the event stream
// with the API token (GET /v1/predictions/{id}/stream), the same stream at `urls.stream` without it
// (the replicate npm client's stream() fetches that URL without the token, lib/stream.js), and
// output files by URL (no token either: the client's FileOutput fetches them like Replicate's
// delivery URLs). Those two URLs carry 130 random bits: the URL is the credential.

import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { ServiceError, errorHandler } from '../errors.js';
import { serveEventStream } from '../events.js';
import type { PredictionState } from '../service/types.js';
import type { ReplicateApiOptions } from './http.js';

type Stream = (req: FastifyRequest, reply: FastifyReply, p: PredictionState | undefined, what: string) => Promise<FastifyReply>;

const streamOf =
  (opts: ReplicateApiOptions): Stream =>
  async (req, reply, p, what) => {
    if (p?.api !== 'replicate') throw new ServiceError('not-found', `${what} not found`);
    await serveEventStream(reply, (s) => opts.service.subscribe(p.id, s), req.headers['last-event-id'], { keepAliveMs: opts.sseKeepAliveMs });
    return reply;
  };

/** Under /v1, behind the token. */
export const predictionStreamRoutes: FastifyPluginAsync<ReplicateApiOptions> = async (v1, opts) => {
  const stream = streamOf(opts);
  v1.get<{ Params: { id: string } }>('/predictions/:id/stream', async (req, reply) => stream(req, reply, await opts.service.get(req.params.id), 'Prediction'));
};

/** Without the token: `urls.stream` and output files. */
export const capabilityRoutes: FastifyPluginAsync<ReplicateApiOptions> = async (app, opts) => {
  const stream = streamOf(opts);
  app.get<{ Params: { key: string } }>('/v1/streams/:key', async (req, reply) =>
    stream(req, reply, await opts.service.findByStreamKey(req.params.key), 'Stream'),
  );

  await app.register(async (outputs) => {
    outputs.setErrorHandler(errorHandler('delivery'));
    outputs.get<{ Params: { id: string; name: string } }>('/outputs/:id/:name', async (req, reply) => {
      const f = await opts.service.files.output(req.params.id, req.params.name);
      if (!f) throw new ServiceError('not-found');
      return reply.type(f.contentType).header('cache-control', 'private, max-age=86400').send(f.data);
    });
  });
};
