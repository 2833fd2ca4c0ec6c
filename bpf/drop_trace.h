/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* One dropped packet (skb:kfree_skb) and the drop tracer's counters; shared with capture/drops/layout.ts. */
#ifndef __NETTRAIL_DROP_TRACE_H
#define __NETTRAIL_DROP_TRACE_H

/* Room for Ethernet + two VLAN tags + IPv4 with options + TCP with options (142 bytes)
 * and the first payload bytes, which capture hashes into its packet ids. */
#define NT_DROP_HEADER_BYTES 192
/* Kernel stack frames kept per drop. */
#define NT_DROP_STACK_DEPTH 24
/* Most bytes between the MAC and the IP header: Ethernet + two VLAN tags. */
#define NT_DROP_MAC_MAX 22
#define NT_DROP_IFNAME_BYTES 16

/* nt_drop_event.link_type: what header[] starts with. */
#define NT_DROP_LINK_ETHERNET 1 /* the MAC header (the decoder checks it leads to the IP header) */
#define NT_DROP_LINK_RAW 2      /* the IP header: the skb had no MAC header (transmit path) */

/* Indexes of the per-CPU drop_counters. Every kfree_skb in a traced namespace counts in SEEN
 * and in exactly one of the others. */
#define NT_DROP_COUNT_SEEN 0
#define NT_DROP_COUNT_REPORTED 1     /* written to the ring buffer */
#define NT_DROP_COUNT_IGNORED 2      /* a reason in ignored_reasons (frees that are no loss, e.g. QUEUE_PURGE) */
#define NT_DROP_COUNT_UNPARSED 3     /* no IPv4/IPv6 TCP/UDP header in the linear data (ARP, ICMP, ...) */
#define NT_DROP_COUNT_FILTERED 4     /* left out by the capture filter (filter_config, as capture's) */
#define NT_DROP_COUNT_RATE_LIMITED 5 /* over the per-CPU rate limit */
#define NT_DROP_COUNT_RING_FULL 6    /* the ring buffer was full */
#define NT_DROP_COUNTERS 7

/* Per-CPU token bucket of the rate limit, in nanoseconds of credit. */
struct nt_drop_rate {
	__u64 credit_ns;
	__u64 last_ns;
};

struct nt_drop_event {
	__u64 ts_ns;       /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 location;    /* the kernel address that freed the skb (kfree_skb's caller) */
	__u32 reason;      /* enum skb_drop_reason, subsystem in the high bits */
	__u32 netns_ino;
	__u32 ifindex;     /* 0 when the skb had no (trustworthy) device */
	__u32 wire_len;    /* packet length from header[0] on */
	__u16 stack_depth; /* valid frames in stack[] */
	__u16 cap_len;     /* valid bytes in header[] (the skb's linear data, up to NT_DROP_HEADER_BYTES) */
	__u8 family;       /* NT_FAMILY_* of capture.h */
	__u8 proto;        /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 link_type;    /* NT_DROP_LINK_* */
	__u8 l3_offset;    /* IP header start in header[] */
	__u8 l4_offset;    /* TCP/UDP header start in header[] */
	__u8 l4_end;       /* end of the TCP/UDP header in header[] (≤ cap_len) */
	__u8 pad[6];
	char ifname[NT_DROP_IFNAME_BYTES];
	__u64 stack[NT_DROP_STACK_DEPTH];
	__u8 header[NT_DROP_HEADER_BYTES];
};

#endif /* __NETTRAIL_DROP_TRACE_H */
