// Reads from the flow-log store. Every value goes in as a query parameter.

import type { EpochNs, FlowRecord, FourTuple, NatTranslation, Proto } from '../model/records.js';
import type { TimeRange } from '../model/time.js';
import { decodeFlow, decodeNat, FLOW_SELECT_COLUMNS, MAX_TS_NS, NAT_SELECT_COLUMNS, storedAddress } from './codec.js';
import type { NativeBlock } from './native-format.js';
import { PACKET_READ_COLUMNS, packetRowsOfChunks, type PacketRows } from './packets/rows.js';
import { FlowLogError } from './errors.js';
import { connKeyList, portParam, protoParam, timeParam, type Params } from './query-params.js';
import { FLOWS, NAT_TRANSLATIONS, type TableDefinition } from './schema.js';
import type { FlowLogStore } from './store.js';

function positiveLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > 0xffffffff) {
    throw new FlowLogError('INVALID_VALUE', `limit: invalid value ${JSON.stringify(limit)}`);
  }
  return limit;
}

/** Time slices are cut at quantiles of a connection's packet times: a slice is one or more 1/SLICE_PARTS of its packets. */
const SLICE_PARTS = 64;
const SLICE_QUANTILES = Array.from({ length: SLICE_PARTS - 1 }, (_, i) => (i + 1) / SLICE_PARTS);
/** Past the last DateTime64(9) value: the end of an open time range. */
const END_OF_TIME = MAX_TS_NS + 1n;

export interface PacketReadOptions {
  /** Packets per time slice, about (default 262 144). */
  sliceRows?: number;
  /** Packets per batch yielded, at most (default 8 192, about 1.4 MB of packets). */
  blockRows?: number;
}

/**
 * Packets of the connections with any of `tuples` (either direction), in time
 * order, in batches.
 *
 * The packets are read in time slices of about `sliceRows`, cut at quantiles
 * of their chunks' start times weighted by their packet counts: one slice's
 * chunks are unpacked and sorted at a time, so memory stays bounded whatever
 * the connection's size (a chunk that spans slices is read for each), and the
 * next slice is queried (on the engine's threads) while this one is unpacked.
 */
export async function* packetRowsForTuples(
  store: FlowLogStore,
  proto: Proto,
  tuples: readonly FourTuple[],
  range: TimeRange = {},
  { sliceRows = 262_144, blockRows = 8_192 }: PacketReadOptions = {},
): AsyncGenerator<PacketRows> {
  if (tuples.length === 0) return;
  const batchRows = positiveLimit(blockRows);
  const params: Params = {};
  // Chunks overlapping the range; their packets outside it are left out when unpacked.
  let where = `conn_key IN (${connKeyList(proto, tuples, params)})`;
  if (range.from !== undefined) {
    where += ` AND last_ts >= ${timeParam('from')}`;
    params.from = range.from;
  }
  if (range.to !== undefined) {
    where += ` AND first_ts <= ${timeParam('to')}`;
    params.to = range.to;
  }
  const [[count, quantiles]] = await store.select(
    `SELECT sum(count), quantilesExactWeighted(${SLICE_QUANTILES.join(', ')})(toUnixTimestamp64Nano(first_ts), count) FROM ${store.table('packets')} WHERE ${where}`,
    params,
    (row) => row as [string, string[]],
  );
  if (Number(count) === 0) return;
  // Slice i holds the packets from bounds[i - 1] (inclusive) to bounds[i] (exclusive), within the range.
  const step = Math.max(1, Math.floor((positiveLimit(sliceRows) * SLICE_PARTS) / Number(count)));
  const cuts = [...new Set(quantiles.filter((_, i) => (i + 1) % step === 0))].map(BigInt);
  const bounds = [range.from ?? 0n, ...cuts.filter((cut) => cut > (range.from ?? 0n) && cut <= (range.to ?? MAX_TS_NS)), range.to === undefined ? END_OF_TIME : range.to + 1n];
  const slice = (i: number): AsyncIterator<NativeBlock> => {
    const sliceParams: Params = { ...params, slice_from: bounds[i], slice_to: bounds[i + 1] - 1n };
    const query = `SELECT ${PACKET_READ_COLUMNS} FROM ${store.table('packets')}
      WHERE ${where} AND last_ts >= ${timeParam('slice_from')} AND first_ts <= ${timeParam('slice_to')}`;
    return store.selectNative(query, sliceParams)[Symbol.asyncIterator]();
  };
  const open = (i: number) => {
    const blocks = slice(i);
    return { blocks, first: blocks.next() };
  };
  // The slice being read, and the next one, already queried.
  const opened: Array<ReturnType<typeof open>> = [];
  const slices = bounds.length - 1;
  try {
    opened.push(open(0));
    for (let i = 0; i < slices; i++) {
      if (i + 1 < slices) opened.push(open(i + 1));
      const { blocks, first } = opened[0];
      const read: NativeBlock[] = [];
      for (let result = await first; !result.done; result = await blocks.next()) read.push(result.value);
      opened.shift();
      const batch = packetRowsOfChunks(read, bounds[i], bounds[i + 1]);
      for (let from = 0; from < batch.length; from += batchRows) yield batch.slice(from, from + batchRows);
    }
  } finally {
    // A reader that stops early: end the slices in flight (their sessions close once their fetches return).
    for (const { blocks, first } of opened) await Promise.allSettled([first, blocks.return?.()]);
  }
}

/**
 * The rows of a ReplacingMergeTree table that match `where`, each in its newest version (the
 * highest version column among rows with the same sorting key), as FINAL returns them; `where`
 * may test only columns that are the same in every version. Picked with LIMIT 1 BY over the
 * sorting key: it reads the same granules as FINAL without merging every part's ranges
 * (tables as loaded: flows in 11 parts, p95 41 → 10 ms; NAT entries in 20 parts, p50 120–139 → 16–21 ms).
 */
export function newestVersions(store: FlowLogStore, table: TableDefinition, where: string): string {
  const key = table.orderBy.replace(/^\((.*)\)$/, '$1');
  return `SELECT * FROM ${store.target.database}.${table.name} WHERE ${where} ORDER BY ${key}, ${table.engineArgs[0]} DESC LIMIT 1 BY ${key}`;
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
  // start_ts is the same in every version (a key column), end_ts is not: it is compared with the newest.
  let versions = `conn_key IN (${connKeyList(proto, tuples, params)})`;
  if (range.to !== undefined) {
    versions += ` AND start_ts <= ${timeParam('to')}`;
    params.to = range.to;
  }
  let whereNewest = '';
  if (range.from !== undefined) {
    whereNewest = ` WHERE end_ts >= ${timeParam('from')}`;
    params.from = range.from;
  }
  const query = `SELECT ${FLOW_SELECT_COLUMNS} FROM (${newestVersions(store, FLOWS, versions)})${whereNewest} ORDER BY start_ts, id`;
  return store.select(query, params, decodeFlow);
}

/** The newest state of every flow of the connections `ids` (connection ids), at every capture point, by start. */
export async function flowsOfConnections(store: FlowLogStore, ids: readonly string[]): Promise<FlowRecord[]> {
  if (ids.length === 0) return [];
  // connection_id may change between versions (flows joined later): it is tested on the newest.
  const query = `SELECT ${FLOW_SELECT_COLUMNS} FROM (${newestVersions(store, FLOWS, `id IN (SELECT id FROM ${store.table('flows')} WHERE connection_id IN {ids:Array(String)})`)})
    WHERE connection_id IN {ids:Array(String)} ORDER BY start_ts, id`;
  return store.select(query, { ids: [...ids] }, decodeFlow);
}

/**
 * The newest state of the flows, at any capture point, whose SYN carried
 * `synSeq` and SYN-ACK `synAckSeq`, started within `range` (inclusive), by
 * start: the evidence of `tcp-seq` NAT hops. The range bounds the partitions
 * read: the flows table is ordered by connection, not by sequence number. The
 * flows with a version that matches are found through the bloom filter on
 * syn_seq; their newest versions must match too (sequence numbers arrive with
 * the flushes after the handshake).
 */
export async function flowsBySynSeq(store: FlowLogStore, proto: Proto, synSeq: number, synAckSeq: number, range: TimeRange): Promise<FlowRecord[]> {
  const sequences = 'syn_seq = {synSeq:UInt32} AND syn_ack_seq = {synAckSeq:UInt32}';
  const conditions = ['toUInt8(proto) = {proto:UInt8}', sequences];
  const params: Params = { proto: protoParam(proto), synSeq, synAckSeq };
  if (range.from !== undefined) {
    conditions.push(`start_ts >= ${timeParam('from')}`);
    params.from = range.from;
  }
  if (range.to !== undefined) {
    conditions.push(`start_ts <= ${timeParam('to')}`);
    params.to = range.to;
  }
  const matching = `(conn_key, start_ts, id) IN (SELECT conn_key, start_ts, id FROM ${store.table('flows')} WHERE ${conditions.join(' AND ')})`;
  const query = `SELECT ${FLOW_SELECT_COLUMNS} FROM (${newestVersions(store, FLOWS, matching)}) WHERE ${sequences} ORDER BY start_ts, id`;
  return store.select(query, params, decodeFlow);
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
  const key = connKeyList(proto, [tuple], params);
  // The tuples and first_seen are the same in every version of an entry, last_seen is not: it is compared with the newest.
  let versions = `(orig_key = ${key} OR reply_key = ${key})`;
  if (at !== undefined) {
    versions += ` AND first_seen <= ${timeParam('at')}`;
    params.at = at;
  }
  const whereNewest = at === undefined ? '' : ` WHERE last_seen >= ${timeParam('at')}`;
  const query = `SELECT ${NAT_SELECT_COLUMNS} FROM (${newestVersions(store, NAT_TRANSLATIONS, versions)})${whereNewest} ORDER BY first_seen, node, netns`;
  return store.select(query, params, decodeNat);
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
    params.proto = protoParam(filter.proto);
  }
  if (filter.ip !== undefined) {
    conditions.push('toIPv6({ip:String}) IN (orig_src, orig_dst, reply_src, reply_dst)');
    params.ip = storedAddress(filter.ip, 'ip');
  }
  if (filter.port !== undefined) {
    conditions.push('{port:UInt16} IN (orig_sport, orig_dport, reply_sport, reply_dport)');
    params.port = portParam(filter.port, 'port');
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
    conditions.push(`last_seen >= ${timeParam('from')}`);
    params.from = filter.from;
  }
  if (filter.to !== undefined) {
    conditions.push(`first_seen <= ${timeParam('to')}`);
    params.to = filter.to;
  }
  const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
  const query = `SELECT ${NAT_SELECT_COLUMNS} FROM ${store.table('nat_translations')} FINAL ${where}
    ORDER BY last_seen DESC, first_seen DESC LIMIT {limit:UInt32}`;
  return store.select(query, params, decodeNat);
}
