// Byte layouts of the kernel↔user structs in bpf/packet_event.h, mirrored field by field.
// test/layout.test.ts compiles the C header and checks every constant, offset and size.

export interface FieldLayout {
  offset: number;
  size: number;
}

export interface StructLayout<F extends string> {
  size: number;
  fields: Record<F, FieldLayout>;
}

/** The #defines of bpf/packet_event.h. */
export const PARSE_BYTES = 256;
export const CAPTURE_MAX = 4096;
export const IPV6_EXT_MAX = 8;
export const PAYLOAD_HASH_BYTES = 32;

export const HOOK = { tc: 1, xdp: 2 } as const;
export const DIRECTION = { ingress: 1, egress: 2 } as const;
export const LINK = { ethernet: 1 } as const;
export const FAMILY = { ipv4: 4, ipv6: 6 } as const;
export const FRAG = { first: 1, later: 2 } as const;
export const FILTER_PROTO = { tcp: 1, udp: 2 } as const;

/** struct nt_packet_event; cap_len packet bytes follow it in each ring-buffer record. */
export const packetEventLayout: StructLayout<
  | 'ts_ns' | 'netns_ino' | 'ifindex' | 'wire_len' | 'payload_len' | 'seq' | 'ack' | 'payload_hash'
  | 'sport' | 'dport' | 'window' | 'ip_id' | 'cap_len' | 'l3_offset' | 'l4_offset' | 'l4_end'
  | 'vlan_tci' | 'vlan_proto' | 'hook' | 'direction' | 'family' | 'proto' | 'tcp_flags' | 'frag'
  | 'link_type' | 'saddr' | 'daddr'
> = {
  size: 96,
  fields: {
    ts_ns: { offset: 0, size: 8 },
    netns_ino: { offset: 8, size: 4 },
    ifindex: { offset: 12, size: 4 },
    wire_len: { offset: 16, size: 4 },
    payload_len: { offset: 20, size: 4 },
    seq: { offset: 24, size: 4 },
    ack: { offset: 28, size: 4 },
    payload_hash: { offset: 32, size: 4 },
    sport: { offset: 36, size: 2 },
    dport: { offset: 38, size: 2 },
    window: { offset: 40, size: 2 },
    ip_id: { offset: 42, size: 2 },
    cap_len: { offset: 44, size: 2 },
    l3_offset: { offset: 46, size: 2 },
    l4_offset: { offset: 48, size: 2 },
    l4_end: { offset: 50, size: 2 },
    vlan_tci: { offset: 52, size: 2 },
    vlan_proto: { offset: 54, size: 2 },
    hook: { offset: 56, size: 1 },
    direction: { offset: 57, size: 1 },
    family: { offset: 58, size: 1 },
    proto: { offset: 59, size: 1 },
    tcp_flags: { offset: 60, size: 1 },
    frag: { offset: 61, size: 1 },
    link_type: { offset: 62, size: 1 },
    saddr: { offset: 64, size: 16 },
    daddr: { offset: 80, size: 16 },
  },
};

/** struct nt_point_key */
export const pointKeyLayout: StructLayout<'netns_ino' | 'ifindex' | 'hook' | 'direction'> = {
  size: 12,
  fields: {
    netns_ino: { offset: 0, size: 4 },
    ifindex: { offset: 4, size: 4 },
    hook: { offset: 8, size: 1 },
    direction: { offset: 9, size: 1 },
  },
};

export const POINT_COUNTERS = ['events', 'lost', 'filtered', 'not_ip', 'other_l4', 'malformed'] as const;
export type PointCounter = (typeof POINT_COUNTERS)[number];

/** struct nt_point_stats: u64 counters in POINT_COUNTERS order. */
export const pointStatsLayout: StructLayout<PointCounter> = {
  size: 48,
  fields: Object.fromEntries(POINT_COUNTERS.map((name, i) => [name, { offset: 8 * i, size: 8 }])) as Record<PointCounter, FieldLayout>,
};

/** struct nt_filter */
export const filterLayout: StructLayout<'match_addr' | 'match_port' | 'protos'> = {
  size: 4,
  fields: {
    match_addr: { offset: 0, size: 1 },
    match_port: { offset: 1, size: 1 },
    protos: { offset: 2, size: 1 },
  },
};

/** struct nt_lpm_v4 / nt_lpm_v6 */
export const lpmV4Layout: StructLayout<'prefixlen' | 'addr'> = {
  size: 8,
  fields: { prefixlen: { offset: 0, size: 4 }, addr: { offset: 4, size: 4 } },
};
export const lpmV6Layout: StructLayout<'prefixlen' | 'addr'> = {
  size: 20,
  fields: { prefixlen: { offset: 0, size: 4 }, addr: { offset: 4, size: 16 } },
};

/** Each ring-buffer record in a batch from native/: u32 size, u32 zero, bytes padded to 8. */
export const BATCH_RECORD_HEADER = 8;
