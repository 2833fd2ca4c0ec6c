// NAT translations as recorded (conntrack, IPVS, OVS).
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { NatFilter } from '../../flowlog/queries.js';
import { canonicalAddress } from '../../model/address.js';
import type { AppOptions } from '../options.js';
import { natTranslationJson } from '../json.js';
import { DEFAULT_LIMIT, ErrorResponses } from '../schemas/common.js';
import { NatQuery, NatTranslationSchema, type NatQueryJson } from '../schemas/nat.js';
import { timeRange } from '../search-params.js';

/** The store's filter for the query's parameters. */
function natFilter(query: NatQueryJson): NatFilter {
  // An address: the schema's `ip-address` format let it through (api/formats.ts).
  const ip = query.ip === undefined ? undefined : canonicalAddress(query.ip)!;
  return {
    ip,
    port: query.port,
    proto: query.proto,
    node: query.node,
    netns: query.netns,
    ...timeRange(query),
    limit: query.limit ?? DEFAULT_LIMIT,
  };
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
