// Reads from the flow-log store. Every value goes in as a query parameter.

import type { EpochNs, FlowRecord, FourTuple, NatTranslation, PacketRecord, Proto } from './records.js';
import { storedAddress } from './address.js';
import {
  decodeFlow, decodeNat, decodePacket, FLOW_SELECT_COLUMNS, NAT_SELECT_COLUMNS, PACKET_SELECT_COLUMNS,
} from './codec.js';
import { FlowLogError } from './errors.js';
import { connKeySql, PROTO_NUMBER } from './schema.js';
import type { FlowLogStore } from './store.js';

export interface TimeRange {
  /** Inclusive, epoch ns. */
  from?: EpochNs;
  /** Inclusive, epoch ns. */
  to?: EpochNs;
}

type Params = Record<string, unknown>;

const tsParam = (name: string): string => `fromUnixTimestamp64Nano({${name}:Int64}, 'UTC')`;

/** Rows of a JSONCompactEachRow query, decoded one at a time from the client's stream. */
async function* selectRows(store: FlowLogStore, query: string, params: Params): AsyncGenerator<unknown> {
  const result = await store.client.query({ query, query_params: params, format: 'JSONCompactEachRow' });
  try {
    for await (const rows of result.stream()) {
      for (const row of rows) yield row.json();
    }
  } finally {
    result.close();
  }
}

async function selectAll<T>(store: FlowLogStore, query: string, params: Params, decode: (row: unknown) => T): Promise<T[]> {
  const records: T[] = [];
  for await (const row of selectRows(store, query, params)) records.push(decode(row));
  return records;
}

/** A comma-separated list of connection-key expressions, one per tuple; adds their parameters. */
function connKeyList(proto: Proto, tuples: readonly FourTuple[], params: Params): string {
  params.proto = protoNumber(proto);
  return tuples
    .map((t, i) => {
      params[`src${i}`] = storedAddress(t.src, `tuples[${i}].src`);
      params[`sport${i}`] = port(t.sport, `tuples[${i}].sport`);
      params[`dst${i}`] = storedAddress(t.dst, `tuples[${i}].dst`);
      params[`dport${i}`] = port(t.dport, `tuples[${i}].dport`);
      return connKeySql('{proto:UInt8}', `{src${i}:String}`, `{sport${i}:UInt16}`, `{dst${i}:String}`, `{dport${i}:UInt16}`);
    })
    .join(', ');
}

function protoNumber(proto: Proto): number {
  if (!Object.hasOwn(PROTO_NUMBER, proto)) {
    throw new FlowLogError('INVALID_VALUE', `proto: invalid value ${JSON.stringify(proto)}`);
  }
  return PROTO_NUMBER[proto];
}

function positiveLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > 0xffffffff) {
    throw new FlowLogError('INVALID_VALUE', `limit: invalid value ${JSON.stringify(limit)}`);
  }
  return limit;
}

function port(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new FlowLogError('INVALID_VALUE', `${field}: invalid port ${JSON.stringify(value)}`);
  }
  return value;
}

/** Order of packets with equal timestamps; together with ts it is the paging order. */
const PACKET_ORDER = 'ts, packet_id, node, netns, iface, ifindex, direction, hook';

/**
 * Packets of the connections with any of `tuples` (either direction), in time
 * order. Read in pages of `pageRows` so memory stays bounded whatever the
 * backend buffers per query.
 */
export async function* packetsForTuples(
  store: FlowLogStore,
  proto: Proto,
  tuples: readonly FourTuple[],
  range: TimeRange = {},
  { pageRows = 10_000 }: { pageRows?: number } = {},
): AsyncGenerator<PacketRecord> {
  if (tuples.length === 0) return;
  const params: Params = { limit: positiveLimit(pageRows) };
  const keys = connKeyList(proto, tuples, params);
  let where = `conn_key IN (${keys}) AND ts >= ${tsParam('from')}`;
  if (range.to !== undefined) {
    where += ` AND ts <= ${tsParam('to')}`;
    params.to = range.to;
  }
  const query = `SELECT ${PACKET_SELECT_COLUMNS} FROM ${store.table('packets')} WHERE ${where}
    ORDER BY ${PACKET_ORDER} LIMIT {limit:UInt32} OFFSET {skip:UInt64}`;
  // Each page starts at the last timestamp seen, skipping the rows at that timestamp already returned.
  let from = range.from ?? 0n;
  let skip = 0;
  for (;;) {
    let rows = 0;
    let lastTs: bigint | null = null;
    let atLastTs = 0;
    for await (const row of selectRows(store, query, { ...params, from, skip })) {
      const packet = decodePacket(row);
      rows++;
      if (packet.ts === lastTs) atLastTs++;
      else [lastTs, atLastTs] = [packet.ts, 1];
      yield packet;
    }
    if (rows < pageRows || lastTs === null) return;
    if (lastTs === from) skip += rows;
    else [from, skip] = [lastTs, atLastTs];
  }
}

/** The newest state of every flow of the connections with any of `tuples`, overlapping `range`, by start. */
export async function flowsForTuples(
  store: FlowLogStore,
  proto: Proto,
  tuples: readonly FourTuple[],
  range: TimeRange = {},
): Promise<FlowRecord[]> {
  if (tuples.length === 0) return [];
  const params: Params = {};
  let where = `conn_key IN (${connKeyList(proto, tuples, params)})`;
  if (range.from !== undefined) {
    where += ` AND end_ts >= ${tsParam('from')}`;
    params.from = range.from;
  }
  if (range.to !== undefined) {
    where += ` AND start_ts <= ${tsParam('to')}`;
    params.to = range.to;
  }
  const query = `SELECT ${FLOW_SELECT_COLUMNS} FROM ${store.table('flows')} FINAL WHERE ${where} ORDER BY start_ts, id`;
  return selectAll(store, query, params, decodeFlow);
}

/**
 * NAT entries (newest state) whose original or reply tuple is `tuple` in
 * either direction; with `at`, only those alive then (first seen ≤ at ≤ last seen).
 */
export async function natForTuple(
  store: FlowLogStore,
  proto: Proto,
  tuple: FourTuple,
  at?: EpochNs,
): Promise<NatTranslation[]> {
  const params: Params = {};
  let query = `WITH ${connKeyList(proto, [tuple], params)} AS lookup_key
    SELECT ${NAT_SELECT_COLUMNS} FROM ${store.table('nat_translations')} FINAL
    WHERE (orig_key = lookup_key OR reply_key = lookup_key)`;
  if (at !== undefined) {
    query += ` AND first_seen <= ${tsParam('at')} AND last_seen >= ${tsParam('at')}`;
    params.at = at;
  }
  return selectAll(store, `${query} ORDER BY first_seen, node, netns`, params, decodeNat);
}

export interface NatFilter {
  proto?: Proto;
  /** Any address of the entry's original or reply tuple. */
  ip?: string;
  /** Any port of the entry's original or reply tuple. */
  port?: number;
  node?: string;
  netns?: string;
  /** Entries seen at or after `from` and at or before `to` (epoch ns). */
  from?: EpochNs;
  to?: EpochNs;
  limit: number;
}

/** NAT entries (newest state) matching `filter`, most recently seen first. */
export async function natTranslations(store: FlowLogStore, filter: NatFilter): Promise<NatTranslation[]> {
  const params: Params = { limit: positiveLimit(filter.limit) };
  const conditions: string[] = [];
  if (filter.proto !== undefined) {
    conditions.push('toUInt8(proto) = {proto:UInt8}');
    params.proto = protoNumber(filter.proto);
  }
  if (filter.ip !== undefined) {
    conditions.push('toIPv6({ip:String}) IN (orig_src, orig_dst, reply_src, reply_dst)');
    params.ip = storedAddress(filter.ip, 'ip');
  }
  if (filter.port !== undefined) {
    conditions.push('{port:UInt16} IN (orig_sport, orig_dport, reply_sport, reply_dport)');
    params.port = port(filter.port, 'port');
  }
  if (filter.node !== undefined) {
    conditions.push('node = {node:String}');
    params.node = filter.node;
  }
  if (filter.netns !== undefined) {
    conditions.push('netns = {netns:String}');
    params.netns = filter.netns;
  }
  if (filter.from !== undefined) {
    conditions.push(`last_seen >= ${tsParam('from')}`);
    params.from = filter.from;
  }
  if (filter.to !== undefined) {
    conditions.push(`first_seen <= ${tsParam('to')}`);
    params.to = filter.to;
  }
  const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
  const query = `SELECT ${NAT_SELECT_COLUMNS} FROM ${store.table('nat_translations')} FINAL ${where}
    ORDER BY last_seen DESC, first_seen DESC LIMIT {limit:UInt32}`;
  return selectAll(store, query, params, decodeNat);
}
