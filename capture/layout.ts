// Byte layouts of the kernel↔user structs in bpf/*.h, mirrored field by field.
// test/layout.test.ts compiles the C headers and checks every offset and size.

export interface FieldLayout {
  offset: number;
  size: number;
}

export interface StructLayout<F extends string> {
  size: number;
  fields: Record<F, FieldLayout>;
}

/** NT_HEADER_BYTES in bpf/packet_event.h. */
export const HEADER_BYTES = 160;

export const HOOK = { tc: 1, xdp: 2 } as const;
export const DIRECTION = { ingress: 1, egress: 2 } as const;
export const LINK = { ethernet: 1 } as const;
export const FAMILY = { ipv4: 4, ipv6: 6 } as const;

/** struct nt_packet_event */
export const packetEventLayout: StructLayout<
  | 'ts_ns' | 'netns_ino' | 'ifindex' | 'wire_len' | 'seq' | 'ack' | 'sport' | 'dport' | 'window'
  | 'payload_len' | 'ip_id' | 'header_len' | 'hook' | 'direction' | 'family' | 'proto' | 'tcp_flags'
  | 'l3_offset' | 'l4_offset' | 'link_type' | 'saddr' | 'daddr' | 'header'
> = {
  size: 240,
  fields: {
    ts_ns: { offset: 0, size: 8 },
    netns_ino: { offset: 8, size: 4 },
    ifindex: { offset: 12, size: 4 },
    wire_len: { offset: 16, size: 4 },
    seq: { offset: 20, size: 4 },
    ack: { offset: 24, size: 4 },
    sport: { offset: 28, size: 2 },
    dport: { offset: 30, size: 2 },
    window: { offset: 32, size: 2 },
    payload_len: { offset: 34, size: 2 },
    ip_id: { offset: 36, size: 2 },
    header_len: { offset: 38, size: 2 },
    hook: { offset: 40, size: 1 },
    direction: { offset: 41, size: 1 },
    family: { offset: 42, size: 1 },
    proto: { offset: 43, size: 1 },
    tcp_flags: { offset: 44, size: 1 },
    l3_offset: { offset: 45, size: 1 },
    l4_offset: { offset: 46, size: 1 },
    link_type: { offset: 47, size: 1 },
    saddr: { offset: 48, size: 16 },
    daddr: { offset: 64, size: 16 },
    header: { offset: 80, size: HEADER_BYTES },
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

/** Each ring-buffer record in a batch from native/: u32 size, u32 zero, bytes padded to 8. */
export const BATCH_RECORD_HEADER = 8;
