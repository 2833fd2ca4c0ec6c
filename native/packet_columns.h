/* Packets decoded on the native event thread (packet_decoder.cc), handed to JavaScript as columns:
 * one buffer per batch holding a header, then each column for `capacity` packets (each column
 * starting 8-aligned), then the packets' header bytes, then their SACK blocks. Shared with
 * capture/packets/columns-layout.ts, which test/capture/packet-columns-layout.test.ts checks
 * against this file. */
#ifndef NETTRAIL_PACKET_COLUMNS_H
#define NETTRAIL_PACKET_COLUMNS_H

#include <linux/types.h>

/* The batch format's version: JavaScript refuses another. */
#define NT_COLUMNS_VERSION 1
/* SACK blocks kept per packet (a TCP header has room for 4). */
#define NT_SACK_MAX 4

/* nt_column: which TCP options a packet carries (the flow log's opt_present bits). */
#define NT_OPT_MSS 1
#define NT_OPT_WSCALE 2
#define NT_OPT_SACK_PERM 4
#define NT_OPT_TS_VAL 8
#define NT_OPT_TS_ECR 16
#define NT_OPT_SACK 32

/* fragment column */
#define NT_FRAGMENT_FIRST 1
#define NT_FRAGMENT_LATER 2

struct nt_columns_header {
	__u32 version;       /* NT_COLUMNS_VERSION */
	__u32 count;         /* packets */
	__u32 capacity;      /* entries each column has room for (>= count) */
	__u32 malformed;     /* ring records refused: cut short, unknown values */
	__u32 unattributed_fragments; /* later fragments whose first fragment was not seen (kept with ports 0) */
	__u32 header_bytes;  /* bytes of the header area */
	__u32 sack_blocks;   /* blocks of the SACK area */
	__u32 pad;
};

/* The columns in their order: name, bytes per packet. */
#define NT_PACKET_COLUMNS(X) \
	X(ts, 8)           /* wall-clock ns (int64) */ \
	X(packet_id, 8)    /* equal for the same packet at every point */ \
	X(src, 16)         /* IPv6, or IPv4-mapped IPv6 (::ffff:a.b.c.d) */ \
	X(dst, 16) \
	X(netns_ino, 4) \
	X(ifindex, 4) \
	X(seq, 4) \
	X(ack, 4) \
	X(len, 4)          /* L4 payload bytes */ \
	X(wire_len, 4)     /* bytes from the link-layer header on, a VLAN tag the device held included */ \
	X(ts_val, 4) \
	X(ts_ecr, 4) \
	X(header_at, 4)    /* offset of the packet's bytes in the header area */ \
	X(sack_at, 4)      /* index of its first block in the SACK area */ \
	X(sport, 2) \
	X(dport, 2) \
	X(win, 2) \
	X(ip_id, 2)        /* IPv4 identification (0 for IPv6) */ \
	X(mss, 2) \
	X(header_len, 2)   /* bytes kept of the packet: its headers (and payload up to the snap length) */ \
	X(hook, 1)         /* NT_HOOK_* (bpf/capture.h) */ \
	X(direction, 1)    /* NT_DIR_* */ \
	X(proto, 1)        /* IPPROTO_TCP or IPPROTO_UDP */ \
	X(flags, 1)        /* TCP flags */ \
	X(options, 1)      /* NT_OPT_* */ \
	X(wscale, 1) \
	X(sack_count, 1) \
	X(fragment, 1)     /* NT_FRAGMENT_* or 0 */

/* A SACK block in the SACK area: left and right edge. */
struct nt_sack_block {
	__u32 left;
	__u32 right;
};

#endif /* NETTRAIL_PACKET_COLUMNS_H */
