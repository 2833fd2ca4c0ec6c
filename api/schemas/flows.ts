// Flows: one five-tuple at one capture point, and the flow search.
import { Type, type Static } from 'typebox';
import { CONN_STATES, DEFAULT_FLOW_ORDER, FLOW_ORDERS, FLOW_TRAITS, LOOPBACK_CHOICES } from '../../flowlog/flow-search.js';
import { AddressOrCidr, Cursor, Directional, Limit, NextCursor, PointName, Port, Proto, QueryPort, QueryTime, Repeatable, Time } from './common.js';

/** One side of a flow. */
export const Endpoint = Type.Object({ ip: Type.String(), port: Port });

export const FlowSchema = Type.Object({
  id: Type.String({ description: 'this flow: one incarnation of a five-tuple at one capture point' }),
  connection_id: Type.String({ description: 'its connection, the same at every capture point (docs/connections.md); /api/v1/connections?id=... shows it' }),
  proto: Proto,
  client: Endpoint,
  server: Endpoint,
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

/** The flow filters, as the flow search and the connection search (schemas/connection-search.ts) take them. */
export const FlowFilterParameters = {
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
  loopback: Type.Optional(
    Type.Enum(LOOPBACK_CHOICES, {
      default: 'include',
      description: 'flows on the lo interface or with a loopback address (127.0.0.0/8, ::1): kept, left out (exclude) or the only ones (only)',
    }),
  ),
};

export const FlowsQuery = Type.Object(
  {
    ...FlowFilterParameters,
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

export type FlowJson = Static<typeof FlowSchema>;
export type FlowsQueryJson = Static<typeof FlowsQuery>;
export type FlowsResponseJson = Static<typeof FlowsResponse>;
