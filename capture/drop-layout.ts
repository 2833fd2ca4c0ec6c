// Byte layout of struct nt_drop_event and the constants of bpf/drop_event.h, mirrored
// field by field; test/drop-layout.test.ts checks them against the compiled object's BTF.
import type { StructLayout } from './layout.js';

/** The #defines of bpf/drop_event.h. */
export const DROP_HEADER_BYTES = 192;
export const DROP_STACK_DEPTH = 24;
export const DROP_MAC_MAX = 22;
export const DROP_IFNAME_BYTES = 16;

export const DROP_LINK = { ethernet: 1, raw: 2 } as const;
export const DROP_FAMILY = { ipv4: 4, ipv6: 6 } as const;

/** Indexes of the per-CPU drop_counters map. */
export const DROP_COUNTER = {
  seen: 0,
  reported: 1,
  ignored: 2,
  unparsed: 3,
  filtered: 4,
  rateLimited: 5,
  ringFull: 6,
} as const;
export const DROP_COUNTERS = 7;

/** struct nt_drop_event */
export const dropEventLayout: StructLayout<
  | 'ts_ns' | 'location' | 'reason' | 'netns_ino' | 'ifindex' | 'wire_len' | 'stack_depth' | 'cap_len'
  | 'family' | 'proto' | 'link_type' | 'l3_offset' | 'l4_offset' | 'l4_end' | 'ifname' | 'stack' | 'header'
> = {
  size: 448,
  fields: {
    ts_ns: { offset: 0, size: 8 },
    location: { offset: 8, size: 8 },
    reason: { offset: 16, size: 4 },
    netns_ino: { offset: 20, size: 4 },
    ifindex: { offset: 24, size: 4 },
    wire_len: { offset: 28, size: 4 },
    stack_depth: { offset: 32, size: 2 },
    cap_len: { offset: 34, size: 2 },
    family: { offset: 36, size: 1 },
    proto: { offset: 37, size: 1 },
    link_type: { offset: 38, size: 1 },
    l3_offset: { offset: 39, size: 1 },
    l4_offset: { offset: 40, size: 1 },
    l4_end: { offset: 41, size: 1 },
    ifname: { offset: 48, size: DROP_IFNAME_BYTES },
    stack: { offset: 64, size: 8 * DROP_STACK_DEPTH },
    header: { offset: 256, size: DROP_HEADER_BYTES },
  },
};
