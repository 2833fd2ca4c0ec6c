// NAT: a translation on a connection's path (a hop) and the translations search.
import { Type, type Static } from 'typebox';
import { Formatted, FourTupleSchema, Limit, PointName, Proto, QueryPort, QueryTime, Time } from './common.js';

export const NatHopSchema = Type.Object({
  kind: Type.Union([Type.Literal('SNAT'), Type.Literal('DNAT'), Type.Literal('FULLNAT')]),
  via: Type.Union([Type.Literal('iptables'), Type.Literal('ipvs'), Type.Literal('ovs'), Type.Literal('tcp-seq')]),
  node: Type.String(),
  netns: Type.String(),
  zone: Type.Integer(),
  before: FourTupleSchema,
  after: FourTupleSchema,
});

export const NatQuery = Type.Object(
  {
    ip: Type.Optional(Formatted('ip-address', { maxLength: 64, description: "an address of the entry's original or reply tuple (IPv4 or IPv6)" })),
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

export type NatHopJson = Static<typeof NatHopSchema>;
export type NatQueryJson = Static<typeof NatQuery>;
export type NatTranslationJson = Static<typeof NatTranslationSchema>;
