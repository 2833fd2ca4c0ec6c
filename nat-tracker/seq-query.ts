// The store query behind `tcp-seq` hops: flows by their SYN and SYN-ACK
// sequence numbers. Every value goes in as a query parameter.
import { decodeFlow, FLOW_SELECT_COLUMNS } from '../flowlog/codec.js';
import type { FlowRecord, Proto } from '../model/records.js';
import { newestVersions } from '../flowlog/queries.js';
import { FLOWS, PROTO_NUMBER } from '../flowlog/schema.js';
import type { FlowLogStore } from '../flowlog/store.js';
import type { TimeRange } from './resolver.js';

/**
 * The newest state of the flows, at any capture point, whose SYN carried
 * `synSeq` and SYN-ACK `synAckSeq`, started within `range` (inclusive), by
 * start. The range bounds the partitions read: the flows table is ordered by
 * connection, not by sequence number. The flows with a version that matches
 * are found through the bloom filter on syn_seq; their newest versions must
 * match too (sequence numbers arrive with the flushes after the handshake).
 */
export async function flowsBySynSeq(store: FlowLogStore, proto: Proto, synSeq: number, synAckSeq: number, range: TimeRange): Promise<FlowRecord[]> {
  const sequences = 'syn_seq = {synSeq:UInt32} AND syn_ack_seq = {synAckSeq:UInt32}';
  const conditions = ['toUInt8(proto) = {proto:UInt8}', sequences];
  const params: Record<string, unknown> = { proto: PROTO_NUMBER[proto], synSeq, synAckSeq };
  if (range.from !== undefined) {
    conditions.push(`start_ts >= fromUnixTimestamp64Nano({from:Int64}, 'UTC')`);
    params.from = range.from;
  }
  if (range.to !== undefined) {
    conditions.push(`start_ts <= fromUnixTimestamp64Nano({to:Int64}, 'UTC')`);
    params.to = range.to;
  }
  const matching = `(conn_key, start_ts, id) IN (SELECT conn_key, start_ts, id FROM ${store.table('flows')} WHERE ${conditions.join(' AND ')})`;
  const result = await store.client.query({
    query: `SELECT ${FLOW_SELECT_COLUMNS} FROM (${newestVersions(store, FLOWS, matching)}) WHERE ${sequences} ORDER BY start_ts, id`,
    query_params: params,
    format: 'JSONCompactEachRow',
  });
  return (await result.json<unknown>()).map(decodeFlow);
}
