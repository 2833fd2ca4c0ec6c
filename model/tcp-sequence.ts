// The one definition of what a TCP packet is in its flow at one capture point: a new segment, a
// retransmission or out of order (its direction's sequence space, the handshake RTT setting the
// reordering window), a zero window, a duplicate ACK, a segment that fills the peer's window.
// The flow table counts by it (flows/flow-table.ts); capture files comment on packets by it
// (connection/packet-analysis.ts). Numbers in, numbers out: no object per packet.
import { TCP_FLAG_BIT } from './protocol.js';

const { FIN, SYN, RST, ACK } = TCP_FLAG_BIT;

/** Sequence space skipped at this point: segments that fill it later are out of order or retransmitted. */
export interface SequenceGap {
  start: number;
  end: number;
  /** When the segment that skipped it was seen (ns words). */
  tsHigh: number;
  tsLow: number;
}

/** One direction's sequence space at one capture point. */
export interface SequenceState {
  /** Next sequence number expected after the highest one seen, or null before the first segment. */
  nextSeq: number | null;
  gaps: SequenceGap[];
}

/** The handshake at one capture point, as far as it was seen: its RTT sets the reordering window. */
export interface HandshakeState {
  synSeen: boolean;
  /** When the client's first SYN was seen (ns words). */
  synHigh: number;
  synLow: number;
  synAckSeen: boolean;
  established: boolean;
  /** From the client's first SYN to its ACK of the SYN-ACK, at this point. */
  rttNs: number | null;
}

/** Gaps remembered per direction; the oldest are forgotten first. */
const MAX_GAPS = 32;
/** A gap filled sooner than this (or the handshake RTT, when longer) is reordering, not a retransmission. */
export const REORDER_WINDOW_NS = 3_000_000;

/** What classifySegment finds a packet to be. */
export const SEGMENT = {
  /** No sequence space: a pure ACK, a RST, a keep-alive. */
  none: 0,
  /** Reaches past the highest sequence number seen (the first segment too). */
  new: 1,
  retransmission: 2,
  outOfOrder: 3,
} as const;
export type SegmentKind = (typeof SEGMENT)[keyof typeof SEGMENT];

/** Is sequence number a before b, modulo 2^32? */
export const seqBefore = (a: number, b: number): boolean => ((a - b) | 0) < 0;

/** Nanoseconds from time (aHigh, aLow) to (bHigh, bLow): exact well past any flow's length. */
export const nsFrom = (aHigh: number, aLow: number, bHigh: number, bLow: number): number => (bHigh - aHigh) * 4294967296 + (bLow - aLow);

export const newSequenceState = (): SequenceState => ({ nextSeq: null, gaps: [] });

export const newHandshakeState = (): HandshakeState => ({ synSeen: false, synHigh: 0, synLow: 0, synAckSeen: false, established: false, rttNs: null });

/** Follows the handshake with a packet of the flow (`fromClient`: sent by the end that sent the SYN). */
export function trackHandshake(h: HandshakeState, flags: number, fromClient: boolean, tsHigh: number, tsLow: number): void {
  const syn = (flags & SYN) !== 0;
  const ack = (flags & ACK) !== 0;
  if (syn && !ack && fromClient) {
    if (!h.synSeen) {
      h.synSeen = true;
      h.synHigh = tsHigh;
      h.synLow = tsLow;
    }
  } else if (syn && ack && !fromClient) {
    h.synAckSeen = true;
  } else if (ack && !syn && fromClient && h.synAckSeen && !h.established) {
    h.established = true;
    if (h.synSeen) h.rttNs = nsFrom(h.synHigh, h.synLow, tsHigh, tsLow);
  }
}

/**
 * Places a TCP packet in its direction's sequence space at this point, and records it there. It
 * covers its payload plus one for SYN and FIN. Past the highest sequence number seen it is new (a
 * jump leaves a gap: sent, not seen here; a pure ACK's sequence number past it leaves one too); below it, a segment that fills a gap within the reordering window (the
 * handshake RTT, at least REORDER_WINDOW_NS) of the gap's making is out of order, any other is a
 * retransmission. RSTs and keep-alives (one byte just below the next sequence number) are none.
 */
export function classifySegment(
  dir: SequenceState,
  seq: number,
  flags: number,
  len: number,
  tsHigh: number,
  tsLow: number,
  rttNs: number | null,
): SegmentKind {
  const syn = (flags & SYN) !== 0;
  const span = len + (syn ? 1 : 0) + (flags & FIN ? 1 : 0);
  if (flags & RST) return SEGMENT.none;
  if (span === 0) {
    // A pure ACK carries its sender's next sequence number: what lies before it was sent, seen here or not.
    if (dir.nextSeq !== null && seqBefore(dir.nextSeq, seq)) skip(dir, seq, tsHigh, tsLow);
    return SEGMENT.none;
  }
  if (span === 1 && !syn && !(flags & FIN) && dir.nextSeq !== null && ((seq + 1) >>> 0) === dir.nextSeq) return SEGMENT.none;
  const end = (seq + span) >>> 0;
  if (dir.nextSeq === null) {
    dir.nextSeq = end;
    return SEGMENT.new;
  }
  if (seqBefore(dir.nextSeq, end)) {
    if (seqBefore(dir.nextSeq, seq)) skip(dir, seq, tsHigh, tsLow);
    dir.nextSeq = end;
    return SEGMENT.new;
  }
  const filled = fillGap(dir.gaps, seq, end);
  const window = rttNs !== null && rttNs > REORDER_WINDOW_NS ? rttNs : REORDER_WINDOW_NS;
  return filled !== null && nsFrom(filled.tsHigh, filled.tsLow, tsHigh, tsLow) < window ? SEGMENT.outOfOrder : SEGMENT.retransmission;
}

/** A window of 0 advertised (a RST's window means nothing). */
export const isZeroWindow = (win: number, flags: number): boolean => win === 0 && !(flags & RST);

/**
 * A duplicate ACK: no payload, no SYN, FIN or RST, at its direction's next sequence number (`nextSeq`),
 * acknowledging what the direction's previous ACK did (`lastAck`) with the same non-zero window (`lastWin`).
 */
export function isDupAck(
  nextSeq: number | null,
  lastAck: number | null,
  lastWin: number,
  seq: number,
  ack: number,
  flags: number,
  len: number,
  win: number,
): boolean {
  return len === 0 && (flags & (SYN | FIN | RST | ACK)) === ACK && win !== 0 && win === lastWin && seq === nextSeq && ack === lastAck;
}

/**
 * A data segment (no SYN, FIN or RST) that ends exactly at the edge of the window the peer last
 * advertised: `peerAck` + `peerWin` shifted by the peer's window scale (known from the handshake).
 */
export function isWindowFull(seq: number, flags: number, len: number, peerAck: number, peerWin: number, peerScale: number): boolean {
  return len > 0 && !(flags & (SYN | FIN | RST)) && ((seq + len) >>> 0) === ((peerAck + peerWin * 2 ** peerScale) >>> 0);
}

/** The sequence space from the next sequence number up to `seq` was sent but not seen here: a gap; `seq` is the next one. */
function skip(dir: SequenceState, seq: number, tsHigh: number, tsLow: number): void {
  dir.gaps.push({ start: dir.nextSeq!, end: seq, tsHigh, tsLow });
  if (dir.gaps.length > MAX_GAPS) dir.gaps.shift();
  dir.nextSeq = seq;
}

/** Removes [start, end) from the gap it falls in; returns that gap (for when it was made), or null when it fell in none. */
function fillGap(gaps: SequenceGap[], start: number, end: number): SequenceGap | null {
  const i = gaps.findIndex((g) => !seqBefore(start, g.start) && seqBefore(start, g.end));
  if (i < 0) return null;
  const gap = gaps[i];
  const rest: SequenceGap[] = [];
  if (seqBefore(gap.start, start)) rest.push({ ...gap, end: start });
  if (seqBefore(end, gap.end)) rest.push({ ...gap, start: end });
  gaps.splice(i, 1, ...rest);
  return gap;
}
