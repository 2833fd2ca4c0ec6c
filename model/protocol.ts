// The numbers of the protocols nettrail reads and writes: IP protocol numbers,
// TCP flag bits and option kinds, EtherTypes, pcap link types, and the capture
// hooks and directions as the kernel programs number them.
import type { Direction, Hook, Proto } from './records.js';

/** IANA protocol numbers of the transports nettrail captures; also the values of the store's `proto` Enum8 columns. */
export const PROTO_NUMBER: Readonly<Record<Proto, number>> = { tcp: 6, udp: 17 };

/**
 * Capture hooks and directions as bpf/capture.h numbers them (NT_HOOK_*,
 * NT_DIR_*); also the values of the store's `hook` and `direction` Enum8 columns.
 */
export const HOOK: Readonly<Record<Hook, number>> = { tc: 1, xdp: 2 };
export const DIRECTION: Readonly<Record<Direction, number>> = { ingress: 1, egress: 2 };

/** TCP flag names, in header order: bit i of the flags byte is TCP_FLAGS[i]. */
export const TCP_FLAGS = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'] as const;
export type TcpFlag = (typeof TCP_FLAGS)[number];

/** Each TCP flag's bit in the flags byte. */
export const TCP_FLAG_BIT = Object.fromEntries(TCP_FLAGS.map((name, bit) => [name, 1 << bit])) as Readonly<Record<TcpFlag, number>>;

export function tcpFlagNames(bits: number): TcpFlag[] {
  return TCP_FLAGS.filter((_, i) => (bits & (1 << i)) !== 0);
}

/** TCP option kinds (IANA): the list's framing, and the options TcpOptions holds. */
export const TCP_OPTION = { end: 0, nop: 1, mss: 2, wscale: 3, sackPermitted: 4, sack: 5, timestamps: 8 } as const;

/** EtherTypes of the headers nettrail walks: IP, and VLAN tags (802.1Q, 802.1ad). */
export const ETHERTYPE = { ipv4: 0x0800, ipv6: 0x86dd, vlan: 0x8100, qinq: 0x88a8 } as const;

/** Link types as in the pcapng LINKTYPE registry. */
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
