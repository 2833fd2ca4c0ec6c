// nettrail's Wireshark profile (connection/wireshark-profile.ts), for download.
import { Readable } from 'node:stream';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { AppOptions } from '../options.js';
import { WIRESHARK_PROFILE_NAME, wiresharkProfileZip } from '../../connection/wireshark-profile.js';
import { ErrorResponses } from '../schemas/common.js';

export const wiresharkRoutes: FastifyPluginAsync<AppOptions> = async (fastify) => {
  const api = fastify.withTypeProvider<TypeBoxTypeProvider>();
  api.get(
    '/api/v1/wireshark-profile',
    {
      schema: {
        summary: "nettrail's Wireshark profile as a zip of the directory nettrail/: columns, coloring rules on nettrail's comments, Wireshark's cross-point TCP analysis off",
        response: { 200: Type.Unsafe<Readable>({ type: 'string', format: 'binary', description: 'zip' }), ...ErrorResponses },
      },
    },
    async (_request, reply) => {
      reply.header('content-type', 'application/zip').header('content-disposition', `attachment; filename="wireshark-profile-${WIRESHARK_PROFILE_NAME}.zip"`);
      return reply.send(Readable.from(wiresharkProfileZip()));
    },
  );
};
