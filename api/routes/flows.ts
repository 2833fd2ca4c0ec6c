// Flow-log search and single flows.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { decodeFlowCursor, DEFAULT_FLOW_ORDER, encodeFlowCursor } from '../../flowlog/flow-search.js';
import type { AppOptions } from '../options.js';
import { flowJson } from '../json.js';
import { NotFoundError } from '../errors.js';
import { DEFAULT_LIMIT, ErrorResponses } from '../schemas/common.js';
import { FlowIdParams, FlowSchema, FlowsQuery, FlowsResponse } from '../schemas/flows.js';
import { afterCursor, flowFilter, nextCursor } from '../search-params.js';

export const flowRoutes: FastifyPluginAsync<AppOptions> = async (fastify, options) => {
  const api = fastify.withTypeProvider<TypeBoxTypeProvider>();

  api.get(
    '/api/v1/flows',
    {
      schema: {
        summary: 'Search the flow log: flows (one per capture point) matching every filter given, a page at a time',
        querystring: FlowsQuery,
        response: { 200: FlowsResponse, ...ErrorResponses },
      },
    },
    async (request) => {
      const { query } = request;
      const order = query.order ?? DEFAULT_FLOW_ORDER;
      const filter = flowFilter(query);
      const after = afterCursor(query.cursor, order, decodeFlowCursor);
      const page = await options.searchFlows(filter, { order, limit: query.limit ?? DEFAULT_LIMIT, after });
      return { flows: page.flows.map(flowJson), next_cursor: nextCursor(page.next, encodeFlowCursor) };
    },
  );

  api.get(
    '/api/v1/flows/:id',
    {
      schema: {
        summary: 'One flow, in its newest state',
        params: FlowIdParams,
        response: { 200: FlowSchema, ...ErrorResponses },
      },
    },
    async (request) => {
      const flow = await options.flowById(request.params.id);
      if (!flow) throw new NotFoundError(`no flow with id ${JSON.stringify(request.params.id)}`);
      return flowJson(flow);
    },
  );
};
