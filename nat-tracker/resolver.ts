// The NAT path of a connection: from any tuple, any hop, either direction,
// the ordered chain of translations from the client side to the server side.
//
// Two kinds of evidence, and each hop says which it rests on (`via`):
// - translation entries recorded from NAT devices (conntrack, IPVS, OVS),
//   chained where one entry's translated tuple is the next one's original;
// - for TCP, the SYN and SYN-ACK sequence numbers, which NAT leaves alone:
//   flows with the same pair at different capture points but different tuples
//   were translated between those points by something nettrail does not
//   observe (`tcp-seq`).
import type { EpochNs, FlowRecord, FourTuple, NatKind, NatTranslation, NatVia, Proto } from '../model/records.js';
import type { TimeRange } from '../model/time.js';
import { afterTuple, classifyNat, hopKind, reverseTuple, sameTuple } from './classify.js';

interface HopCommon {
  kind: NatKind;
  node: string;
  netns: string;
  zone: number;
  /** The original-direction tuple as it reaches the hop, and as it leaves it. */
  before: FourTuple;
  after: FourTuple;
  firstSeen: EpochNs;
  lastSeen: EpochNs;
}

/** A hop a NAT device recorded. */
export interface TranslationHop extends HopCommon {
  via: NatVia;
  translation: NatTranslation;
}

/**
 * A hop inferred from two flows with equal SYN and SYN-ACK sequence numbers
 * and different tuples. Its node and netns are those of the capture point that
 * first saw the translated tuple: the translation happened on the way there.
 */
export interface SeqHop extends HopCommon {
  via: 'tcp-seq';
  flows: { before: FlowRecord; after: FlowRecord };
}

export type NatHop = TranslationHop | SeqHop;

export interface NatPath {
  /** Every tuple the connection had, client side first (one per hop boundary). */
  tuples: FourTuple[];
  hops: NatHop[];
}

/** What the resolver reads: the flow-log store answers it (flowlog/queries.ts). */
export interface NatEvidenceReader {
  /** Translation entries whose original or reply tuple is `tuple`, in either direction, at any time. */
  natForTuple(proto: Proto, tuple: FourTuple): Promise<NatTranslation[]>;
  /** Flows with any of `tuples` (either direction). */
  flowsForTuples(proto: Proto, tuples: FourTuple[], range?: TimeRange): Promise<FlowRecord[]>;
  /** TCP flows at any capture point whose SYN and SYN-ACK carried these sequence numbers, started within `range`. */
  flowsBySynSeq(proto: Proto, synSeq: number, synAckSeq: number, range: TimeRange): Promise<FlowRecord[]>;
}

/** A chain longer than this is a loop the visited set did not catch, or a misconfiguration. */
const MAX_HOPS = 32;
/** The SYN of one connection reaches all its capture points within this (retransmitted SYNs and node clocks included). */
const SYN_WINDOW_NS = 120_000_000_000n;

const entryKey = (t: NatTranslation) =>
  `${t.via}|${t.node}|${t.netns}|${t.zone}|${t.entryId}|${t.orig.src}|${t.orig.sport}|${t.orig.dst}|${t.orig.dport}|${t.firstSeen}`;

const eitherWay = (a: FourTuple, b: FourTuple) => sameTuple(a, b) || sameTuple(a, reverseTuple(b));

export const flowTuple = (f: FlowRecord): FourTuple => ({ src: f.client.ip, sport: f.client.port, dst: f.server.ip, dport: f.server.port });

function translationHop(translation: NatTranslation): TranslationHop | null {
  const kind = classifyNat(translation.orig, translation.reply);
  if (!kind) return null;
  const { via, node, netns, zone, orig, reply, firstSeen, lastSeen } = translation;
  return { kind, via, node, netns, zone, before: orig, after: afterTuple(reply), firstSeen, lastSeen, translation };
}

interface Lifetime {
  firstSeen: EpochNs;
  lastSeen: EpochNs;
}

/** How far a lifetime is from `at` (0 when it covers it). */
const distance = (t: Lifetime, at: EpochNs): bigint => (at < t.firstSeen ? t.firstSeen - at : at > t.lastSeen ? at - t.lastSeen : 0n);

/**
 * The candidate closest in time to `at`; of several alive then, the one that
 * began last: a reused tuple's entry outlives its connection a little (until
 * the reuse replaces it), the newer one is the connection of that moment.
 */
function closest<T extends Lifetime>(candidates: T[], at: EpochNs): T | undefined {
  let best: T | undefined;
  for (const c of candidates) {
    if (!best) best = c;
    else {
      const [d, bestD] = [distance(c, at), distance(best, at)];
      if (d < bestD || (d === bestD && c.firstSeen > best.firstSeen)) best = c;
    }
  }
  return best;
}

/**
 * Of translation hops, those whose tuples the connection's flows were seen with (both sides
 * where both were seen), then the one closest in time: a reused tuple's entries may overlap
 * in time as the tools see them, their translated tuples tell them apart.
 */
function closestHop(candidates: TranslationHop[], at: EpochNs, observed: FourTuple[]): TranslationHop | undefined {
  const seen = (t: FourTuple) => observed.some((o) => eitherWay(o, t));
  const score = (hop: TranslationHop) => (seen(hop.before) ? 1 : 0) + (seen(hop.after) ? 1 : 0);
  const best = Math.max(0, ...candidates.map(score));
  return closest(candidates.filter((hop) => score(hop) === best), at);
}

interface Segment {
  tuples: FourTuple[];
  hops: NatHop[];
}

/**
 * The chain of recorded translations through `tuple`: the hop the tuple
 * belongs to (as its before or after side, either direction), then upstream and
 * downstream hop by hop. `at` picks among reused tuples (default: the newest).
 */
async function translationChain(
  reader: NatEvidenceReader,
  proto: Proto,
  tuple: FourTuple,
  at?: EpochNs,
  observed: FourTuple[] = [],
): Promise<{ segment: Segment; at: EpochNs } | null> {
  const visited = new Set<string>();
  const hopsFor = async (t: FourTuple, matches: (hop: TranslationHop) => boolean): Promise<TranslationHop[]> =>
    (await reader.natForTuple(proto, t))
      .filter((translation) => !visited.has(entryKey(translation)))
      .map(translationHop)
      .filter((hop): hop is TranslationHop => hop !== null && matches(hop));

  const touching = await hopsFor(tuple, (hop) => eitherWay(hop.before, tuple) || eitherWay(hop.after, tuple));
  const anchor = at ?? touching.reduce<EpochNs>((newest, hop) => (hop.lastSeen > newest ? hop.lastSeen : newest), 0n);
  const first = closestHop(touching, anchor, observed);
  if (!first) return null;
  visited.add(entryKey(first.translation));

  // Upstream (the hop whose after side is this one's before side) and downstream, at the same time.
  const walk = async (step: (from: TranslationHop) => Promise<TranslationHop | undefined>): Promise<TranslationHop[]> => {
    const walked: TranslationHop[] = [];
    for (let from = first; walked.length < MAX_HOPS / 2; ) {
      const hop = await step(from);
      if (!hop) break;
      visited.add(entryKey(hop.translation));
      walked.push(hop);
      from = hop;
    }
    return walked;
  };
  const [upstream, downstream] = await Promise.all([
    walk(async (from) => closestHop(await hopsFor(from.before, (hop) => sameTuple(hop.after, from.before)), anchor, observed)),
    walk(async (from) => closestHop(await hopsFor(from.after, (hop) => sameTuple(hop.before, from.after)), anchor, observed)),
  ]);
  // In a loop both walks can reach the same entry: it is on the chain once.
  const upstreamKeys = new Set(upstream.map((hop) => entryKey(hop.translation)));
  const hops = [...upstream.reverse(), first, ...downstream.filter((hop) => !upstreamKeys.has(entryKey(hop.translation)))];
  return { segment: { tuples: [hops[0].before, ...hops.map((hop) => hop.after)], hops }, at: anchor };
}

const byStart = (a: FlowRecord, b: FlowRecord): number => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0);

/** The flow closest in time to `at` (default: the newest). */
function closestFlow(flows: FlowRecord[], at?: EpochNs): FlowRecord | undefined {
  if (at === undefined) return [...flows].sort(byStart).at(-1);
  return closest(flows.map((flow) => ({ firstSeen: flow.start, lastSeen: flow.end, flow })), at)?.flow;
}

/** The flows of `segment`'s tuples among `flows`, in path order then time. */
function segmentFlows(segment: Segment, flows: FlowRecord[]): FlowRecord[] {
  return segment.tuples.flatMap((t) => flows.filter((f) => sameTuple(flowTuple(f), t)).sort(byStart));
}

function seqHop(before: FourTuple, after: FourTuple, beforeFlow: FlowRecord, afterFlow: FlowRecord): SeqHop | null {
  const kind = hopKind(before, after);
  if (!kind) return null;
  return {
    kind,
    via: 'tcp-seq',
    node: afterFlow.node,
    netns: afterFlow.netns,
    zone: 0,
    before,
    after,
    firstSeen: beforeFlow.start < afterFlow.start ? beforeFlow.start : afterFlow.start,
    lastSeen: beforeFlow.end > afterFlow.end ? beforeFlow.end : afterFlow.end,
    flows: { before: beforeFlow, after: afterFlow },
  };
}

/**
 * Resolve the chain through `tuple`. `at` picks among connections of reused
 * tuples (default: the newest); `seenTuples`, the tuples a connection's flows
 * had, pick the translations that made them. With nothing known, the path is the tuple
 * alone, as given.
 */
export async function resolveNatPath(reader: NatEvidenceReader, proto: Proto, tuple: FourTuple, at?: EpochNs, seenTuples: FourTuple[] = []): Promise<NatPath> {
  // The flows of the entered tuple are looked up meanwhile: any tuple of the connection gives its handshake.
  const [observed, enteredFlows] = await Promise.all([
    translationChain(reader, proto, tuple, at, seenTuples),
    proto === 'tcp' ? reader.flowsForTuples(proto, [tuple]) : Promise.resolve([]),
  ]);
  const alone: NatPath = observed?.segment ?? { tuples: [tuple], hops: [] };
  if (proto !== 'tcp') return alone;

  // The connection's handshake, as seen where the entered tuple (else another of the chain's) was captured.
  const withHandshake = (flows: FlowRecord[]) => flows.filter((f) => f.synSeq !== null && f.synAckSeq !== null);
  let handshakes = withHandshake(enteredFlows);
  if (handshakes.length === 0 && alone.tuples.length > 1) handshakes = withHandshake(await reader.flowsForTuples(proto, alone.tuples));
  const synFlow = closestFlow(handshakes, at ?? observed?.at);
  if (!synFlow) return alone;

  // Every point that saw the same handshake; tuples not on the chain yet were translated unobserved.
  const seqFlows = await reader.flowsBySynSeq(proto, synFlow.synSeq!, synFlow.synAckSeq!, {
    from: synFlow.start - SYN_WINDOW_NS,
    to: synFlow.start + SYN_WINDOW_NS,
  });
  const segments: Segment[] = [observed?.segment ?? { tuples: [flowTuple(synFlow)], hops: [] }];
  const known = (t: FourTuple) => segments.some((s) => s.tuples.some((u) => eitherWay(u, t)));
  for (const flow of [...seqFlows].sort(byStart)) {
    const t = flowTuple(flow);
    if (known(t)) continue;
    const chain = await translationChain(reader, proto, t, flow.start, seenTuples);
    const segment = chain?.segment ?? { tuples: [t], hops: [] };
    if (segment.tuples.some(known)) continue; // joins what is known through a different entry: no new evidence
    segments.push(segment);
  }
  if (segments.length === 1) return segments[0];

  // The SYN passes the points in path order: order the segments by when their points first saw it.
  const firstSyn = (s: Segment) => segmentFlows(s, seqFlows).reduce<EpochNs | null>((min, f) => (min === null || f.start < min ? f.start : min), null);
  const ordered = segments
    .map((segment) => ({ segment, flows: segmentFlows(segment, seqFlows), at: firstSyn(segment) }))
    .filter((s): s is { segment: Segment; flows: FlowRecord[]; at: EpochNs } => s.at !== null)
    .sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  const path: NatPath = { tuples: [], hops: [] };
  for (const [i, { segment, flows }] of ordered.entries()) {
    if (i > 0) {
      const previous = ordered[i - 1];
      const hop = seqHop(previous.segment.tuples.at(-1)!, segment.tuples[0], previous.flows.at(-1)!, flows[0]);
      if (hop) path.hops.push(hop);
    }
    path.hops.push(...segment.hops);
    path.tuples.push(...segment.tuples);
  }
  return path;
}
