// One connection — one incarnation of its tuples — from any of its tuples (and a
// time) or from its id: its NAT path, the flows at each capture point, its drops,
// its packets across all points, and the other connections that used its tuples.
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
  /** Every flow of these connections (connection ids), at every point. */
  flowsOfConnections(ids: string[]): Promise<FlowRecord[]>;
  /** Packets in time order, in batches. */
  packetRowsForTuples(proto: Proto, tuples: FourTuple[], range?: TimeRange): AsyncIterable<PacketRows>;
  /** Drops with any of `tuples`, or of a packet seen with one of them, in time order. */
  dropsForTuples(proto: Proto, tuples: FourTuple[], range: TimeRange): Promise<DropRecord[]>;
}

/** One connection that used a tuple: enough to tell it from the others and to name it. */
export interface ConnectionSummary {
  id: string;
  firstSeen: EpochNs;
  lastSeen: EpochNs;
  /** Capture points that saw it. */
  points: number;
  /** The client's initial sequence number (TCP, when its SYN was seen). */
  isn: number | null;
}

export interface Connection {
  /** The connection id (its earliest flow's id); null for a connection known by its drops alone. */
  id: string | null;
  proto: Proto;
  tuples: FourTuple[];
  hops: NatHop[];
  flows: FlowRecord[];
  firstSeen: EpochNs;
  lastSeen: EpochNs;
  drops: DropRecord[];
  /** The other connections that used any of its tuples, oldest first. */
  others: ConnectionSummary[];
}

/** Which connection: the one of `tuple` at `at` (default: the newest), or the one with this id. */
export type ConnectionKey = { tuple: ConnectionTuple; at?: EpochNs } | { id: string };

/** Drops of a connection are looked for this long before its first and after its last packet (not into a neighbour's time). */
const DROP_SLACK_NS = 1_000_000_000n;
/** Flows of one TCP connection seen on different nodes (each joins its own flows) share their SYN and SYN-ACK sequence numbers within this. */
const SAME_HANDSHAKE_NS = 120_000_000_000n;

interface Incarnation extends ConnectionSummary {
  flows: FlowRecord[];
}

const minTime = (times: EpochNs[]) => times.reduce((a, b) => (b < a ? b : a));
const maxTime = (times: EpochNs[]) => times.reduce((a, b) => (b > a ? b : a));

/**
 * The connections among `flows`: flows with one connection id are one connection, and so are
 * flows of TCP connections with equal SYN and SYN-ACK sequence numbers within SAME_HANDSHAKE_NS
 * (NAT leaves them alone; capture on another node joins its own flows under another id).
 * Named by the id of the earliest; oldest first.
 */
function incarnations(flows: FlowRecord[]): Incarnation[] {
  const groups = new Map<string, FlowRecord[]>();
  for (const f of flows) groups.set(f.connectionId, [...(groups.get(f.connectionId) ?? []), f]);
  const merged: FlowRecord[][] = [];
  const handshake = (group: FlowRecord[]) => group.find((f) => f.synSeq !== null && f.synAckSeq !== null);
  for (const group of groups.values()) {
    const h = handshake(group);
    const same = h && merged.find((m) => {
      const other = handshake(m);
      const apart = other ? (other.start > h.start ? other.start - h.start : h.start - other.start) : 0n;
      return other !== undefined && other.synSeq === h.synSeq && other.synAckSeq === h.synAckSeq && apart <= SAME_HANDSHAKE_NS;
    });
    if (same) same.push(...group);
    else merged.push([...group]);
  }
  return merged
    .map((group) => {
      const earliest = group.reduce((a, b) => (b.start < a.start || (b.start === a.start && b.id < a.id) ? b : a));
      const points = new Set(group.map((f) => `${f.node}/${f.netns}/${f.iface}`));
      const isn = group.find((f) => f.synSeq !== null)?.synSeq ?? null;
      return { id: earliest.connectionId, firstSeen: minTime(group.map((f) => f.start)), lastSeen: maxTime(group.map((f) => f.end)), points: points.size, isn, flows: group };
    })
    .sort((a, b) => (a.firstSeen < b.firstSeen ? -1 : a.firstSeen > b.firstSeen ? 1 : a.id < b.id ? -1 : 1));
}

/** How far `at` is from an incarnation's time (0 inside it). */
const distance = (c: Incarnation, at: EpochNs): bigint => (at < c.firstSeen ? c.firstSeen - at : at > c.lastSeen ? at - c.lastSeen : 0n);

/** The connection of `key`; null when nothing is known of it. */
export async function findConnection(reader: FlowLogReader, key: ConnectionKey): Promise<Connection | null> {
  if ('id' in key) {
    const flows = await reader.flowsOfConnections([key.id]);
    if (flows.length === 0) return null;
    const earliest = flows.reduce((a, b) => (b.start < a.start ? b : a));
    return connectionOf(reader, earliest.proto, flowTuple(earliest), (candidates) => candidates.find((c) => c.id === key.id || c.flows.some((f) => f.connectionId === key.id)), flows);
  }
  const { tuple, at } = key;
  return connectionOf(reader, tuple.proto, tuple, (candidates) =>
    at === undefined ? candidates.at(-1) : candidates.reduce((best, c) => (distance(c, at) < distance(best, at) ? c : best)),
  );
}

/**
 * The connections that used `tuple` (along the NAT path it resolves to), the one `choose` picks
 * made whole: all its flows, its own NAT hops, its drops, and the others as summaries.
 */
async function connectionOf(
  reader: FlowLogReader,
  proto: Proto,
  tuple: FourTuple,
  choose: (candidates: Incarnation[]) => Incarnation | undefined,
  knownFlows: FlowRecord[] = [],
): Promise<Connection | null> {
  const path = await resolveNatPath(reader, proto, tuple);
  const all = incarnations(uniqueFlows([...(await reader.flowsForTuples(proto, path.tuples)), ...knownFlows]));
  // Those that had the tuple itself where it was seen: another connection may share only the path's other tuples.
  const hadIt = all.filter((c) => c.flows.some((f) => sameTuple(flowTuple(f), tuple) || sameTuple(flowTuple(f), reverseTuple(tuple))));
  const candidates = hadIt.length > 0 ? hadIt : all;
  const chosen = candidates.length > 0 ? choose(candidates) : undefined;
  if (!chosen) return path.hops.length > 0 ? connectionOfHops(reader, proto, path.tuples, path.hops) : connectionOfDrops(reader, proto, path.tuples);

  // Its flows at points whose tuples are not on the path resolved for the tuple given (another DNAT target, say).
  const flows = uniqueFlows([...chosen.flows, ...(await reader.flowsOfConnections([...new Set(chosen.flows.map((f) => f.connectionId))]))]).sort(
    (a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0),
  );
  const firstSeen = minTime(flows.map((f) => f.start));
  const lastSeen = maxTime(flows.map((f) => f.end));
  // Its own NAT hops: those that made its flows' tuples, alive in the middle of it (a reused tuple's entries follow one another).
  const clientFlow = flows[0];
  const own = await resolveNatPath(reader, proto, flowTuple(clientFlow), firstSeen + (lastSeen - firstSeen) / 2n, flows.map(flowTuple));
  const tuples = [...own.tuples];
  for (const f of flows) if (!tuples.some((t) => sameTuple(t, flowTuple(f)))) tuples.push(flowTuple(f));
  // Without a NAT hop the entered tuple's orientation is a guess: the flows know who the client was.
  if (!sameTuple(tuples[0], flowTuple(clientFlow)) && sameTuple(tuples[0], reverseTuple(flowTuple(clientFlow)))) tuples[0] = flowTuple(clientFlow);

  const index = candidates.indexOf(chosen);
  const previous = candidates[index - 1];
  const next = candidates[index + 1];
  const connection: Connection = {
    id: chosen.id,
    proto,
    tuples,
    hops: own.hops,
    flows,
    firstSeen,
    lastSeen,
    drops: [],
    others: candidates.filter((c) => c !== chosen).map(({ id, firstSeen, lastSeen, points, isn }) => ({ id, firstSeen, lastSeen, points, isn })),
  };
  // Drops a little before and after its packets, but not into the time of the tuple's previous or next connection.
  const range: TimeRange = {
    from: previous && previous.lastSeen >= firstSeen - DROP_SLACK_NS ? previous.lastSeen + 1n : firstSeen - DROP_SLACK_NS,
    to: next && next.firstSeen <= lastSeen + DROP_SLACK_NS ? next.firstSeen - 1n : lastSeen + DROP_SLACK_NS,
  };
  connection.drops = await reader.dropsForTuples(proto, dropTuples(tuples, own.hops), range);
  return connection;
}

/**
 * Inside a NAT device the filter chains see the destination translated but not yet the source
 * (DNAT in PREROUTING, SNAT in POSTROUTING): drops there carry that tuple, in either direction.
 */
function dropTuples(tuples: FourTuple[], hops: NatHop[]): FourTuple[] {
  return [...tuples, ...hops.map((hop) => ({ src: hop.before.src, sport: hop.before.sport, dst: hop.after.dst, dport: hop.after.dport }))];
}

function uniqueFlows(flows: FlowRecord[]): FlowRecord[] {
  return [...new Map(flows.map((f) => [f.id, f])).values()];
}

/** A connection no capture point saw but a NAT device recorded (capture was not attached there). */
async function connectionOfHops(reader: FlowLogReader, proto: Proto, tuples: FourTuple[], hops: NatHop[]): Promise<Connection> {
  const firstSeen = minTime(hops.map((h) => h.firstSeen));
  const lastSeen = maxTime(hops.map((h) => h.lastSeen));
  const drops = await reader.dropsForTuples(proto, dropTuples(tuples, hops), { from: firstSeen - DROP_SLACK_NS, to: lastSeen + DROP_SLACK_NS });
  return { id: null, proto, tuples, hops, flows: [], firstSeen, lastSeen, drops, others: [] };
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
  return { id: null, proto, tuples: clientFirst, hops: [], flows: [], firstSeen: drops[0].ts, lastSeen: drops[drops.length - 1].ts, drops, others: [] };
}

const LOOPBACK_IFACE = 'lo';
/** A packet on loopback arrives (ingress) within this after it left (egress, the time its flow counts). */
const LOOPBACK_ARRIVAL_NS = 10_000_000n;

/** How the API and capture files name a capture point: node/netns/iface. */
export const pointName = (p: CapturePoint): string => `${p.node}/${p.netns}/${p.iface}`;

/**
 * The connection's packets in time order, in batches, optionally only those at `points` (pointName)
 * and within `range`: at each capture point, those within the time of its flow there — the
 * packets of the tuple's other connections at that point lie outside it.
 */
export async function* connectionPacketRows(
  reader: FlowLogReader,
  connection: Connection,
  range: TimeRange = {},
  points: ReadonlySet<string> | null = null,
): AsyncIterable<PacketRows> {
  // A loopback flow counts each packet once, as it leaves; it arrives a little later, before the tuple's next connection.
  const next = connection.others.find((o) => o.firstSeen > connection.lastSeen)?.firstSeen;
  const loopbackEnd = (end: EpochNs) => (next !== undefined && next <= end + LOOPBACK_ARRIVAL_NS ? next - 1n : end + LOOPBACK_ARRIVAL_NS);
  const windows = new Map<string, Array<[EpochNs, EpochNs]>>();
  for (const f of connection.flows) {
    const window: [EpochNs, EpochNs] = [f.start, f.iface === LOOPBACK_IFACE ? loopbackEnd(f.end) : f.end];
    windows.set(pointName(f), [...(windows.get(pointName(f)) ?? []), window]);
  }
  // A connection without flows (known by NAT entries or drops) has no packets of its own to tell apart.
  if (windows.size === 0) return;
  const lastSeen = maxTime([...windows.values()].flat().map(([, end]) => end));
  const from = range.from !== undefined && range.from > connection.firstSeen ? range.from : connection.firstSeen;
  const to = range.to !== undefined && range.to < lastSeen ? range.to : lastSeen;
  if (from > to) return;
  for await (const batch of reader.packetRowsForTuples(connection.proto, connection.tuples, { from, to })) {
    const { point, points: seen, ts } = batch.columns;
    const pointWindows = seen.map((p) => (points === null || points.has(pointName(p)) ? windows.get(pointName(p)) ?? null : null));
    yield batch.filter((row) => {
      const within = pointWindows[point[row]];
      if (within === null) return false;
      const t = ts[row];
      return within.some(([start, end]) => t >= start && t <= end);
    });
  }
}
