// Drops in the API: their JSON shape (DROP in the contract), their pcapng
// comment, and their place among a connection's packets in a capture file.
import type { DropTracerStatus } from '../capture/drops/tracer.js';
import type { DropRecord, EpochNs, FourTuple, Proto } from '../model/records.js';
import { reverseTuple, sameTuple } from '../nat-tracker/classify.js';
import type { Connection, FlowLogReader } from './connection.js';
import { packetIdJson } from '../model/packet-id.js';
import type { CaptureItem } from '../pcap/pcapng.js';
import type { DropJson, DropTracingJson } from '../api/schemas.js';
import { isoNs } from '../model/time.js';

export function dropJson(d: DropRecord): DropJson {
  return {
    ts: isoNs(d.ts),
    node: d.node,
    netns: d.netns,
    iface: d.iface,
    src: d.src,
    sport: d.sport,
    dst: d.dst,
    dport: d.dport,
    reason: d.reason,
    location: d.location,
    stack: d.stack,
    cause: d.cause,
    proto: d.proto,
    reason_code: d.reasonCode,
    packet_id: packetIdJson(d.packetId),
  };
}

export const dropTracingJson = (s: DropTracerStatus): DropTracingJson => ({
  namespaces: s.namespaces,
  seen: s.seen,
  reported: s.reported,
  ignored: s.ignored,
  unparsed: s.unparsed,
  filtered: s.filtered,
  rate_limited: s.rateLimited,
  ring_full: s.ringFull,
  malformed: s.malformed,
  rate_limit: s.rateLimit,
  ignored_reasons: s.ignoredReasons,
});

/**
 * A connection no capture point saw — every packet dropped before one could,
 * e.g. in the sender's OUTPUT chain — known by its drops alone; null without any.
 */
export async function connectionOfDrops(reader: FlowLogReader, proto: Proto, tuples: FourTuple[]): Promise<Connection | null> {
  const drops = await reader.dropsForTuples(proto, tuples, {});
  if (drops.length === 0) return null;
  // The first dropped packet went from the client.
  const clientFirst = sameTuple(drops[0], tuples[0]) ? tuples : [reverseTuple(tuples[0])];
  return { proto, tuples: clientFirst, hops: [], flows: [], firstSeen: drops[0].ts, lastSeen: drops[drops.length - 1].ts, drops };
}

/** The pcapng comment of a dropped packet: what, where, why. */
export function dropComment(d: DropRecord): string {
  return `DROPPED (${d.reason}) at ${d.node}/${d.netns}${d.iface ? `/${d.iface}` : ''} in ${d.location}: ${d.cause}`;
}

/**
 * Batches of items (in time order) with the drops in `range` and at `points`
 * (node/netns/iface names; null for all) merged in by time, each with its comment.
 */
export async function* withDropItems(
  batches: AsyncIterable<CaptureItem[]>,
  drops: readonly DropRecord[],
  range: { from?: EpochNs; to?: EpochNs },
  points: ReadonlySet<string> | null,
): AsyncIterable<CaptureItem[]> {
  const pending = drops.filter(
    (d) =>
      (range.from === undefined || d.ts >= range.from) &&
      (range.to === undefined || d.ts <= range.to) &&
      (points === null || points.has(`${d.node}/${d.netns}/${d.iface}`)),
  );
  const dropItem = (drop: DropRecord): CaptureItem => ({ kind: 'drop', drop, comment: dropComment(drop) });
  let next = 0;
  for await (const items of batches) {
    if (next === pending.length) {
      yield items;
      continue;
    }
    const merged: CaptureItem[] = [];
    for (const item of items) {
      if (item.kind === 'drop') {
        for (; next < pending.length && pending[next].ts <= item.drop.ts; next++) merged.push(dropItem(pending[next]));
        merged.push(item);
        continue;
      }
      // The packets before each pending drop's time, then the drop.
      const { batch, comments } = item;
      let from = 0;
      for (let k = 0; k < batch.length && next < pending.length; k++) {
        const ts = batch.columns.ts[batch.rows[k]];
        if (pending[next].ts > ts) continue;
        if (k > from) merged.push({ kind: 'packets', batch: batch.slice(from, k), comments });
        for (; next < pending.length && pending[next].ts <= ts; next++) merged.push(dropItem(pending[next]));
        from = k;
      }
      if (from < batch.length) merged.push({ kind: 'packets', batch: from === 0 ? batch : batch.slice(from, batch.length), comments });
    }
    yield merged;
  }
  if (next < pending.length) yield pending.slice(next).map(dropItem);
}
