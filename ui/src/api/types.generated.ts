// The HTTP API's JSON shapes, generated from its TypeBox schemas (api/schemas/)
// by api/ui-types/write.ts at every UI build: do not edit (see api/ui-types/ui-types.ts).

/** ISO-8601 UTC with nanoseconds, e.g. 2026-11-21T19:23:03.123456789Z */
export type IsoTime = string;

export type Proto = 'tcp' | 'udp';

export interface FourTuple {
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

export interface Directional {
  c2s: number;
  s2c: number;
}

export interface Endpoint {
  ip: string;
  port: number;
}

export interface NatHop {
  kind: 'SNAT' | 'DNAT' | 'FULLNAT';
  via: 'iptables' | 'ipvs' | 'ovs' | 'tcp-seq';
  node: string;
  netns: string;
  zone: number;
  before: FourTuple;
  after: FourTuple;
}

export interface CapturePointStats {
  node: string;
  netns: string;
  iface: string;
  packets: number;
  bytes: number;
}

export interface Flow {
  /** this flow: one incarnation of a five-tuple at one capture point */
  id: string;
  /** its connection, the same at every capture point (docs/connections.md); /api/v1/connections?id=... shows it */
  connection_id: string;
  proto: Proto;
  client: Endpoint;
  server: Endpoint;
  node: string;
  netns: string;
  iface: string;
  start: IsoTime;
  end: IsoTime;
  /** nanoseconds, as a decimal string (64-bit) */
  duration_ns: string;
  packets: Directional;
  bytes: Directional;
  /** Zeek conn.log conn_state */
  conn_state: string;
  /** Zeek conn.log history */
  history: string;
  rtt_ns: number | null;
  retrans: Directional;
  zero_window: Directional;
  out_of_order: Directional;
  close: 'fin' | 'rst' | 'timeout' | 'open';
  syn_seq: number | null;
  syn_ack_seq: number | null;
}

export type FlowTrait = 'retrans' | 'zero_window' | 'drop' | 'rst';

/** sort key, descending with a leading -; ties in id order */
export type FlowOrder = 'start' | '-start' | 'end' | '-end' | 'duration' | '-duration' | 'bytes' | '-bytes' | 'packets' | '-packets';

export interface FlowsResponse {
  flows: Flow[];
  /** pass as cursor= for the next page; null on the last page */
  next_cursor: string | null;
}

export interface Drop {
  ts: IsoTime;
  node: string;
  netns: string;
  iface: string;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** the kernel's name (enum skb_drop_reason, read from its BTF), or the number when it has none */
  reason: string;
  /** function+0xoffset that freed the packet */
  location: string;
  /** kernel stack from the location outwards */
  stack: string[];
  /** plain-language cause and what to check */
  cause: string;
  proto: Proto;
  /** enum skb_drop_reason value, subsystem in the high 16 bits */
  reason_code: number;
  /** the dropped packet's packet_id (as in PACKET): the same packet seen before the drop */
  packet_id: string;
}

export interface TcpOptions {
  mss?: number;
  wscale?: number;
  sack_perm?: boolean;
  ts_val?: number;
  ts_ecr?: number;
  sack?: number[][];
}

export interface Packet {
  ts: IsoTime;
  node: string;
  netns: string;
  iface: string;
  direction: 'ingress' | 'egress';
  hook: 'tc' | 'xdp';
  src: string;
  sport: number;
  dst: string;
  dport: number;
  seq: number;
  ack: number;
  flags: string[];
  win: number;
  len: number;
  options: TcpOptions;
  /** 64-bit id as 16 hex digits; equal for the same packet at several points */
  packet_id: string;
}

export interface Connection {
  /** the connection id, the same at every capture point (its earliest flow's id); null for a connection known only by NAT entries or drops */
  id: string | null;
  proto: Proto;
  first_seen: IsoTime;
  last_seen: IsoTime;
  /** the other connections that used any of its tuples, oldest first */
  others: {
    /** its connection id: /api/v1/connections?id=... shows it */
    id: string;
    first_seen: IsoTime;
    last_seen: IsoTime;
    /** capture points that saw it */
    points: number;
    /** the client's initial sequence number (TCP, when its SYN was seen) */
    isn: number | null;
  }[];
  tuples: FourTuple[];
  hops: NatHop[];
  points: CapturePointStats[];
  flows: Flow[];
  drops: Drop[];
}

export interface ConnectionResponse {
  connection: Connection;
}

export interface TimelineResponse {
  packets: Packet[];
  drops: Drop[];
}

export interface ApiErrorBody {
  error: {
    code: string;
    message: string;
    /** the query or path parameter at fault */
    parameter?: string;
  };
  /** a 400: every parameter at fault, each once (error is the first of them) */
  errors?: {
    code: string;
    message: string;
    /** the query or path parameter at fault */
    parameter?: string;
  }[];
}

export const FLOW_TRAITS = ['retrans', 'zero_window', 'drop', 'rst'] as const;

export const FLOW_ORDERS = ['start', '-start', 'end', '-end', 'duration', '-duration', 'bytes', '-bytes', 'packets', '-packets'] as const;
