// Byte layouts of the kernel↔user structs in bpf/capture.h, declared field by field as
// in the header and laid out as the C compiler does (model/c-struct.ts); test/capture/packet-layout.test.ts checks every constant,
// offset and size against the compiled header. Also the framing of ring-buffer batches.
import { BATCH_RECORD_HEADER } from '../../native/addon.js';
import { cStruct, type CField, type StructLayout } from '../../model/c-struct.js';

/** The #defines of bpf/capture.h. */
export const PARSE_BYTES = 256;
export const CAPTURE_MAX = 4096;
export const IPV6_EXT_MAX = 8;
export const PAYLOAD_HASH_BYTES = 32;

/** NT_HOOK_* and NT_DIR_*: defined with the protocol numbers (the store keeps the same values), exported here with the other #defines. */
export { DIRECTION, HOOK } from '../../model/protocol.js';
export const LINK = { ethernet: 1 } as const;
export const FAMILY = { ipv4: 4, ipv6: 6 } as const;
export const FRAG = { first: 1, later: 2 } as const;
export const FILTER_PROTO = { tcp: 1, udp: 2 } as const;

/** struct nt_packet_event; cap_len packet bytes follow it in each ring-buffer record. */
export const packetEventLayout = cStruct({
  ts_ns: 'u64',
  netns_ino: 'u32', ifindex: 'u32', wire_len: 'u32', payload_len: 'u32', seq: 'u32', ack: 'u32', payload_hash: 'u32',
  sport: 'u16', dport: 'u16', window: 'u16', ip_id: 'u16', cap_len: 'u16', l3_offset: 'u16', l4_offset: 'u16', l4_end: 'u16',
  vlan_tci: 'u16', vlan_proto: 'u16',
  hook: 'u8', direction: 'u8', family: 'u8', proto: 'u8', tcp_flags: 'u8', frag: 'u8', link_type: 'u8', pad: 'u8',
  saddr: ['u8', 16], daddr: ['u8', 16],
});

/** struct nt_point_key */
export const pointKeyLayout = cStruct({ netns_ino: 'u32', ifindex: 'u32', hook: 'u8', direction: 'u8', pad: ['u8', 2] });

export const POINT_COUNTERS = ['events', 'lost', 'filtered', 'not_ip', 'other_l4', 'malformed'] as const;
export type PointCounter = (typeof POINT_COUNTERS)[number];

/** struct nt_point_stats: u64 counters in POINT_COUNTERS order. */
export const pointStatsLayout = cStruct(Object.fromEntries(POINT_COUNTERS.map((name) => [name, 'u64'])) as Record<PointCounter, CField>);

/** struct nt_filter */
export const filterLayout = cStruct({ match_addr: 'u8', match_port: 'u8', protos: 'u8', pad: 'u8' });

/** struct nt_lpm_v4 / nt_lpm_v6 */
export const lpmV4Layout = cStruct({ prefixlen: 'u32', addr: ['u8', 4] });
export const lpmV6Layout = cStruct({ prefixlen: 'u32', addr: ['u8', 16] });


/**
 * Decodes each record of a batch from native/, a struct of `layout` first; records
 * cut short, smaller than the struct or that `decode` rejects (null) count as malformed.
 */
export function decodeBatch<T>(
  batch: Buffer,
  layout: StructLayout<string>,
  decode: (view: DataView, at: number, size: number) => T | null,
): { decoded: T[]; malformed: number } {
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const decoded: T[] = [];
  let malformed = 0;
  for (let at = 0; at + BATCH_RECORD_HEADER <= batch.length; ) {
    const size = view.getUint32(at, true);
    const record = at + BATCH_RECORD_HEADER;
    at = record + ((size + 7) & ~7);
    const value = size >= layout.size && record + size <= batch.length ? decode(view, record, size) : null;
    if (value !== null) decoded.push(value);
    else malformed++;
  }
  return { decoded, malformed };
}
