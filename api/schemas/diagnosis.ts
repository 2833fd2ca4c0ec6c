// A connection's diagnosis: what went wrong, where, with the packets that prove it
// (docs/diagnosis.md); and where the time went.
import { Type, type Static } from 'typebox';
import { Time } from './common.js';
import { DropSchema } from './drops.js';

export const CapturePointSchema = Type.Object({ node: Type.String(), netns: Type.String(), iface: Type.String() });

export const FindingKind = Type.Enum(['lost', 'handshake', 'reset', 'nagle-delayed-ack', 'receive-window', 'mtu-blackhole', 'slow-server', 'hop-delay']);
export const Way = Type.Enum(['c2s', 's2c'], { description: 'c2s: client to server' });

export const EvidencePacketSchema = Type.Object({
  node: Type.String(),
  netns: Type.String(),
  iface: Type.String(),
  packet_id: Type.String({ description: 'as in the timeline: the row of this packet at this point' }),
  ts: Time,
  way: Way,
  role: Type.String({ description: 'what it shows: lost, retransmission, syn, syn-ack, rst, small-segment, delayed-ack, held-back, zero-window, window-open, request-end, response-start, passed, sent, delayed' }),
  seq: Type.Integer(),
  len: Type.Integer(),
  flags: Type.Array(Type.String()),
});

export const FigureSchema = Type.Object({ name: Type.String({ description: 'with its unit: retransmit_after_ms_median, lost, ...' }), value: Type.Number() });

export const FindingSchema = Type.Object({
  kind: FindingKind,
  severity: Type.Enum(['error', 'warning']),
  way: Type.Union([Way, Type.Null()], { description: 'which way the packets it is about went; null for both' }),
  summary: Type.String({ description: 'one plain sentence' }),
  where: Type.Object({
    from: CapturePointSchema,
    to: Type.Union([CapturePointSchema, Type.Null()], { description: 'for a hop: the next point; null at one point' }),
    text: Type.String(),
  }),
  evidence: Type.Object({
    packets: Type.Array(EvidencePacketSchema),
    drops: Type.Array(DropSchema),
    figures: Type.Array(FigureSchema),
  }),
  advice: Type.String(),
});

export const HopTimingSchema = Type.Object({
  from: CapturePointSchema,
  to: CapturePointSchema,
  way: Way,
  packets: Type.Integer({ description: 'packets seen at both points' }),
  median_ns: Type.Integer(),
  max_ns: Type.Integer(),
});

export const TimingSchema = Type.Object({
  handshake: Type.Array(Type.Object({ point: CapturePointSchema, rtt_ns: Type.Integer() }), {
    description: 'SYN to the ACK of the SYN-ACK as each point saw it, client side first; a hop pair took the difference',
  }),
  exchanges: Type.Integer({ description: 'request/response turns seen at the server side' }),
  server_ns: Type.Integer({ description: "request's last byte in at the server's point to the response's first byte out, summed over the turns" }),
  network_ns: Type.Integer({ description: 'the rest of the turns as the client side saw them' }),
  hops: Type.Array(HopTimingSchema),
});

export const DiagnosisResponse = Type.Object({
  connection_id: Type.Union([Type.String(), Type.Null()]),
  path: Type.Array(CapturePointSchema, { description: 'capture points from the client side to the server side' }),
  findings: Type.Array(FindingSchema, { description: 'errors first; none for a healthy connection' }),
  timing: TimingSchema,
  packets: Type.Integer({ description: 'packets read' }),
  truncated: Type.Boolean({ description: 'only the first packets of a very long connection were read' }),
});

export type FindingJson = Static<typeof FindingSchema>;
export type DiagnosisJson = Static<typeof DiagnosisResponse>;
