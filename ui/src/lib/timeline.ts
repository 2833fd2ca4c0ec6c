import type { CapturePointRef, Drop, FourTuple, Packet, Proto } from '../api/types';
import { epochNs, formatDuration, formatTime } from './time';
import { formatEndpoint, formatTuple, reversedTuple, sameTuple } from './tuple';

/** Which way a packet travels: client to server or back; null when it matches none of the connection's tuples. */
export type FlowDirection = 'c2s' | 's2c' | null;

export interface Lane {
  /** `node/netns/iface` for capture points; `client` / `server` for the two ends. */
  key: string;
  title: string;
  subtitle: string;
}

export interface PacketRow {
  kind: 'packet';
  packet: Packet;
  lane: number;
  flowDirection: FlowDirection;
  offsetNs: number;
  relativeSeq: number;
  /** null without the ACK flag or when the other direction's first seq at this capture point is unknown. */
  relativeAck: number | null;
}

export interface DropRow {
  kind: 'drop';
  drop: Drop;
  /** null when the drop happened where no capture point lane is. */
  lane: number | null;
  offsetNs: number;
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

/**
 * Lays out a connection's packets and drops for the sequence diagram and the packet table.
 * Relative sequence numbers count from the first seq seen per capture point and direction,
 * so sequence rewriting between points does not skew them.
 */
export function buildTimeline(packets: Packet[], drops: Drop[], tuples: FourTuple[]): TimelineModel {
  const points = orderedCapturePoints(packets);
  const clientSide = tuples[0];
  const serverSide = tuples[tuples.length - 1];
  const lanes: Lane[] = [
    { key: 'client', title: 'client', subtitle: clientSide ? formatEndpoint(clientSide.src, clientSide.sport) : '' },
    ...points.map((point) => ({ key: capturePointKey(point), title: `${point.node}/${point.netns}`, subtitle: point.iface })),
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

  const directionById = new Map<string, FlowDirection>();
  const packetRows: PacketRow[] = packets.map((packet) => {
    const flowDirection = flowDirectionOf(packet, tuples);
    if (flowDirection) directionById.set(packet.packet_id, flowDirection);
    const peerFirstSeq = firstSeq.get(directionalKey(packet, reversedTuple(packet)));
    return {
      kind: 'packet',
      packet,
      lane: laneIndex.get(capturePointKey(packet)) ?? 0,
      flowDirection,
      offsetNs: offsetOf(packet.ts),
      relativeSeq: seqOffset(packet.seq, firstSeq.get(directionalKey(packet, packet)) ?? packet.seq),
      relativeAck: peerFirstSeq === undefined || !hasAck(packet) ? null : seqOffset(packet.ack, peerFirstSeq),
    };
  });
  // A packet seen only between NATs under a tuple the connection does not list takes its direction from its copies elsewhere.
  for (const row of packetRows) {
    row.flowDirection ??= directionById.get(row.packet.packet_id) ?? null;
  }

  const dropRows: DropRow[] = drops.map((drop) => ({
    kind: 'drop',
    drop,
    lane: laneIndex.get(capturePointKey(drop)) ?? laneOfNamespace(lanes, drop),
    offsetNs: offsetOf(drop.ts),
  }));

  return { lanes, rows: mergeByTime(packetRows, dropRows) };
}

/** A drop inside a namespace but off the captured interfaces goes on that namespace's first lane. */
function laneOfNamespace(lanes: Lane[], point: CapturePointRef): number | null {
  const index = lanes.findIndex((lane) => lane.title === `${point.node}/${point.netns}`);
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

/** The one-line label of a packet: flags, seq, ack, len, win (TCP) or len (UDP). */
export function packetLabel(row: PacketRow, proto: Proto, relative: boolean): string {
  const { packet } = row;
  if (proto === 'udp') return `len=${packet.len}`;
  const seq = relative ? row.relativeSeq : packet.seq;
  const ack = relative ? (row.relativeAck ?? packet.ack) : packet.ack;
  const flags = packet.flags.length ? `[${packet.flags.join(',')}]` : '[]';
  const ackPart = hasAck(packet) ? ` ack=${ack}` : '';
  return `${flags} seq=${seq}${ackPart} len=${packet.len} win=${packet.win}`;
}

function formatOptions(packet: Packet): string {
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
  lines.push(`packet_id ${packet.packet_id}`);
  return lines.join('\n');
}

export function describeDrop(row: DropRow): string {
  const { drop } = row;
  return [
    `${formatTime(drop.ts)}  (+${formatDuration(row.offsetNs)})`,
    `dropped at ${capturePointKey(drop)}: ${drop.reason}`,
    formatTuple(drop),
    `location ${drop.location}`,
    ...(drop.cause ? [drop.cause] : []),
    ...drop.stack,
  ].join('\n');
}
