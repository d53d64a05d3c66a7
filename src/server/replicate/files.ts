// Replicate's file resource under /v1 (https://replicate.com/docs/reference/http#files.create; the
// replicate npm client's lib/files.js uploads Buffer and Blob inputs here): POST /v1/files takes a
// multipart body whose `content` part is the file (optional `filename`, `type`, `metadata` parts),
// streamed through @fastify/multipart with a size limit; the file's `urls.get` works as an input.

import multipart from '@fastify/multipart';
import type { FastifyPluginAsync } from 'fastify';
import { ServiceError } from '../errors.js';
import type { StoredFile } from '../files.js';
import { pageSchema } from '../views.js';
import { type ReplicateApiOptions, baseUrlOf } from './http.js';

/** Replicate's limit on one file. */
export const MAX_FILE_BYTES = 100 * 1024 * 1024;

const FILE_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    content_type: { type: 'string' },
    size: { type: 'integer' },
    etag: { type: 'string' },
    checksums: { type: 'object', properties: { sha256: { type: 'string' } } },
    metadata: {},
    created_at: { type: 'string' },
    expires_at: { type: 'string' },
    urls: { type: 'object', properties: { get: { type: 'string' } } },
  },
} as const;
const ID_PARAMS = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] } as const;

function fileView(f: StoredFile, base: string): Record<string, unknown> {
  return {
    id: f.id,
    name: f.name,
    content_type: f.contentType,
    size: f.data.length,
    etag: f.sha256,
    checksums: { sha256: f.sha256 },
    metadata: f.metadata,
    created_at: f.createdAt.toISOString(),
    expires_at: f.expiresAt.toISOString(),
    urls: { get: `${base}/v1/files/${f.id}` },
  };
}

const sizeText = (bytes: number) => (bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)}MB` : `${bytes} bytes`);

/** The parts of an upload, read in the order they come. */
interface UploadParts {
  content?: { data: Buffer; filename: string; mimetype: string };
  fields: Record<string, string>;
  /** `metadata` sent as a file part (the npm client sends a JSON Blob). */
  metadataText?: string;
}

export const fileRoutes: FastifyPluginAsync<ReplicateApiOptions> = async (v1, opts) => {
  const { service } = opts;
  const maxBytes = opts.maxUploadBytes ?? MAX_FILE_BYTES;
  const tooLarge = () => new ServiceError('payload-too-large', `Files must be less than ${sizeText(maxBytes)} in size`);
  await v1.register(multipart, { limits: { fileSize: maxBytes } });

  const uploaded = async (id: string): Promise<StoredFile> => {
    const f = await service.files.uploaded(id);
    if (!f) throw new ServiceError('not-found', 'File not found');
    return f;
  };

  v1.post('/files', { schema: { response: { 201: FILE_SCHEMA } } }, async (req, reply) => {
    if (!req.isMultipart()) throw new ServiceError('unsupported-media-type', 'Upload files as multipart/form-data with a `content` part');
    const got: UploadParts = { fields: {} };
    try {
      for await (const part of req.parts()) {
        if (part.type === 'field') {
          got.fields[part.fieldname] = typeof part.value === 'string' ? part.value : JSON.stringify(part.value);
          continue;
        }
        const data = await part.toBuffer(); // throws past the size limit, while streaming
        if (part.fieldname === 'content') got.content = { data, filename: part.filename, mimetype: part.mimetype };
        else if (part.fieldname === 'metadata') got.metadataText = data.toString('utf8');
      }
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge();
      if (code === 'FST_INVALID_JSON_FIELD_ERROR') throw new ServiceError('invalid-request', 'metadata must be JSON');
      throw new ServiceError('bad-request', 'The multipart body could not be parsed');
    }
    if (!got.content) throw new ServiceError('invalid-request', 'content is required (a file part)');
    let metadata: unknown = {};
    const metaText = got.metadataText ?? got.fields['metadata'];
    if (metaText !== undefined) {
      try {
        metadata = JSON.parse(metaText);
      } catch {
        throw new ServiceError('invalid-request', 'metadata must be JSON');
      }
    }
    const nameField = got.fields['filename'];
    const typeField = got.fields['type'];
    const name = (nameField || got.content.filename || `file_${Date.now()}`).slice(0, 255);
    const contentType = typeField || got.content.mimetype || 'application/octet-stream';
    const f = await service.files.upload({ name, contentType, data: got.content.data, metadata });
    return reply.code(201).send(fileView(f, baseUrlOf(req, opts.publicBaseUrl)));
  });

  v1.get('/files', { schema: { response: { 200: pageSchema(FILE_SCHEMA) } } }, async (req) => {
    const base = baseUrlOf(req, opts.publicBaseUrl);
    return { next: null, previous: null, results: (await service.files.uploads()).map((f) => fileView(f, base)) };
  });

  v1.get<{ Params: { id: string } }>('/files/:id', { schema: { params: ID_PARAMS, response: { 200: FILE_SCHEMA } } }, async (req) =>
    fileView(await uploaded(req.params.id), baseUrlOf(req, opts.publicBaseUrl)),
  );

  v1.get<{ Params: { id: string } }>('/files/:id/download', { schema: { params: ID_PARAMS } }, async (req, reply) => {
    const f = await uploaded(req.params.id);
    return reply.type(f.contentType).send(f.data);
  });

  v1.delete<{ Params: { id: string } }>('/files/:id', { schema: { params: ID_PARAMS } }, async (req, reply) => {
    await uploaded(req.params.id);
    await service.files.deleteUpload(req.params.id);
    return reply.code(204).send();
  });
};
