// Liveness of the service and the state of capture.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { AppOptions } from '../app.js';
import { dropTracingJson } from '../drops.js';
import { errorBody } from '../errors.js';
import { CaptureStatusSchema, ErrorSchema } from '../schemas.js';

export const statusRoutes: FastifyPluginAsync<AppOptions> = async (fastify, options) => {
  const api = fastify.withTypeProvider<TypeBoxTypeProvider>();

  api.get(
    '/healthz',
    {
      schema: {
        summary: 'ok while the flow-log store answers; 503 otherwise',
        security: [], // open even when the API requires a token
        response: { 200: Type.Object({ status: Type.Literal('ok') }), 503: ErrorSchema },
      },
    },
    async (_request, reply) => {
      if (!(await options.storeHealthy())) return reply.code(503).send(errorBody('STORE_UNAVAILABLE', 'the flow-log store does not answer'));
      return { status: 'ok' as const };
    },
  );

  api.get(
    '/api/v1/capture/status',
    { schema: { summary: 'Attached capture points, events and lost events per point', response: { 200: CaptureStatusSchema } } },
    async () => {
      const status = options.captureStatus();
      const dropStatus = options.dropStatus();
      const drops = dropStatus ? { drops: dropTracingJson(dropStatus) } : {};
      return status ? { capturing: true, ...status, ...drops } : { capturing: false, points: [], packets: 0, lost: 0, malformed: 0, skipped: [], ...drops };
    },
  );
};
