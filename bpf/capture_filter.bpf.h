/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The capture filter: its maps, written by capture/packets/filter.ts's writeFilter(), and its verdict.
 * Included by capture.bpf.c and drop_trace.bpf.c, so that both select the same packets. */
#ifndef __NETTRAIL_CAPTURE_FILTER_BPF_H
#define __NETTRAIL_CAPTURE_FILTER_BPF_H

#include "capture.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nt_filter);
} filter_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nt_lpm_v4);
	__type(value, __u8);
} filter_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nt_lpm_v6);
	__type(value, __u8);
} filter_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} filter_ports SEC(".maps");

/* addr (4 bytes of NT_FAMILY_IPV4, else 16) lies in a network of filter_v4 / filter_v6. */
static __always_inline bool filter_has_addr(__u8 family, const __u8 *addr)
{
	if (family == NT_FAMILY_IPV4) {
		struct nt_lpm_v4 key = { .prefixlen = 32 };

		__builtin_memcpy(key.addr, addr, 4);
		return bpf_map_lookup_elem(&filter_v4, &key) != NULL;
	}
	struct nt_lpm_v6 key = { .prefixlen = 128 };

	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(&filter_v6, &key) != NULL;
}

static __always_inline bool filter_has_port(__u32 port)
{
	__u8 *set = bpf_map_lookup_elem(&filter_ports, &port);

	return set && *set;
}

/*
 * Whether the filter keeps a TCP/UDP packet of `family` (NT_FAMILY_*): kinds AND,
 * values OR. has_ports is false for a packet without an L4 header (a later
 * fragment), which a port filter leaves out.
 */
static __always_inline bool filter_keeps(__u8 family, __u8 proto, const __u8 *saddr, const __u8 *daddr,
					 __u16 sport, __u16 dport, bool has_ports)
{
	__u32 first = 0;
	struct nt_filter *filter = bpf_map_lookup_elem(&filter_config, &first);

	if (!filter)
		return true;
	if (filter->protos && !(filter->protos & (proto == IPPROTO_TCP ? NT_PROTO_TCP : NT_PROTO_UDP)))
		return false;
	if (filter->match_addr && !filter_has_addr(family, saddr) && !filter_has_addr(family, daddr))
		return false;
	if (filter->match_port && (!has_ports || (!filter_has_port(sport) && !filter_has_port(dport))))
		return false;
	return true;
}

#endif /* __NETTRAIL_CAPTURE_FILTER_BPF_H */
