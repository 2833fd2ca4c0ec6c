// The API's JSON shapes of records and connections (api/schemas/ describes them).
import type { DropTracerStatus } from '../capture/drops/tracer.js';
import { pointName, type Connection } from '../connection/connection.js';
import type { ConnectionSummary } from '../connection/connection-search.js';
import { packetIdJson } from '../model/packet-id.js';
import { tcpFlagNames } from '../model/protocol.js';
import type { DropRecord, FlowRecord, NatTranslation, PacketRecord } from '../model/records.js';
import { isoNs } from '../model/time.js';
import type { ConnectionRowJson } from './schemas/connection-search.js';
import type { ConnectionJson, PacketJson } from './schemas/connections.js';
import type { DropJson } from './schemas/drops.js';
import type { FlowJson } from './schemas/flows.js';
import type { NatHopJson, NatTranslationJson } from './schemas/nat.js';
import type { DropTracingJson } from './schemas/status.js';

const hopJson = (hop: Connection['hops'][number]): NatHopJson => ({
  kind: hop.kind,
  via: hop.via,
  node: hop.node,
  netns: hop.netns,
  zone: hop.zone,
  before: hop.before,
  after: hop.after,
});

export function flowJson(f: FlowRecord): FlowJson {
  return {
    id: f.id,
    connection_id: f.connectionId,
    proto: f.proto,
    client: f.client,
    server: f.server,
    node: f.node,
    netns: f.netns,
    iface: f.iface,
    start: isoNs(f.start),
    end: isoNs(f.end),
    duration_ns: (f.end - f.start).toString(),
    packets: f.packets,
    bytes: f.bytes,
    conn_state: f.connState,
    history: f.history,
    rtt_ns: f.rttNs === null ? null : Number(f.rttNs),
    retrans: f.retrans,
    zero_window: f.zeroWindow,
    out_of_order: f.outOfOrder,
    close: f.close,
    syn_seq: f.synSeq,
    syn_ack_seq: f.synAckSeq,
  };
}

export function packetJson(p: PacketRecord): PacketJson {
  return {
    ts: isoNs(p.ts),
    node: p.node,
    netns: p.netns,
    iface: p.iface,
    direction: p.direction,
    hook: p.hook,
    src: p.src,
    sport: p.sport,
    dst: p.dst,
    dport: p.dport,
    seq: p.seq,
    ack: p.ack,
    flags: tcpFlagNames(p.flags),
    win: p.win,
    len: p.len,
    options: p.options,
    packet_id: packetIdJson(p.packetId),
    ip_id: p.ipId,
    wire_len: p.wireLen,
    headers: Buffer.from(p.headers.buffer, p.headers.byteOffset, p.headers.byteLength).toString('hex'),
  };
}

export const natTranslationJson = (t: NatTranslation): NatTranslationJson => ({
  via: t.via,
  node: t.node,
  netns: t.netns,
  zone: t.zone,
  proto: t.proto,
  orig: t.orig,
  reply: t.reply,
  first_seen: isoNs(t.firstSeen),
  last_seen: isoNs(t.lastSeen),
});

export function connectionJson(c: Connection): ConnectionJson {
  const points = new Map<string, { node: string; netns: string; iface: string; packets: number; bytes: number }>();
  for (const f of c.flows) {
    const key = pointName(f);
    const point = points.get(key) ?? { node: f.node, netns: f.netns, iface: f.iface, packets: 0, bytes: 0 };
    point.packets += f.packets.c2s + f.packets.s2c;
    point.bytes += f.bytes.c2s + f.bytes.s2c;
    points.set(key, point);
  }
  return {
    id: c.id,
    proto: c.proto,
    first_seen: isoNs(c.firstSeen),
    last_seen: isoNs(c.lastSeen),
    others: c.others.map((o) => ({ id: o.id, first_seen: isoNs(o.firstSeen), last_seen: isoNs(o.lastSeen), points: o.points, isn: o.isn })),
    tuples: c.tuples,
    hops: c.hops.map(hopJson),
    points: [...points.values()],
    flows: c.flows.map(flowJson),
    drops: c.drops.map(dropJson),
  };
}

export function dropJson(d: DropRecord): DropJson {
  return {
    ts: isoNs(d.ts),
    node: d.node,
    netns: d.netns,
    iface: d.iface,
    src: d.src,
    sport: d.sport,
    dst: d.dst,
    dport: d.dport,
    reason: d.reason,
    location: d.location,
    stack: d.stack,
    cause: d.cause,
    proto: d.proto,
    reason_code: d.reasonCode,
    packet_id: packetIdJson(d.packetId),
    fate: d.fate.fate,
    fate_proof: d.fate.proof,
    seen_at: d.fate.seenAt,
    seen_delta_us: d.fate.seenDeltaNs === null ? null : Number(d.fate.seenDeltaNs) / 1000,
  };
}

export const dropTracingJson = (s: DropTracerStatus): DropTracingJson => ({
  namespaces: s.namespaces,
  seen: s.seen,
  reported: s.reported,
  ignored: s.ignored,
  unparsed: s.unparsed,
  filtered: s.filtered,
  rate_limited: s.rateLimited,
  ring_full: s.ringFull,
  malformed: s.malformed,
  rate_limit: s.rateLimit,
  ignored_reasons: s.ignoredReasons,
});

export const connectionRowJson = (c: ConnectionSummary): ConnectionRowJson => ({
  id: c.id,
  proto: c.proto,
  first_seen: isoNs(c.firstSeen),
  last_seen: isoNs(c.lastSeen),
  client_tuple: c.clientTuple,
  server_tuple: c.serverTuple,
  conn_state: c.points[0].connState,
  marks: c.marks,
  points: c.points.map((p) => ({
    node: p.node,
    netns: p.netns,
    iface: p.iface,
    flow_id: p.flowId,
    start: isoNs(p.start),
    tuple: p.tuple,
    packets: p.packets,
    bytes: p.bytes,
    conn_state: p.connState,
  })),
  tuples: c.tuples,
  hops: c.hops,
});
