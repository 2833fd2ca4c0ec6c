/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* One packet header seen at one hook; shared by the kernel programs and capture/layout.ts. */
#ifndef __NETTRAIL_PACKET_EVENT_H
#define __NETTRAIL_PACKET_EVENT_H

/* Room for Ethernet + two VLAN tags + IPv4 with options + TCP with options (142 bytes). */
#define NT_HEADER_BYTES 160

#define NT_HOOK_TC 1
#define NT_HOOK_XDP 2

#define NT_DIR_INGRESS 1
#define NT_DIR_EGRESS 2

#define NT_LINK_ETHERNET 1

#define NT_FAMILY_IPV4 4
#define NT_FAMILY_IPV6 6

/* Where a packet was seen: the key of per-point counters. */
struct nt_point_key {
	__u32 netns_ino;
	__u32 ifindex;
	__u8 hook;
	__u8 direction;
	__u8 pad[2];
};

struct nt_packet_event {
	__u64 ts_ns;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 netns_ino;
	__u32 ifindex;
	__u32 wire_len;     /* packet length from the link-layer header on */
	__u32 seq;          /* host byte order, as are all fields below */
	__u32 ack;
	__u16 sport;
	__u16 dport;
	__u16 window;
	__u16 payload_len;  /* L4 payload bytes */
	__u16 ip_id;
	__u16 header_len;   /* valid bytes in header[]: link-layer to end of L4 header */
	__u8 hook;          /* NT_HOOK_* */
	__u8 direction;     /* NT_DIR_* */
	__u8 family;        /* NT_FAMILY_* */
	__u8 proto;         /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 tcp_flags;
	__u8 l3_offset;     /* IP header start in header[] */
	__u8 l4_offset;     /* TCP/UDP header start in header[] */
	__u8 link_type;     /* NT_LINK_* */
	__u8 saddr[16];     /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u8 header[NT_HEADER_BYTES];
};

#endif /* __NETTRAIL_PACKET_EVENT_H */
