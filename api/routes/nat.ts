// NAT translations as recorded (conntrack, IPVS, OVS).
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { Static } from 'typebox';
import type { NatFilter } from '../../flowlog/queries.js';
import { canonicalAddress } from '../address.js';
import type { AppOptions } from '../app.js';
import { natTranslationJson } from '../connection.js';
import { BadParameterError } from '../errors.js';
import { ErrorResponses, NatQuery, NatTranslationSchema } from '../schemas.js';
import { parseTime } from '../time.js';

/** The store's filter for the query's parameters. */
function natFilter(query: Static<typeof NatQuery>): NatFilter {
  const ip = query.ip === undefined ? undefined : canonicalAddress(query.ip);
  if (ip === null) throw new BadParameterError('ip', `${JSON.stringify(query.ip)} is not an IPv4 or IPv6 address`);
  const filter: NatFilter = {
    ip,
    port: query.port,
    proto: query.proto,
    node: query.node,
    netns: query.netns,
    from: query.from === undefined ? undefined : parseTime(query.from, 'from'),
    to: query.to === undefined ? undefined : parseTime(query.to, 'to'),
    limit: query.limit ?? 100,
  };
  if (filter.from !== undefined && filter.to !== undefined && filter.from > filter.to) throw new BadParameterError('to', 'is before from');
  return filter;
}

export const natRoutes: FastifyPluginAsync<AppOptions> = async (fastify, options) => {
  const api = fastify.withTypeProvider<TypeBoxTypeProvider>();

  api.get(
    '/api/v1/nat',
    {
      schema: {
        summary: 'NAT translations (conntrack, IPVS, OVS) matching every filter given, most recently seen first',
        querystring: NatQuery,
        response: { 200: Type.Object({ translations: Type.Array(NatTranslationSchema) }), ...ErrorResponses },
      },
    },
    async (request) => ({ translations: (await options.natTranslations(natFilter(request.query))).map(natTranslationJson) }),
  );
};
