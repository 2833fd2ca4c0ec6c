// The flow-log schema: table DDL per schema version and the one SQL expression
// for the direction-insensitive connection key.

import type { Proto } from './records.js';

/** The schema version this code writes and reads. */
export const SCHEMA_VERSION = 1;

export type TableName = 'packets' | 'flows' | 'nat_translations';
export const TABLE_NAMES: readonly TableName[] = ['packets', 'flows', 'nat_translations'];

/** IANA protocol numbers; also the values of the `proto` Enum8 columns. */
export const PROTO_NUMBER: Record<Proto, number> = { tcp: 6, udp: 17 };

const PROTO_ENUM = `Enum8('tcp' = 6, 'udp' = 17)`;

/**
 * SQL for the connection key of `proto a:aPort <-> b:bPort`, the same for both
 * directions. Arguments are SQL expressions: column names in DDL, `{name:Type}`
 * placeholders in queries. Addresses are hashed as their 16 IPv6 bytes in hex
 * and ports as decimal text, so the key does not depend on how a server
 * version hashes the IPv6 type itself.
 */
export function connKeySql(proto: string, a: string, aPort: string, b: string, bPort: string): string {
  const endA = `concat(hex(toIPv6(${a})), ':', toString(toUInt16(${aPort})))`;
  const endB = `concat(hex(toIPv6(${b})), ':', toString(toUInt16(${bPort})))`;
  return `cityHash64(concat(toString(toUInt8(${proto})), '|', least(${endA}, ${endB}), '|', greatest(${endA}, ${endB})))`;
}

/** `db` must be a validated identifier. */
export function schemaVersionTableDdl(db: string): string {
  return `CREATE TABLE IF NOT EXISTS ${db}.schema_version (
  version UInt32,
  applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY version`;
}

export interface Migration {
  version: number;
  statements: string[];
}

/** Everything that brings a store from version N-1 to N, in order. Statements are idempotent. */
export function migrations(db: string): Migration[] {
  return [{ version: 1, statements: [packetsDdl(db), flowsDdl(db), natDdl(db)] }];
}

function packetsDdl(db: string): string {
  return `CREATE TABLE IF NOT EXISTS ${db}.packets (
  ts DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
  node LowCardinality(String),
  netns LowCardinality(String),
  netns_ino UInt32,
  iface LowCardinality(String),
  ifindex UInt32,
  hook Enum8('tc' = 1, 'xdp' = 2),
  direction Enum8('ingress' = 1, 'egress' = 2),
  proto ${PROTO_ENUM},
  src IPv6,
  sport UInt16,
  dst IPv6,
  dport UInt16,
  ip_id UInt16,
  seq UInt32 CODEC(ZSTD(1)),
  ack UInt32 CODEC(ZSTD(1)),
  flags UInt8,
  win UInt16,
  len UInt32,
  wire_len UInt32,
  opt_present UInt8 COMMENT 'TCP options carried: 1 mss, 2 wscale, 4 sack_perm, 8 ts_val, 16 ts_ecr, 32 sack',
  opt_mss UInt16,
  opt_wscale UInt8,
  opt_sack_perm Bool,
  opt_ts_val UInt32 CODEC(ZSTD(1)),
  opt_ts_ecr UInt32 CODEC(ZSTD(1)),
  opt_sack Array(Tuple(UInt32, UInt32)),
  packet_id UInt64,
  link_type UInt16,
  headers_base64 String EPHEMERAL COMMENT 'insert-only: the raw headers, base64',
  headers String DEFAULT base64Decode(headers_base64) CODEC(ZSTD(3)),
  conn_key UInt64 MATERIALIZED ${connKeySql('proto', 'src', 'sport', 'dst', 'dport')}
) ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (conn_key, ts)`;
}

function flowsDdl(db: string): string {
  return `CREATE TABLE IF NOT EXISTS ${db}.flows (
  id String,
  proto ${PROTO_ENUM},
  client_ip IPv6,
  client_port UInt16,
  server_ip IPv6,
  server_port UInt16,
  node LowCardinality(String),
  netns LowCardinality(String),
  iface LowCardinality(String),
  start_ts DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
  end_ts DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
  packets_c2s UInt64,
  packets_s2c UInt64,
  bytes_c2s UInt64,
  bytes_s2c UInt64,
  conn_state LowCardinality(String),
  history String,
  rtt_ns Nullable(UInt64),
  retrans_c2s UInt32,
  retrans_s2c UInt32,
  zero_window_c2s UInt32,
  zero_window_s2c UInt32,
  close Enum8('fin' = 1, 'rst' = 2, 'timeout' = 3, 'open' = 4),
  syn_seq Nullable(UInt32),
  syn_ack_seq Nullable(UInt32),
  version UInt64 COMMENT 'write order of the flushes of one flow; the highest is the current state',
  conn_key UInt64 MATERIALIZED ${connKeySql('proto', 'client_ip', 'client_port', 'server_ip', 'server_port')}
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(start_ts)
ORDER BY (conn_key, start_ts, id)`;
}

function natDdl(db: string): string {
  return `CREATE TABLE IF NOT EXISTS ${db}.nat_translations (
  via Enum8('iptables' = 1, 'ipvs' = 2, 'ovs' = 3),
  node LowCardinality(String),
  netns LowCardinality(String),
  zone UInt16,
  proto ${PROTO_ENUM},
  orig_src IPv6,
  orig_sport UInt16,
  orig_dst IPv6,
  orig_dport UInt16,
  reply_src IPv6,
  reply_sport UInt16,
  reply_dst IPv6,
  reply_dport UInt16,
  first_seen DateTime64(9, 'UTC'),
  last_seen DateTime64(9, 'UTC'),
  entry_id UInt32,
  orig_key UInt64 MATERIALIZED ${connKeySql('proto', 'orig_src', 'orig_sport', 'orig_dst', 'orig_dport')},
  reply_key UInt64 MATERIALIZED ${connKeySql('proto', 'reply_src', 'reply_sport', 'reply_dst', 'reply_dport')},
  INDEX tuple_keys (orig_key, reply_key) TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = ReplacingMergeTree(last_seen)
PARTITION BY toDate(first_seen)
ORDER BY (orig_key, node, netns, zone, via, proto, entry_id, orig_src, orig_sport, orig_dst, orig_dport, first_seen)`;
}
