// struct nt_ct_record and the constants of native/conntrack.h, mirrored field by field (laid
// out by model/c-struct.ts's cStruct); test/nat/conntrack-layout.test.ts checks them against
// the compiled header.
import { cStruct } from '../../model/c-struct.js';

/** NT_CT_*: what a record is, an entry (from an event or a dump) or a marker. */
export const CT_KIND = {
  new: 1,
  update: 2,
  destroy: 3,
  dumped: 4,
  dumpStart: 5,
  dumpDone: 6,
  eventsLost: 7,
} as const;

/** NT_CT_IPV4, NT_CT_IPV6 */
export const CT_FAMILY = { ipv4: 4, ipv6: 6 } as const;

/** NT_CT_STATUS_*: the kernel's IPS_SRC_NAT and IPS_DST_NAT. */
export const CT_STATUS = { srcNat: 0x10, dstNat: 0x20 } as const;

export const ctRecordLayout = cStruct({
  start_ns: 'u64', stop_ns: 'u64',
  id: 'u32', status: 'u32', error: 'u32',
  zone: 'u16', orig_sport: 'u16', orig_dport: 'u16', reply_sport: 'u16', reply_dport: 'u16',
  kind: 'u8', family: 'u8', proto: 'u8', pad: ['u8', 7],
  orig_src: ['u8', 16], orig_dst: ['u8', 16], reply_src: ['u8', 16], reply_dst: ['u8', 16],
});
