// The drops table (schema.ts DROPS): DropRecords <-> rows, a connection's drops,
// and drop search with filters and keyset (cursor) pagination. Inserts are
// RowBinary rows of DROP_COLUMNS; every query value goes in as a parameter.

import type { DropFateName, DropRecord, EpochNs, FourTuple, Proto } from '../model/records.js';
import type { TimeRange } from '../model/time.js';
import { fromMappedText } from '../model/address.js';
import { PROTO_NUMBER } from '../model/protocol.js';
import { addressBytes, enumValue, invalid, MAX_TS_NS, timestamp, U16, U32, u64, uint, utf8 } from './codec.js';
import { afterConditions, decodeCursor, encodeCursor, orderBy, trafficConditions } from './keyset-search.js';
import type { KeyColumn, PageRequest, TrafficColumns, TrafficFilter } from './keyset-search.js';
import { connKeyList, nsText, timeParam, typedParam, type Params } from './query-params.js';
import type { RowBinaryWriter } from './rowbinary.js';
import type { FlowLogStore } from './store.js';

// ---- rows

export const DROP_COLUMNS = [
  'ts', 'node', 'netns', 'netns_ino', 'iface', 'ifindex', 'proto', 'src', 'sport', 'dst', 'dport',
  'reason', 'reason_code', 'location', 'stack', 'cause', 'packet_id', 'wire_len', 'link_type', 'headers',
  'fate', 'fate_proof', 'seen_at', 'seen_delta_ns',
] as const;

/** The Enum8 values of schema.ts DROP_FATE_ENUM. */
export const DROP_FATE_VALUES: Readonly<Record<DropFateName, number>> = { unknown: 0, lost: 1, copy: 2, consumed: 3 };
export const DROP_FATES = Object.keys(DROP_FATE_VALUES) as DropFateName[];
/** The fates that count as a loss of the packet: `unknown` (not decided, rows from before fates) included. */
export const LOSS_FATES: readonly DropFateName[] = ['lost', 'unknown'];
/** SQL: the row is a loss. */
export const LOSS_CONDITION = `fate IN (${LOSS_FATES.map((f) => `'${f}'`).join(', ')})`;

export function encodeDrop(d: DropRecord, out: RowBinaryWriter): void {
  const ts = timestamp(d.ts, 'ts');
  const proto = enumValue(d.proto, PROTO_NUMBER, 'proto');
  const packetId = u64(d.packetId, 'packetId');
  if (!Array.isArray(d.stack)) throw invalid('stack', d.stack);
  if (!(d.headers instanceof Uint8Array)) throw invalid('headers', d.headers);
  const src = addressBytes(d.src, 'src');
  const dst = addressBytes(d.dst, 'dst');
  out.i64(ts);
  out.string(utf8(d.node, 'node'));
  out.string(utf8(d.netns, 'netns'));
  out.u32(uint(d.netnsIno, U32, 'netnsIno'));
  out.string(utf8(d.iface, 'iface'));
  out.u32(uint(d.ifindex, U32, 'ifindex'));
  out.u8(proto);
  out.fixed(src);
  out.u16(uint(d.sport, U16, 'sport'));
  out.fixed(dst);
  out.u16(uint(d.dport, U16, 'dport'));
  out.string(utf8(d.reason, 'reason'));
  out.u32(uint(d.reasonCode, U32, 'reasonCode'));
  out.string(utf8(d.location, 'location'));
  out.varUInt(d.stack.length);
  d.stack.forEach((frame, i) => out.string(utf8(frame, `stack[${i}]`)));
  out.string(utf8(d.cause, 'cause'));
  out.u64(packetId);
  out.u32(uint(d.wireLen, U32, 'wireLen'));
  out.u16(uint(d.linkType, U16, 'linkType'));
  out.string(d.headers);
  out.u8(enumValue(d.fate.fate, DROP_FATE_VALUES, 'fate'));
  out.string(utf8(d.fate.proof, 'fate.proof'));
  out.string(utf8(d.fate.seenAt ?? '', 'fate.seenAt'));
  if (d.fate.seenDeltaNs === null) out.u8(1);
  else {
    out.u8(0);
    out.i64(d.fate.seenDeltaNs);
  }
}

const DROP_SELECT_COLUMNS = [
  nsText('ts'), 'node', 'netns', 'netns_ino', 'iface', 'ifindex', 'proto', 'toString(src)', 'sport', 'toString(dst)', 'dport',
  'reason', 'reason_code', 'location', 'stack', 'cause', 'toString(packet_id)', 'wire_len', 'link_type', 'base64Encode(headers)',
  'fate', 'fate_proof', 'seen_at', 'toString(seen_delta_ns)',
].join(', ');

type DropRow = [
  string, string, string, number, string, number, Proto, string, number, string, number,
  string, number, string, string[], string, string, number, number, string,
  DropFateName, string, string, string | null,
];

export function decodeDrop(row: unknown): DropRecord {
  const [
    ts, node, netns, netnsIno, iface, ifindex, proto, src, sport, dst, dport,
    reason, reasonCode, location, stack, cause, packetId, wireLen, linkType, headers,
    fate, proof, seenAt, seenDeltaNs,
  ] = row as DropRow;
  const bytes = Buffer.from(headers, 'base64');
  return {
    ts: BigInt(ts), node, netns, netnsIno, iface, ifindex, proto,
    src: fromMappedText(src), sport, dst: fromMappedText(dst), dport,
    reason, reasonCode, location, stack, cause,
    packetId: BigInt(packetId), wireLen, linkType,
    headers: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    fate: { fate, proof, seenAt: seenAt === '' ? null : seenAt, seenDeltaNs: seenDeltaNs === null ? null : BigInt(seenDeltaNs) },
  };
}

// ---- queries

/** The order of drops: by time, then by what tells drops at the same time apart. */
const DROP_KEY: readonly KeyColumn[] = [
  { sql: 'ts', param: timeParam },
  { sql: 'node', param: typedParam('String') },
  { sql: 'netns_ino', param: typedParam('UInt32') },
  { sql: 'packet_id', param: typedParam('UInt64') },
];

/**
 * The drops of one connection within `range`: those whose own tuple is one of
 * the connection's (either direction), and those of a packet capture saw as
 * part of it (same packet id), whatever tuple the packet had where it was
 * dropped (e.g. after a DNAT no conntrack event reported, as when the packet
 * was dropped before the entry was confirmed).
 */
export async function dropsForTuples(
  store: FlowLogStore,
  proto: Proto,
  tuples: readonly FourTuple[],
  range: TimeRange = {},
): Promise<DropRecord[]> {
  if (tuples.length === 0) return [];
  const params: Params = { from: range.from ?? 0n, to: range.to ?? MAX_TS_NS };
  const keys = connKeyList(proto, tuples, params);
  const inRange = (column: string) => `${column} >= ${timeParam('from')} AND ${column} <= ${timeParam('to')}`;
  const query = `SELECT ${DROP_SELECT_COLUMNS} FROM ${store.table('drops')}
    WHERE ${inRange('ts')} AND (conn_key IN (${keys})
      OR packet_id IN (SELECT arrayJoin(packet_ids) FROM ${store.table('packets')}
        WHERE conn_key IN (${keys}) AND last_ts >= ${timeParam('from')} AND first_ts <= ${timeParam('to')}))
    ORDER BY ${orderBy(DROP_KEY, false)}`;
  return store.select(query, params, decodeDrop);
}

/**
 * Every condition given must hold. Addresses and ports are the dropped
 * packet's: `ip`/`port` either side, `src`/`sport`, `dst`/`dport` as it
 * travelled; `from`/`to`: drops at or after `from` and at or before `to`.
 */
export interface DropFilter extends TrafficFilter {
  /** Any of these reasons (`NETFILTER_DROP`, or a number the kernel has no name for). */
  reasons?: string[];
  /** Any of these fates. */
  fates?: DropFateName[];
}

const DROP_FILTER_COLUMNS: TrafficColumns = { src: 'src', sport: 'sport', dst: 'dst', dport: 'dport', start: 'ts', end: 'ts' };

/** By time, oldest or (-ts) newest first. */
export type DropOrder = 'ts' | '-ts';
export const DROP_ORDERS: readonly DropOrder[] = ['-ts', 'ts'];
export const DEFAULT_DROP_ORDER: DropOrder = '-ts';

/** A position in one order: the last drop of a page. */
export interface DropCursor {
  order: DropOrder;
  ts: EpochNs;
  node: string;
  netnsIno: number;
  packetId: bigint;
}

export interface DropPage {
  drops: DropRecord[];
  /** Where the next page starts; null when this page is the last. */
  next: DropCursor | null;
}

/** A cursor as opaque text. */
export function encodeDropCursor(cursor: DropCursor): string {
  return encodeCursor(cursor.order, [cursor.ts.toString(), cursor.node, cursor.netnsIno, cursor.packetId.toString()]);
}

/** The cursor `text` encodes, or null when it is not one of `encodeDropCursor`'s. */
export function decodeDropCursor(text: string): DropCursor | null {
  const decoded = decodeCursor(text, DROP_ORDERS, 4);
  if (decoded === null) return null;
  const [ts, node, netnsIno, packetId] = decoded.fields;
  if (typeof ts !== 'string' || !/^\d{1,19}$/.test(ts) || BigInt(ts) > MAX_TS_NS) return null;
  if (typeof node !== 'string' || node.length > 256) return null;
  if (typeof netnsIno !== 'number' || !Number.isInteger(netnsIno) || netnsIno < 0 || netnsIno > U32) return null;
  if (typeof packetId !== 'string' || !/^\d{1,20}$/.test(packetId) || BigInt(packetId) >= 1n << 64n) return null;
  return { order: decoded.order, ts: BigInt(ts), node, netnsIno, packetId: BigInt(packetId) };
}

/** The WHERE conditions of `filter`; adds their parameters. */
function filterConditions(filter: DropFilter, params: Params): string[] {
  const conditions = trafficConditions(filter, DROP_FILTER_COLUMNS, params);
  if (filter.reasons !== undefined) {
    params.reasons = filter.reasons;
    conditions.push('reason IN {reasons:Array(String)}');
  }
  if (filter.fates !== undefined) {
    params.fates = filter.fates;
    conditions.push('fate IN {fates:Array(String)}');
  }
  return conditions;
}

/** Drops matching `filter`, `limit` at a time in `order` (by time), starting after `after`. */
export async function searchDrops(
  store: FlowLogStore,
  filter: DropFilter,
  page: PageRequest<DropOrder, DropCursor>,
): Promise<DropPage> {
  const { order, limit, after } = page;
  const params: Params = { limit: uint(limit, U32, 'limit') + 1 };
  const conditions = filterConditions(filter, params);
  const descending = order === '-ts';
  if (after) conditions.push(...afterConditions(DROP_KEY, descending, [after.ts, after.node, after.netnsIno, after.packetId.toString()], params));
  const query = `SELECT ${DROP_SELECT_COLUMNS} FROM ${store.table('drops')}
    ${conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : ''}
    ORDER BY ${orderBy(DROP_KEY, descending)}
    LIMIT {limit:UInt32}`;
  const drops = await store.select(query, params, decodeDrop);
  const last = drops.length > limit ? drops[limit - 1] : undefined;
  return {
    drops: drops.slice(0, limit),
    next: last === undefined ? null : { order, ts: last.ts, node: last.node, netnsIno: last.netnsIno, packetId: last.packetId },
  };
}
