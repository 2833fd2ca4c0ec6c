// One connection, from any of its tuples: its NAT path, the flows at each
// capture point, its packets across all points; and their JSON shapes.
import type { DropRecord, EpochNs, FlowRecord, FourTuple, NatTranslation, PacketRecord, Proto } from '../model/records.js';
import { tcpFlagNames } from '../model/records.js';
import type { PacketBatch } from '../flowlog/packets/rows.js';
import { reverseTuple, sameTuple } from '../nat-tracker/classify.js';
import { resolveNatPath, type NatHop } from '../nat-tracker/resolver.js';
import { connectionOfDrops, dropJson } from './drops.js';
import { packetIdJson } from '../model/packet-id.js';
import type { ConnectionJson, FlowJson, NatHopJson, NatTranslationJson, PacketJson } from '../api/schemas.js';
import { isoNs } from '../model/time.js';
import type { ConnectionTuple } from '../model/tuple.js';

export interface TimeRange {
  from?: EpochNs;
  to?: EpochNs;
}

/** What the connection view reads from the flow-log store. */
export interface FlowLogReader {
  natForTuple(proto: Proto, tuple: FourTuple, at?: EpochNs): Promise<NatTranslation[]>;
  flowsForTuples(proto: Proto, tuples: FourTuple[], range?: TimeRange): Promise<FlowRecord[]>;
  flowsBySynSeq(proto: Proto, synSeq: number, synAckSeq: number, range: TimeRange): Promise<FlowRecord[]>;
  /** Packets in time order, in batches. */
  packetBatchesForTuples(proto: Proto, tuples: FourTuple[], range?: TimeRange): AsyncIterable<PacketBatch>;
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

const flowTuple = (f: FlowRecord): FourTuple => ({ src: f.client.ip, sport: f.client.port, dst: f.server.ip, dport: f.server.port });

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

/** The time range the connection's packets lie in. */
export function connectionRange(connection: Connection, range: TimeRange = {}): TimeRange {
  const from = connection.firstSeen - SAME_CONNECTION_SLACK_NS;
  const to = connection.lastSeen + SAME_CONNECTION_SLACK_NS;
  return {
    from: range.from !== undefined && range.from > from ? range.from : from,
    to: range.to !== undefined && range.to < to ? range.to : to,
  };
}

/** The connection's packets in time order, in batches, optionally only those at `points` (node/netns/iface names). */
export async function* connectionPacketBatches(
  reader: FlowLogReader,
  connection: Connection,
  range?: TimeRange,
  points: ReadonlySet<string> | null = null,
): AsyncIterable<PacketBatch> {
  for await (const batch of reader.packetBatchesForTuples(connection.proto, connection.tuples, connectionRange(connection, range))) {
    if (points === null) {
      yield batch;
      continue;
    }
    const { point, points: seen } = batch.columns;
    const wanted = seen.map((p) => points.has(`${p.node}/${p.netns}/${p.iface}`));
    yield batch.filter((row) => wanted[point[row]]);
  }
}

export const hopJson = (hop: NatHop): NatHopJson => ({
  kind: hop.kind,
  via: hop.via,
  node: hop.node,
  netns: hop.netns,
  zone: hop.zone,
  before: hop.before,
  after: hop.after,
});

export function flowJson(f: FlowRecord): FlowJson {
  return {
    id: f.id,
    proto: f.proto,
    client: f.client,
    server: f.server,
    node: f.node,
    netns: f.netns,
    iface: f.iface,
    start: isoNs(f.start),
    end: isoNs(f.end),
    duration_ns: (f.end - f.start).toString(),
    packets: f.packets,
    bytes: f.bytes,
    conn_state: f.connState,
    history: f.history,
    rtt_ns: f.rttNs === null ? null : Number(f.rttNs),
    retrans: f.retrans,
    zero_window: f.zeroWindow,
    out_of_order: f.outOfOrder,
    close: f.close,
    syn_seq: f.synSeq,
    syn_ack_seq: f.synAckSeq,
  };
}

export function packetJson(p: PacketRecord): PacketJson {
  return {
    ts: isoNs(p.ts),
    node: p.node,
    netns: p.netns,
    iface: p.iface,
    direction: p.direction,
    hook: p.hook,
    src: p.src,
    sport: p.sport,
    dst: p.dst,
    dport: p.dport,
    seq: p.seq,
    ack: p.ack,
    flags: tcpFlagNames(p.flags),
    win: p.win,
    len: p.len,
    options: p.options,
    packet_id: packetIdJson(p.packetId),
  };
}

export const natTranslationJson = (t: NatTranslation): NatTranslationJson => ({
  via: t.via,
  node: t.node,
  netns: t.netns,
  zone: t.zone,
  proto: t.proto,
  orig: t.orig,
  reply: t.reply,
  first_seen: isoNs(t.firstSeen),
  last_seen: isoNs(t.lastSeen),
});

export function connectionJson(c: Connection): ConnectionJson {
  const points = new Map<string, { node: string; netns: string; iface: string; packets: number; bytes: number }>();
  for (const f of c.flows) {
    const key = `${f.node}/${f.netns}/${f.iface}`;
    const point = points.get(key) ?? { node: f.node, netns: f.netns, iface: f.iface, packets: 0, bytes: 0 };
    point.packets += f.packets.c2s + f.packets.s2c;
    point.bytes += f.bytes.c2s + f.bytes.s2c;
    points.set(key, point);
  }
  return {
    proto: c.proto,
    first_seen: isoNs(c.firstSeen),
    last_seen: isoNs(c.lastSeen),
    tuples: c.tuples,
    hops: c.hops.map(hopJson),
    points: [...points.values()],
    flows: c.flows.map(flowJson),
    drops: c.drops.map(dropJson),
  };
}

/** The pcapng comment for the first packet seen after each hop's translation, keyed by hop index. */
export function natHopComment(hop: NatHop): string {
  const t = (x: FourTuple) => `${x.src}:${x.sport} -> ${x.dst}:${x.dport}`;
  return `${hop.kind} via ${hop.via} at ${hop.node}/${hop.netns} zone ${hop.zone}: ${t(hop.before)} => ${t(hop.after)}`;
}
