import type { Drop, Packet } from '../api/types.generated';
import { isLoss } from './fate';
import { type DropRow, type FlowDirection, type Lane, type PacketRow, type TimelineModel } from './timeline';

/**
 * The ladder diagram's rows: one per packet — its sightings at every capture point it passed
 * (the same packet_id), drawn as one arrow from where it was first seen to where it was last
 * seen — and one per drop of a packet no capture point saw.
 */

/** One capture point's sighting of a packet. */
export interface Sighting {
  row: PacketRow;
  lane: number;
}

export interface JourneyRow {
  kind: 'journey';
  packetId: string;
  flowDirection: FlowDirection;
  /** In time order; the first is the packet as its sender's side saw it. */
  sightings: Sighting[];
  offsetNs: number;
  intervalNs: number;
  /** The lanes its arrow spans: an end lane when it left the sender / reached the receiver, else the first / last point that saw it. */
  fromLane: number;
  toLane: number;
  /** It was last seen before the last capture point on its way, or the kernel dropped it (a loss): it ends where it was last seen. */
  vanished: boolean;
  /** The kernel's free of this packet, if one was recorded: a loss, or a copy / a packet used (docs/drops.md, fate). */
  drop: Drop | null;
  retransmission: boolean;
  zeroWindow: boolean;
}

export interface LooseDropRow {
  kind: 'drop';
  row: DropRow;
  offsetNs: number;
  intervalNs: number;
}

export type LadderRow = JourneyRow | LooseDropRow;

export interface LadderModel {
  /** Client, the capture points in path order (client side to server side), server. */
  lanes: Lane[];
  rows: LadderRow[];
  /** The window scale each side announced in its SYN (null: not seen), for scaled windows. */
  windowScale: { c2s: number | null; s2c: number | null };
}

/** Sightings of one packet follow each other within this; an equal packet_id later is another packet. */
const SAME_PACKET_NS = 1_000_000_000;

/** The window a packet advertises, scaled by its sender's window scale (none in SYNs); null when the scale is unknown. */
export function scaledWindow(packet: Packet, direction: FlowDirection, windowScale: LadderModel['windowScale']): number | null {
  if (packet.flags.includes('SYN')) return packet.win;
  const shift = direction === null ? null : windowScale[direction];
  return shift === null ? null : packet.win * 2 ** shift;
}

export function buildLadder(model: TimelineModel): LadderModel {
  const lastLane = model.lanes.length - 1;
  const open = new Map<string, JourneyRow>();
  const rows: LadderRow[] = [];
  const windowScale: LadderModel['windowScale'] = { c2s: null, s2c: null };
  const journeyOf = new Map<string, JourneyRow[]>();

  for (const row of model.rows) {
    if (row.kind === 'drop') continue;
    const { packet } = row;
    if (packet.flags.includes('SYN') && packet.options.wscale !== undefined && row.flowDirection !== null) {
      windowScale[row.flowDirection] ??= packet.options.wscale;
    }
    const journey = open.get(packet.packet_id);
    const last = journey?.sightings[journey.sightings.length - 1];
    const continues =
      journey !== undefined &&
      last !== undefined &&
      row.offsetNs - last.row.offsetNs <= SAME_PACKET_NS &&
      // A point sees a packet once, loopback twice (out and back in): again there is another packet.
      journey.sightings.filter((s) => s.lane === row.lane).length < (packet.iface === 'lo' ? 2 : 1);
    if (continues) {
      journey.sightings.push({ row, lane: row.lane });
      journey.retransmission ||= row.retransmission;
      journey.zeroWindow ||= row.zeroWindow;
      continue;
    }
    const started: JourneyRow = {
      kind: 'journey',
      packetId: packet.packet_id,
      flowDirection: row.flowDirection,
      sightings: [{ row, lane: row.lane }],
      offsetNs: row.offsetNs,
      intervalNs: 0,
      fromLane: row.lane,
      toLane: row.lane,
      vanished: false,
      drop: null,
      retransmission: row.retransmission,
      zeroWindow: row.zeroWindow,
    };
    open.set(packet.packet_id, started);
    journeyOf.set(packet.packet_id, [...(journeyOf.get(packet.packet_id) ?? []), started]);
    rows.push(started);
  }

  // Each drop goes on the journey of its packet (the last one before it); a packet never seen gets a row of its own.
  for (const row of model.rows) {
    if (row.kind !== 'drop') continue;
    const journeys = journeyOf.get(row.drop.packet_id) ?? [];
    const journey = journeys.filter((j) => j.offsetNs <= row.offsetNs).at(-1);
    if (journey && journey.drop === null) journey.drop = row.drop;
    else rows.push({ kind: 'drop', row, offsetNs: row.offsetNs, intervalNs: 0 });
  }

  for (const row of rows) {
    if (row.kind !== 'journey') continue;
    const lanes = row.sightings.map((s) => s.lane);
    const lowest = Math.min(...lanes);
    const highest = Math.max(...lanes);
    // Client to server goes left to right; a packet whose direction is unknown stays between the points that saw it.
    const towardsServer = row.flowDirection !== 's2c';
    const [start, end] = towardsServer ? [lowest, highest] : [highest, lowest];
    const firstPoint = towardsServer ? 1 : lastLane - 1;
    const lastPoint = towardsServer ? lastLane - 1 : 1;
    const senderSide = row.flowDirection !== null && start === firstPoint;
    const reachedEnd = row.flowDirection !== null && end === lastPoint;
    row.fromLane = senderSide ? (towardsServer ? 0 : lastLane) : start;
    const lost = row.drop !== null && isLoss(row.drop);
    row.toLane = reachedEnd && !lost ? (towardsServer ? lastLane : 0) : end;
    row.vanished = row.flowDirection !== null && (!reachedEnd || lost);
  }

  rows.sort((a, b) => a.offsetNs - b.offsetNs);
  rows.forEach((row, index) => {
    row.intervalNs = index === 0 ? 0 : row.offsetNs - rows[index - 1].offsetNs;
  });
  return { lanes: model.lanes, rows, windowScale };
}

/** Per-hop delays along a journey: between consecutive sightings at different lanes. */
export function journeyHops(journey: JourneyRow): Array<{ fromLane: number; toLane: number; ns: number }> {
  const hops: Array<{ fromLane: number; toLane: number; ns: number }> = [];
  for (let i = 1; i < journey.sightings.length; i += 1) {
    const before = journey.sightings[i - 1];
    const after = journey.sightings[i];
    if (before.lane !== after.lane) hops.push({ fromLane: before.lane, toLane: after.lane, ns: after.row.offsetNs - before.row.offsetNs });
  }
  return hops;
}

/** Rows the ladder highlights, and lets one step through. */
export type LadderMark = 'retransmission' | 'zeroWindow' | 'drop';

/** Only losses are marked as drops; copies and packets freed after use are not. */
export function isLadderMarked(row: LadderRow, mark: LadderMark): boolean {
  if (row.kind === 'drop') return mark === 'drop' && isLoss(row.row.drop);
  return mark === 'drop' ? row.drop !== null && isLoss(row.drop) : row[mark];
}

/** The first row marked `mark` after row `after` (-1: from the start), wrapping around; null when there is none. */
export function nextLadderRow(rows: LadderRow[], mark: LadderMark, after: number): number | null {
  for (let step = 1; step <= rows.length; step += 1) {
    const index = (after + step) % rows.length;
    if (isLadderMarked(rows[index], mark)) return index;
  }
  return null;
}
