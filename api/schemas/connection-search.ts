// The connection search: one row per connection (its flows at every capture
// point grouped by connection id), with the flow search's filters.
import { Type, type Static } from 'typebox';
import { Cursor, Directional, FourTupleSchema, Limit, NextCursor, Proto, Time } from './common.js';
import { FlowFilterParameters } from './flows.js';

export const ConnectionSearchQuery = Type.Object(
  {
    ...FlowFilterParameters,
    limit: Limit({ description: 'connections per page' }),
    cursor: Cursor,
  },
  { additionalProperties: false, description: 'a connection matches when any of its flows matches every filter given' },
);

/** One capture point of a connection: its flow there. */
export const ConnectionPointSchema = Type.Object({
  node: Type.String(),
  netns: Type.String(),
  iface: Type.String(),
  flow_id: Type.String(),
  start: Time,
  tuple: FourTupleSchema,
  packets: Directional,
  bytes: Directional,
  conn_state: Type.String({ description: 'Zeek conn.log conn_state at this point' }),
});

export const InferredHopSchema = Type.Object({
  kind: Type.Union([Type.Literal('SNAT'), Type.Literal('DNAT'), Type.Literal('FULLNAT')]),
  before: FourTupleSchema,
  after: FourTupleSchema,
});

/** Whether any of its flows has each trait, as has= filters flows (flowlog/flow-search.ts FLOW_TRAITS). */
export const ConnectionMarksSchema = Type.Object({
  retrans: Type.Boolean(),
  zero_window: Type.Boolean(),
  drop: Type.Boolean(),
  rst: Type.Boolean(),
});

export const ConnectionRowSchema = Type.Object({
  id: Type.String({ description: 'connection id: the id of its earliest flow; /connection?id= in the UI' }),
  proto: Proto,
  first_seen: Time,
  last_seen: Time,
  client_tuple: FourTupleSchema,
  server_tuple: FourTupleSchema,
  conn_state: Type.String({ description: 'Zeek conn.log conn_state of the client-side flow' }),
  marks: ConnectionMarksSchema,
  points: Type.Array(ConnectionPointSchema, { description: 'its capture points in path order (by the start of the flow there)' }),
  tuples: Type.Array(FourTupleSchema, { description: 'its distinct tuples in path order, client side first' }),
  hops: Type.Array(InferredHopSchema, { description: 'NAT hops between consecutive tuples' }),
});

export const ConnectionSearchResponse = Type.Object({
  connections: Type.Array(ConnectionRowSchema),
  next_cursor: NextCursor,
});

export type ConnectionRowJson = Static<typeof ConnectionRowSchema>;
export type ConnectionSearchQueryJson = Static<typeof ConnectionSearchQuery>;
export type ConnectionSearchResponseJson = Static<typeof ConnectionSearchResponse>;
