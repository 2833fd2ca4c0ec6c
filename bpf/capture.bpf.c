// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* TC capture: one nt_packet_event per TCP/UDP packet at a tcx ingress or egress hook. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "packet_event.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define TC_ACT_UNSPEC (-1)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} packet_events SEC(".maps");

/* Events that found the ring buffer full, per capture point. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct nt_point_key);
	__type(value, __u64);
} lost_events SEC(".maps");

static __always_inline void count_lost(__u32 netns_ino, __u32 ifindex, __u8 direction)
{
	struct nt_point_key key = {
		.netns_ino = netns_ino, .ifindex = ifindex,
		.hook = NT_HOOK_TC, .direction = direction,
	};
	__u64 one = 1, *lost = bpf_map_lookup_elem(&lost_events, &key);

	if (lost)
		__sync_fetch_and_add(lost, 1);
	else
		bpf_map_update_elem(&lost_events, &key, &one, BPF_NOEXIST);
}

static __always_inline __u16 load_be16(const __u8 *p)
{
	return ((__u16)p[0] << 8) | p[1];
}

static __always_inline __u32 load_be32(const __u8 *p)
{
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}

/* Parse header[0..copied) in place; returns 0 when the event holds a TCP/UDP header. */
static __always_inline int parse_headers(struct nt_packet_event *e, __u32 copied)
{
	__u32 l3 = ETH_HLEN, l4, ip_payload, l4_hdr;
	__u16 eth_proto = load_be16(&e->header[12]);
	__u8 proto;

	/* Up to two VLAN tags (802.1Q, 802.1ad). */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (eth_proto != ETH_P_8021Q && eth_proto != ETH_P_8021AD)
			break;
		if (l3 + 4 > copied)
			return -1;
		eth_proto = load_be16(&e->header[l3 + 2]);
		l3 += 4;
	}

	if (eth_proto == ETH_P_IP) {
		if (l3 + 20 > copied)
			return -1;
		const __u8 *ip = &e->header[l3];
		__u32 ihl = (ip[0] & 0x0f) * 4;
		__u16 frag = load_be16(&ip[6]);

		if (ihl < 20)
			return -1;
		/* Later fragments carry no L4 header. */
		if (frag & IP_OFFSET)
			return -1;
		proto = ip[9];
		e->family = NT_FAMILY_IPV4;
		e->ip_id = load_be16(&ip[4]);
		__builtin_memcpy(e->saddr, &ip[12], 4);
		__builtin_memcpy(e->daddr, &ip[16], 4);
		ip_payload = load_be16(&ip[2]);
		if (ip_payload < ihl)
			return -1;
		ip_payload -= ihl;
		l4 = l3 + ihl;
	} else if (eth_proto == ETH_P_IPV6) {
		if (l3 + 40 > copied)
			return -1;
		const __u8 *ip6 = &e->header[l3];

		proto = ip6[6];
		e->family = NT_FAMILY_IPV6;
		e->ip_id = 0;
		__builtin_memcpy(e->saddr, &ip6[8], 16);
		__builtin_memcpy(e->daddr, &ip6[24], 16);
		ip_payload = load_be16(&ip6[4]);
		l4 = l3 + 40;
	} else {
		return -1;
	}

	l4 &= 0x7f; /* l4 <= 22 + 60: keeps the verifier's bound tight */
	if (proto == IPPROTO_TCP) {
		if (l4 + 20 > copied)
			return -1;
		const __u8 *tcp = &e->header[l4];

		l4_hdr = (tcp[12] >> 4) * 4;
		if (l4_hdr < 20 || l4_hdr > ip_payload)
			return -1;
		e->sport = load_be16(&tcp[0]);
		e->dport = load_be16(&tcp[2]);
		e->seq = load_be32(&tcp[4]);
		e->ack = load_be32(&tcp[8]);
		e->tcp_flags = tcp[13];
		e->window = load_be16(&tcp[14]);
	} else if (proto == IPPROTO_UDP) {
		if (l4 + 8 > copied)
			return -1;
		const __u8 *udp = &e->header[l4];

		l4_hdr = 8;
		if (l4_hdr > ip_payload)
			return -1;
		e->sport = load_be16(&udp[0]);
		e->dport = load_be16(&udp[2]);
		e->seq = 0;
		e->ack = 0;
		e->tcp_flags = 0;
		e->window = 0;
	} else {
		return -1;
	}

	e->proto = proto;
	e->l3_offset = l3;
	e->l4_offset = l4;
	e->payload_len = ip_payload - l4_hdr;
	e->header_len = l4 + l4_hdr < copied ? l4 + l4_hdr : copied;
	return 0;
}

static __always_inline int capture(struct __sk_buff *ctx, __u8 direction)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	__u32 netns_ino = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	__u32 copied = ctx->len;
	struct nt_packet_event *e;

	if (copied < ETH_HLEN)
		return TC_ACT_UNSPEC;
	if (copied > NT_HEADER_BYTES)
		copied = NT_HEADER_BYTES;

	e = bpf_ringbuf_reserve(&packet_events, sizeof(*e), 0);
	if (!e) {
		count_lost(netns_ino, ctx->ifindex, direction);
		return TC_ACT_UNSPEC;
	}
	if (bpf_skb_load_bytes(ctx, 0, e->header, copied) || parse_headers(e, copied)) {
		bpf_ringbuf_discard(e, 0);
		return TC_ACT_UNSPEC;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->netns_ino = netns_ino;
	e->ifindex = ctx->ifindex;
	e->wire_len = ctx->len;
	e->hook = NT_HOOK_TC;
	e->direction = direction;
	e->link_type = NT_LINK_ETHERNET;
	bpf_ringbuf_submit(e, 0);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_ingress(struct __sk_buff *ctx)
{
	return capture(ctx, NT_DIR_INGRESS);
}

SEC("tc")
int tc_egress(struct __sk_buff *ctx)
{
	return capture(ctx, NT_DIR_EGRESS);
}
