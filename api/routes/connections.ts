// One connection from any of its tuples: its view, its packets in time order, its capture file.
import { Readable } from 'node:stream';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { PacketBatch } from '../../flowlog/packets/rows.js';
import type { EpochNs } from '../../model/records.js';
import { sameTuple } from '../../nat-tracker/classify.js';
import type { AppOptions } from '../app.js';
import {
  connectionJson,
  connectionPacketBatches,
  findConnection,
  natHopComment,
  packetJson,
  type Connection,
} from '../../connection/connection.js';
import { dropJson, withDropItems } from '../../connection/drops.js';
import { NotFoundError } from '../errors.js';
import { CAPTURE_FILE_TYPES, writeCaptureFile, type CaptureItem } from '../../pcap/pcapng.js';
import { ConnectionQuery, ConnectionSchema, DropSchema, ErrorResponses, PacketSchema, PcapQuery } from '../schemas.js';
import { parseTime } from '../../model/time.js';
import { formatTuple, tupleFromQuery, type TupleQuery } from '../../model/tuple.js';

const optionalTime = (text: string | undefined, what: string): EpochNs | undefined => (text === undefined ? undefined : parseTime(text, what));

export const connectionRoutes: FastifyPluginAsync<AppOptions> = async (fastify, { reader }) => {
  const api = fastify.withTypeProvider<TypeBoxTypeProvider>();

  const connectionFor = async (query: TupleQuery & { at?: string }): Promise<Connection> => {
    const tuple = tupleFromQuery(query);
    const connection = await findConnection(reader, tuple, optionalTime(query.at, 'at'));
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
        response: { 200: Type.Object({ connection: ConnectionSchema }), ...ErrorResponses },
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
        response: { 200: Type.Object({ packets: Type.Array(PacketSchema), drops: Type.Array(DropSchema) }), ...ErrorResponses },
      },
    },
    async (request) => {
      const connection = await connectionFor(request.query);
      const packets = [];
      for await (const batch of connectionPacketBatches(reader, connection)) for (const row of batch.rows) packets.push(packetJson(batch.record(row)));
      return { packets, drops: connection.drops.map(dropJson) };
    },
  );

  const captureFile = Type.Unsafe<Readable>({ type: 'string', format: 'binary', description: 'pcapng (default) or pcap' });
  api.get(
    '/api/v1/pcap',
    {
      schema: {
        summary: "The connection's packets from all capture points as pcapng (one interface per point) or pcap",
        querystring: PcapQuery,
        response: { 200: captureFile, ...ErrorResponses },
      },
    },
    async (request, reply) => {
      const { from, to, format = 'pcapng', points } = request.query;
      const range = { from: optionalTime(from, 'from'), to: optionalTime(to, 'to') };
      const pointNames = points === undefined ? null : new Set(points.split(',').map((point) => point.trim()));
      const connection = await connectionFor(request.query);
      const type = CAPTURE_FILE_TYPES[format];
      const name = `nettrail-${connection.proto}-${connection.tuples[0].src}-${connection.tuples[0].sport}.${type.extension}`.replace(/[^\w.-]/g, '_');
      reply.header('content-type', type.contentType).header('content-disposition', `attachment; filename="${name}"`);
      const packets = connectionPacketBatches(reader, connection, range, pointNames);
      const items = withDropItems(pcapItems(packets, connection), connection.drops, range, pointNames);
      return reply.send(Readable.from(writeCaptureFile(items, {
        format,
        sectionComment: `nettrail: ${formatTuple({ proto: connection.proto, ...connection.tuples[0] })}`,
      })));
    },
  );
};

/** Batches of the connection's packets as capture-file items, with a comment on the first packet after each NAT hop. */
async function* pcapItems(batches: AsyncIterable<PacketBatch>, connection: Connection): AsyncIterable<CaptureItem[]> {
  const pending = connection.hops.map((hop) => ({ hop, comment: natHopComment(hop) }));
  for await (const batch of batches) {
    const comments = new Map<number, string>();
    const c = batch.columns;
    for (let k = 0; k < batch.rows.length && pending.length > 0; k++) {
      const row = batch.rows[k];
      const point = c.points[c.point[row]];
      const at = pending.findIndex(({ hop }) => hop.node === point.node && hop.netns === point.netns && sameTuple(hop.after, {
        src: c.addresses[c.src[row]].text, sport: c.sport[row], dst: c.addresses[c.dst[row]].text, dport: c.dport[row],
      }));
      if (at >= 0) comments.set(row, pending.splice(at, 1)[0].comment);
    }
    yield [{ kind: 'packets', batch, comments }];
  }
}
