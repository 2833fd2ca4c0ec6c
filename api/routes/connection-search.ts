// Connection search: one row per connection, newest first, a page at a time.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { summarizeConnection } from '../../connection/connection-search.js';
import { CONNECTION_ORDER } from '../../flowlog/connection-search.js';
import { decodeFlowCursor, encodeFlowCursor } from '../../flowlog/flow-search.js';
import type { AppOptions } from '../options.js';
import { connectionRowJson } from '../json.js';
import { DEFAULT_LIMIT, ErrorResponses } from '../schemas/common.js';
import { ConnectionSearchQuery, ConnectionSearchResponse } from '../schemas/connection-search.js';
import { afterCursor, flowFilter, nextCursor } from '../search-params.js';

export const connectionSearchRoutes: FastifyPluginAsync<AppOptions> = async (fastify, options) => {
  const api = fastify.withTypeProvider<TypeBoxTypeProvider>();

  api.get(
    '/api/v1/connections/search',
    {
      schema: {
        summary: 'Search connections: one row per connection (its flows at every capture point), any of whose flows matches every filter given, newest first',
        querystring: ConnectionSearchQuery,
        response: { 200: ConnectionSearchResponse, ...ErrorResponses },
      },
    },
    async (request) => {
      const { query } = request;
      const after = afterCursor(query.cursor, CONNECTION_ORDER, decodeFlowCursor);
      const page = await options.searchConnections(flowFilter(query), { order: CONNECTION_ORDER, limit: query.limit ?? DEFAULT_LIMIT, after });
      return {
        connections: page.connections.map((row) => connectionRowJson(summarizeConnection(row))),
        next_cursor: nextCursor(page.next, encodeFlowCursor),
      };
    },
  );
};
