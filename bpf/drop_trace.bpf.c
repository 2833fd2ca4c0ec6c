// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Drop tracing: one nt_drop_event per TCP/UDP packet the kernel frees with kfree_skb
 * (skb:kfree_skb, which carries the drop reason) in a traced network namespace.
 * consume_skb (a packet that was used, not dropped) is a different tracepoint and is not traced. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "drop_trace.h"
#include "capture.h"
#include "capture_filter.bpf.h"

#define IP_OFFSET 0x1FFF
#define OFFSET_UNSET ((__u16)~0U)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Events per second per CPU; more are counted in NT_DROP_COUNT_RATE_LIMITED. 0: no limit. */
const volatile __u32 rate_limit = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} drop_events SEC(".maps");

/* Network namespaces (inode numbers) whose drops are traced; set by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} traced_netns SEC(".maps");

/* Reasons that are no loss of a packet in flight (e.g. QUEUE_PURGE: a socket's queue freed on close);
 * their values, read from the kernel's BTF, are set by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} ignored_reasons SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NT_DROP_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} drop_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nt_drop_rate);
} drop_rate SEC(".maps");

static __always_inline void count(__u32 counter)
{
	__u64 *n = bpf_map_lookup_elem(&drop_counters, &counter);

	if (n)
		*n += 1; /* per-CPU: no other writer */
}

/* Token bucket per CPU: credit grows with time up to one second's worth; each event costs 1 s / rate_limit. */
static __always_inline bool over_rate_limit(void)
{
	__u32 zero = 0;
	struct nt_drop_rate *rate;
	__u64 now, cost, credit;

	if (rate_limit == 0)
		return false;
	rate = bpf_map_lookup_elem(&drop_rate, &zero);
	if (!rate)
		return true;
	now = bpf_ktime_get_ns();
	cost = 1000000000ULL / rate_limit;
	credit = rate->credit_ns + (now - rate->last_ns);
	if (credit > 1000000000ULL)
		credit = 1000000000ULL;
	rate->last_ns = now;
	if (credit < cost) {
		rate->credit_ns = credit;
		return true;
	}
	rate->credit_ns = credit - cost;
	return false;
}

static __always_inline __u32 netns_of_sock(struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/*
 * Copy the packet from its MAC header (or, without one, its IP header) and find
 * the IPv4/IPv6 and TCP/UDP headers in the copy. The IP header is where
 * network_header says, checked against the bytes; the L4 header follows from the
 * IP header, as transport_header may be unset or still equal network_header.
 * Returns 0 when the event holds a TCP/UDP header.
 */
static __always_inline int copy_headers(struct nt_drop_event *e, struct sk_buff *skb)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u32 tail = BPF_CORE_READ(skb, tail);
	__u32 data = BPF_CORE_READ(skb, data) - head;
	__u16 mac = BPF_CORE_READ(skb, mac_header);
	__u16 net = BPF_CORE_READ(skb, network_header);
	__u64 start, copied;
	__u32 l3, l4, l4_min, l4_end;
	const __u8 *ip;
	__u8 proto;

	if (net == OFFSET_UNSET || net >= tail)
		return -1;
	if (mac != OFFSET_UNSET && mac < net && net - mac <= NT_DROP_MAC_MAX) {
		start = mac;
		e->link_type = NT_DROP_LINK_ETHERNET;
	} else {
		start = net;
		e->link_type = NT_DROP_LINK_RAW;
	}
	l3 = (net - start) & 0x1f; /* ≤ NT_DROP_MAC_MAX */
	copied = tail - start;
	barrier_var(copied); /* so that the bound below is on the register passed */
	if (copied > NT_DROP_HEADER_BYTES)
		copied = NT_DROP_HEADER_BYTES;
	if (bpf_probe_read_kernel(e->header, copied, head + start))
		return -1;
	e->wire_len = BPF_CORE_READ(skb, len) + data - start;

	if (l3 + 20 > copied)
		return -1;
	ip = &e->header[l3];
	if ((ip[0] >> 4) == 4) {
		__u32 ihl = (ip[0] & 0x0f) * 4;

		if (ihl < 20 || (((ip[6] << 8) | ip[7]) & IP_OFFSET))
			return -1; /* a bad header, or a later fragment without an L4 header */
		proto = ip[9];
		e->family = NT_FAMILY_IPV4;
		l4 = l3 + ihl;
	} else if ((ip[0] >> 4) == 6 && l3 + 40 <= copied) {
		proto = ip[6]; /* extension headers are not walked */
		e->family = NT_FAMILY_IPV6;
		l4 = l3 + 40;
	} else {
		return -1;
	}
	l4 &= 0x7f; /* ≤ 31 + 60 */
	if (proto == IPPROTO_TCP)
		l4_min = 20;
	else if (proto == IPPROTO_UDP)
		l4_min = 8;
	else
		return -1;
	if (l4 + l4_min > copied)
		return -1;
	l4_end = l4 + l4_min;
	if (proto == IPPROTO_TCP) {
		__u32 doff = (e->header[l4 + 12] >> 4) * 4;

		if (doff < 20 || l4 + doff > copied)
			return -1;
		l4_end = l4 + doff;
	}
	e->proto = proto;
	e->l3_offset = l3;
	e->l4_offset = l4;
	e->l4_end = l4_end;
	e->cap_len = copied;
	return 0;
}

/* The capture filter's verdict on the headers copy_headers() found. */
static __always_inline bool drop_filter_keeps(const struct nt_drop_event *e)
{
	bool ipv4 = e->family == NT_FAMILY_IPV4;
	__u32 saddr = (e->l3_offset & 0x1f) + (ipv4 ? 12 : 8); /* the destination follows the source */
	__u32 daddr = saddr + (ipv4 ? 4 : 16);
	__u32 l4 = e->l4_offset & 0x7f;
	__u16 sport = (e->header[l4] << 8) | e->header[l4 + 1];
	__u16 dport = (e->header[l4 + 2] << 8) | e->header[l4 + 3];

	return filter_keeps(e->family, e->proto, &e->header[saddr], &e->header[daddr], sport, dport, true);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(trace_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason, struct sock *rx_sk)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	struct nt_drop_event *e;
	__u32 netns_ino = 0;
	bool dev_valid = false;
	long stack_bytes;

	/* The namespace: of the receiving socket (skb->dev may then hold UDP's dev_scratch),
	 * else of the device, else of the sending socket. */
	if (rx_sk) {
		netns_ino = netns_of_sock(rx_sk);
		dev_valid = dev && BPF_CORE_READ(dev, nd_net.net, ns.inum) == netns_ino;
	} else if (dev) {
		netns_ino = BPF_CORE_READ(dev, nd_net.net, ns.inum);
		dev_valid = true;
	} else {
		struct sock *sk = BPF_CORE_READ(skb, sk);

		if (sk)
			netns_ino = netns_of_sock(sk);
	}
	if (!netns_ino || !bpf_map_lookup_elem(&traced_netns, &netns_ino))
		return 0;
	count(NT_DROP_COUNT_SEEN);

	if (bpf_map_lookup_elem(&ignored_reasons, &reason)) {
		count(NT_DROP_COUNT_IGNORED);
		return 0;
	}
	e = bpf_ringbuf_reserve(&drop_events, sizeof(*e), 0);
	if (!e) {
		count(NT_DROP_COUNT_RING_FULL);
		return 0;
	}
	if (copy_headers(e, skb)) {
		bpf_ringbuf_discard(e, 0);
		count(NT_DROP_COUNT_UNPARSED);
		return 0;
	}
	if (!drop_filter_keeps(e)) {
		bpf_ringbuf_discard(e, 0);
		count(NT_DROP_COUNT_FILTERED);
		return 0;
	}
	if (over_rate_limit()) {
		bpf_ringbuf_discard(e, 0);
		count(NT_DROP_COUNT_RATE_LIMITED);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->location = (__u64)location;
	e->reason = reason;
	e->netns_ino = netns_ino;
	e->ifindex = dev_valid ? BPF_CORE_READ(dev, ifindex) : 0;
	e->ifname[0] = 0;
	if (dev_valid)
		BPF_CORE_READ_STR_INTO(&e->ifname, dev, name);
	stack_bytes = bpf_get_stack(ctx, e->stack, sizeof(e->stack), 0);
	e->stack_depth = stack_bytes > 0 ? stack_bytes / sizeof(e->stack[0]) : 0;
	bpf_ringbuf_submit(e, 0);
	count(NT_DROP_COUNT_REPORTED);
	return 0;
}
