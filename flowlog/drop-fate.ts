// A drop's fate: whether the packet the kernel freed got through after all. The
// drop tracer reports every kfree_skb with a reason; some free a copy of a packet
// that went on elsewhere (OTHERHOST on a bridge or OVS port, a flooded frame), some
// a packet its endpoint had processed. The settler holds traced drops until the
// packets captured around them are in the store, looks up where else the same
// packet (packet id) was seen, decides, and hands the drops with their fate to
// the writer. Rules and kernel evidence: docs/drops.md, "Fate".

import type { DropFate, DropRecord, EpochNs, FourTuple, TracedDrop } from '../model/records.js';
import { headerLayout } from '../model/headers.js';
import { PROTO_NUMBER, TCP_FLAG_BIT } from '../model/protocol.js';
import { MAX_TS_NS } from './codec.js';
import { PACKET_READ_COLUMNS, packetRowsOfChunks, type PacketColumns } from './packets/rows.js';
import type { NativeBlock } from './native-format.js';
import { connKeyList, timeParam, type Params } from './query-params.js';
import type { FlowLogStore } from './store.js';

/** Sightings this far from a drop (either side) may be of its packet: a packet crosses a host in microseconds, a retransmission has another id. */
export const FATE_WINDOW_NS = 1_000_000_000n;
/**
 * A dropped segment was seen by a capture point of its host at most this long before the drop: the
 * packets of its tuple in that time are read to find capture's id for it (a second of a bulk
 * transfer's packets, read for each of its drops, took more CPU than capturing them).
 */
const CAPTURE_ID_WINDOW_NS = 50_000_000n;

/** Where a packet was seen. */
export interface Sighting {
  packetId: bigint;
  ts: EpochNs;
  node: string;
  netns: string;
  iface: string;
  direction: 'ingress' | 'egress';
}

/** Where a packet was dropped (any fate). */
export interface DropPlace {
  packetId: bigint;
  ts: EpochNs;
  node: string;
  netns: string;
}

/** A TCP segment of the reverse direction that acknowledged a dropped segment. */
export interface Acknowledgement {
  ts: EpochNs;
  point: string;
  ack: number;
  /** `address:port` that sent it. */
  from: string;
}

const pointOf = (p: { node: string; netns: string; iface: string }) => `${p.node}/${p.netns}/${p.iface}`;
const sameNetns = (a: { node: string; netns: string }, b: { node: string; netns: string }) => a.node === b.node && a.netns === b.netns;

/** `delta` ns as µs (or ms) in words, with later/earlier. */
export function delayText(delta: bigint): string {
  const abs = delta < 0n ? -delta : delta;
  const amount = abs >= 10_000_000n ? `${Number(abs / 100_000n) / 10} ms` : `${Number(abs / 100n) / 10} µs`;
  return `${amount} ${delta < 0n ? 'earlier' : 'later'}`;
}

/**
 * TCP frees that are no loss when the receiver acknowledged the segment: tcp_v4_rcv and
 * tcp_v6_rcv free with kfree_skb_reason(..., NOT_SPECIFIED) a segment a TIME_WAIT socket
 * has processed (tcp_timewait_state_process answered TCP_TW_ACK or TCP_TW_SUCCESS and left
 * the reason unset), as well as segments they could not use (not PACKET_HOST, a header
 * pskb_may_pull could not pull). An acknowledgement that covers the segment tells the two apart.
 */
export function isTcpReceiveFree(d: TracedDrop): boolean {
  return d.proto === 'tcp' && d.reason === 'NOT_SPECIFIED' && /^tcp_v[46]_rcv\+/.test(d.location);
}

/**
 * TCP's PAWS check (RFC 7323) rejected the segment: its timestamp was older than the last one its
 * socket took. A late original whose retransmission got there first fails it, as does new data from
 * a sender whose timestamps went backwards (two hosts behind one NAT); the receiver's acknowledgement
 * of its data before the drop tells the two apart.
 */
export function isPawsReject(d: TracedDrop): boolean {
  return d.proto === 'tcp' && d.reason === 'TCP_RFC7323_PAWS';
}

/** `d` is a TCP segment with payload, by the headers the kernel held. */
const carriesData = (d: TracedDrop): boolean => (segmentFields(d)?.len ?? 0) > 0;

/** seq of the segment's end (seq + payload + FIN), from the headers the kernel held; null when they do not say. */
export function segmentEnd(d: TracedDrop): number | null {
  const h = d.headers;
  const layout = headerLayout(h, 0, h.length, d.linkType);
  if (layout === null || layout.proto !== PROTO_NUMBER.tcp || layout.l4 < 0 || h.length < layout.l4 + 14) return null;
  const ipPayload = layout.ipVersion === 4
    ? ((h[layout.ip + 2] << 8) | h[layout.ip + 3]) - (h[layout.ip] & 0x0f) * 4
    : (h[layout.ip + 4] << 8) | h[layout.ip + 5];
  const l4 = layout.l4;
  const seq = ((h[l4 + 4] << 24) | (h[l4 + 5] << 16) | (h[l4 + 6] << 8) | h[l4 + 7]) >>> 0;
  const flags = h[l4 + 13];
  const payload = ipPayload - layout.l4HeaderLength;
  if (payload < 0) return null;
  return (seq + payload + (flags & TCP_FLAG_BIT.FIN ? 1 : 0) + (flags & TCP_FLAG_BIT.SYN ? 1 : 0)) >>> 0;
}

/** The TCP header fields of the dropped segment that capture stores too, from the headers the kernel held; null when they do not say. */
function segmentFields(d: TracedDrop): { ipId: number; seq: number; ack: number; flags: number; win: number; len: number } | null {
  const h = d.headers;
  const layout = headerLayout(h, 0, h.length, d.linkType);
  if (layout === null || layout.proto !== PROTO_NUMBER.tcp || layout.l4 < 0 || h.length < layout.l4 + 16) return null;
  const u16 = (at: number) => (h[at] << 8) | h[at + 1];
  const u32 = (at: number) => ((h[at] << 24) | (h[at + 1] << 16) | (h[at + 2] << 8) | h[at + 3]) >>> 0;
  const ipPayload = layout.ipVersion === 4 ? u16(layout.ip + 2) - (h[layout.ip] & 0x0f) * 4 : u16(layout.ip + 4);
  const l4 = layout.l4;
  return {
    ipId: layout.ipVersion === 4 ? u16(layout.ip + 4) : 0,
    seq: u32(l4 + 4),
    ack: u32(l4 + 8),
    flags: h[l4 + 13],
    win: u16(l4 + 14),
    len: ipPayload - layout.l4HeaderLength,
  };
}

/**
 * Capture's packet id of TCP segment `d`, when the tracer's differs: the tracer hashes the
 * payload's first bytes only when they are in the skb's linear data, and TCP's sendmsg puts
 * payload in page fragments, so a dropped data segment gets another id than capture gave it.
 * The same segment is the one seen with `d`'s tuple within CAPTURE_ID_WINDOW_NS before the drop
 * with equal IP id, sequence and acknowledgement numbers, flags, window and payload length.
 */
function captureIdOf(packets: ConnectionPackets, d: TracedDrop): bigint | null {
  const fields = segmentFields(d);
  if (fields === null || fields.len <= 0) return null;
  let found: bigint | null = null;
  const c = packets.columns;
  for (const row of packets.of(d, d.ts - CAPTURE_ID_WINDOW_NS, d.ts)) {
    if (c.sport[row] !== d.sport || c.dport[row] !== d.dport || c.addresses[c.src[row]].text !== d.src) continue;
    if (c.ipId[row] !== fields.ipId || c.seq[row] !== fields.seq || c.ack[row] !== fields.ack) continue;
    if (c.flags[row] !== fields.flags || c.win[row] !== fields.win || c.len[row] !== fields.len) continue;
    found = c.packetId[row];
  }
  return found;
}

/** a >= b in sequence space (RFC 793 modular comparison). */
const seqAtOrAfter = (a: number, b: number) => ((a - b) | 0) >= 0;

/**
 * The fate of drop `d`, from the sightings of its packet and the drops of it (both within
 * FATE_WINDOW_NS of it; `drops` includes `d`) and the acknowledgement that covered its segment
 * (below; null when none was seen or none is looked for).
 *
 * A sighting is of the packet going on unless the packet was dropped in that namespace at or
 * after it (the router's ingress before its own FORWARD drop is not). Then:
 * 1. seen going on after the drop, anywhere: `copy` (the latest such sighting is the proof);
 * 2. OTHERHOST (a frame for another station's MAC) and delivered into another namespace
 *    (its last sighting there is ingress), before or after: `copy`;
 * 3. a PAWS reject whose data the receiver had acknowledged before: `copy` (a late duplicate);
 * 4. a TCP receive free whose segment the receiver acknowledged: `consumed`;
 * 5. else `lost`.
 * `ack` is the acknowledgement rule 3 or 4 looks for: for a PAWS reject the latest before the drop
 * that covered the segment, for a TCP receive free the first after it.
 * Before any of these, the reason alone decides two kinds (reasonFate): TCP's own duplicates
 * (DUPLICATE_REASONS) are `copy`, the kernel frees them because it has their data already; a full
 * receiving socket's frees (SOCKET_FULL_REASONS) are `lost`.
 */
export function decideFate(d: TracedDrop, sightings: readonly Sighting[], drops: readonly DropPlace[], ack: Acknowledgement | null): DropFate {
  const byReason = reasonFate(d);
  if (byReason !== null) return byReason;
  const near = sightings.filter((s) => s.packetId === d.packetId && s.ts >= d.ts - FATE_WINDOW_NS && s.ts <= d.ts + FATE_WINDOW_NS);
  const goingOn = near.filter((s) => !drops.some((x) => x.packetId === d.packetId && sameNetns(x, s) && x.ts >= s.ts));
  const latest = (list: Sighting[]) => list.reduce((a, b) => (b.ts > a.ts ? b : a));
  const seen = (s: Sighting, what: string): DropFate => ({
    fate: 'copy',
    proof: `${what}: seen at ${pointOf(s)} (${s.direction}) ${delayText(s.ts - d.ts)}`,
    seenAt: pointOf(s),
    seenDeltaNs: s.ts - d.ts,
  });

  const after = goingOn.filter((s) => s.ts > d.ts);
  if (after.length > 0) return seen(latest(after), 'went on');
  if (d.reason === 'OTHERHOST') {
    const delivered = goingOn.filter((s) =>
      s.direction === 'ingress' && !sameNetns(s, d) && !near.some((o) => sameNetns(o, s) && o.direction === 'egress' && o.ts > s.ts));
    if (delivered.length > 0) return seen(latest(delivered), 'delivered to its addressee');
  }
  if (ack !== null && isPawsReject(d)) {
    return {
      fate: 'copy',
      proof: `a late duplicate its receiving socket rejected for an older timestamp (TCP_RFC7323_PAWS): its data had been acknowledged already, by ${ack.from} (ack ${ack.ack}) at ${ack.point} ${delayText(ack.ts - d.ts)}`,
      seenAt: ack.point,
      seenDeltaNs: ack.ts - d.ts,
    };
  }
  if (ack !== null && isTcpReceiveFree(d)) {
    return {
      fate: 'consumed',
      proof: `processed by its TCP endpoint (freed without a reason after it, as a TIME_WAIT socket does): acknowledged by ${ack.from} (ack ${ack.ack}) at ${ack.point} ${delayText(ack.ts - d.ts)}`,
      seenAt: ack.point,
      seenDeltaNs: ack.ts - d.ts,
    };
  }
  const before = near.filter((s) => s.ts <= d.ts);
  const last = before.length > 0 ? latest(before) : null;
  return {
    fate: 'lost',
    proof: last === null
      ? 'no capture point saw it, before or after the drop'
      : `no capture point saw it after the drop (last seen at ${pointOf(last)} (${last.direction}) ${delayText(last.ts - d.ts)})`,
    seenAt: last === null ? null : pointOf(last),
    seenDeltaNs: last === null ? null : last.ts - d.ts,
  };
}

// ---- what the store knows of the drops' packets

/** The window around a set of drops. */
function windowOf(drops: readonly TracedDrop[]): { from: bigint; to: bigint } {
  let from = MAX_TS_NS;
  let to = 0n;
  for (const d of drops) {
    if (d.ts < from) from = d.ts;
    if (d.ts > to) to = d.ts;
  }
  return { from: from > FATE_WINDOW_NS ? from - FATE_WINDOW_NS : 0n, to: to + FATE_WINDOW_NS };
}

/** Sightings of packets `ids` between `from` and `to`: the chunks holding any of them (bloom filter on packet_ids), unpacked. */
export async function sightingsOf(store: FlowLogStore, ids: readonly bigint[], from: bigint, to: bigint): Promise<Sighting[]> {
  if (ids.length === 0) return [];
  const params: Params = { ids: [...ids], from, to };
  const query = `SELECT ${PACKET_READ_COLUMNS} FROM ${store.table('packets')}
    WHERE hasAny(packet_ids, {ids:Array(UInt64)}) AND last_ts >= ${timeParam('from')} AND first_ts <= ${timeParam('to')}`;
  const blocks: NativeBlock[] = [];
  for await (const block of store.selectNative(query, params)) blocks.push(block);
  if (blocks.length === 0) return [];
  const rows = packetRowsOfChunks(blocks, from, to + 1n);
  const wanted = new Set(ids);
  const c = rows.columns;
  const found: Sighting[] = [];
  for (const row of rows.rows) {
    if (!wanted.has(c.packetId[row])) continue;
    const point = c.points[c.point[row]];
    found.push({ packetId: c.packetId[row], ts: c.ts[row], node: point.node, netns: point.netns, iface: point.iface, direction: c.direction[row] === 1 ? 'ingress' : 'egress' });
  }
  return found;
}

/** Drops of packets `ids` already stored between `from` and `to`. */
async function storedDropsOf(store: FlowLogStore, ids: readonly bigint[], from: bigint, to: bigint): Promise<DropPlace[]> {
  if (ids.length === 0) return [];
  const query = `SELECT toString(packet_id), toString(toUnixTimestamp64Nano(ts)), node, netns FROM ${store.table('drops')}
    WHERE packet_id IN {ids:Array(UInt64)} AND ts >= ${timeParam('from')} AND ts <= ${timeParam('to')}`;
  return store.select(query, { ids: [...ids], from, to }, (row) => {
    const [packetId, ts, node, netns] = row as [string, string, string, string];
    return { packetId: BigInt(packetId), ts: BigInt(ts), node, netns };
  });
}

/** The first segment of the reverse direction, after drop `d` and within the window, whose ACK covers `d`'s segment. */
function acknowledgementOf(packets: ConnectionPackets, d: TracedDrop): Acknowledgement | null {
  const end = segmentEnd(d);
  if (end === null) return null;
  const c = packets.columns;
  for (const row of packets.of(d, d.ts + 1n, d.ts + FATE_WINDOW_NS)) {
    const src = c.addresses[c.src[row]].text;
    if (src !== d.dst || c.sport[row] !== d.dport || c.dport[row] !== d.sport) continue;
    if (!(c.flags[row] & TCP_FLAG_BIT.ACK) || !seqAtOrAfter(c.ack[row], end)) continue;
    return { ts: c.ts[row], point: pointOf(c.points[c.point[row]]), ack: c.ack[row], from: `${src}:${c.sport[row]}` };
  }
  return null;
}

/** The last segment of the reverse direction, before drop `d` and within the window, whose ACK covered `d`'s segment. */
function acknowledgementBefore(packets: ConnectionPackets, d: TracedDrop): Acknowledgement | null {
  const end = segmentEnd(d);
  if (end === null) return null;
  const c = packets.columns;
  let found: Acknowledgement | null = null;
  for (const row of packets.of(d, d.ts - FATE_WINDOW_NS, d.ts)) {
    const src = c.addresses[c.src[row]].text;
    if (src !== d.dst || c.sport[row] !== d.dport || c.dport[row] !== d.sport) continue;
    if (!(c.flags[row] & TCP_FLAG_BIT.ACK) || !seqAtOrAfter(c.ack[row], end)) continue;
    found = { ts: c.ts[row], point: pointOf(c.points[c.point[row]]), ack: c.ack[row], from: `${src}:${c.sport[row]}` };
  }
  return found;
}

/** The TCP packets of some connections within some windows of time, read together; `of` gives one connection's. */
class ConnectionPackets {
  /** Per connection (its two ends' address indexes and ports, lower end first), its rows in time order. */
  readonly #rows = new Map<number, Map<number, number[]>>();
  readonly #addressIndex: Map<string, number>;

  constructor(readonly columns: PacketColumns, rows: Uint32Array) {
    const c = columns;
    this.#addressIndex = new Map(c.addresses.map((a, i) => [a.text, i]));
    for (const row of rows) {
      const list = this.#list(c.src[row] * 0x10000 + c.sport[row], c.dst[row] * 0x10000 + c.dport[row]);
      list.push(row);
    }
  }

  /** The rows of `tuple`'s connection (either direction) with from <= ts <= to, in time order. */
  *of(tuple: FourTuple, from: bigint, to: bigint): Generator<number> {
    const src = this.#addressIndex.get(tuple.src);
    const dst = this.#addressIndex.get(tuple.dst);
    if (src === undefined || dst === undefined) return;
    const rows = this.#list(src * 0x10000 + tuple.sport, dst * 0x10000 + tuple.dport);
    const ts = this.columns.ts;
    let lo = 0;
    let hi = rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ts[rows[mid]] < from) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < rows.length && ts[rows[i]] <= to; i++) yield rows[i];
  }

  #list(end1: number, end2: number): number[] {
    const [lower, upper] = end1 <= end2 ? [end1, end2] : [end2, end1];
    let byUpper = this.#rows.get(lower);
    if (byUpper === undefined) this.#rows.set(lower, (byUpper = new Map()));
    let list = byUpper.get(upper);
    if (list === undefined) byUpper.set(upper, (list = []));
    return list;
  }
}

/** A window of time of one TCP connection's packets (both ends inclusive). */
interface PacketWindow {
  tuple: FourTuple;
  from: bigint;
  to: bigint;
}

/**
 * The TCP packets of the windows' connections, in one query: the chunks of those connections that
 * overlap the time from the first window's start to the last one's end, unpacked (`of` picks each
 * window's). One query per batch of drops, not one per drop: the embedded engine spends milliseconds
 * on any query, and many short connections make a drop each.
 */
async function packetsInWindows(store: FlowLogStore, windows: readonly PacketWindow[]): Promise<ConnectionPackets | null> {
  if (windows.length === 0) return null;
  const tuples = new Map<string, FourTuple>();
  let from = MAX_TS_NS;
  let to = 0n;
  for (const w of windows) {
    tuples.set([`${w.tuple.src}|${w.tuple.sport}`, `${w.tuple.dst}|${w.tuple.dport}`].sort().join(' '), w.tuple);
    if (w.from < from) from = w.from;
    if (w.to > to) to = w.to;
  }
  const params: Params = { from, to };
  const query = `SELECT ${PACKET_READ_COLUMNS} FROM ${store.table('packets')}
    WHERE conn_key IN (${connKeyList('tcp', [...tuples.values()], params)}) AND last_ts >= ${timeParam('from')} AND first_ts <= ${timeParam('to')}`;
  const blocks: NativeBlock[] = [];
  for await (const block of store.selectNative(query, params)) blocks.push(block);
  const rows = packetRowsOfChunks(blocks, from, to + 1n);
  return new ConnectionPackets(rows.columns, rows.rows);
}

/**
 * TCP's frees of segments whose data or acknowledgement the receiving socket already had (the kernel's
 * reasons: TCP_OLD_DATA "the packet's data was already received", TCP_OLD_SEQUENCE "its sequence
 * number is before the receive window", TCP_OLD_ACK "the ACK is older than one already seen"):
 * copies of what was delivered — a retransmission that was not needed — never a loss.
 */
const DUPLICATE_REASONS: ReadonlyMap<string, string> = new Map([
  ['TCP_OLD_DATA', 'its data had been received already'],
  ['TCP_OLD_SEQUENCE', 'its sequence number lay before the receive window: received already'],
  ['TCP_OLD_ACK', 'it acknowledged what a later ACK had already'],
]);

/**
 * Frees at the packet's destination, by its socket or for want of one: SOCKET_RCVBUFF (the receive
 * buffer was full), SOCKET_BACKLOG, PROTO_MEM (the protocol's memory limit), NO_SOCKET (no socket
 * for it: closed, or never open), TCP_CLOSE (its socket was closed). The packet had arrived where it
 * was going, nothing can see it after — a loss, decided without the store (a UDP flood, or many short
 * connections whose last packets meet closed sockets, make thousands a second).
 */
const SOCKET_FULL_REASONS: ReadonlyMap<string, string> = new Map([
  ['SOCKET_RCVBUFF', 'its receiving socket had no room for it'],
  ['SOCKET_BACKLOG', 'its receiving socket had no room for it'],
  ['PROTO_MEM', 'its receiving socket had no room for it'],
  ['NO_SOCKET', 'no socket of its destination took it'],
  ['TCP_CLOSE', 'its destination socket was closed'],
]);

/** The fate of a drop its reason alone decides, or null. */
function reasonFate(d: TracedDrop): DropFate | null {
  const why = d.proto === 'tcp' ? DUPLICATE_REASONS.get(d.reason) : undefined;
  if (why !== undefined) return { fate: 'copy', proof: `a duplicate the receiving socket discarded (${d.reason}): ${why}`, seenAt: null, seenDeltaNs: null };
  const atDestination = SOCKET_FULL_REASONS.get(d.reason);
  if (atDestination !== undefined) {
    return { fate: 'lost', proof: `${atDestination} (${d.reason}): it had arrived, and nothing saw it after`, seenAt: null, seenDeltaNs: null };
  }
  return null;
}

/**
 * The drops with their fates, from what the store holds now. A TCP data segment no capture point
 * saw under the tracer's packet id gets capture's (captureIdOf), when capture saw it before the drop.
 */
export async function decideFates(store: FlowLogStore, all: readonly TracedDrop[]): Promise<DropRecord[]> {
  const byReason: DropRecord[] = all.flatMap((d) => {
    const fate = reasonFate(d);
    return fate === null ? [] : [{ ...d, fate }];
  });
  const traced = all.filter((d) => reasonFate(d) === null);
  if (traced.length === 0) return byReason;
  const { from, to } = windowOf(traced);
  const sightings = await sightingsOf(store, [...new Set(traced.map((d) => d.packetId))], from, to);
  const sighted = new Set(sightings.map((s) => s.packetId));
  // The packets the store is asked for besides the sightings: before a TCP data segment seen under no
  // tracer id (for capture's id of it), after a TCP receive free and before a PAWS reject (for the
  // acknowledgement that covered it).
  const unsighted = new Set(traced.filter((d) => d.proto === 'tcp' && !sighted.has(d.packetId) && carriesData(d)));
  const freed = traced.filter((d) => isTcpReceiveFree(d) && segmentEnd(d) !== null);
  const rejected = traced.filter((d) => isPawsReject(d) && carriesData(d));
  const packets = await packetsInWindows(store, [
    ...[...unsighted].map((d) => ({ tuple: d, from: d.ts - CAPTURE_ID_WINDOW_NS, to: d.ts })),
    ...freed.map((d) => ({ tuple: d, from: d.ts + 1n, to: d.ts + FATE_WINDOW_NS })),
    ...rejected.map((d) => ({ tuple: d, from: d.ts - FATE_WINDOW_NS, to: d.ts })),
  ]);
  const drops: TracedDrop[] = [];
  const reIdentified: bigint[] = [];
  for (const d of traced) {
    const id = packets !== null && unsighted.has(d) ? captureIdOf(packets, d) : null;
    if (id !== null) reIdentified.push(id);
    drops.push(id === null ? d : { ...d, packetId: id });
  }
  if (reIdentified.length > 0) sightings.push(...(await sightingsOf(store, [...new Set(reIdentified)], from, to)));
  const stored = await storedDropsOf(store, [...new Set(drops.map((d) => d.packetId))], from, to);
  const places: DropPlace[] = [...stored, ...drops];
  const decided = drops.map((d): DropRecord => {
    const ack = packets === null ? null
      : isTcpReceiveFree(d) ? acknowledgementOf(packets, d)
      : isPawsReject(d) && carriesData(d) ? acknowledgementBefore(packets, d)
      : null;
    return { ...d, fate: decideFate(d, sightings, places, ack) };
  });
  return [...byReason, ...decided];
}

// ---- the settler

/** How long a drop is held before its fate is decided: the packets captured around it reach the store meanwhile. */
export const DEFAULT_SETTLE_MS = 2000;
/** A drop is decided after this long even if the writer has not stored the packets captured meanwhile (store failing). */
const MAX_HOLD_MS = 10_000;
/** Drops decided from the store in one batch, one batch at a time; more than that waiting are written undecided. */
const DECIDED_PER_BATCH = 256;
/** More drops than this held: the oldest are decided at once. */
const MAX_HELD = 20_000;

/** How far the packet writer has got: rows taken in, and rows stored or refused. */
export interface PacketProgress {
  accepted: number;
  done: number;
}

export interface DropSettlerOptions {
  store: FlowLogStore;
  /** Where decided drops go (the writer). */
  onDecided(drops: DropRecord[]): void;
  packetProgress(): PacketProgress;
  settleMs?: number;
  log(message: string): void;
}

/** What the settler has decided since it started, per fate. */
export type DropFateCounts = Record<DropFate['fate'], number>;

interface Held {
  drop: TracedDrop;
  heldAt: number;
  /** The writer's accepted packets when the settle time was up: decided once that many are stored. */
  mark: number | null;
}

export class DropSettler {
  readonly #options: DropSettlerOptions;
  readonly #settleMs: number;
  #held: Held[] = [];
  #timer: NodeJS.Timeout | null = null;
  /** Decisions run one at a time, in the order drops came. */
  #deciding: Promise<void> = Promise.resolve();
  /** Batches queued or being decided from the store. */
  #batchesInFlight = 0;
  readonly #counts: DropFateCounts = { lost: 0, copy: 0, consumed: 0, unknown: 0 };

  constructor(options: DropSettlerOptions) {
    this.#options = options;
    this.#settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
  }

  add(drops: readonly TracedDrop[]): void {
    const now = Date.now();
    for (const drop of drops) this.#held.push({ drop, heldAt: now, mark: null });
    this.#timer ??= setInterval(() => this.#tick(), Math.max(50, this.#settleMs / 4));
    this.#timer.unref();
  }

  counts(): DropFateCounts {
    return { ...this.#counts };
  }

  /** Decides every drop held now, from what the store holds (call once the packets are written). */
  settleAll(): Promise<void> {
    const all = this.#held;
    this.#held = [];
    this.#stopTimerIfIdle();
    return this.#decide(all.map((h) => h.drop));
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  #tick(): void {
    const now = Date.now();
    const progress = this.#options.packetProgress();
    const ready: TracedDrop[] = [];
    const overdue: TracedDrop[] = [];
    const keep: Held[] = [];
    const excess = this.#held.length - MAX_HELD;
    // The store is asked for one batch at a time, of at most DECIDED_PER_BATCH drops; the others wait
    // for the next. Past MAX_HOLD_MS waiting, or MAX_HELD waiting, drops come faster than they can be
    // decided (a storm of them): those are written undecided (fates.unknown, counted as losses) rather
    // than piling up work that would starve capture.
    const room = this.#batchesInFlight === 0 ? DECIDED_PER_BATCH : 0;
    this.#held.forEach((h, i) => {
      if (h.mark === null && now - h.heldAt >= this.#settleMs) h.mark = progress.accepted;
      const stored = h.mark !== null && progress.done >= h.mark;
      if (now - h.heldAt >= MAX_HOLD_MS || i < excess) overdue.push(h.drop);
      else if (stored && ready.length < room) ready.push(h.drop);
      else keep.push(h);
    });
    this.#held = keep;
    this.#stopTimerIfIdle();
    if (overdue.length > 0) this.#writeUndecided(overdue, `not decided: drops came faster than they could be decided (${DECIDED_PER_BATCH} a batch, one batch at a time)`);
    if (ready.length > 0) void this.#decide(ready);
  }

  #writeUndecided(drops: TracedDrop[], proof: string): void {
    const fate: DropFate = { fate: 'unknown', proof, seenAt: null, seenDeltaNs: null };
    this.#counts.unknown += drops.length;
    this.#options.onDecided(drops.map((d) => ({ ...d, fate })));
  }

  #stopTimerIfIdle(): void {
    if (this.#held.length === 0) this.close();
  }

  #decide(drops: TracedDrop[]): Promise<void> {
    this.#batchesInFlight++;
    this.#deciding = this.#deciding.then(async () => {
      if (drops.length === 0) return;
      let decided: DropRecord[];
      try {
        decided = await decideFates(this.#options.store, drops);
      } catch (err) {
        const { cause } = err as Error;
        const detail = cause instanceof Error ? `${(err as Error).message}: ${cause.message}` : (err as Error).message;
        this.#options.log(`drop fates: the store could not be asked (${detail}); ${drops.length} drops are stored with fate unknown`);
        const fate: DropFate = { fate: 'unknown', proof: 'not decided: the store could not be asked for the packet\'s sightings', seenAt: null, seenDeltaNs: null };
        decided = drops.map((d) => ({ ...d, fate }));
      }
      for (const d of decided) this.#counts[d.fate.fate]++;
      this.#options.onDecided(decided);
    }).finally(() => {
      this.#batchesInFlight--;
    });
    return this.#deciding;
  }
}
