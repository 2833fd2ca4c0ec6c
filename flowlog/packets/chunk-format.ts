// How packets are stored: one row per chunk — the packets of one direction of
// a connection seen at one capture point, written by one insert — with the
// per-packet fields packed column by column into one String (`packed`), their
// packet ids in an array (`packet_ids`, for the joins of drops to packets). The
// engine then handles a row per chunk instead of 30 columns per packet
// (docs/store.md). This file holds the format and its packing in SQL (the
// migration from a row per packet); the writer packs with the addon's encoder
// (native/chunk_encoder.cc, whose packet_chunks.h mirrors this format), reads
// unpack with packetRowsOfChunks (rows.ts).

/** The chunk table's columns in schema version 5, as its packing in SQL (the migration to version 5) fills them. */
const VERSION_5_COLUMNS = [
  'node', 'netns', 'netns_ino', 'iface', 'ifindex', 'hook', 'direction', 'proto',
  'src', 'sport', 'dst', 'dport', 'link_type', 'first_ts', 'last_ts', 'count', 'packet_ids', 'packed',
] as const;

/** The chunk table's insert columns, in RowBinary order. */
export const PACKET_CHUNK_COLUMNS = [...VERSION_5_COLUMNS, 'residuals'] as const;

/** Values of the `residuals` column (Enum8): how `packed` holds the header residuals. */
export const RESIDUALS = { whole: 1, xor_previous: 2 } as const;
export const RESIDUALS_TYPE = `Enum8('whole' = ${RESIDUALS.whole}, 'xor_previous' = ${RESIDUALS.xor_previous})`;

/**
 * `packed` holds, for a chunk of n packets, each field below for all n
 * packets (little-endian, `bytes` each), then the SACK blocks (two UInt32 per
 * block, `sack_blocks` per packet), then the header residuals (residual.ts).
 * `ts`, `ip_id`, `seq`, `ack`, `opt_ts_val` and `opt_ts_ecr` hold the
 * difference from the previous packet's value, modulo their width; the first
 * packet's previous value is 0, except for `ts`, whose first packet counts
 * from the chunk's `first_ts`.
 *
 * The residuals, by the chunk's `residuals` column:
 * - 'whole' (chunks packed in SQL from a row per packet): each packet's
 *   `header_len` bytes as they are.
 * - 'xor_previous' (the writer's): each packet's residual XOR the previous
 *   packet's (over the bytes both have; the first packet's as it is), in
 *   groups of 8 bytes (the last one shorter): a mask byte whose bit j says
 *   byte j of the group is not 0, then those bytes. Beyond what the columns
 *   say, a connection's packets differ in few header bytes (the TCP checksum,
 *   when it is not offloaded), so most groups take one zero byte: 11 bytes a
 *   packet instead of 66 for Ethernet, IPv4 and TCP with timestamps.
 */
export const PACKED_FIELDS = [
  { name: 'ts', bytes: 8 },
  { name: 'ip_id', bytes: 2 },
  { name: 'seq', bytes: 4 },
  { name: 'ack', bytes: 4 },
  { name: 'flags', bytes: 1 },
  { name: 'win', bytes: 2 },
  { name: 'len', bytes: 4 },
  { name: 'wire_len', bytes: 4 },
  { name: 'opt_present', bytes: 1 },
  { name: 'opt_mss', bytes: 2 },
  { name: 'opt_wscale', bytes: 1 },
  { name: 'opt_sack_perm', bytes: 1 },
  { name: 'opt_ts_val', bytes: 4 },
  { name: 'opt_ts_ecr', bytes: 4 },
  { name: 'sack_blocks', bytes: 1 },
  { name: 'header_len', bytes: 2 },
] as const;

export type PackedField = (typeof PACKED_FIELDS)[number]['name'];

/** Bytes per packet of the fixed-width fields. */
export const FIXED_BYTES = PACKED_FIELDS.reduce((sum, f) => sum + f.bytes, 0);

/** Where field `name` starts in a chunk of `n` packets, as byte offsets per packet before it. */
export const FIELD_OFFSET = Object.fromEntries(
  PACKED_FIELDS.map((f, i) => [f.name, PACKED_FIELDS.slice(0, i).reduce((sum, g) => sum + g.bytes, 0)]),
) as Record<PackedField, number>;

// ---- the same format in SQL

/**
 * INSERT ... SELECT packing the rows of a packets table with a row per packet
 * (`rows`: schema versions 1 to 4) into chunks of one capture point, direction
 * and second, their residuals 'whole' (the column's default since version 6).
 * It packs without lambdas that capture a column: those copy the column for
 * every array element.
 */
export function packChunksSql(chunks: string, rows: string): string {
  // Fields in PACKED_FIELDS order; the packets of a chunk sorted by time (then id, for a fixed order).
  const sorted = `arraySort(p -> (p.1, p.2), groupArray((toUnixTimestamp64Nano(ts), packet_id, ip_id, seq, ack, flags, win, len, wire_len,
    opt_present, opt_mss, opt_wscale, toUInt8(opt_sack_perm), opt_ts_val, opt_ts_ecr, opt_sack, headers_residual)))`;
  const bytesOf = (values: string, bytes: number) =>
    `arrayStringConcat(arrayMap(x -> rightPad(reinterpretAsString(x), ${bytes}, '\\0'), ${values}))`;
  const column = (k: number) => `arrayMap(p -> p.${k}, chunk)`;
  // Differences from the previous packet (the first from 0), wrapped to the field's width.
  const deltas = (k: number, type: string) => `arrayMap(x -> to${type}(x), arrayPopFront(arrayDifference(arrayPushFront(arrayMap(x -> toInt64(x), ${column(k)}), 0))))`;
  const packed = [
    bytesOf(`arrayPopFront(arrayDifference(arrayPushFront(${column(1)}, toUnixTimestamp64Nano(first_ts))))`, 8),
    bytesOf(deltas(3, 'UInt16'), 2), bytesOf(deltas(4, 'UInt32'), 4), bytesOf(deltas(5, 'UInt32'), 4),
    bytesOf(column(6), 1), bytesOf(column(7), 2), bytesOf(column(8), 4), bytesOf(column(9), 4),
    bytesOf(column(10), 1), bytesOf(column(11), 2), bytesOf(column(12), 1), bytesOf(column(13), 1),
    bytesOf(deltas(14, 'UInt32'), 4), bytesOf(deltas(15, 'UInt32'), 4),
    bytesOf(`arrayMap(p -> toUInt8(length(p.16)), chunk)`, 1), bytesOf(`arrayMap(p -> toUInt16(length(p.17)), chunk)`, 2),
    bytesOf(`arrayFlatten(arrayMap(p -> arrayMap(b -> [b.1, b.2], p.16), chunk))`, 4),
    `arrayStringConcat(${column(17)})`,
  ].join(',\n    ');
  return `INSERT INTO ${chunks} (${VERSION_5_COLUMNS.join(', ')})
SELECT node, netns, netns_ino, iface, ifindex, hook, direction, proto, src, sport, dst, dport, link_type,
  min(ts) AS first_ts, max(ts) AS last_ts, toUInt32(count()) AS count,
  arrayMap(p -> p.2, ${sorted} AS chunk) AS packet_ids,
  concat(${packed}) AS packed
FROM ${rows}
GROUP BY node, netns, netns_ino, iface, ifindex, hook, direction, proto, src, sport, dst, dport, link_type, toStartOfSecond(ts)`;
}
