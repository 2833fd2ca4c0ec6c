// What flow search (flow-search.ts) and drop search (drops-table.ts) share:
// the filter on addresses, ports, protocol, time and capture point; keyset
// pagination (the order, the conditions for the rows after a position in it);
// cursors as opaque text. Every value goes in as a query parameter.

import type { IpRange } from '../model/address.js';
import type { EpochNs, Proto } from '../model/records.js';
import { ipv6Param, portParam, protoParam, timeParam, type Params } from './query-params.js';

/**
 * Every condition given must hold. Addresses and ports: `ip`/`port` either
 * side, `src`/`sport` one, `dst`/`dport` the other (which: TrafficColumns).
 */
export interface TrafficFilter {
  ip?: IpRange;
  src?: IpRange;
  dst?: IpRange;
  port?: number;
  sport?: number;
  dport?: number;
  proto?: Proto;
  /** What is searched lies (at least in part) at or after `from` and at or before `to` (epoch ns). */
  from?: EpochNs;
  to?: EpochNs;
  node?: string;
  netns?: string;
  iface?: string;
}

/** The columns a TrafficFilter compares. */
export interface TrafficColumns {
  src: string;
  sport: string;
  dst: string;
  dport: string;
  /** When what is searched began and ended (the same column for an instant): `to` bounds `start`, `from` bounds `end`. */
  start: string;
  end: string;
}

/** One condition that holds when any of `alternatives` does. */
const either = (alternatives: string[]): string => (alternatives.length > 1 ? `(${alternatives.join(' OR ')})` : alternatives[0]);

/** The WHERE conditions of `filter` on `columns`; adds their parameters. */
export function trafficConditions(filter: TrafficFilter, columns: TrafficColumns, params: Params): string[] {
  const conditions: string[] = [];
  const range = (name: string, sides: string[], ip: IpRange) => {
    params[`${name}_first`] = ipv6Param(ip.first);
    params[`${name}_last`] = ipv6Param(ip.last);
    conditions.push(either(sides.map((column) => `${column} BETWEEN {${name}_first:IPv6} AND {${name}_last:IPv6}`)));
  };
  const port = (name: string, sides: string[], value: number) => {
    params[name] = portParam(value, name);
    conditions.push(either(sides.map((column) => `${column} = {${name}:UInt16}`)));
  };
  const point = (name: 'node' | 'netns' | 'iface', value: string) => {
    params[name] = value;
    conditions.push(`${name} = {${name}:String}`);
  };
  if (filter.ip) range('ip', [columns.src, columns.dst], filter.ip);
  if (filter.src) range('src', [columns.src], filter.src);
  if (filter.dst) range('dst', [columns.dst], filter.dst);
  if (filter.port !== undefined) port('port', [columns.sport, columns.dport], filter.port);
  if (filter.sport !== undefined) port('sport', [columns.sport], filter.sport);
  if (filter.dport !== undefined) port('dport', [columns.dport], filter.dport);
  if (filter.proto !== undefined) {
    params.proto = protoParam(filter.proto);
    conditions.push('toUInt8(proto) = {proto:UInt8}');
  }
  if (filter.from !== undefined) {
    params.from = filter.from;
    conditions.push(`${columns.end} >= ${timeParam('from')}`);
  }
  if (filter.to !== undefined) {
    params.to = filter.to;
    conditions.push(`${columns.start} <= ${timeParam('to')}`);
  }
  if (filter.node !== undefined) point('node', filter.node);
  if (filter.netns !== undefined) point('netns', filter.netns);
  if (filter.iface !== undefined) point('iface', filter.iface);
  return conditions;
}

/** A column (or expression) of a keyset order. */
export interface KeyColumn {
  /** The SQL expression rows are sorted by. */
  sql: string;
  /** SQL reading a query parameter compared with `sql`. */
  param: (name: string) => string;
}

/** ORDER BY for `columns`, all descending or all ascending; they make the order total. */
export function orderBy(columns: readonly KeyColumn[], descending: boolean): string {
  const direction = descending ? 'DESC' : 'ASC';
  return columns.map((column) => `${column.sql} ${direction}`).join(', ');
}

/** The conditions for the rows after `position` (the values of `columns`) in orderBy(columns, descending); adds their parameters. */
export function afterConditions(columns: readonly KeyColumn[], descending: boolean, position: readonly unknown[], params: Params): string[] {
  const values = columns.map((column, i) => {
    params[`after_${i}`] = position[i];
    return column.param(`after_${i}`);
  });
  const [op, bound] = descending ? ['<', '<='] : ['>', '>='];
  // The first condition alone lets ClickHouse skip partitions and granules.
  return [`${columns[0].sql} ${bound} ${values[0]}`, `(${columns.map((column) => column.sql).join(', ')}) ${op} (${values.join(', ')})`];
}

/** What page a search is asked for: `limit` results in `order`, after the position `after` (from the start without). */
export interface PageRequest<Order extends string, Cursor> {
  order: Order;
  limit: number;
  after?: Cursor;
}

/** A cursor as opaque text (base64url of JSON): its order, then the fields of its position. */
export function encodeCursor(order: string, fields: readonly unknown[]): string {
  return Buffer.from(JSON.stringify([order, ...fields])).toString('base64url');
}

/** The order (one of `orders`) and `count` fields `text` encodes, or null when it is not such an encodeCursor. */
export function decodeCursor<Order extends string>(text: string, orders: readonly Order[], count: number): { order: Order; fields: unknown[] } | null {
  if (!/^[A-Za-z0-9_-]{1,2048}$/.test(text)) return null;
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (!Array.isArray(decoded) || decoded.length !== count + 1) return null;
  const [order, ...fields] = decoded as unknown[];
  if (typeof order !== 'string' || !(orders as readonly string[]).includes(order)) return null;
  return { order: order as Order, fields };
}
