// The HTTP API and the web UI as a fastify plugin; server.ts only listens.
import { timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import fastifyStatic from '@fastify/static';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyError, FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { CaptureStatus } from '../capture/capture.js';
import type { EpochNs, FlowRecord, NatTranslation, PacketRecord } from '../flowlog/records.js';
import { sameTuple } from '../nat-tracker/classify.js';
import {
  connectionJson,
  connectionPackets,
  findConnection,
  flowJson,
  natHopComment,
  natTranslationJson,
  packetJson,
  type Connection,
  type FlowLogReader,
} from './connection.js';
import { CAPTURE_FILE_TYPES, writeCaptureFile, type CaptureItem } from './pcapng.js';
import {
  CaptureStatusSchema,
  ConnectionQuery,
  ConnectionSchema,
  DropSchema,
  ErrorSchema,
  FlowSchema,
  FlowsQuery,
  NatQuery,
  NatTranslationSchema,
  PacketSchema,
  PcapQuery,
} from './schemas.js';
import { parseTime, TimeError } from './time.js';
import { TupleError, formatTuple, tupleFromQuery, type TupleQuery } from './tuple.js';

export interface AppOptions {
  reader: FlowLogReader;
  recentFlows(limit: number): Promise<FlowRecord[]>;
  natTranslations(limit: number): Promise<NatTranslation[]>;
  storeHealthy(): Promise<boolean>;
  /** null when this process does not capture. */
  captureStatus(): CaptureStatus | null;
  /** The built UI (ui/dist); null or missing serves the API alone. */
  uiDir: string | null;
  /** When set, /api/ requires `Authorization: Bearer <token>`. */
  token: string | null;
}

export class NotFoundError extends Error {
  readonly code = 'NOT_FOUND';
}

/** Errors whose message is for the user, with their HTTP status. */
const clientErrors: Array<[new (...args: never[]) => Error & { code: string }, number]> = [
  [TupleError, 400],
  [TimeError, 400],
  [NotFoundError, 404],
];

const errorBody = (code: string, message: string) => ({ error: { code, message } });

const optionalTime = (text: string | undefined, what: string): EpochNs | undefined => (text === undefined ? undefined : parseTime(text, what));

export const app: FastifyPluginAsync<AppOptions> = async (fastify, options) => {
  const api = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { reader } = options;

  fastify.setErrorHandler((err: FastifyError, request, reply) => {
    if (err.validation) {
      return reply.code(400).send(errorBody('BAD_REQUEST', `${err.validationContext ?? 'request'}${err.message.replace(/^[a-z]+\b/, '')}`));
    }
    for (const [type, status] of clientErrors) {
      if (err instanceof type) return reply.code(status).send(errorBody((err as Error & { code: string }).code, err.message));
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send(errorBody(err.code ?? 'BAD_REQUEST', err.message));
    }
    request.log.error({ err }, 'request failed');
    return reply.code(500).send(errorBody('INTERNAL', 'internal error; see the server log'));
  });

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

  if (options.token) {
    const expected = Buffer.from(`Bearer ${options.token}`);
    fastify.addHook('onRequest', async (request, reply) => {
      if (!request.url.startsWith('/api/')) return;
      const given = Buffer.from(request.headers.authorization ?? '');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        return reply.code(401).send(errorBody('UNAUTHORIZED', 'this server requires Authorization: Bearer <token>'));
      }
    });
  }

  const errors = { 400: ErrorSchema, 404: ErrorSchema, 500: ErrorSchema, 503: ErrorSchema };

  api.get('/healthz', { schema: { response: { 200: Type.Object({ status: Type.String() }), 503: ErrorSchema } } }, async (_request, reply) => {
    if (!(await options.storeHealthy())) return reply.code(503).send(errorBody('STORE_UNAVAILABLE', 'the flow-log store does not answer'));
    return { status: 'ok' };
  });

  api.get(
    '/api/v1/connections',
    { schema: { querystring: ConnectionQuery, response: { 200: Type.Object({ connection: ConnectionSchema }), ...errors } } },
    async (request) => ({ connection: connectionJson(await connectionFor(request.query)) }),
  );

  api.get(
    '/api/v1/connections/timeline',
    {
      schema: {
        querystring: ConnectionQuery,
        response: { 200: Type.Object({ packets: Type.Array(PacketSchema), drops: Type.Array(DropSchema) }), ...errors },
      },
    },
    async (request) => {
      const connection = await connectionFor(request.query);
      const packets = [];
      for await (const packet of connectionPackets(reader, connection)) packets.push(packetJson(packet));
      return { packets, drops: [] };
    },
  );

  const captureFile = Type.Unsafe<Readable>({ type: 'string', format: 'binary', description: 'pcapng (default) or pcap' });
  api.get('/api/v1/pcap', { schema: { querystring: PcapQuery, response: { 200: captureFile, ...errors } } }, async (request, reply) => {
    const { from, to, format = 'pcapng' } = request.query;
    const range = { from: optionalTime(from, 'from'), to: optionalTime(to, 'to') };
    const connection = await connectionFor(request.query);
    const type = CAPTURE_FILE_TYPES[format];
    const name = `nettrail-${connection.proto}-${connection.tuples[0].src}-${connection.tuples[0].sport}.${type.extension}`.replace(/[^\w.-]/g, '_');
    reply.header('content-type', type.contentType).header('content-disposition', `attachment; filename="${name}"`);
    return reply.send(Readable.from(writeCaptureFile(pcapItems(connectionPackets(reader, connection, range), connection), {
      format,
      sectionComment: `nettrail: ${formatTuple({ proto: connection.proto, ...connection.tuples[0] })}`,
    })));
  });

  api.get(
    '/api/v1/flows',
    { schema: { querystring: FlowsQuery, response: { 200: Type.Object({ flows: Type.Array(FlowSchema), next_cursor: Type.Null() }), ...errors } } },
    async (request) => ({ flows: (await options.recentFlows(request.query.limit ?? 100)).map(flowJson), next_cursor: null }),
  );

  api.get(
    '/api/v1/nat',
    { schema: { querystring: NatQuery, response: { 200: Type.Object({ translations: Type.Array(NatTranslationSchema) }), ...errors } } },
    async (request) => ({ translations: (await options.natTranslations(request.query.limit ?? 100)).map(natTranslationJson) }),
  );

  api.get('/api/v1/capture/status', { schema: { response: { 200: CaptureStatusSchema } } }, async () => {
    const status = options.captureStatus();
    return status ? { capturing: true, ...status } : { capturing: false, points: [], packets: 0, lost: 0, malformed: 0, skipped: [] };
  });

  if (options.uiDir && existsSync(path.join(options.uiDir, 'index.html'))) {
    await fastify.register(fastifyStatic, { root: options.uiDir, wildcard: false });
    // History-mode routes of the UI (/connection?tuple=...) load index.html.
    fastify.setNotFoundHandler((request, reply) => {
      if (request.method === 'GET' && !request.url.startsWith('/api/')) return reply.sendFile('index.html');
      return reply.code(404).send(errorBody('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`));
    });
  } else {
    fastify.setNotFoundHandler((request, reply) =>
      reply.code(404).send(errorBody('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
    );
  }
};

/** The connection's packets with a comment on the first packet after each NAT hop. */
async function* pcapItems(packets: AsyncIterable<PacketRecord>, connection: Connection): AsyncIterable<CaptureItem> {
  const pending = connection.hops.map((hop) => ({ hop, comment: natHopComment(hop) }));
  for await (const packet of packets) {
    const at = pending.findIndex(({ hop }) => hop.node === packet.node && hop.netns === packet.netns && sameTuple(hop.after, packet));
    if (at < 0) {
      yield { kind: 'packet', packet };
      continue;
    }
    const [{ comment }] = pending.splice(at, 1);
    yield { kind: 'packet', packet, comment };
  }
}
