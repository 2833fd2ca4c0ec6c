// The store query behind `tcp-seq` hops: flows by their SYN and SYN-ACK
// sequence numbers. Every value goes in as a query parameter.
import { decodeFlow, FLOW_SELECT_COLUMNS } from '../flowlog/codec.js';
import type { FlowRecord, Proto } from '../flowlog/records.js';
import { PROTO_NUMBER } from '../flowlog/schema.js';
import type { FlowLogStore } from '../flowlog/store.js';
import type { TimeRange } from './resolver.js';

/**
 * The newest state of the flows, at any capture point, whose SYN carried
 * `synSeq` and SYN-ACK `synAckSeq`, started within `range` (inclusive), by
 * start. The range bounds the partitions read: the flows table is ordered by
 * connection, not by sequence number.
 */
export async function flowsBySynSeq(store: FlowLogStore, proto: Proto, synSeq: number, synAckSeq: number, range: TimeRange): Promise<FlowRecord[]> {
  const conditions = ['toUInt8(proto) = {proto:UInt8}', 'syn_seq = {synSeq:UInt32}', 'syn_ack_seq = {synAckSeq:UInt32}'];
  const params: Record<string, unknown> = { proto: PROTO_NUMBER[proto], synSeq, synAckSeq };
  if (range.from !== undefined) {
    conditions.push(`start_ts >= fromUnixTimestamp64Nano({from:Int64}, 'UTC')`);
    params.from = range.from;
  }
  if (range.to !== undefined) {
    conditions.push(`start_ts <= fromUnixTimestamp64Nano({to:Int64}, 'UTC')`);
    params.to = range.to;
  }
  const result = await store.client.query({
    query: `SELECT ${FLOW_SELECT_COLUMNS} FROM ${store.table('flows')} FINAL WHERE ${conditions.join(' AND ')} ORDER BY start_ts, id`,
    query_params: params,
    format: 'JSONCompactEachRow',
  });
  return (await result.json<unknown>()).map(decodeFlow);
}
