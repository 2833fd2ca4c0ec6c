// TypeBox schemas of the HTTP API (../shared/contract.md): the one source of
// request validation, response serialization and the TypeScript types.
import { Type, type Static } from 'typebox';
import { DEFAULT_DROP_ORDER, DROP_ORDERS } from '../flowlog/drops-table.js';
import { CONN_STATES, DEFAULT_FLOW_ORDER, FLOW_ORDERS, FLOW_TRAITS } from '../flowlog/flow-search.js';

const Time = Type.String({ description: 'ISO-8601 UTC with nanoseconds, e.g. 2026-11-21T19:23:03.123456789Z' });
const Port = Type.Integer({ minimum: 0, maximum: 65535 });
const Proto = Type.Enum(['tcp', 'udp']);

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
  out_of_order: Directional,
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
  reason: Type.String({ description: "the kernel's name (enum skb_drop_reason, read from its BTF), or the number when it has none" }),
  location: Type.String({ description: 'function+0xoffset that freed the packet' }),
  stack: Type.Array(Type.String(), { description: 'kernel stack from the location outwards' }),
  cause: Type.String({ description: 'plain-language cause and what to check' }),
  proto: Proto,
  reason_code: Type.Integer({ description: 'enum skb_drop_reason value, subsystem in the high 16 bits' }),
  packet_id: Type.String({ description: "the dropped packet's packet_id (as in PACKET): the same packet seen before the drop" }),
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
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    parameter: Type.Optional(Type.String({ description: 'the query or path parameter at fault' })),
  }),
});

/** The error statuses every data route may answer with. */
export const ErrorResponses = { 400: ErrorSchema, 404: ErrorSchema, 429: ErrorSchema, 500: ErrorSchema, 503: ErrorSchema };

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
    points: Type.Optional(
      Type.String({ maxLength: 4096, description: 'only these capture points, comma-separated node/netns/iface (as if_name in the file)' }),
    ),
  },
  { additionalProperties: false },
);

const AddressOrCidr = (description: string) =>
  Type.Optional(Type.String({ maxLength: 64, description: `${description}: an IPv4 or IPv6 address or CIDR range (10.0.0.0/8, fd00::/16)` }));
const QueryPort = (description: string) => Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description }));
const QueryTime = (description: string) =>
  Type.Optional(Type.String({ maxLength: 64, description: `${description}: ISO-8601 (2026-11-21T19:23:03.123456789Z) or epoch milliseconds` }));
const PointName = (description: string) => Type.Optional(Type.String({ minLength: 1, maxLength: 256, description }));
/** How many results a search answers with when `limit` is not given. */
export const DEFAULT_LIMIT = 100;
const Limit = (options: { description?: string } = {}) => Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: DEFAULT_LIMIT, ...options }));
const Cursor = Type.Optional(Type.String({ maxLength: 2048, description: 'next_cursor of the previous page (same filters and order)' }));
const NextCursor = Type.Union([Type.String(), Type.Null()], { description: 'pass as cursor= for the next page; null on the last page' });
/** A parameter that may be repeated: `has=retrans&has=rst`. */
const Repeatable = <const Values extends string[]>(values: readonly [...Values], description: string) =>
  Type.Optional(Type.Array(Type.Enum(values), { maxItems: values.length, description }));

export const FlowsQuery = Type.Object(
  {
    ip: AddressOrCidr('either side'),
    src: AddressOrCidr('the client (the side that opened the connection)'),
    dst: AddressOrCidr('the server'),
    port: QueryPort('either side\'s port'),
    sport: QueryPort("the client's port"),
    dport: QueryPort("the server's port"),
    proto: Type.Optional(Proto),
    from: QueryTime('flows active at or after'),
    to: QueryTime('flows active at or before'),
    state: Repeatable(CONN_STATES, "Zeek conn_state; repeat for any of several (state=S0&state=REJ)"),
    has: Repeatable(FLOW_TRAITS, 'flows with retransmissions, a zero window, a drop or a reset; repeat for all of several'),
    node: PointName('capture point: node'),
    netns: PointName('capture point: network namespace'),
    iface: PointName('capture point: interface'),
    limit: Limit({ description: 'flows per page' }),
    cursor: Cursor,
    order: Type.Optional(
      Type.Enum(FLOW_ORDERS, { default: DEFAULT_FLOW_ORDER, description: 'sort key, descending with a leading -; ties in id order' }),
    ),
  },
  { additionalProperties: false },
);

export const FlowsResponse = Type.Object({
  flows: Type.Array(FlowSchema),
  next_cursor: NextCursor,
});

export const FlowIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) });

export const DropsQuery = Type.Object(
  {
    ip: AddressOrCidr('either side of the dropped packet'),
    src: AddressOrCidr("the dropped packet's source"),
    dst: AddressOrCidr("the dropped packet's destination"),
    port: QueryPort("either of the dropped packet's ports"),
    sport: QueryPort("the dropped packet's source port"),
    dport: QueryPort("the dropped packet's destination port"),
    proto: Type.Optional(Proto),
    from: QueryTime('drops at or after'),
    to: QueryTime('drops at or before'),
    reason: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Za-z0-9_]{1,64}$' }), { maxItems: 32, description: 'drop reason (NETFILTER_DROP); repeat for any of several' }),
    ),
    node: PointName('where it was dropped: node'),
    netns: PointName('where it was dropped: network namespace'),
    iface: PointName('where it was dropped: interface'),
    limit: Limit({ description: 'drops per page' }),
    cursor: Cursor,
    order: Type.Optional(Type.Enum(DROP_ORDERS, { default: DEFAULT_DROP_ORDER, description: 'by time, newest first (-ts) or oldest first' })),
  },
  { additionalProperties: false },
);

export const DropsResponse = Type.Object({
  drops: Type.Array(DropSchema),
  next_cursor: NextCursor,
});

export const NatQuery = Type.Object(
  {
    ip: Type.Optional(Type.String({ maxLength: 64, description: "an address of the entry's original or reply tuple (IPv4 or IPv6)" })),
    port: QueryPort("a port of the entry's original or reply tuple"),
    proto: Type.Optional(Proto),
    node: PointName('where the translation was recorded: node'),
    netns: PointName('where the translation was recorded: network namespace'),
    from: QueryTime('entries seen at or after'),
    to: QueryTime('entries seen at or before'),
    limit: Limit(),
  },
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

/** Kernel counters of a capture point (struct nt_point_stats); every packet a program sees lands in one. */
const KernelCounters = {
  events: Type.Optional(Type.Integer({ description: 'written to the ring buffer' })),
  filtered: Type.Optional(Type.Integer({ description: 'left out by the capture filter' })),
  not_ip: Type.Optional(Type.Integer()),
  other_l4: Type.Optional(Type.Integer({ description: 'IP but neither TCP nor UDP' })),
};

/** The drop tracer's counters (capture/drops/tracer.ts): every kfree_skb in a traced namespace counts in `seen` and one other. */
export const DropTracingSchema = Type.Object({
  namespaces: Type.Integer({ description: 'namespaces traced' }),
  seen: Type.Integer(),
  reported: Type.Integer(),
  ignored: Type.Integer({ description: 'a reason in ignored_reasons (no loss of a packet in flight)' }),
  unparsed: Type.Integer({ description: 'no IPv4/IPv6 TCP/UDP header (ARP, ICMP, ...)' }),
  filtered: Type.Integer({ description: 'left out by the capture filter' }),
  rate_limited: Type.Integer(),
  ring_full: Type.Integer(),
  malformed: Type.Integer({ description: 'events user space could not decode' }),
  rate_limit: Type.Integer({ description: 'events per second per CPU; 0: none' }),
  ignored_reasons: Type.Array(Type.String()),
});

/** The flow-log writer's state per table (flowlog/writer.ts): rows accepted, written, refused, buffered; failing inserts. */
export const StoreStatusSchema = Type.Object({
  failing: Type.Boolean({ description: 'inserts into some table fail: its rows stay buffered (up to the bound, then are counted dropped) and are retried' }),
  tables: Type.Record(
    Type.String(),
    Type.Object({
      accepted: Type.Integer(),
      written: Type.Integer(),
      dropped: Type.Integer({ description: 'refused: the buffer was full' }),
      failures: Type.Integer({ description: 'failed inserts (retried)' }),
      consecutive_failures: Type.Integer({ description: 'failed inserts since the last that succeeded; > 0 while the store refuses this table' }),
      buffered_rows: Type.Integer(),
      buffered_bytes: Type.Integer(),
    }),
  ),
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
      ...KernelCounters,
      malformed: Type.Optional(Type.Integer({ description: 'truncated or inconsistent headers' })),
      events_per_s: Type.Optional(Type.Number()),
      lost_per_s: Type.Optional(Type.Number()),
      by_hook: Type.Optional(Type.Array(Type.Object({ hook: Type.String(), ...KernelCounters, lost: Type.Integer(), malformed: Type.Integer() }))),
    }),
  ),
  packets: Type.Integer(),
  lost: Type.Integer(),
  malformed: Type.Integer(),
  skipped: Type.Array(Type.Object({ netns: Type.String(), iface: Type.String(), reason: Type.String() })),
  ...KernelCounters,
  events_per_s: Type.Optional(Type.Number()),
  lost_per_s: Type.Optional(Type.Number()),
  undecodable: Type.Optional(Type.Integer({ description: 'ring-buffer records user space could not decode (part of malformed)' })),
  unattributed_fragments: Type.Optional(Type.Integer({ description: 'later IP fragments whose first fragment was not seen' })),
  ring_bytes: Type.Optional(Type.Integer()),
  snaplen: Type.Optional(Type.Integer({ description: '0: the L2-L4 headers only' })),
  xdp: Type.Optional(Type.String()),
  filter: Type.Optional(Type.Object({ nets: Type.Array(Type.String()), ports: Type.Array(Type.Integer()), protos: Type.Array(Type.String()) })),
  drops: Type.Optional(DropTracingSchema),
  store: Type.Optional(StoreStatusSchema),
});

export type FourTupleJson = Static<typeof FourTupleSchema>;
export type NatHopJson = Static<typeof NatHopSchema>;
export type FlowJson = Static<typeof FlowSchema>;
export type FlowsQueryJson = Static<typeof FlowsQuery>;
export type FlowsResponseJson = Static<typeof FlowsResponse>;
export type PacketJson = Static<typeof PacketSchema>;
export type ConnectionJson = Static<typeof ConnectionSchema>;
export type DropJson = Static<typeof DropSchema>;
export type DropTracingJson = Static<typeof DropTracingSchema>;
export type DropsResponseJson = Static<typeof DropsResponse>;
export type NatQueryJson = Static<typeof NatQuery>;
export type NatTranslationJson = Static<typeof NatTranslationSchema>;
