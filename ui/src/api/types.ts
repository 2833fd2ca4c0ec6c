// The HTTP API's JSON shapes, as described in /work/shared/contract.md.

/** ISO-8601 UTC with nanoseconds, e.g. 2026-11-21T19:23:03.123456789Z. */
export type IsoTime = string;

export type Proto = 'tcp' | 'udp';

export interface FourTuple {
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

/** Where a packet was seen. */
export interface CapturePointRef {
  node: string;
  netns: string;
  iface: string;
}

export type NatKind = 'SNAT' | 'DNAT' | 'FULLNAT';
export type NatVia = 'iptables' | 'ipvs' | 'ovs' | 'tcp-seq';

export interface NatHop {
  kind: NatKind;
  via: NatVia;
  node: string;
  netns: string;
  zone: number;
  before: FourTuple;
  after: FourTuple;
}

export interface CapturePointStats extends CapturePointRef {
  packets: number;
  bytes: number;
}

export interface Directional {
  c2s: number;
  s2c: number;
}

export interface Endpoint {
  ip: string;
  port: number;
}

export type CloseKind = 'fin' | 'rst' | 'timeout' | 'open';

/** One five-tuple at one capture point; conn_state and history use Zeek's conn.log codes. */
export interface Flow extends CapturePointRef {
  id: string;
  proto: Proto;
  client: Endpoint;
  server: Endpoint;
  start: IsoTime;
  end: IsoTime;
  /** Nanoseconds as a decimal string (64-bit). */
  duration_ns: string;
  packets: Directional;
  bytes: Directional;
  conn_state: string;
  history: string;
  rtt_ns: number | null;
  retrans: Directional;
  zero_window: Directional;
  out_of_order: Directional;
  close: CloseKind;
  syn_seq: number | null;
  syn_ack_seq: number | null;
}

export interface Drop extends CapturePointRef, FourTuple {
  ts: IsoTime;
  proto: Proto;
  /** The kernel's skb_drop_reason name, e.g. NETFILTER_DROP. */
  reason: string;
  reason_code: number;
  /** function+0xoffset that freed the packet. */
  location: string;
  /** Kernel stack from the location outwards. */
  stack: string[];
  /** Plain-language explanation; may be empty. */
  cause: string;
  /** The dropped packet's packet_id: the same packet as seen by capture points before the drop. */
  packet_id: string;
}

export interface Connection {
  proto: Proto;
  first_seen: IsoTime;
  last_seen: IsoTime;
  /** Every tuple the connection had, client side first. */
  tuples: FourTuple[];
  /** In path order. */
  hops: NatHop[];
  points: CapturePointStats[];
  flows: Flow[];
  drops: Drop[];
}

export interface ConnectionResponse {
  connection: Connection;
}

export type TcpFlag = 'FIN' | 'SYN' | 'RST' | 'PSH' | 'ACK' | 'URG' | 'ECE' | 'CWR';

/** Absent fields were not present in the packet. */
export interface TcpOptions {
  mss?: number;
  wscale?: number;
  sack_perm?: boolean;
  ts_val?: number;
  ts_ecr?: number;
  sack?: Array<[number, number]>;
}

export type PacketDirection = 'ingress' | 'egress';
export type CaptureHook = 'tc' | 'xdp';

export interface Packet extends CapturePointRef, FourTuple {
  ts: IsoTime;
  direction: PacketDirection;
  hook: CaptureHook;
  seq: number;
  ack: number;
  flags: TcpFlag[];
  win: number;
  len: number;
  options: TcpOptions;
  /** Equal for the same packet seen at several capture points. */
  packet_id: string;
}

/** Packets and drops in time order, all hops. */
export interface TimelineResponse {
  packets: Packet[];
  drops: Drop[];
}

export interface FlowsResponse {
  flows: Flow[];
  next_cursor: string | null;
}

export const FLOW_TRAITS = ['retrans', 'zero_window', 'drop', 'rst'] as const;
export type FlowTrait = (typeof FLOW_TRAITS)[number];

/** Sort keys of the flow search; a leading - sorts descending. */
export const FLOW_ORDERS = ['-start', 'start', '-end', 'end', '-duration', 'duration', '-bytes', 'bytes', '-packets', 'packets'] as const;
export type FlowOrder = (typeof FLOW_ORDERS)[number];

/**
 * Query parameters of GET /api/v1/flows, as typed by the user: the server validates them
 * (and answers 400 naming the parameter). Times are ISO-8601 or epoch milliseconds;
 * every listed state is accepted (any of), every listed trait is required (all of).
 */
export interface FlowQuery {
  ip?: string;
  src?: string;
  dst?: string;
  port?: string;
  sport?: string;
  dport?: string;
  proto?: string;
  from?: string;
  to?: string;
  state?: string[];
  has?: FlowTrait[];
  node?: string;
  netns?: string;
  iface?: string;
  order?: FlowOrder;
  limit?: number;
  cursor?: string;
}

export interface ApiErrorBody {
  error: {
    code: string;
    message: string;
    /** The query or path parameter at fault, when one is. */
    parameter?: string;
  };
}
