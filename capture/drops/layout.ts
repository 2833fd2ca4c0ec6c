// struct nt_drop_event and the constants of bpf/drop_trace.h, mirrored field by field
// (laid out by model/c-struct.ts's cStruct); test/capture/drop-layout.test.ts checks them against the compiled header.
import { cStruct } from '../../model/c-struct.js';

/** The #defines of bpf/drop_trace.h. */
export const DROP_HEADER_BYTES = 192;
export const DROP_STACK_DEPTH = 24;
export const DROP_MAC_MAX = 22;
export const DROP_IFNAME_BYTES = 16;

export const DROP_LINK = { ethernet: 1, raw: 2 } as const;

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

/** struct nt_drop_event; its family is one of capture/packets/layout.ts's FAMILY. */
export const dropEventLayout = cStruct({
  ts_ns: 'u64', location: 'u64',
  reason: 'u32', netns_ino: 'u32', ifindex: 'u32', wire_len: 'u32',
  stack_depth: 'u16', cap_len: 'u16',
  family: 'u8', proto: 'u8', link_type: 'u8', l3_offset: 'u8', l4_offset: 'u8', l4_end: 'u8', pad: ['u8', 6],
  ifname: ['u8', DROP_IFNAME_BYTES],
  stack: ['u64', DROP_STACK_DEPTH],
  header: ['u8', DROP_HEADER_BYTES],
});
