// TypeBox schemas of the HTTP API (../shared/contract.md): the one source of
// request validation, response serialization and the TypeScript types.
import { Type, type Static } from 'typebox';

const Time = Type.String({ description: 'ISO-8601 UTC with nanoseconds, e.g. 2026-11-21T19:23:03.123456789Z' });
const Port = Type.Integer({ minimum: 0, maximum: 65535 });
const Proto = Type.Union([Type.Literal('tcp'), Type.Literal('udp')]);

export const FourTupleSchema = Type.Object({ src: Type.String(), sport: Port, dst: Type.String(), dport: Port });

const Directional = Type.Object({ c2s: Type.Integer(), s2c: Type.Integer() });

export const NatHopSchema = Type.Object({
  kind: Type.Union([Type.Literal('SNAT'), Type.Literal('DNAT'), Type.Literal('FULLNAT')]),
  via: Type.Union([Type.Literal('iptables'), Type.Literal('ipvs'), Type.Literal('ovs'), Type.Literal('tcp-seq')]),
  node: Type.String(),
  netns: Type.String(),
  zone: Type.Integer(),
  before: FourTupleSchema,
  after: FourTupleSchema,
});

export const PointSchema = Type.Object({
  node: Type.String(),
  netns: Type.String(),
  iface: Type.String(),
  packets: Type.Integer(),
  bytes: Type.Integer(),
});

export const FlowSchema = Type.Object({
  id: Type.String(),
  proto: Proto,
  client: Type.Object({ ip: Type.String(), port: Port }),
  server: Type.Object({ ip: Type.String(), port: Port }),
  node: Type.String(),
  netns: Type.String(),
  iface: Type.String(),
  start: Time,
  end: Time,
  duration_ns: Type.String({ description: 'nanoseconds, as a decimal string (64-bit)' }),
  packets: Directional,
  bytes: Directional,
  conn_state: Type.String({ description: "Zeek conn.log conn_state" }),
  history: Type.String({ description: "Zeek conn.log history" }),
  rtt_ns: Type.Union([Type.Integer(), Type.Null()]),
  retrans: Directional,
  zero_window: Directional,
  close: Type.Union([Type.Literal('fin'), Type.Literal('rst'), Type.Literal('timeout'), Type.Literal('open')]),
  syn_seq: Type.Union([Type.Integer(), Type.Null()]),
  syn_ack_seq: Type.Union([Type.Integer(), Type.Null()]),
});

export const DropSchema = Type.Object({
  ts: Time,
  node: Type.String(),
  netns: Type.String(),
  iface: Type.String(),
  src: Type.String(),
  sport: Port,
  dst: Type.String(),
  dport: Port,
  reason: Type.String(),
  location: Type.String(),
  stack: Type.Array(Type.String()),
  cause: Type.String(),
});

export const TcpOptionsSchema = Type.Object({
  mss: Type.Optional(Type.Integer()),
  wscale: Type.Optional(Type.Integer()),
  sack_perm: Type.Optional(Type.Boolean()),
  ts_val: Type.Optional(Type.Integer()),
  ts_ecr: Type.Optional(Type.Integer()),
  sack: Type.Optional(Type.Array(Type.Array(Type.Integer(), { minItems: 2, maxItems: 2 }))),
});

export const PacketSchema = Type.Object({
  ts: Time,
  node: Type.String(),
  netns: Type.String(),
  iface: Type.String(),
  direction: Type.Union([Type.Literal('ingress'), Type.Literal('egress')]),
  hook: Type.Union([Type.Literal('tc'), Type.Literal('xdp')]),
  src: Type.String(),
  sport: Port,
  dst: Type.String(),
  dport: Port,
  seq: Type.Integer(),
  ack: Type.Integer(),
  flags: Type.Array(Type.String()),
  win: Type.Integer(),
  len: Type.Integer(),
  options: TcpOptionsSchema,
  packet_id: Type.String({ description: '64-bit id as 16 hex digits; equal for the same packet at several points' }),
});

export const ConnectionSchema = Type.Object({
  proto: Proto,
  first_seen: Time,
  last_seen: Time,
  tuples: Type.Array(FourTupleSchema),
  hops: Type.Array(NatHopSchema),
  points: Type.Array(PointSchema),
  flows: Type.Array(FlowSchema),
  drops: Type.Array(DropSchema),
});

export const ErrorSchema = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }),
});

const TupleFields = {
  tuple: Type.Optional(Type.String({ description: 'e.g. "tcp 10.0.0.1:43210 -> 10.0.0.2:80" (see the contract)' })),
  src: Type.Optional(Type.String()),
  sport: Type.Optional(Type.String()),
  dst: Type.Optional(Type.String()),
  dport: Type.Optional(Type.String()),
  proto: Type.Optional(Type.String()),
};

export const ConnectionQuery = Type.Object({ ...TupleFields, at: Type.Optional(Type.String()) }, { additionalProperties: false });
export const PcapQuery = Type.Object(
  {
    ...TupleFields,
    at: Type.Optional(Type.String()),
    from: Type.Optional(Type.String()),
    to: Type.Optional(Type.String()),
    format: Type.Optional(Type.Union([Type.Literal('pcapng'), Type.Literal('pcap')])),
  },
  { additionalProperties: false },
);

export const FlowsQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  },
  { additionalProperties: false },
);

export const NatQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })) },
  { additionalProperties: false },
);

export const NatTranslationSchema = Type.Object({
  via: Type.String(),
  node: Type.String(),
  netns: Type.String(),
  zone: Type.Integer(),
  proto: Proto,
  orig: FourTupleSchema,
  reply: FourTupleSchema,
  first_seen: Time,
  last_seen: Time,
});

export const CaptureStatusSchema = Type.Object({
  capturing: Type.Boolean(),
  points: Type.Array(
    Type.Object({
      node: Type.String(),
      netns: Type.String(),
      iface: Type.String(),
      ifindex: Type.Integer(),
      hooks: Type.Array(Type.String()),
      packets: Type.Integer(),
      lost: Type.Integer(),
    }),
  ),
  packets: Type.Integer(),
  lost: Type.Integer(),
  malformed: Type.Integer(),
  skipped: Type.Array(Type.Object({ netns: Type.String(), iface: Type.String(), reason: Type.String() })),
});

export type FourTupleJson = Static<typeof FourTupleSchema>;
export type NatHopJson = Static<typeof NatHopSchema>;
export type FlowJson = Static<typeof FlowSchema>;
export type PacketJson = Static<typeof PacketSchema>;
export type ConnectionJson = Static<typeof ConnectionSchema>;
export type DropJson = Static<typeof DropSchema>;
export type NatTranslationJson = Static<typeof NatTranslationSchema>;
