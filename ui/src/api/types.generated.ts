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

/** flows on the lo interface or with a loopback address (127.0.0.0/8, ::1): kept, left out (exclude) or the only ones (only) */
export type LoopbackChoice = 'include' | 'exclude' | 'only';

export interface ConnectionRow {
  /** connection id: the id of its earliest flow; /connection?id= in the UI */
  id: string;
  proto: Proto;
  first_seen: IsoTime;
  last_seen: IsoTime;
  client_tuple: FourTuple;
  server_tuple: FourTuple;
  /** Zeek conn.log conn_state of the client-side flow */
  conn_state: string;
  marks: {
    retrans: boolean;
    zero_window: boolean;
    drop: boolean;
    rst: boolean;
  };
  /** its capture points in path order (by the start of the flow there) */
  points: {
    node: string;
    netns: string;
    iface: string;
    flow_id: string;
    start: IsoTime;
    tuple: FourTuple;
    packets: Directional;
    bytes: Directional;
    /** Zeek conn.log conn_state at this point */
    conn_state: string;
  }[];
  /** its distinct tuples in path order, client side first */
  tuples: FourTuple[];
  /** NAT hops between consecutive tuples */
  hops: {
    kind: 'SNAT' | 'DNAT' | 'FULLNAT';
    before: FourTuple;
    after: FourTuple;
  }[];
}

export interface ConnectionSearchResponse {
  connections: ConnectionRow[];
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
  /** lost: no capture point saw the packet after the drop (a loss); copy: the same packet went on elsewhere (OTHERHOST on a bridge or OVS port, a flooded frame); consumed: its TCP endpoint processed it, then the kernel freed it; unknown: not decided (stored before fates were), counted as lost */
  fate: 'unknown' | 'lost' | 'copy' | 'consumed';
  /** the evidence for the fate, in words: where and how much later (or earlier) the packet was seen */
  fate_proof: string;
  /** node/netns/iface of the sighting the fate rests on; null for none */
  seen_at: string | null;
  /** that sighting's time minus the drop's, in µs (negative: before the drop); null for none */
  seen_delta_us: number | null;
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
  /** the IPv4 identification (0 for IPv6) */
  ip_id: number;
  /** the packet's length on the wire, in bytes */
  wire_len: number;
  /** the captured header bytes (link layer to transport layer, as in the PCAP), as hex */
  headers: string;
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

export interface EvidencePacket {
  node: string;
  netns: string;
  iface: string;
  /** as in the timeline: the row of this packet at this point */
  packet_id: string;
  ts: IsoTime;
  /** c2s: client to server */
  way: 'c2s' | 's2c';
  /** what it shows: lost, retransmission, syn, syn-ack, rst, small-segment, delayed-ack, held-back, zero-window, window-open, request-end, response-start, passed, sent, delayed */
  role: string;
  seq: number;
  len: number;
  flags: string[];
}

export interface Finding {
  kind: 'lost' | 'handshake' | 'reset' | 'nagle-delayed-ack' | 'receive-window' | 'mtu-blackhole' | 'slow-server' | 'hop-delay';
  severity: 'error' | 'warning';
  /** which way the packets it is about went; null for both */
  way: 'c2s' | 's2c' | null;
  /** one plain sentence */
  summary: string;
  where: {
    from: {
      node: string;
      netns: string;
      iface: string;
    };
    /** for a hop: the next point; null at one point */
    to: {
      node: string;
      netns: string;
      iface: string;
    } | null;
    text: string;
  };
  evidence: {
    packets: EvidencePacket[];
    drops: Drop[];
    figures: {
      /** with its unit: retransmit_after_ms_median, lost, ... */
      name: string;
      value: number;
    }[];
  };
  advice: string;
}

export interface DiagnosisResponse {
  connection_id: string | null;
  /** capture points from the client side to the server side */
  path: {
    node: string;
    netns: string;
    iface: string;
  }[];
  /** errors first; none for a healthy connection */
  findings: Finding[];
  timing: {
    /** SYN to the ACK of the SYN-ACK as each point saw it, client side first; a hop pair took the difference */
    handshake: {
      point: {
        node: string;
        netns: string;
        iface: string;
      };
      rtt_ns: number;
    }[];
    /** request/response turns seen at the server side */
    exchanges: number;
    /** request's last byte in at the server's point to the response's first byte out, summed over the turns */
    server_ns: number;
    /** the rest of the turns as the client side saw them */
    network_ns: number;
    hops: {
      from: {
        node: string;
        netns: string;
        iface: string;
      };
      to: {
        node: string;
        netns: string;
        iface: string;
      };
      /** c2s: client to server */
      way: 'c2s' | 's2c';
      /** packets seen at both points */
      packets: number;
      median_ns: number;
      max_ns: number;
    }[];
  };
  /** packets read */
  packets: number;
  /** only the first packets of a very long connection were read */
  truncated: boolean;
}

export interface CaptureStatus {
  capturing: boolean;
  points: {
    node: string;
    netns: string;
    iface: string;
    ifindex: number;
    hooks: string[];
    packets: number;
    lost: number;
    /** written to the ring buffer */
    events?: number;
    /** left out by the capture filter */
    filtered?: number;
    not_ip?: number;
    /** IP but neither TCP nor UDP */
    other_l4?: number;
    /** truncated or inconsistent headers */
    malformed?: number;
    /** per second since an earlier read of the status 1 to 60 s before; absent at a first read */
    events_per_s?: number;
    /** per second since an earlier read of the status 1 to 60 s before; absent at a first read */
    lost_per_s?: number;
    by_hook?: {
      hook: string;
      /** written to the ring buffer */
      events?: number;
      /** left out by the capture filter */
      filtered?: number;
      not_ip?: number;
      /** IP but neither TCP nor UDP */
      other_l4?: number;
      lost: number;
      malformed: number;
    }[];
  }[];
  packets: number;
  lost: number;
  malformed: number;
  skipped: {
    netns: string;
    iface: string;
    reason: string;
  }[];
  /** written to the ring buffer */
  events?: number;
  /** left out by the capture filter */
  filtered?: number;
  not_ip?: number;
  /** IP but neither TCP nor UDP */
  other_l4?: number;
  /** per second since an earlier read of the status 1 to 60 s before; absent at a first read */
  events_per_s?: number;
  /** per second since an earlier read of the status 1 to 60 s before; absent at a first read */
  lost_per_s?: number;
  /** ring-buffer records user space could not decode (part of malformed) */
  undecodable?: number;
  /** later IP fragments whose first fragment was not seen */
  unattributed_fragments?: number;
  ring_bytes?: number;
  /** 0: the L2-L4 headers only */
  snaplen?: number;
  xdp?: string;
  filter?: {
    nets: string[];
    ports: number[];
    protos: string[];
  };
  drops?: {
    /** namespaces traced */
    namespaces: number;
    /** kfree_skb calls in traced namespaces: every free, not every loss */
    seen: number;
    /** frees reported, whatever their fate (copies and consumed packets included): see fates for the losses */
    reported: number;
    /** a reason in ignored_reasons (no loss of a packet in flight) */
    ignored: number;
    /** no IPv4/IPv6 TCP/UDP header (ARP, ICMP, ...) */
    unparsed: number;
    /** left out by the capture filter */
    filtered: number;
    rate_limited: number;
    ring_full: number;
    /** events user space could not decode */
    malformed: number;
    /** events per second per CPU; 0: none */
    rate_limit: number;
    ignored_reasons: string[];
    /** reported drops whose fate this process decided, per fate (docs/drops.md, "Fate") */
    fates?: {
      /** no capture point saw the packet after the drop: the losses */
      lost: number;
      /** the same packet went on elsewhere */
      copy: number;
      /** its endpoint processed it, then the kernel freed it */
      consumed: number;
      /** not decided (the store could not be asked); counted as lost */
      unknown: number;
    };
  };
  nat?: {
    conntrack: {
      /** namespaces whose conntrack table is read */
      namespaces: number;
      /** conntrack event messages received (NEW, UPDATE, DESTROY) */
      events: number;
      /** dumps of a table completed */
      dumps: number;
      /** times a receive buffer overflowed (ENOBUFS): events were lost, and a dump followed each */
      overflows: number;
      per_namespace: {
        netns: string;
        /** conntrack event messages received (NEW, UPDATE, DESTROY) */
        events: number;
        /** dumps of a table completed */
        dumps: number;
        /** times a receive buffer overflowed (ENOBUFS): events were lost, and a dump followed each */
        overflows: number;
      }[];
    };
    ipvs: {
      /** the kernel has IPVS: /proc/net/ip_vs_conn is read in every namespace */
      available: boolean;
      namespaces: number;
      /** namespaces whose last read failed */
      failing: {
        netns: string;
        error: string;
      }[];
    };
    /** each ovs-vswitchd run directory polled (--ovs-rundir) */
    ovs: {
      rundir: string;
      /** why its last poll failed; null: it reads */
      error: string | null;
    }[];
  };
  store?: {
    /** inserts into some table fail: its rows stay buffered (up to the bound, then are counted dropped) and are retried */
    failing: boolean;
    tables: Record<string, {
      accepted: number;
      written: number;
      /** refused: the buffer was full */
      dropped: number;
      /** failed inserts (retried) */
      failures: number;
      /** failed inserts since the last that succeeded; > 0 while the store refuses this table */
      consecutive_failures: number;
      buffered_rows: number;
      buffered_bytes: number;
    }>;
  };
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
