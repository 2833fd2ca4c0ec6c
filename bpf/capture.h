/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* One packet seen at one hook, and the maps that steer capture; shared with capture/packets/layout.ts. */
#ifndef __NETTRAIL_CAPTURE_H
#define __NETTRAIL_CAPTURE_H

/* Headers are parsed within the first NT_PARSE_BYTES of a packet (a power of two). */
#define NT_PARSE_BYTES 256
/* Most bytes one event carries (the --snaplen ceiling). */
#define NT_CAPTURE_MAX 4096
/* IPv6 extension headers walked before giving up. */
#define NT_IPV6_EXT_MAX 8
/* Bytes of L4 payload hashed into payload_hash. */
#define NT_PAYLOAD_HASH_BYTES 32

#define NT_HOOK_TC 1
#define NT_HOOK_XDP 2

#define NT_DIR_INGRESS 1
#define NT_DIR_EGRESS 2

#define NT_LINK_ETHERNET 1

#define NT_FAMILY_IPV4 4
#define NT_FAMILY_IPV6 6

/* nt_packet_event.frag */
#define NT_FRAG_FIRST 1 /* a first fragment: carries the L4 header */
#define NT_FRAG_LATER 2 /* a later fragment: no L4 header, ports and seq are 0 */

/* nt_filter.protos */
#define NT_PROTO_TCP 1
#define NT_PROTO_UDP 2

/* Where a packet was seen: the key of per-point counters. */
struct nt_point_key {
	__u32 netns_ino;
	__u32 ifindex;
	__u8 hook;
	__u8 direction;
	__u8 pad[2];
};

/* Per-CPU counters of one point; every packet the program sees lands in exactly one. */
struct nt_point_stats {
	__u64 events;    /* written to the ring buffer */
	__u64 lost;      /* the ring buffer was full */
	__u64 filtered;  /* left out by the filter */
	__u64 not_ip;    /* neither IPv4 nor IPv6 (ARP, LLDP, ...) */
	__u64 other_l4;  /* IP, but neither TCP nor UDP (ICMP, ...) */
	__u64 malformed; /* truncated or inconsistent headers */
};

/* Run-time filter (map filter_config, one entry); all zero captures everything. */
struct nt_filter {
	__u8 match_addr; /* source or destination must be in filter_v4 / filter_v6 */
	__u8 match_port; /* source or destination port must be set in filter_ports */
	__u8 protos;     /* NT_PROTO_* bits; 0 for any */
	__u8 pad;
};

struct nt_lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct nt_lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* A ring-buffer record: this struct, then cap_len bytes of the packet from the link-layer header on. */
struct nt_packet_event {
	__u64 ts_ns;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 netns_ino;
	__u32 ifindex;
	__u32 wire_len;     /* packet length from the link-layer header on */
	__u32 payload_len;  /* L4 payload bytes; IP payload bytes of a later fragment */
	__u32 seq;          /* host byte order, as are all fields below */
	__u32 ack;
	__u32 payload_hash; /* of the first NT_PAYLOAD_HASH_BYTES payload bytes (0 when none) */
	__u16 sport;
	__u16 dport;
	__u16 window;
	__u16 ip_id;        /* IPv4 identification */
	__u16 cap_len;      /* packet bytes after this struct */
	__u16 l3_offset;    /* IP header start in the packet bytes */
	__u16 l4_offset;    /* TCP/UDP header start (IP payload start for a later fragment) */
	__u16 l4_end;       /* end of the TCP/UDP header: every byte before it is captured */
	__u16 vlan_tci;     /* a VLAN tag the device holds outside the packet bytes (TC) */
	__u16 vlan_proto;   /* its TPID; 0 when there is none */
	__u8 hook;          /* NT_HOOK_* */
	__u8 direction;     /* NT_DIR_* */
	__u8 family;        /* NT_FAMILY_* */
	__u8 proto;         /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 tcp_flags;
	__u8 frag;          /* NT_FRAG_* or 0 */
	__u8 link_type;     /* NT_LINK_* */
	__u8 pad;
	__u8 saddr[16];     /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
};

#endif /* __NETTRAIL_CAPTURE_H */
