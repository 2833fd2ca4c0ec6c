// What went wrong with one connection, where, and the packets that prove it: findings
// read from its packets at every capture point (the same packet has the same packet id
// at each), its flows and its drops. `diagnose` is pure over those; `diagnoseConnection`
// reads them from the store. The rules and their thresholds: docs/diagnosis.md.
import type { CapturePoint, DropRecord, EpochNs, FlowRecord, FourTuple, PacketRecord, Proto } from '../model/records.js';
import { headerLayout } from '../model/headers.js';
import { PROTO_NUMBER, TCP_FLAG_BIT } from '../model/protocol.js';
import { reverseTuple, sameTuple } from '../nat-tracker/classify.js';
import { connectionPacketRows, pointName, type Connection, type FlowLogReader } from './connection.js';

export type FindingKind = 'lost' | 'handshake' | 'reset' | 'nagle-delayed-ack' | 'receive-window' | 'mtu-blackhole' | 'slow-server' | 'hop-delay';
export type Severity = 'error' | 'warning';
/** c2s: client to server. */
export type Way = 'c2s' | 's2c';

/** The fields of a packet the diagnosis reads (a PacketRecord has them all). */
export type DiagnosisPacket = Pick<
  PacketRecord,
  'ts' | 'node' | 'netns' | 'iface' | 'direction' | 'src' | 'sport' | 'dst' | 'dport' | 'seq' | 'ack' | 'flags' | 'win' | 'len' | 'packetId'
> & { options: Pick<PacketRecord['options'], 'mss' | 'wscale'> };


export interface DiagnosisInput {
  proto: Proto;
  /** The connection's tuples, client to server, one per hop. */
  tuples: FourTuple[];
  flows: FlowRecord[];
  drops: DropRecord[];
  /** Its packets at every point, in time order. */
  packets: DiagnosisPacket[];
}

/** Where a finding is: at one capture point (`to` null), or on the hop from `from` to `to`. */
export interface FindingWhere {
  from: CapturePoint;
  to: CapturePoint | null;
  /** In words: "at node/netns/iface", "between A and B". */
  text: string;
}

/** A packet that proves a finding, as seen at one point. */
export interface EvidencePacket extends CapturePoint {
  packetId: bigint;
  ts: EpochNs;
  way: Way;
  /** What it shows: `lost`, `retransmission`, `syn`, `rst`, `delayed-ack`, `held-back`, `zero-window`, `request-end`, `response-start`, ... */
  role: string;
  seq: number;
  len: number;
  flags: number;
}

export interface Finding {
  kind: FindingKind;
  severity: Severity;
  /** Which way the packets it is about went; null when both. */
  way: Way | null;
  /** One plain sentence. */
  summary: string;
  where: FindingWhere;
  evidence: { packets: EvidencePacket[]; drops: DropRecord[]; figures: Record<string, number> };
  advice: string;
}

/** One hop between consecutive capture points, one way: how long packets took across it. */
export interface HopTiming {
  from: CapturePoint;
  to: CapturePoint;
  way: Way;
  packets: number;
  medianNs: bigint;
  maxNs: bigint;
}

/** Where the time went. */
export interface Timing {
  /** SYN → first ACK after the SYN-ACK as each point saw it, in path order; a hop's share is the difference of its two points'. */
  handshake: Array<{ point: CapturePoint; rttNs: bigint }>;
  /** Request/response exchanges: the request's last byte in at the server's point → the response's first byte out there (server), and the rest of what the client's point saw (network). */
  exchanges: number;
  serverNs: bigint;
  networkNs: bigint;
  hops: HopTiming[];
}

export interface Diagnosis {
  /** Capture points from the client's side to the server's. */
  path: CapturePoint[];
  findings: Finding[];
  timing: Timing;
  /** Packets read: a connection longer than MAX_DIAGNOSED_PACKETS is diagnosed from its first ones. */
  packets: number;
  truncated: boolean;
}

// ---- thresholds (docs/diagnosis.md) ----------------------------------------------

/** Handshake: a SYN sent this many times without an answer. */
export const HANDSHAKE_MIN_SYNS = 2;
/** Nagle + delayed ACK: the ACK of the first small segment came at least this late, and the held-back one left within NAGLE_RELEASE_NS of it. */
export const DELAYED_ACK_MIN_NS = 30_000_000n;
export const NAGLE_RELEASE_NS = 2_000_000n;
/** Receive window: zero-window periods at least ZERO_WINDOW_MIN_NS long count, when one lasted ZERO_WINDOW_STALL_NS (a receiver that stopped reading, not one briefly behind). */
export const ZERO_WINDOW_MIN_NS = 100_000_000n;
export const ZERO_WINDOW_STALL_NS = 500_000_000n;
/** Receive window: the sender is limited when at least this share of its (at least WINDOW_MIN_SEGMENTS) new segments left with bytes in flight within one MSS of a window of at most SMALL_WINDOW_BYTES. */
export const WINDOW_LIMITED_SHARE = 0.5;
export const WINDOW_MIN_SEGMENTS = 50;
export const SMALL_WINDOW_BYTES = 65_535;
/** MTU black hole: at least this many large segments lost on one hop, some bytes lost this many times, every one as large lost, smaller ones through. */
export const MTU_MIN_LOSSES = 3;
export const MTU_MIN_REPEATS = 2;
/** Slow server: the server's point saw at least this between a request's last byte and the response's first. */
export const SLOW_SERVER_NS = 200_000_000n;
/** Hop delay: a packet took at least this across one hop, and at least HOP_OUTLIER_FACTOR times the hop's median. */
export const HOP_DELAY_MIN_NS = 20_000_000n;
export const HOP_OUTLIER_FACTOR = 10n;
/** Packets of one finding listed as evidence (the figures count them all). */
export const MAX_EVIDENCE_PACKETS = 12;
/** Packets read for one diagnosis. */
export const MAX_DIAGNOSED_PACKETS = 500_000;
/** Lost: a drop of a segment's bytes without its packet id counts within this after it (when it was not retransmitted). */
export const LOSS_DROP_WINDOW_NS = 1_000_000_000n;
/** Reset: a drop of the other way's packet this close to the RST is what it answered (REJECT, no socket). */
export const RESET_CAUSE_WINDOW_NS = 10_000_000n;
/** MSS assumed when the handshake was not seen. */
const DEFAULT_MSS = 536;

const { SYN, ACK, FIN, RST } = TCP_FLAG_BIT;
const SEQ_MOD = 2 ** 32;

// ---- the packets, by point and way -----------------------------------------------

interface Pkt {
  p: DiagnosisPacket;
  way: Way;
  point: number;
  /** Sequence offset from the way's first sequence number, and the space it takes (payload, SYN, FIN). */
  start: number;
  end: number;
}

interface Model {
  points: CapturePoint[];
  /** Point indexes client side first. */
  order: number[];
  /** Per way, point indexes in the order its packets pass them. */
  path: Record<Way, number[]>;
  /** Per point, per way, its packets in time order. */
  at: Array<Record<Way, Pkt[]>>;
  all: Pkt[];
  /** Per way, the sequence number offsets count from. */
  base: Record<Way, number>;
  drops: DropRecord[];
  /** Per drop of `drops`: which way its packet went and its TCP sequence number (from its headers). */
  dropInfo: Map<DropRecord, { way: Way | null; seq: number | null }>;
  /** The MSS each side announced (what the other may send it). */
  mss: Record<Way, number>;
  /** Window scale of the receiver of each way (0 unless both SYNs offered it); null when the handshake was not seen. */
  rcvScale: Record<Way, number | null>;
  flows: FlowRecord[];
}

const other = (way: Way): Way => (way === 'c2s' ? 's2c' : 'c2s');
const side = (way: Way) => (way === 'c2s' ? 'client' : 'server');
const peer = (way: Way) => (way === 'c2s' ? 'server' : 'client');
const has = (p: DiagnosisPacket, bit: number) => (p.flags & bit) !== 0;
const span = (p: DiagnosisPacket) => p.len + (has(p, SYN) ? 1 : 0) + (has(p, FIN) ? 1 : 0);
const ms = (ns: bigint) => Number(ns) / 1e6;
const fmtMs = (ns: bigint) => (ns >= 1_000_000_000n ? `${(Number(ns) / 1e9).toFixed(2)} s` : ns >= 1_000_000n ? `${ms(ns).toFixed(1)} ms` : `${(Number(ns) / 1e3).toFixed(0)} µs`);

function median(values: bigint[]): bigint {
  const sorted = [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return sorted.length === 0 ? 0n : sorted[sorted.length >> 1];
}

function buildModel(input: DiagnosisInput): Model | null {
  const { tuples } = input;
  const wayOf = (p: DiagnosisPacket): Way | null =>
    tuples.some((t) => sameTuple(p, t)) ? 'c2s' : tuples.some((t) => sameTuple(p, reverseTuple(t))) ? 's2c' : null;
  const points: CapturePoint[] = [];
  const index = new Map<string, number>();
  const base: Record<Way, number | null> = { c2s: null, s2c: null };
  const all: Pkt[] = [];
  for (const p of input.packets) {
    const way = wayOf(p);
    if (way === null) continue;
    const key = pointName(p);
    let point = index.get(key);
    if (point === undefined) {
      point = points.length;
      index.set(key, point);
      points.push({ node: p.node, netns: p.netns, iface: p.iface });
    }
    base[way] ??= p.seq;
    const start = (p.seq - base[way]! + SEQ_MOD) % SEQ_MOD;
    all.push({ p, way, point, start, end: start + span(p) });
  }
  if (all.length === 0) return null;
  const at = points.map(() => ({ c2s: [] as Pkt[], s2c: [] as Pkt[] }));
  for (const k of all) at[k.point][k.way].push(k);
  // Path order: when each point first saw a client-to-server packet (the SYN passes them in order); the others after.
  const firstC2s = (i: number) => at[i].c2s[0]?.p.ts ?? at[i].s2c[0]!.p.ts + (1n << 62n);
  const order = points.map((_, i) => i).sort((a, b) => (firstC2s(a) < firstC2s(b) ? -1 : firstC2s(a) > firstC2s(b) ? 1 : 0));
  const path = { c2s: order, s2c: [...order].reverse() };
  const synOf = (way: Way) => all.find((k) => k.way === way && has(k.p, SYN));
  const [cSyn, sSyn] = [synOf('c2s'), synOf('s2c')];
  const mss = { c2s: sSyn?.p.options.mss ?? DEFAULT_MSS, s2c: cSyn?.p.options.mss ?? DEFAULT_MSS };
  const scaled = cSyn?.p.options.wscale !== undefined && sSyn?.p.options.wscale !== undefined;
  const rcvScale = {
    c2s: cSyn && sSyn ? (scaled ? sSyn.p.options.wscale! : 0) : null,
    s2c: cSyn && sSyn ? (scaled ? cSyn.p.options.wscale! : 0) : null,
  };
  // Only a loss (`lost`, or `unknown` from before fates) explains one; a copy or a packet freed after use never does.
  const drops = input.drops.filter((d) => d.fate.fate === 'lost' || d.fate.fate === 'unknown');
  // A drop inside a NAT device may carry a half-translated tuple: one of its ends tells the way.
  const end = (d: DropRecord, way: Way) =>
    tuples.some((t) => {
      const o = way === 'c2s' ? t : reverseTuple(t);
      return (o.src === d.src && o.sport === d.sport) || (o.dst === d.dst && o.dport === d.dport);
    });
  const dropInfo = new Map(drops.map((d) => [d, { way: end(d, 'c2s') ? ('c2s' as const) : end(d, 's2c') ? ('s2c' as const) : null, seq: dropSeq(d) }]));
  return { points, order, path, at, all, base: { c2s: base.c2s ?? 0, s2c: base.s2c ?? 0 }, drops, dropInfo, mss, rcvScale, flows: input.flows };
}

/** The TCP sequence number in a drop's headers, or null. */
function dropSeq(d: DropRecord): number | null {
  const layout = headerLayout(d.headers, 0, d.headers.length, d.linkType);
  if (!layout || layout.proto !== PROTO_NUMBER.tcp || layout.l4 < 0 || d.headers.length < layout.l4 + 8) return null;
  const h = d.headers;
  return ((h[layout.l4 + 4] << 24) | (h[layout.l4 + 5] << 16) | (h[layout.l4 + 6] << 8) | h[layout.l4 + 7]) >>> 0;
}

const pointText = (p: CapturePoint) => pointName(p);
const atPoint = (p: CapturePoint): FindingWhere => ({ from: p, to: null, text: `at ${pointText(p)}` });
const onHop = (a: CapturePoint, b: CapturePoint): FindingWhere => ({ from: a, to: b, text: `between ${pointText(a)} and ${pointText(b)}` });

function evidence(m: Model, k: Pkt, role: string): EvidencePacket {
  const { node, netns, iface } = m.points[k.point];
  return { node, netns, iface, packetId: k.p.packetId, ts: k.p.ts, way: k.way, role, seq: k.p.seq, len: k.p.len, flags: k.p.flags };
}

const dropText = (d: DropRecord) => `${d.reason} in ${d.node}/${d.netns}${d.iface ? `/${d.iface}` : ''} (${d.location})`;

// ---- lost between two points ------------------------------------------------------

interface Loss {
  way: Way;
  /** Indexes into m.points. */
  from: number;
  to: number;
  lost: Pkt;
  /** Its next transmission at `from`, if any. */
  retransmission: Pkt | null;
  drops: DropRecord[];
}

/**
 * Segments (data, SYN, FIN) seen at a point and not at the next one on their path: by packet id, or by
 * their bytes for packets segmented or merged in between. And segments that reached the receiver's own
 * point and were lost after it, in the receiver's stack: a drop (a loss, not a copy) of the segment in its
 * namespace and a retransmission of its bytes seen there, before the receiver had acknowledged them
 * (`from` and `to` are then both that point).
 */
function findLosses(m: Model): Loss[] {
  const losses: Loss[] = [];
  const dropsById = new Map<bigint, DropRecord[]>();
  for (const d of m.drops) dropsById.set(d.packetId, [...(dropsById.get(d.packetId) ?? []), d]);
  for (const way of ['c2s', 's2c'] as const) {
    const path = m.path[way];
    const acked = ackedBy(m, way);
    for (let h = 0; h + 1 < path.length; h++) {
      const [a, b] = [m.at[path[h]][way], m.at[path[h + 1]][way]];
      if (a.length === 0) continue;
      const places = new Set([path[h], path[h + 1]].map((i) => `${m.points[i].node}/${m.points[i].netns}`));
      const idsAtB = new Set(b.map((k) => k.p.packetId));
      const byStart = b.filter((k) => k.end > k.start).sort((x, y) => x.start - y.start);
      for (let i = 0; i < a.length; i++) {
        const k = a[i];
        if (k.end === k.start || has(k.p, RST) || idsAtB.has(k.p.packetId)) continue;
        let next: Pkt | null = null;
        for (let j = i + 1; j < a.length && next === null; j++) if (a[j].start < k.end && a[j].end > k.start) next = a[j];
        if (covered(byStart, k, next?.p.ts ?? null)) continue;
        // The receiver acknowledged its bytes before they were sent again: they got there (capture missed them).
        if (acked(k.end, next?.p.ts ?? null)) continue;
        const here = (d: DropRecord) => places.has(`${d.node}/${d.netns}`);
        const drops = (dropsById.get(k.p.packetId) ?? dropsOfBytes(m, k, next)).filter(here);
        if (next === null && drops.length === 0) continue;
        losses.push({ way, from: path[h], to: path[h + 1], lost: k, retransmission: next, drops });
      }
    }
    const last = path[path.length - 1];
    const atLast = m.at[last][way];
    const inReceiver = (d: DropRecord) => d.node === m.points[last].node && d.netns === m.points[last].netns;
    if (!m.drops.some(inReceiver)) continue;
    const dropsAtReceiver = (k: Pkt, next: Pkt | null) => (dropsById.get(k.p.packetId) ?? dropsOfBytes(m, k, next)).filter((d) => inReceiver(d) && d.ts >= k.p.ts);
    for (let i = 0; i < atLast.length; i++) {
      const k = atLast[i];
      if (k.end === k.start || has(k.p, RST) || dropsAtReceiver(k, null).length === 0) continue;
      let next: Pkt | null = null;
      for (let j = i + 1; j < atLast.length && next === null; j++) if (atLast[j].start < k.end && atLast[j].end > k.start) next = atLast[j];
      if (next === null || acked(k.end, next.p.ts)) continue;
      const drops = dropsAtReceiver(k, next);
      if (drops.length > 0) losses.push({ way, from: last, to: last, lost: k, retransmission: next, drops });
    }
  }
  return losses;
}

/** Whether the receiver of `way`, at its own point, acknowledged the bytes up to `end` before `ts` (null: ever). */
function ackedBy(m: Model, way: Way): (end: number, ts: EpochNs | null) => boolean {
  const acks = m.at[m.path[other(way)][0]][other(way)].filter((k) => has(k.p, ACK));
  const times = acks.map((k) => k.p.ts);
  const highest: number[] = [];
  let top = -1;
  for (const k of acks) highest.push((top = Math.max(top, (k.p.ack - m.base[way] + SEQ_MOD) % SEQ_MOD)));
  return (end, ts) => {
    let lo = 0;
    let hi = times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ts === null || times[mid] < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 && highest[lo - 1] >= end;
  };
}

/**
 * Drops of some of `k`'s bytes before its retransmission `next` (or LOSS_DROP_WINDOW_NS): a large
 * segment's payload lies outside the bytes the drop tracer reads, so its packet id differs from capture's.
 */
function dropsOfBytes(m: Model, k: Pkt, next: Pkt | null): DropRecord[] {
  const until = next?.p.ts ?? k.p.ts + LOSS_DROP_WINDOW_NS;
  return m.drops.filter((d) => {
    const info = m.dropInfo.get(d)!;
    if (info.way !== k.way || info.seq === null || d.ts < k.p.ts || d.ts >= until) return false;
    return (info.seq - k.p.seq + SEQ_MOD) % SEQ_MOD < Math.max(k.p.len, 1);
  });
}

/** Whether packets at the next point, seen after `k` and before its retransmission, hold all of its sequence space. */
function covered(byStart: Pkt[], k: Pkt, before: EpochNs | null): boolean {
  // The first packet that could overlap: none of a GSO/GRO packet's size (64 KiB) starts further back.
  let lo = 0;
  let hi = byStart.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (byStart[mid].start < k.start - 65_536) lo = mid + 1;
    else hi = mid;
  }
  const pieces: Array<[number, number]> = [];
  for (let i = lo; i < byStart.length && byStart[i].start < k.end; i++) {
    const c = byStart[i];
    if (c.end <= k.start || c.p.ts < k.p.ts || (before !== null && c.p.ts >= before)) continue;
    pieces.push([Math.max(c.start, k.start), Math.min(c.end, k.end)]);
  }
  pieces.sort((x, y) => x[0] - y[0]);
  let reached = k.start;
  for (const [s, e] of pieces) {
    if (s > reached) return false;
    reached = Math.max(reached, e);
  }
  return reached >= k.end;
}

function lossFinding(m: Model, losses: Loss[]): Finding {
  const { way, from, to } = losses[0];
  const sent = m.at[from][way].filter((k) => k.end > k.start).length;
  const delays = losses.filter((l) => l.retransmission).map((l) => l.retransmission!.p.ts - l.lost.p.ts);
  const drops = [...new Set(losses.flatMap((l) => l.drops))];
  const [a, b] = [m.points[from], m.points[to]];
  const packets = losses.slice(0, MAX_EVIDENCE_PACKETS / 2).flatMap((l) => [evidence(m, l.lost, 'lost'), ...(l.retransmission ? [evidence(m, l.retransmission, 'retransmission')] : [])]);
  const what = losses.length === 1 ? 'segment' : 'segments';
  const retrans = delays.length > 0 ? `; the ${side(way)} retransmitted after ${fmtMs(median(delays))}${delays.length > 1 ? ' (median)' : ''}` : '';
  const kernel = drops.length > 0 ? `; the kernel dropped ${drops.length === 1 ? 'it' : `${drops.length} of them`}: ${dropText(drops[0])}` : '';
  const atReceiver = from === to;
  return {
    kind: 'lost',
    severity: 'warning',
    way,
    summary: atReceiver
      ? `${losses.length} ${side(way)}→${peer(way)} ${what} of ${sent} reached ${pointText(a)} and were lost after it, in the ${peer(way)}'s own stack${retrans}${kernel}.`
      : `${losses.length} ${side(way)}→${peer(way)} ${what} of ${sent} seen at ${pointText(a)} never reached ${pointText(b)}${retrans}${kernel}.`,
    where: atReceiver ? atPoint(a) : onHop(a, b),
    evidence: {
      packets,
      drops,
      figures: { lost: losses.length, segments: sent, loss_percent: Math.round((1000 * losses.length) / Math.max(sent, 1)) / 10, retransmit_after_ms_median: delays.length ? ms(median(delays)) : 0 },
    },
    advice:
      drops.length > 0
        ? drops[0].cause
        : `Nothing between ${pointText(a)} and ${pointText(b)} recorded a drop: look at what lies between them (the link, a bridge or device without capture): its counters (ip -s link), its qdisc (tc -s qdisc), and its filters.`,
  };
}

// ---- handshake --------------------------------------------------------------------

function handshakeFinding(m: Model): Finding | null {
  const client = m.path.c2s[0];
  const syns = m.at[client].c2s.filter((k) => has(k.p, SYN) && !has(k.p, ACK));
  if (syns.length < HANDSHAKE_MIN_SYNS) return null;
  const answered = m.at[client].s2c.some((k) => has(k.p, SYN | RST));
  if (answered) return null;
  const synIds = new Set(syns.map((k) => k.p.packetId));
  const reached = m.path.c2s.filter((i) => m.at[i].c2s.some((k) => has(k.p, SYN) && !has(k.p, ACK)));
  const last = reached.at(-1)!;
  const nextIndex = m.path.c2s.indexOf(last) + 1;
  const next = m.path.c2s[nextIndex];
  const synDrops = m.drops.filter((d) => synIds.has(d.packetId) || m.all.some((k) => k.way === 'c2s' && has(k.p, SYN) && k.p.packetId === d.packetId));
  const synAcks = m.all.filter((k) => k.way === 's2c' && has(k.p, SYN) && has(k.p, ACK));
  const packets = syns.slice(0, MAX_EVIDENCE_PACKETS).map((k) => evidence(m, k, 'syn'));
  const tried = `The client sent its SYN ${syns.length} times over ${fmtMs(syns.at(-1)!.p.ts - syns[0].p.ts)} and got no answer`;
  let where: FindingWhere;
  let detail: string;
  if (synAcks.length > 0) {
    // The server answered: its SYN-ACK went missing on the way back.
    const back = m.path.s2c.filter((i) => m.at[i].s2c.some((k) => has(k.p, SYN) && has(k.p, ACK)));
    const lastBack = back.at(-1)!;
    const after = m.path.s2c[m.path.s2c.indexOf(lastBack) + 1];
    where = after === undefined ? atPoint(m.points[lastBack]) : onHop(m.points[lastBack], m.points[after]);
    detail = `: the server answered, but its SYN-ACK was last seen at ${pointText(m.points[lastBack])}${after === undefined ? '' : ` and never at ${pointText(m.points[after])}`}`;
    packets.push(...synAcks.slice(0, MAX_EVIDENCE_PACKETS / 2).map((k) => evidence(m, k, 'syn-ack')));
  } else if (next !== undefined) {
    where = onHop(m.points[last], m.points[next]);
    detail = `: it was last seen at ${pointText(m.points[last])} and never at ${pointText(m.points[next])}`;
  } else {
    where = atPoint(m.points[last]);
    detail = `: it reached ${pointText(m.points[last])}, the last capture point towards the server, and nothing answered it`;
  }
  const kernel = synDrops.length > 0 ? `; the kernel dropped it: ${dropText(synDrops[0])}` : '';
  return {
    kind: 'handshake',
    severity: 'error',
    way: 'c2s',
    summary: `${tried}${detail}${kernel}.`,
    where,
    evidence: { packets, drops: synDrops, figures: { syns: syns.length, gave_up_after_ms: ms(syns.at(-1)!.p.ts - syns[0].p.ts) } },
    advice:
      synDrops.length > 0
        ? synDrops[0].cause
        : synAcks.length > 0
          ? 'The way back drops the SYN-ACK: check the filters and routes from the server to the client (asymmetric routing, rp_filter, a firewall on the return path).'
          : next !== undefined
            ? `Check what lies between ${pointText(m.points[last])} and ${pointText(m.points[next])}: filters, routes, the link.`
            : 'Check that the server listens on the port and that its firewall and listen queue accept the SYN (nstat TcpExtListenDrops).',
  };
}

// ---- who reset it -----------------------------------------------------------------

function resetFinding(m: Model): Finding | null {
  const rst = m.all.find((k) => has(k.p, RST));
  if (!rst) return null;
  const way = rst.way;
  // A reset after the other end had finished sending (its FIN came first) is a close with the rest left unread, no failure.
  if (m.all.some((k) => k.way === other(rst.way) && has(k.p, FIN) && k.p.ts < rst.p.ts)) return null;
  const path = m.path[way];
  const sightings = path.filter((i) => m.at[i][way].some((k) => has(k.p, RST)));
  const origin = sightings[0];
  if (sinkClose(m, origin, way, rst)) return null;
  const originIndex = path.indexOf(origin);
  const upstream = path.slice(0, originIndex).filter((i) => m.at[i][way].length > 0 || m.at[i][other(way)].length > 0);
  const notReached = path.slice(originIndex + 1).filter((i) => !sightings.includes(i));
  const first = m.at[origin][way].find((k) => has(k.p, RST))!;
  const handshake = !m.all.some((k) => k.way === 's2c' && has(k.p, SYN) && has(k.p, ACK) && k.p.ts < first.p.ts);
  const data = m.all.filter((k) => k.p.len > 0 && k.p.ts < first.p.ts && k.point === origin).reduce((sum, k) => sum + k.p.len, 0);
  // What the reset answered: a packet the other way dropped in the origin's namespace just before it.
  const near = (d: DropRecord) => (d.ts > first.p.ts ? d.ts - first.p.ts : first.p.ts - d.ts) <= RESET_CAUSE_WINDOW_NS;
  const answered = m.drops.find((d) => d.netns === m.points[origin].netns && d.node === m.points[origin].node && m.dropInfo.get(d)!.way === other(way) && near(d));
  const at = m.points[origin];
  let who: string;
  let advice: string;
  if (upstream.length > 0) {
    who = `something in ${at.node}/${at.netns} sent it: it first appears at ${pointText(at)} and was never seen at ${upstream.map((i) => pointText(m.points[i])).join(', ')}, so the ${side(way)} never sent it`;
    advice = `A middlebox answered for the ${side(way)}: look for a REJECT --reject-with tcp-reset rule or a proxy in ${at.netns} (iptables-save, nft list ruleset).`;
  } else if (answered?.reason === 'NETFILTER_DROP') {
    who = `a netfilter rule in ${at.node}/${at.netns} rejected the ${peer(way)}'s packet and answered with it (first seen at ${pointText(at)})`;
    advice = `${answered.cause} A REJECT --reject-with tcp-reset rule sends this reset.`;
  } else if (answered?.reason === 'NO_SOCKET') {
    who = `the ${side(way)}'s stack sent it: ${answered.cause.replace(/\.$/, '')}`;
    advice = handshake ? `Nothing listens on port ${(way === 's2c' ? first.p.sport : first.p.dport)}: start the service, or connect to the right port.` : answered.cause;
  } else {
    who = handshake
      ? `the ${side(way)}'s stack refused the connection (first seen at ${pointText(at)})`
      : `the ${side(way)} aborted the connection after ${data} bytes (first seen at ${pointText(at)}): its application closed with unread data or with SO_LINGER 0, or its stack found the connection gone`;
    advice = handshake
      ? `Check that the ${side(way)} listens on the port.`
      : `Look at the ${side(way)}'s application log at ${new Date(Number(first.p.ts / 1_000_000n)).toISOString()}: the reset is its socket's doing.`;
  }
  const lost = notReached.length > 0 ? ` It never reached ${notReached.map((i) => pointText(m.points[i])).join(', ')}.` : '';
  return {
    kind: 'reset',
    severity: 'error',
    way,
    summary: `The connection was reset ${handshake ? 'during the handshake' : 'mid-stream'} by a RST sent towards the ${peer(way)}: ${who}.${lost}`,
    where: atPoint(at),
    evidence: {
      packets: path.flatMap((i) => m.at[i][way].filter((k) => k.p.packetId === first.p.packetId)).map((k) => evidence(m, k, 'rst')),
      drops: answered ? [answered] : [],
      figures: { bytes_before: data },
    },
    advice,
  };
}

/**
 * Whether the RST closed a one-way stream from its receiving end after it acknowledged all it got:
 * the side that sent it never sent a byte, and its RST (or last ACK) covers every byte the other
 * sent. Nothing was lost (iperf3 closes its data connections this way).
 */
function sinkClose(m: Model, origin: number, way: Way, rst: Pkt): boolean {
  const own = m.at[origin][way].filter((k) => k.p.ts <= rst.p.ts);
  if (own.some((k) => k.p.len > 0)) return false;
  const received = m.at[origin][other(way)].filter((k) => k.p.ts <= rst.p.ts);
  if (!received.some((k) => k.p.len > 0)) return false;
  const highest = received.reduce((a, k) => Math.max(a, k.end), 0);
  const acks = own.filter((k) => has(k.p, ACK));
  const last = acks.at(-1);
  return last !== undefined && (last.p.ack - m.base[other(way)] + SEQ_MOD) % SEQ_MOD >= highest;
}

// ---- Nagle + delayed ACK ----------------------------------------------------------

function nagleFinding(m: Model, way: Way): Finding | null {
  const sender = m.path[way][0];
  const sent = m.at[sender][way];
  const acks = m.at[sender][other(way)];
  const stalls: Array<{ first: Pkt; ack: Pkt; held: Pkt }> = [];
  let highest = -1;
  let prev: Pkt | null = null;
  let ackIndex = 0;
  for (const k of sent) {
    if (k.p.len === 0 || k.end <= highest) continue;
    highest = k.end;
    if (prev && prev.p.len < m.mss[way] && k.p.len < m.mss[way] && k.start === prev.end) {
      while (ackIndex < acks.length && acks[ackIndex].p.ts < prev.p.ts) ackIndex++;
      let ack: Pkt | null = null;
      for (let j = ackIndex; j < acks.length && acks[j].p.ts <= k.p.ts; j++) {
        if (has(acks[j].p, ACK) && ((acks[j].p.ack - prev.p.seq + SEQ_MOD) % SEQ_MOD) >= prev.p.len) {
          ack = acks[j];
          break;
        }
      }
      if (ack && ack.p.len === 0 && ack.p.ts - prev.p.ts >= DELAYED_ACK_MIN_NS && k.p.ts - ack.p.ts <= NAGLE_RELEASE_NS) stalls.push({ first: prev, ack, held: k });
    }
    prev = k;
  }
  if (stalls.length === 0) return null;
  const waits = stalls.map((s) => s.held.p.ts - s.first.p.ts);
  const total = waits.reduce((a, b) => a + b, 0n);
  return {
    kind: 'nagle-delayed-ack',
    severity: 'warning',
    way,
    summary:
      `The ${side(way)} held back a small segment until the ${peer(way)} acknowledged its previous small one ${stalls.length} time${stalls.length === 1 ? '' : 's'}, ` +
      `and the ${peer(way)} delayed those ACKs (${fmtMs(median(waits))} each, ${fmtMs(total)} in all): Nagle's algorithm meeting delayed ACKs.`,
    where: atPoint(m.points[sender]),
    evidence: {
      packets: stalls.slice(0, MAX_EVIDENCE_PACKETS / 3).flatMap((s) => [evidence(m, s.first, 'small-segment'), evidence(m, s.ack, 'delayed-ack'), evidence(m, s.held, 'held-back')]),
      drops: [],
      figures: { stalls: stalls.length, stall_ms_median: ms(median(waits)), stall_ms_total: ms(total) },
    },
    advice: `Have the ${side(way)} write each message in one write (or writev, or cork and uncork), or set TCP_NODELAY on its socket.`,
  };
}

// ---- receive window -----------------------------------------------------------------

function windowFinding(m: Model, way: Way): Finding | null {
  const receiver = m.path[other(way)][0];
  const adverts = m.at[receiver][other(way)].filter((k) => !has(k.p, RST) && !has(k.p, SYN));
  const periods: Array<{ start: Pkt; end: Pkt | null; ns: bigint }> = [];
  let open: Pkt | null = null;
  for (const k of adverts) {
    if (k.p.win === 0 && open === null) open = k;
    else if (k.p.win > 0 && open !== null) {
      periods.push({ start: open, end: k, ns: k.p.ts - open.p.ts });
      open = null;
    }
  }
  if (open) periods.push({ start: open, end: null, ns: adverts.at(-1)!.p.ts - open.p.ts });
  const counted = periods.filter((p) => p.ns >= ZERO_WINDOW_MIN_NS);
  const zero = counted.some((p) => p.ns >= ZERO_WINDOW_STALL_NS) ? counted : [];

  // Bytes in flight against the window, at the sender's own point.
  const scale = m.rcvScale[way];
  const sender = m.path[way][0];
  let limited = 0;
  let segments = 0;
  const windows: number[] = [];
  if (scale !== null) {
    const merged = [...m.at[sender][way], ...m.at[sender][other(way)]].sort((a, b) => (a.p.ts < b.p.ts ? -1 : a.p.ts > b.p.ts ? 1 : 0));
    let acked: number | null = null;
    let window = 0;
    let highest = -1;
    for (const k of merged) {
      if (k.way !== way) {
        if (has(k.p, ACK) && !has(k.p, SYN) && !has(k.p, RST)) {
          const offset = (k.p.ack - m.base[way] + SEQ_MOD) % SEQ_MOD;
          acked = acked === null ? offset : Math.max(acked, offset);
          window = k.p.win * 2 ** scale;
        }
        continue;
      }
      if (k.p.len === 0 || k.end <= highest || acked === null) continue;
      highest = k.end;
      segments++;
      windows.push(window);
      if (k.end - acked >= window - m.mss[way] && window <= SMALL_WINDOW_BYTES) limited++;
    }
  }
  const pinned = segments >= WINDOW_MIN_SEGMENTS && limited / segments >= WINDOW_LIMITED_SHARE;
  if (zero.length === 0 && !pinned) return null;
  const parts: string[] = [];
  const zeroTotal = zero.reduce((a, p) => a + p.ns, 0n);
  if (zero.length > 0) {
    parts.push(
      `the ${peer(way)} advertised a zero receive window for ${fmtMs(zeroTotal)} in ${zero.length} period${zero.length === 1 ? '' : 's'} ` +
        `(longest ${fmtMs(zero.reduce((a, p) => (p.ns > a ? p.ns : a), 0n))}): its application stopped reading and the ${side(way)} had to wait`,
    );
  }
  const windowMedian = windows.length ? [...windows].sort((a, b) => a - b)[windows.length >> 1] : 0;
  if (pinned) {
    parts.push(
      `${Math.round((100 * limited) / segments)}% of the ${side(way)}'s ${segments} segments left with the bytes in flight at the ${peer(way)}'s advertised window ` +
        `(median ${windowMedian} bytes, window scale ${scale})`,
    );
  }
  const evidencePackets = zero.slice(0, MAX_EVIDENCE_PACKETS / 2).flatMap((p) => [evidence(m, p.start, 'zero-window'), ...(p.end ? [evidence(m, p.end, 'window-open')] : [])]);
  return {
    kind: 'receive-window',
    severity: 'warning',
    way,
    summary: `The ${peer(way)}'s receive window held the ${side(way)} back: ${parts.join('; ')}.`,
    where: atPoint(m.points[zero.length > 0 ? receiver : sender]),
    evidence: {
      packets: evidencePackets,
      drops: [],
      figures: {
        zero_window_periods: zero.length,
        zero_window_ms_total: ms(zeroTotal),
        window_limited_segments: limited,
        segments,
        window_bytes_median: windowMedian,
        ...(scale === null ? {} : { window_scale: scale }),
      },
    },
    advice:
      zero.length > 0
        ? `The ${peer(way)}'s application does not read its socket fast enough (or stopped): look at what it does meanwhile (blocked, busy, paused stream).`
        : `Let the ${peer(way)}'s window grow: do not set a small SO_RCVBUF (or net.ipv4.tcp_rmem) and keep window scaling on (net.ipv4.tcp_window_scaling=1) on both ends.`,
  };
}

// ---- MTU black hole -----------------------------------------------------------------

function mtuFinding(m: Model, losses: Loss[]): { finding: Finding; explained: Set<Loss> } | null {
  if (losses.length < MTU_MIN_LOSSES) return null;
  const { way, from, to } = losses[0];
  const smallest = Math.min(...losses.map((l) => l.lost.p.len));
  const lostIds = new Set(losses.map((l) => l.lost));
  const firstLoss = losses[0].lost.p.ts;
  const sentAfter = m.at[from][way].filter((k) => k.p.ts >= firstLoss && k.p.len >= smallest);
  if (sentAfter.some((k) => !lostIds.has(k))) return null;
  const passedSmall = m.at[from][way].filter((k) => k.p.len > 0 && k.p.len < smallest && !losses.some((l) => l.lost === k));
  if (passedSmall.length === 0) return null;
  const times = new Map<number, number>();
  for (const l of losses) times.set(l.lost.start, (times.get(l.lost.start) ?? 0) + 1);
  const repeats = Math.max(...times.values());
  if (repeats < MTU_MIN_REPEATS) return null;
  const [a, b] = [m.points[from], m.points[to]];
  const largestPassed = Math.max(...passedSmall.map((k) => k.p.len));
  const drops = [...new Set(losses.flatMap((l) => l.drops))];
  return {
    explained: new Set(losses),
    finding: {
      kind: 'mtu-blackhole',
      severity: 'error',
      way,
      summary:
        `Every ${side(way)}→${peer(way)} segment of ${smallest} payload bytes or more was lost between ${pointText(a)} and ${pointText(b)} (${losses.length} losses, ` +
        `the same bytes sent ${repeats} times) while smaller ones (up to ${largestPassed} bytes) got through: a path MTU black hole.`,
      where: onHop(a, b),
      evidence: {
        packets: [...losses.slice(0, MAX_EVIDENCE_PACKETS - 2).map((l) => evidence(m, l.lost, 'lost')), ...passedSmall.slice(0, 2).map((k) => evidence(m, k, 'passed'))],
        drops,
        figures: { losses: losses.length, repeats, smallest_lost_bytes: smallest, largest_passed_bytes: largestPassed },
      },
      advice:
        `Something between these points has a smaller MTU than the ends and its ICMP "fragmentation needed" does not reach the ${side(way)} (nettrail records no ICMP): ` +
        'fix the MTU, let ICMP type 3 code 4 through, clamp the MSS (iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu), or set net.ipv4.tcp_mtu_probing=1.',
    },
  };
}

// ---- where the time went --------------------------------------------------------------

interface Exchange {
  requestEnd: Pkt;
  responseStart: Pkt;
  serverNs: bigint;
  networkNs: bigint | null;
}

/** Request/response turns at the server's point, and the same bytes at the client's. */
function exchanges(m: Model): Exchange[] {
  const server = m.path.c2s.at(-1)!;
  const client = m.path.c2s[0];
  const found: Exchange[] = [];
  const packets = [...m.at[server].c2s, ...m.at[server].s2c].sort((a, b) => (a.p.ts < b.p.ts ? -1 : a.p.ts > b.p.ts ? 1 : 0));
  const highest: Record<Way, number> = { c2s: -1, s2c: -1 };
  let request: Pkt | null = null;
  for (const k of packets) {
    if (k.p.len === 0 || k.end <= highest[k.way]) continue;
    highest[k.way] = k.end;
    if (k.way === 'c2s') request = k;
    else if (request) {
      const serverNs = k.p.ts - request.p.ts;
      const atClient = (way: Way, offset: number) => m.at[client][way].find((c) => c.start <= offset && c.end > offset && c.p.len > 0);
      const sentAt = atClient('c2s', request.end - 1);
      const gotAt = atClient('s2c', k.start);
      const networkNs = client !== server && sentAt && gotAt ? gotAt.p.ts - sentAt.p.ts - serverNs : null;
      found.push({ requestEnd: request, responseStart: k, serverNs, networkNs });
      request = null;
    }
  }
  return found;
}

function slowServerFinding(m: Model, turns: Exchange[]): Finding | null {
  const slow = turns.filter((t) => t.serverNs >= SLOW_SERVER_NS);
  if (slow.length === 0) return null;
  const worst = slow.reduce((a, b) => (b.serverNs > a.serverNs ? b : a));
  const server = m.points[m.path.c2s.at(-1)!];
  const network = worst.networkNs === null ? '' : `; the network's share of that turn was ${fmtMs(worst.networkNs < 0n ? 0n : worst.networkNs)}`;
  return {
    kind: 'slow-server',
    severity: 'warning',
    way: null,
    summary:
      `The server took ${fmtMs(worst.serverNs)} to answer: its response's first byte left ${pointText(server)} ${fmtMs(worst.serverNs)} after the request's last byte arrived there` +
      `${slow.length > 1 ? ` (${slow.length} of ${turns.length} requests took ${fmtMs(SLOW_SERVER_NS)} or more)` : ''}${network}.`,
    where: atPoint(server),
    evidence: {
      packets: slow.slice(0, MAX_EVIDENCE_PACKETS / 2).flatMap((t) => [evidence(m, t.requestEnd, 'request-end'), evidence(m, t.responseStart, 'response-start')]),
      drops: [],
      figures: { server_ms: ms(worst.serverNs), network_ms: worst.networkNs === null ? 0 : Math.max(0, ms(worst.networkNs)), slow_requests: slow.length, requests: turns.length },
    },
    advice: "The time was spent in the server's application (or what it waits for: a database, a lock, a backend), not in the network: look there.",
  };
}

function hopTimings(m: Model): { hops: HopTiming[]; outliers: Array<{ hop: HopTiming; at: Pkt; before: Pkt; ns: bigint }> } {
  const hops: HopTiming[] = [];
  const outliers: Array<{ hop: HopTiming; at: Pkt; before: Pkt; ns: bigint }> = [];
  for (const way of ['c2s', 's2c'] as const) {
    const path = m.path[way];
    for (let h = 0; h + 1 < path.length; h++) {
      const earlier = new Map(m.at[path[h]][way].map((k) => [k.p.packetId, k]));
      const pairs = m.at[path[h + 1]][way].flatMap((k) => {
        const before = earlier.get(k.p.packetId);
        return before && k.p.ts >= before.p.ts ? [{ at: k, before, ns: k.p.ts - before.p.ts }] : [];
      });
      if (pairs.length === 0) continue;
      const hop: HopTiming = { from: m.points[path[h]], to: m.points[path[h + 1]], way, packets: pairs.length, medianNs: median(pairs.map((p) => p.ns)), maxNs: pairs.reduce((a, p) => (p.ns > a ? p.ns : a), 0n) };
      hops.push(hop);
      for (const p of pairs) if (p.ns >= HOP_DELAY_MIN_NS && p.ns >= hop.medianNs * HOP_OUTLIER_FACTOR) outliers.push({ hop, ...p });
    }
  }
  return { hops, outliers };
}

function hopDelayFindings(m: Model, outliers: ReturnType<typeof hopTimings>['outliers']): Finding[] {
  const byHop = new Map<HopTiming, typeof outliers>();
  for (const o of outliers) byHop.set(o.hop, [...(byHop.get(o.hop) ?? []), o]);
  return [...byHop].map(([hop, list]) => ({
    kind: 'hop-delay' as const,
    severity: 'warning' as const,
    way: hop.way,
    summary:
      `${list.length} ${side(hop.way)}→${peer(hop.way)} packet${list.length === 1 ? '' : 's'} took up to ${fmtMs(hop.maxNs)} from ${pointText(hop.from)} to ${pointText(hop.to)}, ` +
      `where the median is ${fmtMs(hop.medianNs)}: they waited in a queue or a busy CPU between the two points.`,
    where: onHop(hop.from, hop.to),
    evidence: {
      packets: list.slice(0, MAX_EVIDENCE_PACKETS / 2).flatMap((o) => [evidence(m, o.before, 'sent'), evidence(m, o.at, 'delayed')]),
      drops: [],
      figures: { delayed_packets: list.length, max_ms: ms(hop.maxNs), median_ms: ms(hop.medianNs), packets: hop.packets },
    },
    advice: `Look at the queue between ${pointText(hop.from)} and ${pointText(hop.to)} (tc -s qdisc: backlog, a shaper's rate) and at the CPU load of ${hop.to.netns}'s node.`,
  }));
}

// ---- all together -----------------------------------------------------------------------

const emptyTiming = (): Timing => ({ handshake: [], exchanges: 0, serverNs: 0n, networkNs: 0n, hops: [] });

/** The findings of one connection; none for a healthy one. TCP only: a UDP connection gets its path and hop timing. */
export function diagnose(input: DiagnosisInput, truncated = false): Diagnosis {
  const m = buildModel(input);
  if (!m) return { path: [], findings: [], timing: emptyTiming(), packets: input.packets.length, truncated };
  const path = m.order.map((i) => m.points[i]);
  const { hops, outliers } = hopTimings(m);
  const rtts = new Map(m.flows.filter((f) => f.rttNs !== null).map((f) => [pointName(f), f.rttNs!]));
  const handshake = path.flatMap((point) => (rtts.has(pointName(point)) ? [{ point, rttNs: rtts.get(pointName(point))! }] : []));
  if (input.proto !== 'tcp') {
    return { path, findings: [], timing: { ...emptyTiming(), handshake, hops }, packets: input.packets.length, truncated };
  }
  const turns = exchanges(m);
  const timing: Timing = {
    handshake,
    exchanges: turns.length,
    serverNs: turns.reduce((a, t) => a + t.serverNs, 0n),
    networkNs: turns.reduce((a, t) => a + (t.networkNs !== null && t.networkNs > 0n ? t.networkNs : 0n), 0n),
    hops,
  };

  const findings: Finding[] = [];
  const handshakeFailed = handshakeFinding(m);
  if (handshakeFailed) findings.push(handshakeFailed);
  const reset = resetFinding(m);
  if (reset) findings.push(reset);

  // Losses per hop and way; the handshake finding covers its SYNs, a black hole the large segments it ate.
  const losses = findLosses(m).filter((l) => !(handshakeFailed && has(l.lost.p, SYN)));
  const groups = new Map<string, Loss[]>();
  for (const l of losses) groups.set(`${l.way}|${l.from}|${l.to}`, [...(groups.get(`${l.way}|${l.from}|${l.to}`) ?? []), l]);
  for (const group of groups.values()) {
    const mtu = group[0].from === group[0].to ? null : mtuFinding(m, group);
    if (mtu) findings.push(mtu.finding);
    const rest = mtu ? group.filter((l) => !mtu.explained.has(l)) : group;
    if (rest.length > 0) findings.push(lossFinding(m, rest));
  }
  for (const way of ['c2s', 's2c'] as const) {
    const nagle = nagleFinding(m, way);
    if (nagle) findings.push(nagle);
    const window = windowFinding(m, way);
    if (window) findings.push(window);
  }
  const slow = slowServerFinding(m, turns);
  if (slow) findings.push(slow);
  findings.push(...hopDelayFindings(m, outliers));
  const rank = { error: 0, warning: 1 };
  findings.sort((a, b) => rank[a.severity] - rank[b.severity]);
  return { path, findings, timing, packets: input.packets.length, truncated };
}

/** The diagnosis of a connection from the store: its packets (the first MAX_DIAGNOSED_PACKETS), flows and drops. */
export async function diagnoseConnection(reader: FlowLogReader, connection: Connection): Promise<Diagnosis> {
  const packets: DiagnosisPacket[] = [];
  let truncated = false;
  for await (const batch of connectionPacketRows(reader, connection)) {
    for (const row of batch.rows) {
      if (packets.length >= MAX_DIAGNOSED_PACKETS) {
        truncated = true;
        break;
      }
      packets.push(batch.record(row));
    }
    if (truncated) break;
  }
  return diagnose({ proto: connection.proto, tuples: connection.tuples, flows: connection.flows, drops: connection.drops, packets }, truncated);
}

/**
 * What a capture file says about its packets: per packet id, a comment for each finding it is
 * evidence of (`nettrail: lost (retransmission): ...`), on every sighting of the id (capture-file.ts).
 */
export function evidenceComments(findings: readonly Finding[]): Map<bigint, string> {
  const comments = new Map<bigint, string[]>();
  for (const f of findings) {
    for (const p of f.evidence.packets) {
      const text = `nettrail: ${f.kind} (${p.role}): ${f.summary}`;
      const list = comments.get(p.packetId) ?? [];
      if (!list.includes(text)) list.push(text);
      comments.set(p.packetId, list);
    }
  }
  return new Map([...comments].map(([id, list]) => [id, list.join('\n')]));
}
