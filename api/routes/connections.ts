// One connection from any of its tuples: its view, its packets in time order, its capture file.
import { Readable } from 'node:stream';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { EpochNs } from '../../model/records.js';
import type { AppOptions } from '../options.js';
import { capturePointNames, connectionCaptureFile, connectionCaptureFilesByPoint } from '../../connection/capture-file.js';
import { connectionPacketRows, findConnection, type Connection } from '../../connection/connection.js';
import { diagnoseConnection } from '../../connection/diagnosis.js';
import { diagnosisJson } from '../diagnosis-json.js';
import { DiagnosisResponse } from '../schemas/diagnosis.js';
import { BadParameterError, NotFoundError } from '../errors.js';
import { connectionJson, dropJson, packetJson } from '../json.js';
import { CAPTURE_FILE_TYPES } from '../../pcap/pcapng.js';
import { ErrorResponses } from '../schemas/common.js';
import { ConnectionQuery, ConnectionResponse, PcapQuery, TimelineResponse } from '../schemas/connections.js';
import { parseTime, TimeError } from '../../model/time.js';
import { formatTuple, tupleFromQuery, TupleError, type TupleQuery } from '../../model/tuple.js';

const optionalTime = (text: string | undefined, what: string): EpochNs | undefined => (text === undefined ? undefined : parseTime(text, what));

export const connectionRoutes: FastifyPluginAsync<AppOptions> = async (fastify, { reader }) => {
  const api = fastify.withTypeProvider<TypeBoxTypeProvider>();

  const connectionFor = async (query: TupleQuery & { at?: string; id?: string }): Promise<Connection> => {
    if (query.id !== undefined) {
      const given = (['tuple', 'src', 'sport', 'dst', 'dport', 'proto', 'at'] as const).filter((name) => query[name] !== undefined);
      if (given.length > 0) throw new TupleError(`give either id or a tuple (with at), not both: ${given.join(', ')} given with id`);
      const connection = await findConnection(reader, { id: query.id });
      if (!connection) throw new NotFoundError(`no connection with id ${JSON.stringify(query.id)}`);
      return connection;
    }
    const tuple = tupleFromQuery(query);
    const connection = await findConnection(reader, { tuple, at: optionalTime(query.at, 'at') });
    if (!connection) {
      throw new NotFoundError(
        `nothing is known of ${formatTuple(tuple)}: no flow or NAT translation with this tuple in either direction ` +
          '(was capture attached to its namespace when it ran? try the other side\'s tuple, or another time with at=)',
      );
    }
    return connection;
  };

  api.get(
    '/api/v1/connections',
    {
      schema: {
        summary: 'The connection a tuple belongs to: its tuples at every hop, NAT path, capture points, flows and drops',
        querystring: ConnectionQuery,
        response: { 200: ConnectionResponse, ...ErrorResponses },
      },
    },
    async (request) => ({ connection: connectionJson(await connectionFor(request.query)) }),
  );

  api.get(
    '/api/v1/connections/timeline',
    {
      schema: {
        summary: "The connection's packets at every capture point and its drops, in time order",
        querystring: ConnectionQuery,
        response: { 200: TimelineResponse, ...ErrorResponses },
      },
    },
    async (request) => {
      const connection = await connectionFor(request.query);
      const packets = [];
      for await (const batch of connectionPacketRows(reader, connection)) for (const row of batch.rows) packets.push(packetJson(batch.record(row)));
      return { packets, drops: connection.drops.map(dropJson) };
    },
  );

  api.get(
    '/api/v1/connections/diagnosis',
    {
      schema: {
        summary: 'What went wrong with the connection, where, with the packets that prove it (docs/diagnosis.md); and where the time went',
        querystring: ConnectionQuery,
        response: { 200: DiagnosisResponse, ...ErrorResponses },
      },
    },
    async (request) => {
      const connection = await connectionFor(request.query).catch((err: unknown) => {
        // Name the parameter at fault: the tuple (or its fields), or at.
        if (err instanceof TimeError) throw new BadParameterError('at', err.message);
        if (err instanceof TupleError) throw new BadParameterError(request.query.tuple !== undefined ? 'tuple' : request.query.id !== undefined ? 'id' : 'src', err.message);
        throw err;
      });
      return diagnosisJson(connection.id, await diagnoseConnection(reader, connection));
    },
  );

  const captureFile = Type.Unsafe<Readable>({ type: 'string', format: 'binary', description: 'pcapng (default) or pcap; with split=point, a zip of them' });
  api.get(
    '/api/v1/pcap',
    {
      schema: {
        summary: "The connection's packets from all capture points as pcapng (one interface per point) or pcap, or a zip of a file per point",
        querystring: PcapQuery,
        response: { 200: captureFile, ...ErrorResponses },
      },
    },
    async (request, reply) => {
      const { from, to, format = 'pcapng', points, split } = request.query;
      const range = { from: optionalTime(from, 'from'), to: optionalTime(to, 'to') };
      const pointNames = points === undefined ? null : new Set(points.split(',').map((point) => point.trim()));
      const connection = await connectionFor(request.query);
      const known = capturePointNames(connection);
      const unknown = [...(pointNames ?? [])].filter((point) => !known.includes(point));
      if (unknown.length > 0) {
        throw new BadParameterError('points', `${unknown.map((p) => JSON.stringify(p)).join(', ')} not among this connection's capture points: ${known.map((p) => JSON.stringify(p)).join(', ')}`);
      }
      const type = split === 'point' ? { contentType: 'application/zip', extension: `${CAPTURE_FILE_TYPES[format].extension}.zip` } : CAPTURE_FILE_TYPES[format];
      const name = `nettrail-${connection.proto}-${connection.tuples[0].src}-${connection.tuples[0].sport}.${type.extension}`.replace(/[^\w.-]/g, '_');
      reply.header('content-type', type.contentType).header('content-disposition', `attachment; filename="${name}"`);
      const wanted = { range, points: pointNames, format };
      const file = split === 'point' ? connectionCaptureFilesByPoint(reader, connection, wanted) : connectionCaptureFile(reader, connection, wanted);
      return reply.send(Readable.from(file));
    },
  );
};
