// Drop search: packets the kernel dropped, where and why, newest first, a page at a time.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { decodeDropCursor, encodeDropCursor, type DropFilter, type DropOrder } from '../../flowlog/drops.js';
import type { IpRange } from '../../flowlog/search.js';
import { parseAddressRange } from '../address.js';
import type { AppOptions } from '../app.js';
import { dropJson } from '../drops.js';
import { BadParameterError } from '../errors.js';
import { DropsQuery, DropsResponse, ErrorResponses, type DropsQueryJson } from '../schemas.js';
import { parseTime } from '../time.js';

function addressRange(text: string | undefined, parameter: string): IpRange | undefined {
  if (text === undefined) return undefined;
  const range = parseAddressRange(text);
  if (range === null) {
    throw new BadParameterError(parameter, `${JSON.stringify(text)} is not an IPv4 or IPv6 address or CIDR range (10.0.0.0/8, fd00::/16)`);
  }
  return range;
}

/** The store's filter for the query's parameters. */
export function dropFilter(query: DropsQueryJson): DropFilter {
  const filter: DropFilter = {
    ip: addressRange(query.ip, 'ip'),
    src: addressRange(query.src, 'src'),
    dst: addressRange(query.dst, 'dst'),
    port: query.port,
    sport: query.sport,
    dport: query.dport,
    proto: query.proto,
    from: query.from === undefined ? undefined : parseTime(query.from, 'from'),
    to: query.to === undefined ? undefined : parseTime(query.to, 'to'),
    reasons: query.reason,
    node: query.node,
    netns: query.netns,
    iface: query.iface,
  };
  if (filter.from !== undefined && filter.to !== undefined && filter.from > filter.to) throw new BadParameterError('to', 'is before from');
  return filter;
}

export const dropRoutes: FastifyPluginAsync<AppOptions> = async (fastify, options) => {
  const api = fastify.withTypeProvider<TypeBoxTypeProvider>();

  api.get(
    '/api/v1/drops',
    {
      schema: {
        summary: 'Packets the kernel dropped (skb:kfree_skb) matching every filter given, with reason, location, stack and cause',
        querystring: DropsQuery,
        response: { 200: DropsResponse, ...ErrorResponses },
      },
    },
    async (request) => {
      const { query } = request;
      const order: DropOrder = query.order === 'ts' ? 'ts' : '-ts';
      const filter = dropFilter(query);
      let after;
      if (query.cursor !== undefined) {
        after = decodeDropCursor(query.cursor);
        if (after === null) throw new BadParameterError('cursor', 'is not a next_cursor of this API', 'BAD_CURSOR');
        if (after.order !== order) {
          throw new BadParameterError('cursor', `belongs to order=${after.order}; repeat the query with the same order`, 'BAD_CURSOR');
        }
      }
      const page = await options.searchDrops(filter, { order, limit: query.limit ?? 100, after });
      return { drops: page.drops.map(dropJson), next_cursor: page.next === null ? null : encodeDropCursor(page.next) };
    },
  );
};
