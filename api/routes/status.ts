// Liveness of the service and the state of capture.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { AppOptions } from '../options.js';
import { errorBody } from '../errors.js';
import { dropTracingJson } from '../json.js';
import { ErrorSchema } from '../schemas/common.js';
import { CaptureStatusSchema } from '../schemas/status.js';
import type { WriterStats } from '../../flowlog/writer.js';

/** The writer's stats as the status API shows them. */
const storeStatusJson = (stats: WriterStats) => ({
  failing: Object.values(stats).some((t) => t.consecutiveFailures > 0),
  tables: Object.fromEntries(
    Object.entries(stats).map(([table, t]) => [table, {
      accepted: t.accepted, written: t.written, dropped: t.dropped, failures: t.failures,
      consecutive_failures: t.consecutiveFailures, buffered_rows: t.bufferedRows, buffered_bytes: t.bufferedBytes,
    }]),
  ),
});

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
      const fates = options.dropFates();
      const drops = dropStatus ? { drops: { ...dropTracingJson(dropStatus), ...(fates ? { fates } : {}) } } : {};
      const natStatus = options.natStatus();
      const nat = natStatus ? { nat: natStatus } : {};
      const writer = options.writerStats();
      const store = writer ? { store: storeStatusJson(writer) } : {};
      // The writer's state goes with capture: what was captured and what became of it.
      return status
        ? { capturing: true, ...status, ...drops, ...nat, ...store }
        : { capturing: false, points: [], packets: 0, lost: 0, malformed: 0, skipped: [], ...drops, ...nat };
    },
  );
};
