// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The lab's TC drop: a tc program that drops IPv4 TCP/UDP packets to one destination port
 * (TC_ACT_SHOT), for the drop scenarios in lab/drops.ts. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Destination port to drop, host byte order. */
const volatile __u16 drop_port = 0;

SEC("tc")
int drop_port_packets(struct __sk_buff *ctx)
{
	__u8 ip[20];
	__u16 ports[2];
	__u32 ihl;

	if (ctx->protocol != bpf_htons(ETH_P_IP) || bpf_skb_load_bytes(ctx, ETH_HLEN, ip, sizeof(ip)))
		return TC_ACT_UNSPEC;
	if (ip[9] != IPPROTO_TCP && ip[9] != IPPROTO_UDP)
		return TC_ACT_UNSPEC;
	ihl = (ip[0] & 0x0f) * 4;
	if (bpf_skb_load_bytes(ctx, ETH_HLEN + ihl, ports, sizeof(ports)))
		return TC_ACT_UNSPEC;
	return bpf_ntohs(ports[1]) == drop_port ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}
