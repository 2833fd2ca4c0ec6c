/* The packed form of a packet chunk (one row of the flow log's packet_chunks table: the packets of
 * one direction of a connection at one capture point), as chunk_encoder.cc writes it. Shared with
 * flowlog/packets/chunk-format.ts, which test/flowlog/chunk-format-layout.test.ts checks against
 * this file. */
#ifndef NETTRAIL_PACKET_CHUNKS_H
#define NETTRAIL_PACKET_CHUNKS_H

/* A chunk holds packets within this long of its first one, either way. */
#define NT_CHUNK_SPAN_NS 1000000000LL
/* ... and at most this many: reads unpack every chunk their time range overlaps. */
#define NT_CHUNK_MAX_PACKETS 4096

/* The residuals column (Enum8): how `packed` holds the packets' header residuals. */
#define NT_RESIDUALS_WHOLE 1
#define NT_RESIDUALS_XOR_PREVIOUS 2

/* `packed`: each field for all of a chunk's packets in this order (little-endian, `bytes` each),
 * then the SACK blocks, then the residuals. */
#define NT_PACKED_FIELDS(X) \
	X(ts, 8)            /* difference from the previous packet's (the first: from first_ts) */ \
	X(ip_id, 2)         /* difference from the previous packet's (the first: from 0), as the four below */ \
	X(seq, 4) \
	X(ack, 4) \
	X(flags, 1) \
	X(win, 2) \
	X(len, 4) \
	X(wire_len, 4) \
	X(opt_present, 1) \
	X(opt_mss, 2) \
	X(opt_wscale, 1) \
	X(opt_sack_perm, 1) \
	X(opt_ts_val, 4) \
	X(opt_ts_ecr, 4) \
	X(sack_blocks, 1) \
	X(header_len, 2)

#endif /* NETTRAIL_PACKET_CHUNKS_H */
