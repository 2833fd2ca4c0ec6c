// Drop search: packets the kernel dropped, where and why, newest first, a page at a time.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { decodeDropCursor, DEFAULT_DROP_ORDER, encodeDropCursor, type DropFilter } from '../../flowlog/drops-table.js';
import type { AppOptions } from '../options.js';
import { dropJson } from '../json.js';
import { DEFAULT_LIMIT, ErrorResponses } from '../schemas/common.js';
import { DropsQuery, DropsResponse } from '../schemas/drops.js';
import { afterCursor, nextCursor, trafficFilter } from '../search-params.js';

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
      const order = query.order ?? DEFAULT_DROP_ORDER;
      const filter: DropFilter = { ...trafficFilter(query), reasons: query.reason, fates: query.fate };
      const after = afterCursor(query.cursor, order, decodeDropCursor);
      const page = await options.searchDrops(filter, { order, limit: query.limit ?? DEFAULT_LIMIT, after });
      return { drops: page.drops.map(dropJson), next_cursor: nextCursor(page.next, encodeDropCursor) };
    },
  );
};
