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
  duration_ns: number;
  packets: Directional;
  bytes: Directional;
  conn_state: string;
  history: string;
  rtt_ns: number | null;
  retrans: Directional;
  zero_window: Directional;
  close: CloseKind;
  syn_seq: number | null;
  syn_ack_seq: number | null;
}

export interface Drop extends CapturePointRef, FourTuple {
  ts: IsoTime;
  reason: string;
  location: string;
  stack: string[];
  /** Plain-language explanation; may be empty. */
  cause: string;
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

export type FlowTrait = 'retrans' | 'zero_window' | 'drop' | 'rst';

/** Query parameters of GET /api/v1/flows. Times are ISO-8601 or epoch milliseconds. */
export interface FlowFilters {
  ip?: string;
  src?: string;
  dst?: string;
  port?: number;
  sport?: number;
  dport?: number;
  proto?: Proto;
  from?: string;
  to?: string;
  state?: string;
  has?: FlowTrait;
  node?: string;
  netns?: string;
  iface?: string;
  limit?: number;
  cursor?: string;
  order?: string;
}

export interface ApiErrorBody {
  error: {
    code: string;
    message: string;
  };
}
