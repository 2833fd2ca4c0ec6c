/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Conntrack entries as the addon's ctnetlink reader (conntrack.cc) hands them to JavaScript:
 * batches of fixed-width records; shared with nat-tracker/sources/conntrack-layout.ts. */
#ifndef __NETTRAIL_CONNTRACK_H
#define __NETTRAIL_CONNTRACK_H

#include <linux/types.h>

/* nt_ct_record.kind: an entry, from an event or a dump, ... */
#define NT_CT_NEW 1     /* event: the entry was created */
#define NT_CT_UPDATE 2  /* event: the entry changed (state, status, NAT binding) */
#define NT_CT_DESTROY 3 /* event: the entry went */
#define NT_CT_DUMPED 4  /* the entry was in the table when a dump listed it */
/* ... or a marker, all its other fields zero but `error` */
#define NT_CT_DUMP_START 5  /* a dump was asked for: what it and later events do not show is gone */
#define NT_CT_DUMP_DONE 6   /* the dump ended; `error` is 0, or the errno it failed with */
#define NT_CT_EVENTS_LOST 7 /* the socket's receive buffer overflowed (ENOBUFS); a dump follows */

/* nt_ct_record.family */
#define NT_CT_IPV4 4
#define NT_CT_IPV6 6

/* nt_ct_record.status: the kernel's IPS_* bits (<linux/netfilter/nf_conntrack_common.h>), of which: */
#define NT_CT_STATUS_SRC_NAT 0x10 /* IPS_SRC_NAT */
#define NT_CT_STATUS_DST_NAT 0x20 /* IPS_DST_NAT */

/* One conntrack entry. Ports are in host order; addresses in network order, IPv4 in the first 4 bytes. */
struct nt_ct_record {
	__u64 start_ns;    /* CTA_TIMESTAMP_START: created, epoch ns; 0 unless nf_conntrack_timestamp was on then */
	__u64 stop_ns;     /* CTA_TIMESTAMP_STOP: destroyed (NT_CT_DESTROY with timestamps), else 0 */
	__u32 id;          /* CTA_ID */
	__u32 status;      /* CTA_STATUS */
	__u32 error;       /* NT_CT_DUMP_DONE only */
	__u16 zone;        /* CTA_ZONE; 0 when absent */
	__u16 orig_sport;  /* ICMP and ICMPv6: the echo id */
	__u16 orig_dport;
	__u16 reply_sport;
	__u16 reply_dport;
	__u8 kind;         /* NT_CT_* */
	__u8 family;       /* NT_CT_IPV4, NT_CT_IPV6 */
	__u8 proto;        /* IPPROTO_* of the tuples */
	__u8 pad[7];
	__u8 orig_src[16]; /* the original direction: as the initiator sent it */
	__u8 orig_dst[16];
	__u8 reply_src[16]; /* the reply direction: as the responder sends it */
	__u8 reply_dst[16];
};

#ifdef __cplusplus
#include <napi.h>

namespace nettrail {
/* Adds the conntrack reader's functions and the namespace file access to the addon's exports. */
void InitConntrack(Napi::Env env, Napi::Object exports);
}  // namespace nettrail
#endif

#endif /* __NETTRAIL_CONNTRACK_H */
