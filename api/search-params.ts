// The query parameters the search routes share, as the store takes them:
// addresses, ports, protocol, time and capture point (flows, drops), the
// time range (also NAT), the cursor of a page and the next one.
import type { FlowFilter } from '../flowlog/flow-search.js';
import type { TrafficFilter } from '../flowlog/keyset-search.js';
import type { EpochNs } from '../model/records.js';
import { parseAddressRange, type IpRange } from '../model/address.js';
import { BadParameterError } from './errors.js';
import type { FlowsQueryJson } from './schemas/flows.js';
import { parseTime } from '../model/time.js';

/** The filter parameters flow and drop search share (FlowsQuery's, as DropsQuery's). */
type TrafficQuery = Pick<FlowsQueryJson, 'ip' | 'src' | 'dst' | 'port' | 'sport' | 'dport' | 'proto' | 'from' | 'to' | 'node' | 'netns' | 'iface'>;

/** An address or range the schema's `address-or-cidr` format let through (api/formats.ts). */
const addressRange = (text: string | undefined): IpRange | undefined => (text === undefined ? undefined : parseAddressRange(text)!);

/** `from` and `to` as epoch ns; `to` before `from` is refused. */
export function timeRange(query: { from?: string; to?: string }): { from?: EpochNs; to?: EpochNs } {
  const from = query.from === undefined ? undefined : parseTime(query.from, 'from');
  const to = query.to === undefined ? undefined : parseTime(query.to, 'to');
  if (from !== undefined && to !== undefined && from > to) throw new BadParameterError('to', 'is before from');
  return { from, to };
}

/** The store's filter for the parameters flow and drop search share. */
export function trafficFilter(query: TrafficQuery): TrafficFilter {
  return {
    ip: addressRange(query.ip),
    src: addressRange(query.src),
    dst: addressRange(query.dst),
    port: query.port,
    sport: query.sport,
    dport: query.dport,
    proto: query.proto,
    ...timeRange(query),
    node: query.node,
    netns: query.netns,
    iface: query.iface,
  };
}

/** The store's filter for the flow filters (FlowFilterParameters: the flow search's, the connection search's). */
export function flowFilter(query: Omit<FlowsQueryJson, 'limit' | 'cursor' | 'order'>): FlowFilter {
  return { ...trafficFilter(query), states: query.state, has: query.has, loopback: query.loopback };
}

/** The position `cursor=` gives for a page in `order` (none without one); BAD_CURSOR when it is no next_cursor, or one of another order. */
export function afterCursor<Cursor extends { order: string }>(
  text: string | undefined,
  order: string,
  decode: (text: string) => Cursor | null,
): Cursor | undefined {
  if (text === undefined) return undefined;
  const after = decode(text);
  if (after === null) throw new BadParameterError('cursor', 'is not a next_cursor of this API', 'BAD_CURSOR');
  if (after.order !== order) {
    throw new BadParameterError('cursor', `belongs to order=${after.order}; repeat the query with the same order`, 'BAD_CURSOR');
  }
  return after;
}

/** A page's next_cursor: where the next page starts, null after the last. */
export const nextCursor = <Cursor>(next: Cursor | null, encode: (cursor: Cursor) => string): string | null => (next === null ? null : encode(next));
