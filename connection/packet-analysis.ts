// nettrail's own analysis of a connection's packets as its capture file's comments: TCP at each
// capture point (and hook) on its own, by the rules the flow table counts by (model/tcp-sequence.ts),
// and the hop of each packet from the point that saw it before. Wireshark's TCP analysis runs over
// all the interfaces of a file as one, so it takes the same packet at its next point for a
// retransmission; these comments say what happened at each point. Their texts (docs/pcap.md) begin
// with the fixed words of ANALYSIS_COMMENT, for display filters and the profile's coloring rules.
import type { PacketColumns, RowsPoint } from '../flowlog/packets/rows.js';
import { OPTION_BIT } from '../model/packet-columns.js';
import { DIRECTION, PROTO_NUMBER, TCP_FLAG_BIT } from '../model/protocol.js';
import {
  classifySegment, isDupAck, isWindowFull, isZeroWindow, newHandshakeState, newSequenceState, nsFrom, SEGMENT, seqBefore,
  trackHandshake, type HandshakeState, type SequenceState,
} from '../model/tcp-sequence.js';
import { pointName } from './connection.js';

const { SYN, ACK } = TCP_FLAG_BIT;

/** The fixed beginnings of the comments, each followed by the details docs/pcap.md gives. */
export const ANALYSIS_COMMENT = {
  retransmission: 'nettrail: retransmission',
  outOfOrder: 'nettrail: out-of-order',
  zeroWindow: 'nettrail: zero window',
  windowFull: 'nettrail: window full',
  dupAck: 'nettrail: dup ack',
  hop: 'nettrail: hop',
} as const;

/** Segments remembered per direction at a point, to name the frame a retransmission repeats. */
const SEGMENTS = 1024;
/** Packets remembered (by packet id) to name the frame of a packet's previous point. */
const PACKETS = 65536;
/** The kernel gives loopback ifindex 1 in every namespace; each of its packets passes egress then ingress. */
const LOOPBACK_IFINDEX = 1;

/** One direction of the connection at one point. */
interface DirectionAnalysis extends SequenceState {
  /** The last SEGMENTS new segments, a ring: sequence range [start, end) and frame. */
  starts: Uint32Array;
  ends: Uint32Array;
  frames: Float64Array;
  segments: number;
  /** The last acknowledgement number sent, and the window with it (-1: a SYN-ACK's, not comparable). */
  lastAck: number | null;
  lastWin: number;
  /** The frame that first acknowledged lastAck, and the duplicate ACKs of it since. */
  ackFrame: number;
  dupAcks: number;
  /** The window scale of what this direction advertises; -1 until the handshake shows it. */
  scale: number;
  /** Its SYN's window scale option, -1 for none. */
  synScale: number;
}

/** The connection at one capture point and hook. */
interface PointAnalysis extends HandshakeState {
  name: string;
  /** The client's address and port at this point: the sender of the first packet here, unless that is a SYN-ACK. */
  clientAddress: string | null;
  clientPort: number;
  c2s: DirectionAnalysis;
  s2c: DirectionAnalysis;
}

const newDirection = (): DirectionAnalysis => ({
  ...newSequenceState(),
  starts: new Uint32Array(SEGMENTS), ends: new Uint32Array(SEGMENTS), frames: new Float64Array(SEGMENTS), segments: 0,
  lastAck: null, lastWin: -1, ackFrame: 0, dupAcks: 0, scale: -1, synScale: -1,
});

/**
 * Reads the packets of one capture file in the order it writes them and gives each its comments.
 * A retransmission's and a duplicate ACK's "#N" is a frame number of the same file.
 */
export class CaptureAnalysis {
  /** By pointName and hook. */
  readonly #points = new Map<string, PointAnalysis>();
  /** The points of the columns seen last, by their index there. */
  #columns: PacketColumns | null = null;
  #pointsOfColumns: PointAnalysis[] = [];
  /** Packets by packet id (53 bits of it): the slot of a ring holding the frame, time and point it was last seen at. */
  readonly #packetSlots = new Map<number, number>();
  readonly #slotKeys = new Float64Array(PACKETS).fill(-1);
  readonly #slotFrames = new Float64Array(PACKETS);
  readonly #slotTsHigh = new Uint32Array(PACKETS);
  readonly #slotTsLow = new Uint32Array(PACKETS);
  readonly #slotPoints: Array<PointAnalysis | null> = new Array<PointAnalysis | null>(PACKETS).fill(null);
  #nextSlot = 0;

  /** The comments of row `row` of `c`, written as frame `frame` (from 1), or null for none. */
  comments(c: PacketColumns, row: number, frame: number): string[] | null {
    if (c !== this.#columns) {
      this.#columns = c;
      this.#pointsOfColumns = c.points.map((p) => this.#pointOf(p));
    }
    const point = this.#pointsOfColumns[c.point[row]];
    const tsLow = c.tsWords[2 * row];
    const tsHigh = c.tsWords[2 * row + 1];
    let comments: string[] | null = null;
    const hop = this.#hop(c, row, point, frame, tsHigh, tsLow);
    if (hop !== null) comments = [hop];
    const rowPoint = c.points[c.point[row]];
    // Loopback: a packet's ingress repeats its egress; the flow table, too, follows egress only.
    if (c.proto[row] !== PROTO_NUMBER.tcp || (rowPoint.ifindex === LOOPBACK_IFINDEX && c.direction[row] === DIRECTION.ingress)) return comments;
    const tcp = this.#tcp(c, row, point, frame, tsHigh, tsLow);
    if (tcp !== null) (comments ??= []).push(...tcp);
    return comments;
  }

  #pointOf(p: RowsPoint): PointAnalysis {
    const key = `${pointName(p)}\0${p.hook}`;
    let point = this.#points.get(key);
    if (point === undefined) {
      point = { ...newHandshakeState(), name: pointName(p), clientAddress: null, clientPort: 0, c2s: newDirection(), s2c: newDirection() };
      this.#points.set(key, point);
    }
    return point;
  }

  /** "hop +D us from #N at P": the packet was last seen at another point P, as frame N, D earlier. */
  #hop(c: PacketColumns, row: number, point: PointAnalysis, frame: number, tsHigh: number, tsLow: number): string | null {
    // 53 bits of the 64-bit packet id as a number key, no BigInt.
    const key = c.packetIdWords[2 * row + 1] * 2097152 + (c.packetIdWords[2 * row] & 0x1fffff);
    let slot = this.#packetSlots.get(key);
    let comment: string | null = null;
    if (slot === undefined) {
      slot = this.#nextSlot;
      this.#nextSlot = (slot + 1) % PACKETS;
      if (this.#slotKeys[slot] >= 0) this.#packetSlots.delete(this.#slotKeys[slot]);
      this.#slotKeys[slot] = key;
      this.#packetSlots.set(key, slot);
    } else {
      const before = this.#slotPoints[slot];
      if (before !== null && before !== point) {
        const us = (nsFrom(this.#slotTsHigh[slot], this.#slotTsLow[slot], tsHigh, tsLow) / 1000).toFixed(3);
        comment = `${ANALYSIS_COMMENT.hop} +${us}us from #${this.#slotFrames[slot]} at ${before.name}`;
      }
    }
    this.#slotFrames[slot] = frame;
    this.#slotTsHigh[slot] = tsHigh;
    this.#slotTsLow[slot] = tsLow;
    this.#slotPoints[slot] = point;
    return comment;
  }

  /** What the packet is in its TCP flow at this point. */
  #tcp(c: PacketColumns, row: number, point: PointAnalysis, frame: number, tsHigh: number, tsLow: number): string[] | null {
    const flags = c.flags[row];
    const src = c.addresses[c.src[row]].text;
    const sport = c.sport[row];
    if (point.clientAddress === null) {
      const synAck = (flags & (SYN | ACK)) === (SYN | ACK);
      point.clientAddress = synAck ? c.addresses[c.dst[row]].text : src;
      point.clientPort = synAck ? c.dport[row] : sport;
    }
    const fromClient = src === point.clientAddress && sport === point.clientPort;
    const dir = fromClient ? point.c2s : point.s2c;
    const peer = fromClient ? point.s2c : point.c2s;
    const seq = c.seq[row];
    const ack = c.ack[row];
    const len = c.len[row];
    const win = c.win[row];
    trackHandshake(point, flags, fromClient, tsHigh, tsLow);
    if (flags & SYN) {
      dir.synScale = c.present[row] & OPTION_BIT.wscale ? c.wscale[row] : -1;
      // Window scaling holds when both SYNs offer it; either without it, no scaling.
      if (flags & ACK && peer.synScale >= 0 && dir.synScale >= 0) {
        peer.scale = peer.synScale;
        dir.scale = dir.synScale;
      } else if (flags & ACK) {
        peer.scale = 0;
        dir.scale = 0;
      }
    }

    let comments: string[] | null = null;
    const kind = classifySegment(dir, seq, flags, len, tsHigh, tsLow, point.rttNs);
    if (kind === SEGMENT.new) {
      const at = dir.segments++ % SEGMENTS;
      dir.starts[at] = seq;
      dir.ends[at] = dir.nextSeq!;
      dir.frames[at] = frame;
    } else if (kind === SEGMENT.retransmission) {
      const earlier = this.#sentBefore(dir, seq);
      comments = withComment(comments, earlier === null ? ANALYSIS_COMMENT.retransmission : `${ANALYSIS_COMMENT.retransmission} of #${earlier}`, point.name);
    } else if (kind === SEGMENT.outOfOrder) {
      comments = withComment(comments, ANALYSIS_COMMENT.outOfOrder, point.name);
    }
    if (isZeroWindow(win, flags)) comments = withComment(comments, ANALYSIS_COMMENT.zeroWindow, point.name);
    if (peer.lastAck !== null && peer.lastWin >= 0 && peer.scale >= 0 && isWindowFull(seq, flags, len, peer.lastAck, peer.lastWin, peer.scale)) {
      comments = withComment(comments, ANALYSIS_COMMENT.windowFull, point.name);
    }
    if (isDupAck(dir.nextSeq, dir.lastAck, dir.lastWin, seq, ack, flags, len, win)) {
      dir.dupAcks++;
      comments = withComment(comments, `${ANALYSIS_COMMENT.dupAck} ${dir.dupAcks} of #${dir.ackFrame}`, point.name);
    }
    if (flags & ACK) {
      if (ack !== dir.lastAck) {
        dir.lastAck = ack;
        dir.ackFrame = frame;
        dir.dupAcks = 0;
      }
      dir.lastWin = flags & SYN ? -1 : win;
    }
    return comments;
  }

  /** The frame of the earliest remembered segment at this point holding sequence number `seq`, or null. */
  #sentBefore(dir: DirectionAnalysis, seq: number): number | null {
    const from = Math.max(0, dir.segments - SEGMENTS);
    for (let k = from; k < dir.segments; k++) {
      const at = k % SEGMENTS;
      if (!seqBefore(seq, dir.starts[at]) && seqBefore(seq, dir.ends[at])) return dir.frames[at];
    }
    return null;
  }
}

/** `list` (made if null) with "TEXT at POINT" added. */
function withComment(list: string[] | null, text: string, point: string): string[] {
  const comment = `${text} at ${point}`;
  if (list === null) return [comment];
  list.push(comment);
  return list;
}
