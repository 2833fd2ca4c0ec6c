// Connection search: the connections (flows grouped by connection_id, at every
// capture point) of which any flow matches the flow search's filter, newest
// first, a page at a time. Grouped in the store, over the newest version of
// every flow; every value goes in as a query parameter.

import { fromMappedText } from '../model/address.js';
import type { CapturePoint, Directional, EpochNs, FourTuple, Proto } from '../model/records.js';
import { filterConditions, FLOW_TRAITS, traitCondition, type FlowCursor, type FlowFilter, type FlowOrder, type FlowTrait } from './flow-search.js';
import { afterConditions, orderBy, type KeyColumn, type PageRequest } from './keyset-search.js';
import { newestVersions } from './queries.js';
import { nsText, timeParam, typedParam, type Params } from './query-params.js';
import { FLOWS } from './schema.js';
import type { FlowLogStore } from './store.js';

/** Connections are listed newest first: by the start of their earliest flow, then by id (both descending). */
export const CONNECTION_ORDER = '-start' satisfies FlowOrder;
export type ConnectionOrder = typeof CONNECTION_ORDER;


/** One flow of a connection: what one capture point saw of it. */
export interface ConnectionPoint extends CapturePoint {
  flowId: string;
  start: EpochNs;
  /** The tuple there, client to server. */
  tuple: FourTuple;
  packets: Directional;
  bytes: Directional;
  connState: string;
}

/** A connection as the store groups it. */
export interface ConnectionRow {
  /** Its connection_id: the id of its earliest flow. */
  id: string;
  proto: Proto;
  firstSeen: EpochNs;
  lastSeen: EpochNs;
  /** Its flows in path order: by start (the first packet reaches the points along the path in turn), then id. */
  points: ConnectionPoint[];
  /** The traits (as `has` filters flows) any of its flows has. */
  marks: Record<FlowTrait, boolean>;
}

export interface ConnectionPage {
  connections: ConnectionRow[];
  /** Where the next page starts (a flow cursor in order -start: the last connection's start and id); null when this page is the last. */
  next: FlowCursor | null;
}

const KEY: readonly KeyColumn[] = [
  { sql: 'first_seen_ts', param: timeParam },
  { sql: 'connection_id', param: typedParam('String') },
];

/** A flow of the group: start (epoch ns, as text: a number would lose digits in JSON), id, then what the point saw. */
const POINT_TUPLE = `tuple(${nsText('start_ts')}, id, node, netns, iface, toString(client_ip), client_port, toString(server_ip), server_port,
  toString(packets_c2s), toString(packets_s2c), toString(bytes_c2s), toString(bytes_s2c), toString(conn_state))`;

type PointRow = [string, string, string, string, string, string, number, string, number, string, string, string, string, string];
type GroupRow = [string, Proto, string, string, PointRow[], ...number[]];

function decodePoint([start, flowId, node, netns, iface, client, clientPort, server, serverPort, pc2s, ps2c, bc2s, bs2c, connState]: PointRow): ConnectionPoint {
  return {
    flowId, node, netns, iface, start: BigInt(start),
    tuple: { src: fromMappedText(client), sport: clientPort, dst: fromMappedText(server), dport: serverPort },
    packets: { c2s: Number(pc2s), s2c: Number(ps2c) },
    bytes: { c2s: Number(bc2s), s2c: Number(bs2c) },
    connState,
  };
}

function decodeGroup(row: unknown): ConnectionRow {
  const [id, proto, firstSeen, lastSeen, points, ...marks] = row as GroupRow;
  return {
    id, proto, firstSeen: BigInt(firstSeen), lastSeen: BigInt(lastSeen),
    points: points.map(decodePoint),
    marks: Object.fromEntries(FLOW_TRAITS.map((trait, i) => [trait, Number(marks[i]) > 0])) as Record<FlowTrait, boolean>,
  };
}

/**
 * The connections of which any flow (in its newest state) matches `filter`,
 * `limit` at a time, newest first, after `after` (keyset pagination: a
 * connection whose start stays put is neither repeated nor skipped). One
 * scan: the newest flows are grouped by connection_id, and a group is kept
 * when any of its rows meets every condition.
 */
export async function searchConnections(
  store: FlowLogStore,
  filter: FlowFilter,
  page: PageRequest<ConnectionOrder, FlowCursor>,
): Promise<ConnectionPage> {
  const params: Params = { limit: page.limit + 1 };
  const conditions = filterConditions(store, filter, params);
  const having = [`countIf(${conditions.length > 0 ? conditions.join(' AND ') : '1'}) > 0`];
  if (page.after) having.push(...afterConditions(KEY, true, [page.after.key.toString(), page.after.id], params));
  const marks = FLOW_TRAITS.map((trait) => `max(toUInt8(${traitCondition(store, trait)}))`);
  const rows = await store.select(
    `SELECT connection_id, any(proto), ${nsText('min(start_ts)')}, ${nsText('max(end_ts)')}, arraySort(point -> (toInt64(point.1), point.2), groupArray(${POINT_TUPLE})),
        ${marks.join(', ')}, min(start_ts) AS first_seen_ts
      FROM (${newestVersions(store, FLOWS, '1')})
      GROUP BY connection_id
      HAVING ${having.join(' AND ')}
      ORDER BY ${orderBy(KEY, true)} LIMIT {limit:UInt32}`,
    params,
    decodeGroup,
    // The drop trait compares conn_key, a MATERIALIZED column, which SELECT * leaves out otherwise.
    { asterisk_include_materialized_columns: 1 },
  );
  const connections = rows.slice(0, page.limit);
  const last = rows.length > page.limit ? rows[page.limit - 1] : undefined;
  return { connections, next: last === undefined ? null : { order: CONNECTION_ORDER, key: last.firstSeen, id: last.id } };
}
