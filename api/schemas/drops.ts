// Drops: a packet the kernel freed on a connection's path, and the drop search.
import { Type, type Static } from 'typebox';
import { DEFAULT_DROP_ORDER, DROP_FATES, DROP_ORDERS } from '../../flowlog/drops-table.js';
import { AddressOrCidr, Cursor, Limit, NextCursor, PointName, Port, Proto, QueryPort, QueryTime, Repeatable, Time } from './common.js';

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
  fate: Type.Enum(DROP_FATES, {
    description: 'lost: no capture point saw the packet after the drop (a loss); copy: the same packet went on elsewhere (OTHERHOST on a bridge or OVS port, a flooded frame); consumed: its TCP endpoint processed it, then the kernel freed it; unknown: not decided (stored before fates were), counted as lost',
  }),
  fate_proof: Type.String({ description: 'the evidence for the fate, in words: where and how much later (or earlier) the packet was seen' }),
  seen_at: Type.Union([Type.String(), Type.Null()], { description: 'node/netns/iface of the sighting the fate rests on; null for none' }),
  seen_delta_us: Type.Union([Type.Number(), Type.Null()], { description: "that sighting's time minus the drop's, in µs (negative: before the drop); null for none" }),
});

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
    fate: Repeatable(DROP_FATES, 'drop fate (lost); repeat for any of several'),
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

export type DropJson = Static<typeof DropSchema>;
export type DropsResponseJson = Static<typeof DropsResponse>;
