// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Packet capture at XDP ingress and TC (tcx) ingress/egress: one nt_packet_event per TCP/UDP packet. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "capture.h"
#include "capture_filter.bpf.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define IPV6_FRAG_OFFSET 0xFFF8
#define IPV6_FRAG_MF 0x0001
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define TC_ACT_UNSPEC (-1)
#define PARSE_MASK (NT_PARSE_BYTES - 1)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Packet bytes kept beyond the L2-L4 headers, up to this many from the link layer on (0: headers only). */
const volatile __u32 snaplen = 0;
/* 0: the consumer is woken for every record it has not caught up with (libbpf's adaptive default).
 * Otherwise it is woken only once this many bytes wait in the ring, and drains it on a timer meanwhile. */
const volatile __u32 wakeup_bytes = 0;

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* Sized by user space: bytes per CPU x possible CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} packet_events SEC(".maps");

/* Entries are made by the programs as points first see packets; allocated then, not up front. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nt_point_key);
	__type(value, struct nt_point_stats);
} point_stats SEC(".maps");

/* Counts of packets at points that found point_stats full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nt_point_stats);
} unattributed_stats SEC(".maps");

/* Link-layer bytes TC may find in front of skb->data (see mac_bytes_before_data). */
#define MAC_BEFORE_MAX 64

/* The event under construction, then the packet bytes it carries. */
struct packet_scratch {
	struct nt_packet_event event;
	__u8 bytes[NT_CAPTURE_MAX + MAC_BEFORE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct packet_scratch);
} scratch SEC(".maps");

enum verdict { KEEP, FILTERED, NOT_IP, OTHER_L4, MALFORMED };

static __always_inline __u16 be16_at(const __u8 *b, __u32 off)
{
	off &= PARSE_MASK;
	return ((__u16)b[off] << 8) | b[off + 1];
}

static __always_inline __u32 be32_at(const __u8 *b, __u32 off)
{
	off &= PARSE_MASK;
	return ((__u32)b[off] << 24) | ((__u32)b[off + 1] << 16) | ((__u32)b[off + 2] << 8) | b[off + 3];
}

static __always_inline struct nt_point_stats *stats_of(__u32 netns_ino, __u32 ifindex, __u8 hook, __u8 direction)
{
	struct nt_point_key key = { .netns_ino = netns_ino, .ifindex = ifindex, .hook = hook, .direction = direction };
	struct nt_point_stats *stats = bpf_map_lookup_elem(&point_stats, &key), zero = {};
	__u32 first = 0;

	if (stats)
		return stats;
	bpf_map_update_elem(&point_stats, &key, &zero, BPF_NOEXIST);
	stats = bpf_map_lookup_elem(&point_stats, &key);
	return stats ? stats : bpf_map_lookup_elem(&unattributed_stats, &first);
}

/* IPv4 header at l3; sets the event's L3 fields and *proto, *l4, *ip_end. */
static __always_inline enum verdict parse_ipv4(struct nt_packet_event *e, const __u8 *b, __u32 parsed,
					       __u32 l3, __u8 *proto, __u32 *l4, __u32 *ip_end)
{
	__u32 ihl, total;
	__u16 frag;

	if (l3 + 20 > parsed)
		return MALFORMED;
	ihl = (b[l3 & PARSE_MASK] & 0x0f) * 4;
	total = be16_at(b, l3 + 2);
	frag = be16_at(b, l3 + 6);
	if (ihl < 20 || total < ihl)
		return MALFORMED;
	*proto = b[(l3 + 9) & PARSE_MASK];
	e->family = NT_FAMILY_IPV4;
	e->ip_id = be16_at(b, l3 + 4);
	__builtin_memcpy(e->saddr, &b[(l3 + 12) & PARSE_MASK], 4);
	__builtin_memcpy(e->daddr, &b[(l3 + 16) & PARSE_MASK], 4);
	if (frag & IP_OFFSET)
		e->frag = NT_FRAG_LATER;
	else if (frag & IP_MF)
		e->frag = NT_FRAG_FIRST;
	*l4 = l3 + ihl;
	*ip_end = l3 + total;
	return KEEP;
}

/* IPv6 header at l3 and its extension headers, walked up to NT_IPV6_EXT_MAX deep. */
static __always_inline enum verdict parse_ipv6(struct nt_packet_event *e, const __u8 *b, __u32 parsed,
					       __u32 l3, __u8 *proto, __u32 *l4, __u32 *ip_end)
{
	__u32 off = l3 + 40;
	__u8 next;

	if (off > parsed)
		return MALFORMED;
	next = b[(l3 + 6) & PARSE_MASK];
	e->family = NT_FAMILY_IPV6;
	__builtin_memcpy(e->saddr, &b[(l3 + 8) & PARSE_MASK], 16);
	__builtin_memcpy(e->daddr, &b[(l3 + 24) & PARSE_MASK], 16);
	/* A payload length of 0 is a jumbogram (BIG TCP): its real length is the packet's. */
	*ip_end = be16_at(b, l3 + 4) ? off + be16_at(b, l3 + 4) : 0;

	for (int i = 0; i < NT_IPV6_EXT_MAX; i++) {
		__u32 len;

		if (next != NEXTHDR_HOP && next != NEXTHDR_ROUTING && next != NEXTHDR_FRAGMENT &&
		    next != NEXTHDR_AUTH && next != NEXTHDR_DEST)
			break;
		if (off + 8 > parsed)
			return MALFORMED;
		if (next == NEXTHDR_FRAGMENT) {
			__u16 frag = be16_at(b, off + 2);

			e->frag = (frag & IPV6_FRAG_OFFSET) ? NT_FRAG_LATER : (frag & IPV6_FRAG_MF) ? NT_FRAG_FIRST : 0;
			len = 8;
		} else if (next == NEXTHDR_AUTH) {
			len = (b[(off + 1) & PARSE_MASK] + 2) * 4;
		} else {
			len = (b[(off + 1) & PARSE_MASK] + 1) * 8;
		}
		next = b[off & PARSE_MASK];
		off += len;
		if (e->frag == NT_FRAG_LATER)
			break;
	}
	if (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_FRAGMENT ||
	    next == NEXTHDR_AUTH || next == NEXTHDR_DEST)
		return MALFORMED; /* deeper than NT_IPV6_EXT_MAX */
	*proto = next;
	*l4 = off;
	return KEEP;
}

/* FNV-1a of up to NT_PAYLOAD_HASH_BYTES payload bytes at off that lie in the parse window. */
static __always_inline __u32 hash_payload(const __u8 *b, __u32 off, __u32 end)
{
	__u32 h = 2166136261u;

	if (off >= end)
		return 0;
	for (int i = 0; i < NT_PAYLOAD_HASH_BYTES; i++) {
		__u32 at = off + i;

		if (at >= end || at >= NT_PARSE_BYTES)
			break;
		barrier_var(at);
		h = (h ^ b[at & PARSE_MASK]) * 16777619u;
	}
	return h;
}

/*
 * Parses the first `copied` bytes of a `wire_len` packet into s->event; returns
 * an enum verdict. Every field it sets is relative to those bytes, so the same
 * code serves TC and XDP. Headers must end within NT_PARSE_BYTES (reads are
 * masked to it). A global function: the verifier checks it once.
 */
__noinline int parse_packet(struct packet_scratch *s, __u32 copied, __u32 wire_len)
{
	__u32 parsed = copied < NT_PARSE_BYTES ? copied : NT_PARSE_BYTES;
	__u32 l3 = ETH_HLEN, l4 = 0, ip_end = 0, payload;
	struct nt_packet_event *e;
	const __u8 *b;
	__u16 eth_proto;
	__u8 proto = 0;
	enum verdict verdict;

	if (!s || copied < ETH_HLEN)
		return MALFORMED;
	e = &s->event;
	b = s->bytes;
	eth_proto = be16_at(b, 12);
	/* Up to two VLAN tags (802.1ad outer, 802.1Q inner) in the packet bytes. */
	for (int i = 0; i < 2; i++) {
		if (eth_proto != ETH_P_8021Q && eth_proto != ETH_P_8021AD)
			break;
		if (l3 + 4 > parsed)
			return MALFORMED;
		eth_proto = be16_at(b, l3 + 2);
		l3 += 4;
	}
	if (eth_proto == ETH_P_IP)
		verdict = parse_ipv4(e, b, parsed, l3, &proto, &l4, &ip_end);
	else if (eth_proto == ETH_P_IPV6)
		verdict = parse_ipv6(e, b, parsed, l3, &proto, &l4, &ip_end);
	else
		return NOT_IP;
	if (verdict != KEEP)
		return verdict;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return OTHER_L4;
	if (!ip_end)
		ip_end = wire_len;
	if (ip_end > wire_len || l4 > ip_end)
		return MALFORMED;
	e->proto = proto;
	e->l3_offset = l3;
	e->l4_offset = l4;

	if (e->frag == NT_FRAG_LATER) {
		e->l4_end = l4;
		e->payload_len = ip_end - l4;
		e->payload_hash = hash_payload(b, l4, copied < ip_end ? copied : ip_end);
		return KEEP;
	}
	if (proto == IPPROTO_TCP) {
		__u32 doff;

		if (l4 + 20 > parsed)
			return MALFORMED;
		doff = (b[(l4 + 12) & PARSE_MASK] >> 4) * 4;
		if (doff < 20 || l4 + doff > ip_end || l4 + doff > parsed)
			return MALFORMED;
		e->sport = be16_at(b, l4);
		e->dport = be16_at(b, l4 + 2);
		e->seq = be32_at(b, l4 + 4);
		e->ack = be32_at(b, l4 + 8);
		e->tcp_flags = b[(l4 + 13) & PARSE_MASK];
		e->window = be16_at(b, l4 + 14);
		e->l4_end = l4 + doff;
	} else {
		if (l4 + 8 > parsed || l4 + 8 > ip_end)
			return MALFORMED;
		e->sport = be16_at(b, l4);
		e->dport = be16_at(b, l4 + 2);
		e->l4_end = l4 + 8;
	}
	payload = ip_end - e->l4_end;
	e->payload_len = payload;
	e->payload_hash = hash_payload(b, e->l4_end, copied < ip_end ? copied : ip_end);
	return KEEP;
}

/* Bytes to copy for parsing and for the record: the parse window, or snaplen when larger. */
static __always_inline __u32 copy_len(__u32 wire_len)
{
	__u32 want = snaplen > NT_PARSE_BYTES ? snaplen : NT_PARSE_BYTES;

	if (want > NT_CAPTURE_MAX)
		want = NT_CAPTURE_MAX;
	return wire_len < want ? wire_len : want;
}

/* The counter of a packet that is not kept. */
static __always_inline __u64 *counter_of(struct nt_point_stats *stats, enum verdict verdict)
{
	switch (verdict) {
	case FILTERED:
		return &stats->filtered;
	case NOT_IP:
		return &stats->not_ip;
	case OTHER_L4:
		return &stats->other_l4;
	default: /* MALFORMED */
		return &stats->malformed;
	}
}

static __always_inline __u64 wakeup_flags(void)
{
	if (!wakeup_bytes)
		return 0;
	return bpf_ringbuf_query(&packet_events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* Counts the packet and, when it is kept, writes its event and bytes to the ring buffer. */
static __always_inline void record(struct packet_scratch *s, struct nt_point_stats *stats, enum verdict verdict, __u32 copied)
{
	struct nt_packet_event *e = &s->event;
	__u32 keep;

	if (verdict == KEEP && !filter_keeps(e->family, e->proto, e->saddr, e->daddr, e->sport, e->dport,
						e->frag != NT_FRAG_LATER))
		verdict = FILTERED;
	if (verdict != KEEP) {
		__sync_fetch_and_add(counter_of(stats, verdict), 1);
		return;
	}
	/* The headers always, payload up to snaplen. */
	keep = snaplen > e->l4_end ? snaplen : e->l4_end;
	if (keep > copied)
		keep = copied;
	barrier_var(keep);
	if (keep > NT_CAPTURE_MAX) {
		__sync_fetch_and_add(&stats->malformed, 1);
		return;
	}
	e->cap_len = keep;
	if (bpf_ringbuf_output(&packet_events, s, sizeof(*e) + keep, wakeup_flags()))
		__sync_fetch_and_add(&stats->lost, 1);
	else
		__sync_fetch_and_add(&stats->events, 1);
}

static __always_inline struct packet_scratch *new_event(__u32 netns_ino, __u32 ifindex, __u32 wire_len,
							__u8 hook, __u8 direction)
{
	__u32 first = 0;
	struct packet_scratch *s = bpf_map_lookup_elem(&scratch, &first);

	if (!s)
		return NULL;
	__builtin_memset(&s->event, 0, sizeof(s->event));
	s->event.ts_ns = bpf_ktime_get_ns();
	s->event.netns_ino = netns_ino;
	s->event.ifindex = ifindex;
	s->event.wire_len = wire_len;
	s->event.hook = hook;
	s->event.direction = direction;
	s->event.link_type = NT_LINK_ETHERNET;
	return s;
}

/*
 * Bytes of the link-layer header in front of skb->data. 0 normally; after
 * generic (skb-mode) XDP passes a packet, TC ingress gets it with data at the
 * network header (seen on 6.18), so packet bytes are read from the MAC header.
 */
static __always_inline __u32 mac_bytes_before_data(struct sk_buff *skb)
{
	__u16 mac_header = BPF_CORE_READ(skb, mac_header);
	long before = BPF_CORE_READ(skb, data) - (BPF_CORE_READ(skb, head) + mac_header);

	return mac_header != (__u16)~0U && before > 0 && before <= MAC_BEFORE_MAX ? before : 0;
}

/* Copies the first `copied` bytes from the link-layer header on; `before` of them lie in front of skb->data. */
static __always_inline long load_skb_bytes(struct __sk_buff *ctx, __u8 *bytes, __u64 copied, __u64 before)
{
	if (!before)
		return bpf_skb_load_bytes(ctx, 0, bytes, copied);
	/* The link-layer header is linear; the rest may sit in page fragments. */
	__u64 rest = copied - before;

	barrier_var(rest);
	if (before > MAC_BEFORE_MAX || rest < 1 || rest > NT_CAPTURE_MAX ||
	    bpf_skb_load_bytes_relative(ctx, 0, bytes, before, BPF_HDR_START_MAC))
		return -1;
	return bpf_skb_load_bytes(ctx, 0, bytes + before, rest);
}

static __always_inline int capture_skb(struct __sk_buff *ctx, __u8 direction)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	__u32 netns_ino = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	__u64 before = mac_bytes_before_data(skb);
	__u32 wire_len = ctx->len + before;
	__u64 copied = copy_len(wire_len);
	struct nt_point_stats *stats = stats_of(netns_ino, ctx->ifindex, NT_HOOK_TC, direction);
	struct packet_scratch *s = new_event(netns_ino, ctx->ifindex, wire_len, NT_HOOK_TC, direction);

	if (!stats || !s)
		return TC_ACT_UNSPEC;
	if (ctx->vlan_present) {
		s->event.vlan_tci = ctx->vlan_tci;
		s->event.vlan_proto = bpf_ntohs(ctx->vlan_proto);
	}
	barrier_var(copied);
	if (copied < ETH_HLEN || copied > NT_CAPTURE_MAX || load_skb_bytes(ctx, s->bytes, copied, before)) {
		__sync_fetch_and_add(&stats->malformed, 1);
		return TC_ACT_UNSPEC;
	}
	record(s, stats, parse_packet(s, copied, wire_len), copied);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_ingress(struct __sk_buff *ctx)
{
	return capture_skb(ctx, NT_DIR_INGRESS);
}

SEC("tc")
int tc_egress(struct __sk_buff *ctx)
{
	return capture_skb(ctx, NT_DIR_EGRESS);
}

/* xdp.frags: also attaches where frames span several buffers (jumbo MTU); bpf_xdp_load_bytes reads across them. */
SEC("xdp.frags")
int xdp_ingress(struct xdp_md *ctx)
{
	struct xdp_buff *xdp = bpf_cast_to_kern_ctx(ctx);
	__u32 netns_ino = BPF_CORE_READ(xdp, rxq, dev, nd_net.net, ns.inum);
	__u32 wire_len = bpf_xdp_get_buff_len(ctx);
	__u64 copied = copy_len(wire_len);
	struct nt_point_stats *stats = stats_of(netns_ino, ctx->ingress_ifindex, NT_HOOK_XDP, NT_DIR_INGRESS);
	struct packet_scratch *s = new_event(netns_ino, ctx->ingress_ifindex, wire_len, NT_HOOK_XDP, NT_DIR_INGRESS);

	if (!stats || !s)
		return XDP_PASS;
	barrier_var(copied);
	if (copied < ETH_HLEN || copied > NT_CAPTURE_MAX || bpf_xdp_load_bytes(ctx, 0, s->bytes, copied)) {
		__sync_fetch_and_add(&stats->malformed, 1);
		return XDP_PASS;
	}
	record(s, stats, parse_packet(s, copied, wire_len), copied);
	return XDP_PASS;
}
