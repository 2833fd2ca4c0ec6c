// Flow assembly: one FlowRecord per incarnation of a five-tuple per capture point,
// with Zeek's conn_state and history, handshake RTT, retransmissions, out-of-order
// segments and zero windows; the flows of one connection at different capture
// points (across NAT too) share a connection id.
import { createHash } from 'node:crypto';
import { columnAddress, FRAGMENT, type PacketColumns } from '../model/packet-columns.js';
import { PROTO_NUMBER, TCP_FLAG_BIT } from '../model/protocol.js';
import type { CloseType, FlowRecord } from '../model/records.js';
import {
  classifySegment, isZeroWindow, newSequenceState, nsFrom, SEGMENT, trackHandshake, type HandshakeState, type SequenceState,
} from '../model/tcp-sequence.js';

const { FIN, SYN, RST, ACK } = TCP_FLAG_BIT;

/** The kernel gives loopback ifindex 1 in every namespace; each of its packets passes egress then ingress. */
const LOOPBACK_IFINDEX = 1;
const INGRESS = 1;

export interface FlowTimeouts {
  /** A flow with no packets for this long is closed as `timeout` (TCP). */
  tcpIdleNs: bigint;
  /** ... for UDP. */
  udpIdleNs: bigint;
  /** A flow closed by FIN or RST is kept this long for its last packets. */
  closedLingerNs: bigint;
}

export const DEFAULT_FLOW_TIMEOUTS: FlowTimeouts = {
  tcpIdleNs: 300_000_000_000n,
  udpIdleNs: 60_000_000_000n,
  closedLingerNs: 2_000_000_000n,
};

/** Packets of each flow whose packet ids join it to the flows of its connection at other points. */
const LINKED_PACKETS = 4;
/**
 * A packet id is remembered for joining flows this long at least, and twice as long at most: the
 * same packet passes every capture point of a node within far less, SYN retries within a few seconds.
 */
const LINK_GENERATION_NS = 5_000_000_000;

/** Slots of FlowTable's #recent (a power of two). */
const RECENT_FLOWS = 256;

/** Zeek history letters, each a bit of a direction's `history`. */
const LETTER_BIT: Record<string, number> = { S: 1, H: 2, A: 4, D: 8, F: 16, R: 32, W: 64, T: 128 };

/** A direction's sequence space (TCP, model/tcp-sequence.ts), its end and its history letters. */
interface DirectionState extends SequenceState {
  fin: boolean;
  rst: boolean;
  /** LETTER_BIT of the letters written. */
  history: number;
}

/**
 * One flow. Its endpoints and times are numbers (addresses as four words, times as two) so that a
 * packet is matched and counted without an object, a string or a BigInt; FlowRecord's are made when
 * it is collected.
 */
interface FlowState extends HandshakeState {
  record: FlowRecord;
  netnsIno: number;
  ifindex: number;
  proto: number;
  client: [number, number, number, number, number];
  server: [number, number, number, number, number];
  startHigh: number;
  startLow: number;
  endHigh: number;
  endLow: number;
  c2s: DirectionState;
  s2c: DirectionState;
  changed: boolean;
  /** Packets of this flow looked up in (and added to) the packet ids that join flows into connections. */
  linkedPackets: number;
  /** Start of the flow whose id is the connection id (the connection's earliest flow): the earlier wins when two meet. */
  connectionHigh: number;
  connectionLow: number;
}

const newDirection = (): DirectionState => ({ ...newSequenceState(), fin: false, rst: false, history: 0 });

/** Adds a Zeek history letter the first time it happens in a direction (lower case from the server). */
function writeLetter(r: FlowRecord, dir: DirectionState, fromClient: boolean, code: string): void {
  const bit = LETTER_BIT[code];
  if (dir.history & bit) return;
  dir.history |= bit;
  r.history += fromClient ? code : code.toLowerCase();
}

const wordsToNs = (high: number, low: number) => (BigInt(high) << 32n) | BigInt(low);

/** A hash of address words[4i, 4i + 4) and port: the same for an endpoint whichever side it is on. */
function endpointHash(words: Uint32Array, i: number, port: number): number {
  let h = Math.imul(words[4 * i] ^ port, 0x9e3779b1);
  h = Math.imul(h ^ words[4 * i + 1], 0x85ebca6b);
  h = Math.imul(h ^ words[4 * i + 2], 0xc2b2ae35);
  h = Math.imul(h ^ words[4 * i + 3], 0x27d4eb2f);
  return h ^ (h >>> 15);
}

const sameEndpoint = (e: FlowState['client'], words: Uint32Array, i: number, port: number) =>
  e[4] === port && e[0] === words[4 * i] && e[1] === words[4 * i + 1] && e[2] === words[4 * i + 2] && e[3] === words[4 * i + 3];

const endpointOf = (words: Uint32Array, i: number, port: number): FlowState['client'] =>
  [words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3], port];

export class FlowTable {
  /** Flows by the hash of their point, protocol and endpoints; the few sharing a hash are told apart by those. */
  readonly #flows = new Map<number, FlowState[]>();
  /** The flow last found per slot of its key: a look here is cheaper than in #flows, and a batch holds runs of one flow's packets. */
  readonly #recent = new Array<FlowState | undefined>(RECENT_FLOWS);
  #size = 0;
  /** Flows that ended as another incarnation of their five-tuple began: collected once more, then let go. */
  #ended: FlowState[] = [];
  /** The flow that first saw a packet (by packet id), this generation and the one before. */
  #packetFlows = new Map<number, FlowState>();
  #previousPacketFlows = new Map<number, FlowState>();
  #generationStart: number | null = null;
  readonly #tcpIdleNs: number;
  readonly #udpIdleNs: number;
  readonly #closedLingerNs: number;

  constructor(timeouts: FlowTimeouts = DEFAULT_FLOW_TIMEOUTS) {
    this.#tcpIdleNs = Number(timeouts.tcpIdleNs);
    this.#udpIdleNs = Number(timeouts.udpIdleNs);
    this.#closedLingerNs = Number(timeouts.closedLingerNs);
  }

  get size(): number {
    return this.#size;
  }

  add(c: PacketColumns): void {
    for (let i = 0; i < c.count; i++) {
      if (c.ifindex[i] === LOOPBACK_IFINDEX && c.direction[i] === INGRESS) continue;
      this.#add(c, i);
    }
  }

  #add(c: PacketColumns, i: number): void {
    const netnsIno = c.netnsIno[i];
    const ifindex = c.ifindex[i];
    const proto = c.proto[i];
    const sport = c.sport[i];
    const dport = c.dport[i];
    const key = (Math.imul(netnsIno, 0x9e3779b1) ^ Math.imul(ifindex, 0x85ebca6b) ^ proto ^
      (endpointHash(c.srcWords, i, sport) + endpointHash(c.dstWords, i, dport))) >>> 0;
    const slot = key & (RECENT_FLOWS - 1);
    let found: FlowState | undefined;
    let fromClient = false;
    const recent = this.#recent[slot];
    if (recent !== undefined && recent.netnsIno === netnsIno && recent.ifindex === ifindex && recent.proto === proto) {
      if (sameEndpoint(recent.client, c.srcWords, i, sport) && sameEndpoint(recent.server, c.dstWords, i, dport)) {
        found = recent;
        fromClient = true;
      } else if (sameEndpoint(recent.server, c.srcWords, i, sport) && sameEndpoint(recent.client, c.dstWords, i, dport)) {
        found = recent;
      }
    }
    // The map is looked in only when the recent flow is not the packet's, or the flow ends here.
    let bucket = found === undefined ? this.#flows.get(key) : undefined;
    if (found === undefined && bucket !== undefined) {
      for (let f = 0; f < bucket.length; f++) {
        const flow = bucket[f];
        if (flow.netnsIno !== netnsIno || flow.ifindex !== ifindex || flow.proto !== proto) continue;
        fromClient = sameEndpoint(flow.client, c.srcWords, i, sport) && sameEndpoint(flow.server, c.dstWords, i, dport);
        if (fromClient || (sameEndpoint(flow.server, c.srcWords, i, sport) && sameEndpoint(flow.client, c.dstWords, i, dport))) {
          found = flow;
          this.#recent[slot] = flow;
          break;
        }
      }
    }
    if (found !== undefined) {
      if (!this.#beginsIncarnation(found, c, i)) return this.#update(found, c, i, fromClient);
      bucket ??= this.#flows.get(key)!;
      this.#end(found, bucket);
    }
    if (bucket === undefined) this.#flows.set(key, (bucket = []));
    // The client sent the first packet, unless that packet is a SYN-ACK.
    const isSynAck = proto === PROTO_NUMBER.tcp && (c.flags[i] & (SYN | ACK)) === (SYN | ACK);
    const flow = this.#create(c, i, isSynAck);
    bucket.push(flow);
    this.#recent[slot] = flow;
    this.#size++;
    this.#update(flow, c, i, !isSynAck);
  }

  /**
   * Does this packet of `flow`'s five-tuple start a new connection? A SYN with another initial sequence
   * number than the flow's (or after packets without a SYN: capture began mid-stream), from either end,
   * does: its stack opened a new connection. So does any packet after the flow's idle timeout.
   */
  #beginsIncarnation(flow: FlowState, c: PacketColumns, i: number): boolean {
    const idle = nsFrom(flow.endHigh, flow.endLow, c.tsWords[2 * i + 1], c.tsWords[2 * i]);
    if (idle >= (flow.proto === PROTO_NUMBER.tcp ? this.#tcpIdleNs : this.#udpIdleNs)) return true;
    if (flow.proto !== PROTO_NUMBER.tcp || (c.flags[i] & (SYN | ACK)) !== SYN || c.fragment[i] === FRAGMENT.later) return false;
    return flow.record.synSeq === null || flow.record.synSeq !== c.seq[i];
  }

  /** `flow` ended before the packet that starts the next incarnation of its five-tuple: it is collected as it stands, final. */
  #end(flow: FlowState, bucket: FlowState[]): void {
    bucket.splice(bucket.indexOf(flow), 1);
    this.#size--;
    if (flow.record.close === 'open') flow.record.close = 'timeout';
    flow.changed = true;
    this.#ended.push(flow);
  }

  /**
   * Joins `flow` to the connection of another flow that saw the same packet (packet ids do not change
   * across NAT), for the first LINKED_PACKETS packets of each flow. When two flows of different
   * connection ids meet, both keep the id of the earlier connection.
   */
  #link(flow: FlowState, c: PacketColumns, i: number): void {
    flow.linkedPackets++;
    // 53 bits of the 64-bit packet id: a number key, no BigInt.
    const packetKey = c.packetIdWords[2 * i + 1] * 2097152 + (c.packetIdWords[2 * i] & 0x1fffff);
    const other = this.#packetFlows.get(packetKey) ?? this.#previousPacketFlows.get(packetKey);
    if (other === undefined) {
      this.#packetFlows.set(packetKey, flow);
      return;
    }
    if (other.record.connectionId === flow.record.connectionId) return;
    const order = nsFrom(other.connectionHigh, other.connectionLow, flow.connectionHigh, flow.connectionLow);
    const [earlier, later] = order > 0 || (order === 0 && other.record.connectionId < flow.record.connectionId) ? [other, flow] : [flow, other];
    later.record.connectionId = earlier.record.connectionId;
    later.connectionHigh = earlier.connectionHigh;
    later.connectionLow = earlier.connectionLow;
    later.changed = true;
  }

  #create(c: PacketColumns, i: number, reversed: boolean): FlowState {
    const netnsIno = c.netnsIno[i];
    const ifindex = c.ifindex[i];
    const src = { ip: columnAddress(c.src, c.srcWords, i), port: c.sport[i] };
    const dst = { ip: columnAddress(c.dst, c.dstWords, i), port: c.dport[i] };
    const [client, server] = reversed ? [dst, src] : [src, dst];
    const netns = c.names.netnsName(netnsIno);
    const iface = c.names.ifaceName(netnsIno, ifindex);
    const proto = c.proto[i] === PROTO_NUMBER.tcp ? 'tcp' : 'udp';
    const ts = c.ts[i];
    const id = createHash('sha256')
      .update(`${c.node}|${netns}|${iface}|${proto}|${client.ip}|${client.port}|${server.ip}|${server.port}|${ts}`)
      .digest('hex')
      .slice(0, 16);
    const srcEndpoint = endpointOf(c.srcWords, i, c.sport[i]);
    const dstEndpoint = endpointOf(c.dstWords, i, c.dport[i]);
    const tsLow = c.tsWords[2 * i];
    const tsHigh = c.tsWords[2 * i + 1];
    return {
      record: {
        id,
        connectionId: id,
        node: c.node,
        netns,
        iface,
        proto,
        client,
        server,
        start: ts,
        end: ts,
        packets: { c2s: 0, s2c: 0 },
        bytes: { c2s: 0, s2c: 0 },
        connState: 'OTH',
        history: '',
        rttNs: null,
        retrans: { c2s: 0, s2c: 0 },
        outOfOrder: { c2s: 0, s2c: 0 },
        zeroWindow: { c2s: 0, s2c: 0 },
        close: 'open',
        synSeq: null,
        synAckSeq: null,
      },
      netnsIno,
      ifindex,
      proto: c.proto[i],
      client: reversed ? dstEndpoint : srcEndpoint,
      server: reversed ? srcEndpoint : dstEndpoint,
      startHigh: tsHigh,
      startLow: tsLow,
      endHigh: tsHigh,
      endLow: tsLow,
      c2s: newDirection(),
      s2c: newDirection(),
      synHigh: 0,
      synLow: 0,
      synSeen: false,
      rttNs: null,
      synAckSeen: false,
      established: false,
      changed: true,
      linkedPackets: 0,
      connectionHigh: tsHigh,
      connectionLow: tsLow,
    };
  }

  #update(flow: FlowState, c: PacketColumns, i: number, fromClient: boolean): void {
    const r = flow.record;
    const dir = fromClient ? flow.c2s : flow.s2c;
    const tsLow = c.tsWords[2 * i];
    const tsHigh = c.tsWords[2 * i + 1];
    flow.changed = true;
    if (nsFrom(flow.startHigh, flow.startLow, tsHigh, tsLow) < 0) {
      flow.startHigh = tsHigh;
      flow.startLow = tsLow;
    }
    if (nsFrom(flow.endHigh, flow.endLow, tsHigh, tsLow) > 0) {
      flow.endHigh = tsHigh;
      flow.endLow = tsLow;
    }
    // Each side spelled out: a property named by a variable takes V8's slow path, per packet.
    if (fromClient) {
      r.packets.c2s++;
      r.bytes.c2s += c.wireLen[i];
    } else {
      r.packets.s2c++;
      r.bytes.s2c += c.wireLen[i];
    }
    if (flow.linkedPackets < LINKED_PACKETS) this.#link(flow, c, i);

    // A later fragment carries no L4 header: it counts, and tells nothing more.
    if (c.fragment[i] === FRAGMENT.later) return;
    const len = c.len[i];
    if (flow.proto === PROTO_NUMBER.udp) {
      if (len > 0) writeLetter(r, dir, fromClient, 'D');
      r.connState = r.packets.c2s > 0 && r.packets.s2c > 0 ? 'SF' : fromClient ? 'S0' : 'SHR';
      return;
    }

    const flags = c.flags[i];
    const seq = c.seq[i];
    const syn = (flags & SYN) !== 0;
    const ack = (flags & ACK) !== 0;
    trackHandshake(flow, flags, fromClient, tsHigh, tsLow);
    if (syn && !ack && fromClient) {
      writeLetter(r, dir, fromClient, 'S');
      if (r.synSeq === null) r.synSeq = seq;
    } else if (syn && ack && !fromClient) {
      writeLetter(r, dir, fromClient, 'H');
      if (r.synAckSeq === null) r.synAckSeq = seq;
    }
    if (ack && !syn && len === 0 && !(flags & (FIN | RST))) writeLetter(r, dir, fromClient, 'A');
    if (len > 0) writeLetter(r, dir, fromClient, 'D');
    if (flags & FIN) {
      writeLetter(r, dir, fromClient, 'F');
      dir.fin = true;
    }
    if (flags & RST) {
      writeLetter(r, dir, fromClient, 'R');
      dir.rst = true;
    }
    if (isZeroWindow(c.win[i], flags)) {
      if (fromClient) r.zeroWindow.c2s++;
      else r.zeroWindow.s2c++;
      writeLetter(r, dir, fromClient, 'W');
    }

    const kind = classifySegment(dir, seq, flags, len, tsHigh, tsLow, flow.rttNs);
    if (kind === SEGMENT.outOfOrder) {
      if (fromClient) r.outOfOrder.c2s++;
      else r.outOfOrder.s2c++;
    } else if (kind === SEGMENT.retransmission) {
      if (fromClient) r.retrans.c2s++;
      else r.retrans.s2c++;
      writeLetter(r, dir, fromClient, 'T');
    }
    r.connState = tcpConnState(flow);
    r.close = closeOf(flow, r.close);
  }

  /**
   * Flows to write now: every flow changed since the last call. Flows closed
   * for longer than the linger time, or idle past their timeout, are final and
   * leave the table (idle ones closed as `timeout`).
   */
  collect(nowNs: bigint): FlowRecord[] {
    const out: FlowRecord[] = this.#ended.map(snapshot);
    this.#ended = [];
    const nowHigh = Number(nowNs >> 32n);
    const nowLow = Number(nowNs & 0xffffffffn);
    this.#recent.fill(undefined);
    const now = Number(nowNs);
    if (this.#generationStart === null || now - this.#generationStart >= LINK_GENERATION_NS) {
      this.#previousPacketFlows = this.#packetFlows;
      this.#packetFlows = new Map();
      this.#generationStart = now;
    }
    for (const [key, bucket] of this.#flows) {
      for (let f = 0; f < bucket.length; f++) {
        const flow = bucket[f];
        const r = flow.record;
        const idle = nsFrom(flow.endHigh, flow.endLow, nowHigh, nowLow);
        const closed = r.close === 'fin' || r.close === 'rst';
        const timeout = flow.proto === PROTO_NUMBER.tcp ? this.#tcpIdleNs : this.#udpIdleNs;
        const final = closed ? idle >= this.#closedLingerNs : idle >= timeout;
        if (final && !closed) {
          r.close = 'timeout';
          flow.changed = true;
        }
        if (flow.changed) {
          out.push(snapshot(flow));
          flow.changed = false;
        }
        if (final) {
          bucket.splice(f--, 1);
          this.#size--;
        }
      }
      if (bucket.length === 0) this.#flows.delete(key);
    }
    return out;
  }

  /** Every flow as it stands, for shutdown; the table is left empty. */
  drain(): FlowRecord[] {
    const out = [...this.#ended, ...[...this.#flows.values()].flat()].map(snapshot);
    this.#ended = [];
    this.#packetFlows.clear();
    this.#previousPacketFlows.clear();
    this.#flows.clear();
    this.#recent.fill(undefined);
    this.#size = 0;
    return out;
  }
}

/** The flow's record as it stands, its own copy. */
function snapshot(flow: FlowState): FlowRecord {
  const r = flow.record;
  return {
    ...r,
    client: { ...r.client },
    server: { ...r.server },
    start: wordsToNs(flow.startHigh, flow.startLow),
    end: wordsToNs(flow.endHigh, flow.endLow),
    packets: { ...r.packets },
    bytes: { ...r.bytes },
    rttNs: flow.rttNs === null ? null : BigInt(flow.rttNs),
    retrans: { ...r.retrans },
    outOfOrder: { ...r.outOfOrder },
    zeroWindow: { ...r.zeroWindow },
  };
}

function closeOf(flow: FlowState, previous: CloseType): CloseType {
  if (flow.c2s.rst || flow.s2c.rst) return 'rst';
  if (flow.c2s.fin && flow.s2c.fin) return 'fin';
  return previous === 'timeout' ? 'timeout' : 'open';
}

/** Zeek conn.log conn_state for a TCP flow. */
function tcpConnState(flow: FlowState): string {
  const { c2s, s2c } = flow;
  const synSeen = (c2s.history & LETTER_BIT.S) !== 0;
  const synAckSeen = (s2c.history & LETTER_BIT.H) !== 0;
  if (!synSeen && !synAckSeen) return 'OTH';
  if (synSeen && !synAckSeen) {
    if (s2c.rst) return 'REJ';
    if (c2s.rst) return 'RSTOS0';
    if (c2s.fin) return 'SH';
    return 'S0';
  }
  if (!synSeen) {
    if (s2c.rst) return 'RSTRH';
    if (s2c.fin) return 'SHR';
    return 'OTH';
  }
  if (c2s.rst) return 'RSTO';
  if (s2c.rst) return 'RSTR';
  if (c2s.fin && s2c.fin) return 'SF';
  if (c2s.fin) return 'S2';
  if (s2c.fin) return 'S3';
  return 'S1';
}
