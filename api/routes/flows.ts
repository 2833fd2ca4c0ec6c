// Flow-log search and single flows.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { decodeFlowCursor, DEFAULT_FLOW_ORDER, encodeFlowCursor, type FlowFilter, type IpRange } from '../../flowlog/search.js';
import { parseAddressRange } from '../address.js';
import type { AppOptions } from '../app.js';
import { flowJson } from '../connection.js';
import { BadParameterError, NotFoundError } from '../errors.js';
import { ErrorResponses, FlowIdParams, FlowSchema, FlowsQuery, FlowsResponse, type FlowsQueryJson } from '../schemas.js';
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
function flowFilter(query: FlowsQueryJson): FlowFilter {
  const filter: FlowFilter = {
    ip: addressRange(query.ip, 'ip'),
    src: addressRange(query.src, 'src'),
    dst: addressRange(query.dst, 'dst'),
    port: query.port,
    sport: query.sport,
    dport: query.dport,
    proto: query.proto,
    from: query.from === undefined ? undefined : parseTime(query.from, 'from'),
    to: query.to === undefined ? undefined : parseTime(query.to, 'to'),
    states: query.state,
    has: query.has,
    node: query.node,
    netns: query.netns,
    iface: query.iface,
  };
  if (filter.from !== undefined && filter.to !== undefined && filter.from > filter.to) throw new BadParameterError('to', 'is before from');
  return filter;
}

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
      let after;
      if (query.cursor !== undefined) {
        after = decodeFlowCursor(query.cursor);
        if (after === null) throw new BadParameterError('cursor', 'is not a next_cursor of this API', 'BAD_CURSOR');
        if (after.order !== order) {
          throw new BadParameterError('cursor', `belongs to order=${after.order}; repeat the query with the same order`, 'BAD_CURSOR');
        }
      }
      const page = await options.searchFlows(filter, { order, limit: query.limit ?? 100, after });
      return { flows: page.flows.map(flowJson), next_cursor: page.next === null ? null : encodeFlowCursor(page.next) };
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
