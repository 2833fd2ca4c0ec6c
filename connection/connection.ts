// One connection, from any of its tuples: its NAT path, the flows at each
// capture point, its drops, its packets across all points.
import type { CapturePoint, DropRecord, EpochNs, FlowRecord, FourTuple, NatTranslation, Proto } from '../model/records.js';
import type { PacketRows } from '../flowlog/packets/rows.js';
import { reverseTuple, sameTuple } from '../nat-tracker/classify.js';
import { flowTuple, resolveNatPath, type NatHop } from '../nat-tracker/resolver.js';
import type { TimeRange } from '../model/time.js';
import type { ConnectionTuple } from '../model/tuple.js';

/** What the connection view reads from the flow-log store. */
export interface FlowLogReader {
  natForTuple(proto: Proto, tuple: FourTuple, at?: EpochNs): Promise<NatTranslation[]>;
  flowsForTuples(proto: Proto, tuples: FourTuple[], range?: TimeRange): Promise<FlowRecord[]>;
  flowsBySynSeq(proto: Proto, synSeq: number, synAckSeq: number, range: TimeRange): Promise<FlowRecord[]>;
  /** Packets in time order, in batches. */
  packetRowsForTuples(proto: Proto, tuples: FourTuple[], range?: TimeRange): AsyncIterable<PacketRows>;
  /** Drops with any of `tuples`, or of a packet seen with one of them, in time order. */
  dropsForTuples(proto: Proto, tuples: FourTuple[], range: TimeRange): Promise<DropRecord[]>;
}

export interface Connection {
  proto: Proto;
  tuples: FourTuple[];
  hops: NatHop[];
  flows: FlowRecord[];
  firstSeen: EpochNs;
  lastSeen: EpochNs;
  drops: DropRecord[];
}

/** Flows of one connection at different points overlap in time; this much slack allows for clock and queueing. */
const SAME_CONNECTION_SLACK_NS = 1_000_000_000n;

/**
 * The flows of one connection among those of its tuples: a reused port gives
 * several connections with the same tuples. The one closest to `at` (default:
 * the newest) is the anchor; TCP flows belong with it when their SYN sequence
 * number matches (NAT leaves it alone), others when they overlap it in time.
 */
function flowsOfOneConnection(flows: FlowRecord[], at?: EpochNs): FlowRecord[] {
  if (flows.length === 0) return flows;
  const distance = (f: FlowRecord, t: EpochNs) => (t < f.start ? f.start - t : t > f.end ? t - f.end : 0n);
  const anchor = flows.reduce((best, f) =>
    at !== undefined ? (distance(f, at) < distance(best, at) ? f : best) : f.start > best.start ? f : best,
  );
  return flows.filter((f) =>
    anchor.synSeq !== null && f.synSeq !== null
      ? f.synSeq === anchor.synSeq
      : f.start <= anchor.end + SAME_CONNECTION_SLACK_NS && f.end + SAME_CONNECTION_SLACK_NS >= anchor.start,
  );
}

/** Find the connection `tuple` belongs to; null when nothing is known of it. */
export async function findConnection(reader: FlowLogReader, tuple: ConnectionTuple, at?: EpochNs): Promise<Connection | null> {
  const { proto } = tuple;
  const path = await resolveNatPath(reader, proto, tuple, at);
  const window = at ?? (path.hops.length > 0 ? path.hops[0].lastSeen : undefined);
  const flows = flowsOfOneConnection(await reader.flowsForTuples(proto, path.tuples), window);
  if (flows.length === 0 && path.hops.length === 0) return connectionOfDrops(reader, proto, path.tuples);

  // Without a NAT hop the entered tuple's orientation is a guess: the flows know who the client was.
  let tuples = path.tuples;
  if (path.hops.length === 0 && flows.length > 0 && !sameTuple(flowTuple(flows[0]), tuples[0])) tuples = [reverseTuple(tuples[0])];

  // Packets are the evidence of when; translation times (conntrack's, coarser) only when no packet was seen.
  const times = flows.length > 0
    ? flows.flatMap((f) => [f.start, f.end])
    : path.hops.flatMap((h) => [h.firstSeen, h.lastSeen]);
  const firstSeen = times.reduce((a, b) => (b < a ? b : a));
  const lastSeen = times.reduce((a, b) => (b > a ? b : a));
  const connection: Connection = { proto, tuples, hops: path.hops, flows, firstSeen, lastSeen, drops: [] };
  // Inside a NAT device the filter chains see the destination translated but not yet the source
  // (DNAT in PREROUTING, SNAT in POSTROUTING): drops there carry that tuple, in either direction.
  const insideNat = path.hops.map((hop) => ({ src: hop.before.src, sport: hop.before.sport, dst: hop.after.dst, dport: hop.after.dport }));
  connection.drops = await reader.dropsForTuples(proto, [...path.tuples, ...insideNat], connectionRange(connection));
  return connection;
}

/**
 * A connection no capture point saw — every packet dropped before one could,
 * e.g. in the sender's OUTPUT chain — known by its drops alone; null without any.
 */
async function connectionOfDrops(reader: FlowLogReader, proto: Proto, tuples: FourTuple[]): Promise<Connection | null> {
  const drops = await reader.dropsForTuples(proto, tuples, {});
  if (drops.length === 0) return null;
  // The first dropped packet went from the client.
  const clientFirst = sameTuple(drops[0], tuples[0]) ? tuples : [reverseTuple(tuples[0])];
  return { proto, tuples: clientFirst, hops: [], flows: [], firstSeen: drops[0].ts, lastSeen: drops[drops.length - 1].ts, drops };
}

/** The time range the connection's packets lie in. */
export function connectionRange(connection: Connection, range: TimeRange = {}): TimeRange {
  const from = connection.firstSeen - SAME_CONNECTION_SLACK_NS;
  const to = connection.lastSeen + SAME_CONNECTION_SLACK_NS;
  return {
    from: range.from !== undefined && range.from > from ? range.from : from,
    to: range.to !== undefined && range.to < to ? range.to : to,
  };
}

/** How the API and capture files name a capture point: node/netns/iface. */
export const pointName = (p: CapturePoint): string => `${p.node}/${p.netns}/${p.iface}`;

/** The connection's packets in time order, in batches, optionally only those at `points` (pointName). */
export async function* connectionPacketRows(
  reader: FlowLogReader,
  connection: Connection,
  range?: TimeRange,
  points: ReadonlySet<string> | null = null,
): AsyncIterable<PacketRows> {
  for await (const batch of reader.packetRowsForTuples(connection.proto, connection.tuples, connectionRange(connection, range))) {
    if (points === null) {
      yield batch;
      continue;
    }
    const { point, points: seen } = batch.columns;
    const wanted = seen.map((p) => points.has(pointName(p)));
    yield batch.filter((row) => wanted[point[row]]);
  }
}
