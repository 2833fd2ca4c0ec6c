import type { Drop, FourTuple, Packet, Proto } from '../api/types.generated';
import type { CapturePointRef } from '../api/types';
import { epochNs, formatDuration, formatTime } from './time';
import { isLoss } from './fate';
import { formatEndpoint, formatTuple, reversedTuple, sameTuple } from './tuple';

/** Which way a packet travels: client to server or back; null when it matches none of the connection's tuples. */
export type FlowDirection = 'c2s' | 's2c' | null;

export interface Lane {
  /** `node/netns/iface` for capture points; `client` / `server` for the two ends. */
  key: string;
  /** The namespace (`node/netns` when capture points are on several nodes), or `client` / `server`. */
  title: string;
  subtitle: string;
}

/** The same packet (equal packet_id) seen earlier at another capture point. */
export interface EarlierSighting {
  /** `node/netns/iface direction` where it was seen just before. */
  from: string;
  /** How long before. */
  ns: number;
}

export interface PacketRow {
  kind: 'packet';
  packet: Packet;
  lane: number;
  flowDirection: FlowDirection;
  offsetNs: number;
  /** Time since the previous row; 0 for the first. */
  intervalNs: number;
  relativeSeq: number;
  /** null without the ACK flag or when the other direction's first seq at this capture point is unknown. */
  relativeAck: number | null;
  /** TCP: its sequence range was (partly) covered already by a packet seen at this capture point in this direction. */
  retransmission: boolean;
  /** TCP: it advertises a zero receive window (resets aside). */
  zeroWindow: boolean;
  /** The previous sighting of this packet on its path, for the per-hop delay. */
  previousHop: EarlierSighting | null;
}

export interface DropRow {
  kind: 'drop';
  drop: Drop;
  /** null when the drop happened where no capture point lane is. */
  lane: number | null;
  offsetNs: number;
  intervalNs: number;
  /** Where the dropped packet was seen last before it was dropped. */
  lastSeen: EarlierSighting | null;
}

export type TimelineRow = PacketRow | DropRow;

export interface TimelineModel {
  /** Client, then capture points in the order the first packet passed them, then server. */
  lanes: Lane[];
  rows: TimelineRow[];
}

export function capturePointKey(point: CapturePointRef): string {
  return `${point.node}/${point.netns}/${point.iface}`;
}

/** Where a drop happened: its capture point, or its namespace when the packet was on no device (e.g. in a socket). */
export function dropPlace(drop: Drop): string {
  return drop.iface ? capturePointKey(drop) : `${drop.node}/${drop.netns} (no device)`;
}

/** Whether the points are on more than one node: only then do their short names need the node. */
export function onSeveralNodes(points: CapturePointRef[]): boolean {
  return new Set(points.map((point) => point.node)).size > 1;
}

/** `netns/iface`, or `node/netns/iface` when `withNode`: a capture point's name where space is short. */
export function shortPointName(point: CapturePointRef, withNode: boolean): string {
  return withNode ? capturePointKey(point) : `${point.netns}/${point.iface}`;
}

function orderedCapturePoints(packets: Packet[]): CapturePointRef[] {
  const firstPacketId = packets[0]?.packet_id;
  const firstPacketPath = packets.filter((packet) => packet.packet_id === firstPacketId);
  const points = new Map<string, CapturePointRef>();
  for (const packet of [...firstPacketPath, ...packets]) {
    const key = capturePointKey(packet);
    if (!points.has(key)) points.set(key, packet);
  }
  return [...points.values()];
}

function flowDirectionOf(packet: Packet, tuples: FourTuple[]): FlowDirection {
  if (tuples.some((tuple) => sameTuple(packet, tuple))) return 'c2s';
  if (tuples.some((tuple) => sameTuple(packet, reversedTuple(tuple)))) return 's2c';
  return null;
}

function directionalKey(point: CapturePointRef, tuple: FourTuple): string {
  return `${capturePointKey(point)}|${formatTuple(tuple)}`;
}

/** Sequence-space offset, wrapping at 2^32. */
function seqOffset(value: number, base: number): number {
  return (value - base) >>> 0;
}

/** Sequence space a TCP segment takes: its payload, plus one each for SYN and FIN. */
function seqSpace(packet: Packet): number {
  return packet.len + (packet.flags.includes('SYN') ? 1 : 0) + (packet.flags.includes('FIN') ? 1 : 0);
}

/** Where a packet was seen, as hop delays name it. */
function sightingName(packet: Packet): string {
  return `${capturePointKey(packet)} ${packet.direction}`;
}

/**
 * Lays out a connection's packets and drops for the sequence diagram and the packet table.
 * Relative sequence numbers count from the first seq seen per capture point and direction,
 * so sequence rewriting between points does not skew them; retransmissions are found the
 * same way, as segments starting below the highest sequence number already seen there.
 */
export function buildTimeline(packets: Packet[], drops: Drop[], tuples: FourTuple[], proto: Proto): TimelineModel {
  const points = orderedCapturePoints(packets);
  const withNode = onSeveralNodes(points);
  const clientSide = tuples[0];
  const serverSide = tuples[tuples.length - 1];
  const lanes: Lane[] = [
    { key: 'client', title: 'client', subtitle: clientSide ? formatEndpoint(clientSide.src, clientSide.sport) : '' },
    ...points.map((point) => ({
      key: capturePointKey(point),
      title: withNode ? `${point.node}/${point.netns}` : point.netns,
      subtitle: point.iface,
    })),
    { key: 'server', title: 'server', subtitle: serverSide ? formatEndpoint(serverSide.dst, serverSide.dport) : '' },
  ];
  const laneIndex = new Map(lanes.map((lane, index) => [lane.key, index]));

  const firstTimes = [packets[0]?.ts, drops[0]?.ts].filter((ts): ts is string => ts !== undefined).map(epochNs);
  const startNs = firstTimes.reduce((earliest, ns) => (ns < earliest ? ns : earliest), firstTimes[0] ?? 0n);
  const offsetOf = (ts: string) => Number(epochNs(ts) - startNs);

  const firstSeq = new Map<string, number>();
  for (const packet of packets) {
    const key = directionalKey(packet, packet);
    if (!firstSeq.has(key)) firstSeq.set(key, packet.seq);
  }

  const tcp = proto === 'tcp';
  const highestSeqEnd = new Map<string, number>();
  const lastSighting = new Map<string, { at: string; offsetNs: number }>();
  const directionById = new Map<string, FlowDirection>();
  const packetRows: PacketRow[] = packets.map((packet) => {
    const key = directionalKey(packet, packet);
    const flowDirection = flowDirectionOf(packet, tuples);
    if (flowDirection) directionById.set(packet.packet_id, flowDirection);
    const peerFirstSeq = firstSeq.get(directionalKey(packet, reversedTuple(packet)));
    const relativeSeq = seqOffset(packet.seq, firstSeq.get(key) ?? packet.seq);
    const space = seqSpace(packet);
    const seenUpTo = highestSeqEnd.get(key);
    if (space > 0 && (seenUpTo === undefined || relativeSeq + space > seenUpTo)) highestSeqEnd.set(key, relativeSeq + space);
    const offsetNs = offsetOf(packet.ts);
    const earlier = lastSighting.get(packet.packet_id);
    lastSighting.set(packet.packet_id, { at: sightingName(packet), offsetNs });
    return {
      kind: 'packet',
      packet,
      lane: laneIndex.get(capturePointKey(packet)) ?? 0,
      flowDirection,
      offsetNs,
      intervalNs: 0,
      relativeSeq,
      relativeAck: peerFirstSeq === undefined || !hasAck(packet) ? null : seqOffset(packet.ack, peerFirstSeq),
      retransmission: tcp && space > 0 && seenUpTo !== undefined && relativeSeq < seenUpTo,
      zeroWindow: tcp && packet.win === 0 && !packet.flags.includes('RST'),
      previousHop: earlier ? { from: earlier.at, ns: offsetNs - earlier.offsetNs } : null,
    };
  });
  // A packet seen only between NATs under a tuple the connection does not list takes its direction from its copies elsewhere.
  for (const row of packetRows) {
    row.flowDirection ??= directionById.get(row.packet.packet_id) ?? null;
  }

  const dropRows: DropRow[] = drops.map((drop) => {
    const offsetNs = offsetOf(drop.ts);
    const seen = lastSighting.get(drop.packet_id);
    return {
      kind: 'drop',
      drop,
      lane: laneIndex.get(capturePointKey(drop)) ?? laneOfNamespace(lanes, drop),
      offsetNs,
      intervalNs: 0,
      lastSeen: seen && seen.offsetNs <= offsetNs ? { from: seen.at, ns: offsetNs - seen.offsetNs } : null,
    };
  });

  const rows = mergeByTime(packetRows, dropRows);
  rows.forEach((row, index) => {
    row.intervalNs = index === 0 ? 0 : row.offsetNs - rows[index - 1].offsetNs;
  });
  return { lanes, rows };
}

/** A drop inside a namespace but off the captured interfaces goes on that namespace's first lane. */
function laneOfNamespace(lanes: Lane[], point: CapturePointRef): number | null {
  const prefix = `${point.node}/${point.netns}/`;
  const index = lanes.findIndex((lane) => lane.key.startsWith(prefix));
  return index === -1 ? null : index;
}

function mergeByTime(packetRows: PacketRow[], dropRows: DropRow[]): TimelineRow[] {
  const rows: TimelineRow[] = [];
  let p = 0;
  let d = 0;
  while (p < packetRows.length || d < dropRows.length) {
    const nextDrop = dropRows[d];
    const nextPacket = packetRows[p];
    if (nextDrop && (!nextPacket || nextDrop.offsetNs < nextPacket.offsetNs)) {
      rows.push(nextDrop);
      d += 1;
    } else if (nextPacket) {
      rows.push(nextPacket);
      p += 1;
    }
  }
  return rows;
}

export function hasAck(packet: Packet): boolean {
  return packet.flags.includes('ACK');
}

export function formatOptions(packet: Packet): string {
  const { mss, wscale, sack_perm: sackPerm, ts_val: tsVal, ts_ecr: tsEcr, sack } = packet.options;
  const parts: string[] = [];
  if (mss !== undefined) parts.push(`mss=${mss}`);
  if (wscale !== undefined) parts.push(`wscale=${wscale}`);
  if (sackPerm) parts.push('sack_perm');
  if (tsVal !== undefined) parts.push(`ts_val=${tsVal}`);
  if (tsEcr !== undefined) parts.push(`ts_ecr=${tsEcr}`);
  if (sack?.length) parts.push(`sack=${sack.map(([left, right]) => `${left}-${right}`).join(',')}`);
  return parts.length ? parts.join(' ') : 'none';
}

/** What stands out about a packet: retransmission, zero window. */
export function packetNotes(row: PacketRow): string[] {
  const notes: string[] = [];
  if (row.retransmission) notes.push('retransmission');
  if (row.zeroWindow) notes.push('zero window');
  return notes;
}

/** The full header of a packet, for hover text. */
export function describePacket(row: PacketRow, proto: Proto): string {
  const { packet } = row;
  const lines = [
    `${formatTime(packet.ts)}  (+${formatDuration(row.offsetNs)})`,
    `at ${capturePointKey(packet)}  ${packet.direction} (${packet.hook})`,
    `${proto} ${formatTuple(packet)}`,
  ];
  if (proto === 'tcp') {
    lines.push(
      `flags ${packet.flags.join(',') || 'none'}`,
      `seq ${packet.seq} (relative ${row.relativeSeq})`,
      `ack ${packet.ack}${row.relativeAck === null ? '' : ` (relative ${row.relativeAck})`}`,
      `win ${packet.win}  len ${packet.len}`,
      `options ${formatOptions(packet)}`,
    );
  } else {
    lines.push(`len ${packet.len}`);
  }
  if (row.retransmission) lines.push('retransmission: this sequence range was already seen here');
  if (row.zeroWindow) lines.push('zero window: the receiver has no buffer space');
  if (row.previousHop) lines.push(`hop delay +${formatDuration(row.previousHop.ns)} after ${row.previousHop.from}`);
  lines.push(`${formatDuration(row.intervalNs)} after the previous row`, `packet_id ${packet.packet_id}`);
  return lines.join('\n');
}

export function describeDrop(row: DropRow): string {
  const { drop } = row;
  return [
    `${formatTime(drop.ts)}  (+${formatDuration(row.offsetNs)})`,
    `${isLoss(drop) ? 'dropped' : 'freed'} at ${dropPlace(drop)}: ${drop.reason}`,
    `fate: ${drop.fate}: ${drop.fate_proof}`,
    formatTuple(drop),
    `location ${drop.location}`,
    ...(drop.cause ? [drop.cause] : []),
    ...(row.lastSeen ? [`last seen at ${row.lastSeen.from}, ${formatDuration(row.lastSeen.ns)} before`] : []),
    `packet_id ${drop.packet_id}`,
    ...drop.stack,
  ].join('\n');
}

/** Delays between two consecutive sightings of the same packets. */
export interface HopDelay {
  from: string;
  to: string;
  packets: number;
  minNs: number;
  medianNs: number;
  maxNs: number;
}

/** Per-hop delays of the packets seen at several capture points, hop by hop in the order they first occur. */
export function hopDelays(rows: TimelineRow[]): HopDelay[] {
  const samples = new Map<string, { from: string; to: string; ns: number[] }>();
  for (const row of rows) {
    if (row.kind !== 'packet' || !row.previousHop) continue;
    const to = sightingName(row.packet);
    const key = `${row.previousHop.from}|${to}`;
    const hop = samples.get(key) ?? { from: row.previousHop.from, to, ns: [] };
    hop.ns.push(row.previousHop.ns);
    samples.set(key, hop);
  }
  return [...samples.values()].map(({ from, to, ns }) => {
    const sorted = ns.sort((a, b) => a - b);
    const middle = sorted.length >> 1;
    const medianNs = sorted.length % 2 ? sorted[middle] : Math.round((sorted[middle - 1] + sorted[middle]) / 2);
    return { from, to, packets: sorted.length, minNs: sorted[0], medianNs, maxNs: sorted[sorted.length - 1] };
  });
}
