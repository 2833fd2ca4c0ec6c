// Flow assembly: one FlowRecord per five-tuple per capture point, with Zeek's
// conn_state and history, handshake RTT, retransmissions, out-of-order segments
// and zero windows.
import { createHash } from 'node:crypto';
import { TCP_FLAG_BIT } from '../model/protocol.js';
import type { CloseType, FlowRecord, PacketRecord } from '../model/records.js';

const { FIN, SYN, RST, ACK } = TCP_FLAG_BIT;

/** The kernel gives loopback ifindex 1 in every namespace; each of its packets passes egress then ingress. */
const LOOPBACK_IFINDEX = 1;

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

/** Sequence space skipped at this point: segments that fill it later are out of order or retransmitted. */
interface Gap {
  start: number;
  end: number;
  /** When the segment that skipped it was seen. */
  ts: bigint;
}

/** Gaps remembered per direction; the oldest are forgotten first. */
const MAX_GAPS = 32;
/** A gap filled sooner than this (or the handshake RTT, when longer) is reordering, not a retransmission. */
const REORDER_WINDOW_NS = 3_000_000n;

interface DirectionState {
  /** Next sequence number expected after the highest one seen (TCP), or null before the first packet. */
  nextSeq: number | null;
  gaps: Gap[];
  fin: boolean;
  rst: boolean;
  history: Set<string>;
}

interface FlowState {
  record: FlowRecord;
  c2s: DirectionState;
  s2c: DirectionState;
  synTs: bigint | null;
  synAckSeen: boolean;
  established: boolean;
  changed: boolean;
}

const newDirection = (): DirectionState => ({ nextSeq: null, gaps: [], fin: false, rst: false, history: new Set() });

/** Is sequence number a before b, modulo 2^32? */
const seqBefore = (a: number, b: number) => ((a - b) | 0) < 0;

function flowKey(p: PacketRecord, reversed: boolean): string {
  const [a, b] = reversed ? [`${p.dst}|${p.dport}`, `${p.src}|${p.sport}`] : [`${p.src}|${p.sport}`, `${p.dst}|${p.dport}`];
  return `${p.node}|${p.netns}|${p.iface}|${p.proto}|${a}|${b}`;
}

export class FlowTable {
  readonly #flows = new Map<string, FlowState>();
  readonly #timeouts: FlowTimeouts;

  constructor(timeouts: FlowTimeouts = DEFAULT_FLOW_TIMEOUTS) {
    this.#timeouts = timeouts;
  }

  get size(): number {
    return this.#flows.size;
  }

  add(packets: PacketRecord[]): void {
    for (const packet of packets) {
      if (packet.ifindex === LOOPBACK_IFINDEX && packet.direction === 'ingress') continue;
      this.#add(packet);
    }
  }

  #add(p: PacketRecord): void {
    const forward = flowKey(p, false);
    let flow = this.#flows.get(forward);
    let fromClient = true;
    if (!flow) {
      const reverse = this.#flows.get(flowKey(p, true));
      if (reverse) {
        flow = reverse;
        fromClient = false;
      }
    }
    if (!flow) {
      // The client sent the first packet, unless that packet is a SYN-ACK.
      const isSynAck = p.proto === 'tcp' && (p.flags & (SYN | ACK)) === (SYN | ACK);
      flow = this.#create(p, isSynAck);
      this.#flows.set(flowKey(p, isSynAck), flow);
      fromClient = !isSynAck;
    }
    this.#update(flow, p, fromClient);
  }

  #create(p: PacketRecord, reversed: boolean): FlowState {
    const client = reversed ? { ip: p.dst, port: p.dport } : { ip: p.src, port: p.sport };
    const server = reversed ? { ip: p.src, port: p.sport } : { ip: p.dst, port: p.dport };
    const id = createHash('sha256')
      .update(`${p.node}|${p.netns}|${p.iface}|${p.proto}|${client.ip}|${client.port}|${server.ip}|${server.port}|${p.ts}`)
      .digest('hex')
      .slice(0, 16);
    return {
      record: {
        id,
        node: p.node,
        netns: p.netns,
        iface: p.iface,
        proto: p.proto,
        client,
        server,
        start: p.ts,
        end: p.ts,
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
      c2s: newDirection(),
      s2c: newDirection(),
      synTs: null,
      synAckSeen: false,
      established: false,
      changed: true,
    };
  }

  #update(flow: FlowState, p: PacketRecord, fromClient: boolean): void {
    const r = flow.record;
    const side = fromClient ? 'c2s' : 's2c';
    const dir = fromClient ? flow.c2s : flow.s2c;
    const letter = (code: string) => {
      if (dir.history.has(code)) return;
      dir.history.add(code);
      r.history += fromClient ? code : code.toLowerCase();
    };
    flow.changed = true;
    if (p.ts < r.start) r.start = p.ts;
    if (p.ts > r.end) r.end = p.ts;
    r.packets[side]++;
    r.bytes[side] += p.wireLen;

    // A later fragment carries no L4 header: it counts, and tells nothing more.
    if (p.fragment === 'later') return;
    if (p.proto === 'udp') {
      if (p.len > 0) letter('D');
      r.connState = r.packets.c2s > 0 && r.packets.s2c > 0 ? 'SF' : fromClient ? 'S0' : 'SHR';
      return;
    }

    const syn = (p.flags & SYN) !== 0;
    const ack = (p.flags & ACK) !== 0;
    if (syn && !ack && fromClient) {
      letter('S');
      if (r.synSeq === null) r.synSeq = p.seq;
      flow.synTs ??= p.ts;
    } else if (syn && ack && !fromClient) {
      letter('H');
      if (r.synAckSeq === null) r.synAckSeq = p.seq;
      flow.synAckSeen = true;
    } else if (ack && !syn && fromClient && flow.synAckSeen && !flow.established) {
      flow.established = true;
      if (flow.synTs !== null) r.rttNs = p.ts - flow.synTs;
    }
    if (ack && !syn && p.len === 0 && !(p.flags & (FIN | RST))) letter('A');
    if (p.len > 0) letter('D');
    if (p.flags & FIN) {
      letter('F');
      dir.fin = true;
    }
    if (p.flags & RST) {
      letter('R');
      dir.rst = true;
    }
    if (p.win === 0 && !(p.flags & RST)) {
      r.zeroWindow[side]++;
      letter('W');
    }

    // Sequence space this packet covers: payload plus one for SYN and FIN.
    const span = p.len + (syn ? 1 : 0) + (p.flags & FIN ? 1 : 0);
    const keepAlive = span === 1 && !syn && !(p.flags & FIN) && dir.nextSeq !== null && ((p.seq + 1) >>> 0) === dir.nextSeq;
    if (span > 0 && !(p.flags & RST) && !keepAlive) {
      const end = (p.seq + span) >>> 0;
      if (dir.nextSeq === null) {
        dir.nextSeq = end;
      } else if (seqBefore(dir.nextSeq, end)) {
        if (seqBefore(dir.nextSeq, p.seq)) {
          dir.gaps.push({ start: dir.nextSeq, end: p.seq, ts: p.ts });
          if (dir.gaps.length > MAX_GAPS) dir.gaps.shift();
        }
        dir.nextSeq = end;
      } else {
        const filledAt = fillGap(dir.gaps, p.seq, end);
        const window = r.rttNs !== null && r.rttNs > REORDER_WINDOW_NS ? r.rttNs : REORDER_WINDOW_NS;
        if (filledAt !== null && p.ts - filledAt < window) {
          r.outOfOrder[side]++;
        } else {
          r.retrans[side]++;
          letter('T');
        }
      }
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
    const out: FlowRecord[] = [];
    for (const [key, flow] of this.#flows) {
      const r = flow.record;
      const idle = nowNs - r.end;
      const closed = r.close === 'fin' || r.close === 'rst';
      const timeout = r.proto === 'tcp' ? this.#timeouts.tcpIdleNs : this.#timeouts.udpIdleNs;
      const final = closed ? idle >= this.#timeouts.closedLingerNs : idle >= timeout;
      if (final && !closed) {
        r.close = 'timeout';
        flow.changed = true;
      }
      if (flow.changed) {
        out.push(structuredClone(r));
        flow.changed = false;
      }
      if (final) this.#flows.delete(key);
    }
    return out;
  }

  /** Every flow as it stands, for shutdown; the table is left empty. */
  drain(): FlowRecord[] {
    const out = [...this.#flows.values()].map((flow) => structuredClone(flow.record));
    this.#flows.clear();
    return out;
  }
}

/** Removes [start, end) from the gap it falls in; returns when that gap was made, or null when it fell in none. */
function fillGap(gaps: Gap[], start: number, end: number): bigint | null {
  const i = gaps.findIndex((g) => !seqBefore(start, g.start) && seqBefore(start, g.end));
  if (i < 0) return null;
  const gap = gaps[i];
  const rest: Gap[] = [];
  if (seqBefore(gap.start, start)) rest.push({ start: gap.start, end: start, ts: gap.ts });
  if (seqBefore(end, gap.end)) rest.push({ start: end, end: gap.end, ts: gap.ts });
  gaps.splice(i, 1, ...rest);
  return gap.ts;
}

function closeOf(flow: FlowState, previous: CloseType): CloseType {
  if (flow.c2s.rst || flow.s2c.rst) return 'rst';
  if (flow.c2s.fin && flow.s2c.fin) return 'fin';
  return previous === 'timeout' ? 'timeout' : 'open';
}

/** Zeek conn.log conn_state for a TCP flow. */
function tcpConnState(flow: FlowState): string {
  const { c2s, s2c } = flow;
  const synSeen = c2s.history.has('S');
  const synAckSeen = s2c.history.has('H');
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
