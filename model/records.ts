// The records nettrail stores and serves. Capture, the NAT tracker, the store,
// the API and the PCAP writer all speak these types; the kernel event layouts
// live in bpf/*.h and capture/packets/layout.ts, and end at capture's decoder.

/** Timestamps are nanoseconds since the Unix epoch (UTC, wall clock). */
export type EpochNs = bigint;

export type Proto = 'tcp' | 'udp';
export type Direction = 'ingress' | 'egress';
export type Hook = 'tc' | 'xdp';

/** One direction of a connection as seen at one place. Addresses are text (IPv4 dotted, IPv6 RFC 5952). */
export interface FourTuple {
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

/** A network namespace: `name` is `root`, a name under /run/netns, or `pid:<PID>` for a process's. */
export interface NetnsRef {
  name: string;
  /** A path that opens the namespace: /proc/1/ns/net, /run/netns/NAME or /proc/PID/ns/net. */
  path: string;
  /** The namespace's inode number, as the kernel reports it (net->ns.inum). */
  ino: number;
}

/** Where a packet was seen. */
export interface CapturePoint {
  node: string;
  netns: string;
  iface: string;
}

/** TCP options as carried by the packet; absent fields were not present. */
export interface TcpOptions {
  mss?: number;
  wscale?: number;
  sack_perm?: boolean;
  ts_val?: number;
  ts_ecr?: number;
  sack?: Array<[number, number]>;
}

/** One packet header seen at one capture point. */
export interface PacketRecord extends CapturePoint, FourTuple {
  ts: EpochNs;
  netnsIno: number;
  ifindex: number;
  hook: Hook;
  direction: Direction;
  proto: Proto;
  /** IPv4 identification (0 for IPv6). */
  ipId: number;
  seq: number;
  ack: number;
  /** TCP flag bits (TCP_FLAGS in protocol.ts); 0 for UDP. */
  flags: number;
  win: number;
  /** L4 payload length in bytes. */
  len: number;
  /** Length of the packet on the wire from the start of `headers`' link layer. */
  wireLen: number;
  options: TcpOptions;
  /** Equal for the same packet seen at several points (built from fields NAT does not rewrite). */
  packetId: bigint;
  /** LINKTYPE_* (protocol.ts) of `headers`. */
  linkType: number;
  /** The packet's first bytes from the link-layer header on (headers only unless payload capture is on). */
  headers: Uint8Array;
  /** Set for IP fragments: `later` ones carry no L4 header (seq, ack, flags 0; ports those of their first fragment, if seen). Not stored. */
  fragment?: 'first' | 'later';
}

export type CloseType = 'fin' | 'rst' | 'timeout' | 'open';

export interface Directional {
  c2s: number;
  s2c: number;
}

/** One five-tuple at one capture point; client is the side that sent the first SYN (or first packet). */
export interface FlowRecord extends CapturePoint {
  /** This flow: one incarnation of a five-tuple at one capture point. */
  id: string;
  /** The connection it is part of, the same at every capture point: the id of the connection's earliest flow. */
  connectionId: string;
  proto: Proto;
  client: { ip: string; port: number };
  server: { ip: string; port: number };
  start: EpochNs;
  end: EpochNs;
  packets: Directional;
  bytes: Directional;
  /** Zeek conn.log conn_state (S0, S1, SF, REJ, RSTO, ...). */
  connState: string;
  /** Zeek conn.log history letters. */
  history: string;
  /** SYN → SYN-ACK → ACK round trip seen at this point, or null. */
  rttNs: bigint | null;
  retrans: Directional;
  /** Segments that filled a gap at this point sooner than a retransmission could have (max(RTT, 3 ms)). */
  outOfOrder: Directional;
  zeroWindow: Directional;
  close: CloseType;
  synSeq: number | null;
  synAckSeq: number | null;
}

export type NatVia = 'iptables' | 'ipvs' | 'ovs';

/** One translation entry (conntrack, IPVS or OVS) as first and last observed. */
export interface NatTranslation {
  via: NatVia;
  node: string;
  netns: string;
  zone: number;
  proto: Proto;
  /** The original direction: as the initiator sent it before translation. */
  orig: FourTuple;
  /** The reply direction: as the responder sends it before translation back. */
  reply: FourTuple;
  firstSeen: EpochNs;
  lastSeen: EpochNs;
  /** The source's own id for the entry (conntrack id), 0 when it has none. */
  entryId: number;
}

export type NatKind = 'SNAT' | 'DNAT' | 'FULLNAT';

/**
 * What became of a dropped packet (docs/drops.md, "Fate"): `lost` — no capture point saw it
 * after the drop; `copy` — the same packet went on elsewhere (this was a copy of it);
 * `consumed` — the endpoint processed it and the kernel freed it without a reason afterwards;
 * `unknown` — not decided (rows stored before fates were, or the store could not be asked),
 * counted as a loss.
 */
export type DropFateName = 'lost' | 'copy' | 'consumed' | 'unknown';

export interface DropFate {
  fate: DropFateName;
  /** The evidence, in words: where and how much later (or earlier) the packet was seen, or that nothing saw it. */
  proof: string;
  /** The capture point (node/netns/iface) whose sighting is the evidence, or null. */
  seenAt: string | null;
  /** That sighting's time minus the drop's (negative: before the drop), or null. */
  seenDeltaNs: bigint | null;
}

/** One packet the kernel freed (skb:kfree_skb), where and why, as the drop tracer reports it. */
export interface TracedDrop extends CapturePoint, FourTuple {
  ts: EpochNs;
  netnsIno: number;
  /** The device the packet was on (`iface` its name), 0 and '' when it had none. */
  ifindex: number;
  proto: Proto;
  /** The drop reason's name from the kernel's BTF (`NETFILTER_DROP`), or its number when the kernel has no name for it. */
  reason: string;
  /** enum skb_drop_reason value, subsystem in the high bits. */
  reasonCode: number;
  /** Where the kernel freed it: `function+0xoffset`. */
  location: string;
  /** Kernel stack from the location outwards, `function+0xoffset` each. */
  stack: string[];
  /** Plain-language cause and what to check. */
  cause: string;
  /** The packet id capture gives the same packet (PacketRecord.packetId), so a drop joins the packets seen before it. */
  packetId: bigint;
  /** Length of the packet from the start of `headers`' link layer. */
  wireLen: number;
  /** LINKTYPE_ETHERNET, or LINKTYPE_RAW when the packet had no MAC header (transmit path). */
  linkType: number;
  /** The packet's headers as the kernel held them when it dropped it, up to the end of the TCP/UDP header. */
  headers: Uint8Array;
}

/** A traced drop with its fate decided, as stored. */
export interface DropRecord extends TracedDrop {
  fate: DropFate;
}
