// One connection: its tuples at every hop, NAT path, capture points, flows
// and drops; its packets in time order; which connection a query names.
import { Type, type Static } from 'typebox';
import { Formatted, FourTupleSchema, Port, Proto, QueryTime, Time } from './common.js';
import { DropSchema } from './drops.js';
import { FlowSchema } from './flows.js';
import { NatHopSchema } from './nat.js';

export const PointSchema = Type.Object({
  node: Type.String(),
  netns: Type.String(),
  iface: Type.String(),
  packets: Type.Integer(),
  bytes: Type.Integer(),
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
  ip_id: Type.Integer({ description: 'the IPv4 identification (0 for IPv6)' }),
  wire_len: Type.Integer({ description: 'the packet\'s length on the wire, in bytes' }),
  headers: Type.String({ description: 'the captured header bytes (link layer to transport layer, as in the PCAP), as hex' }),
});

export const OtherConnectionSchema = Type.Object({
  id: Type.String({ description: 'its connection id: /api/v1/connections?id=... shows it' }),
  first_seen: Time,
  last_seen: Time,
  points: Type.Integer({ description: 'capture points that saw it' }),
  isn: Type.Union([Type.Integer(), Type.Null()], { description: "the client's initial sequence number (TCP, when its SYN was seen)" }),
});

export const ConnectionSchema = Type.Object({
  id: Type.Union([Type.String(), Type.Null()], {
    description: "the connection id, the same at every capture point (its earliest flow's id); null for a connection known only by NAT entries or drops",
  }),
  proto: Proto,
  first_seen: Time,
  last_seen: Time,
  others: Type.Array(OtherConnectionSchema, { description: 'the other connections that used any of its tuples, oldest first' }),
  tuples: Type.Array(FourTupleSchema),
  hops: Type.Array(NatHopSchema),
  points: Type.Array(PointSchema),
  flows: Type.Array(FlowSchema),
  drops: Type.Array(DropSchema),
});

export const ConnectionResponse = Type.Object({ connection: ConnectionSchema });

/** The connection's packets at every capture point and its drops, in time order. */
export const TimelineResponse = Type.Object({ packets: Type.Array(PacketSchema), drops: Type.Array(DropSchema) });

const TupleFields = {
  tuple: Type.Optional(Formatted('tuple', { description: 'e.g. "tcp 10.0.0.1:43210 -> 10.0.0.2:80" (docs/interface.md)' })),
  src: Type.Optional(Type.String()),
  sport: Type.Optional(Type.String()),
  dst: Type.Optional(Type.String()),
  dport: Type.Optional(Type.String()),
  proto: Type.Optional(Type.String()),
};

const ConnectionFields = {
  ...TupleFields,
  at: QueryTime('with a tuple: the connection of that tuple at this time (default: the newest)'),
  id: Type.Optional(Type.String({ description: 'a connection id (instead of a tuple): that one connection', pattern: '^[0-9A-Za-z_-]{1,64}$' })),
};

export const ConnectionQuery = Type.Object(ConnectionFields, { additionalProperties: false });
export const PcapQuery = Type.Object(
  {
    ...ConnectionFields,
    from: QueryTime('packets at or after'),
    to: QueryTime('packets at or before'),
    format: Type.Optional(Type.Union([Type.Literal('pcapng'), Type.Literal('pcap')])),
    split: Type.Optional(Type.Literal('point', { description: 'point: a zip of one file per capture point (and one per point\'s drops)' })),
    points: Type.Optional(
      Type.String({ maxLength: 4096, description: 'only these capture points, comma-separated node/netns/iface (as if_name in the file)' }),
    ),
  },
  { additionalProperties: false },
);

export type PacketJson = Static<typeof PacketSchema>;
export type ConnectionJson = Static<typeof ConnectionSchema>;
