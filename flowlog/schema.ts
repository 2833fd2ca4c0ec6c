// The flow-log schema: table definitions, the migrations that create and
// evolve them (the one way the schema changes), how they are laid out on one
// server or across a cluster, retention, and the one SQL expression for the
// direction-insensitive connection key.

import { DIRECTION, HOOK, PROTO_NUMBER } from '../model/protocol.js';
import { FlowLogError } from './errors.js';
import { packChunksSql, RESIDUALS_TYPE } from './packets/chunk-format.js';

export type TableName = 'packets' | 'flows' | 'nat_translations' | 'drops';
export const TABLE_NAMES: readonly TableName[] = ['packets', 'flows', 'nat_translations', 'drops'];

/** The ClickHouse Enum8 type of `values` (name: number), in their order. */
const enum8 = (values: Readonly<Record<string, number>>): string =>
  `Enum8(${Object.entries(values).map(([name, value]) => `'${name}' = ${value}`).join(', ')})`;

const PROTO_ENUM = enum8(PROTO_NUMBER);

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

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Throws STORE_CONFIG unless `name` is a plain identifier, safe to splice into SQL. */
export function checkIdentifier(name: string, what: string): string {
  if (!IDENTIFIER.test(name)) {
    throw new FlowLogError('STORE_CONFIG', `${what} ${JSON.stringify(name)} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)`);
  }
  return name;
}

/** Where the schema lives: a database, on one server (or embedded) or on every node of a cluster. */
export interface SchemaTarget {
  /** A checked identifier. */
  database: string;
  /** A checked identifier: the cluster's name in the servers' remote_servers configuration; null for one server. */
  cluster: string | null;
}

export interface TableDefinition {
  /** The table's own name (on one server; in a cluster, of the Distributed table). */
  name: string;
  /** Column and index definitions, as in CREATE TABLE. */
  columns: string;
  engine: 'MergeTree' | 'ReplacingMergeTree';
  /** Arguments of the engine (e.g. the version column of ReplacingMergeTree). */
  engineArgs: string[];
  partitionBy: string;
  orderBy: string;
  /** The time column retention counts from. */
  retentionColumn: string;
  /** In a cluster, spreads rows over shards so that all rows of a connection (and every version of a flow) share one. */
  shardingKey: string;
}

const onCluster = (t: SchemaTarget): string => (t.cluster === null ? '' : ` ON CLUSTER ${t.cluster}`);

/** The table that holds a table's rows on each node: the table itself on one server, `<name>_local` in a cluster. */
export function storageTable(t: SchemaTarget, name: string): string {
  return t.cluster === null ? `${t.database}.${name}` : `${t.database}.${name}_local`;
}

/**
 * CREATE TABLE statements for a table. On one server: a MergeTree-family
 * table. In a cluster: a Replicated* table `<name>_local` on every node and a
 * Distributed table `<name>` over them, which is what inserts and queries use.
 */
export function createTableStatements(t: SchemaTarget, def: TableDefinition): string[] {
  const body = `(
${def.columns}
)`;
  const tail = `PARTITION BY ${def.partitionBy}
ORDER BY ${def.orderBy}
SETTINGS ttl_only_drop_parts = 1`;
  if (t.cluster === null) {
    const args = def.engineArgs.length > 0 ? `(${def.engineArgs.join(', ')})` : '';
    return [`CREATE TABLE IF NOT EXISTS ${t.database}.${def.name} ${body}
ENGINE = ${def.engine}${args}
${tail}`];
  }
  const replicated = [`'/clickhouse/tables/{shard}/{database}/{table}'`, `'{replica}'`, ...def.engineArgs].join(', ');
  return [
    `CREATE TABLE IF NOT EXISTS ${storageTable(t, def.name)}${onCluster(t)} ${body}
ENGINE = Replicated${def.engine}(${replicated})
${tail}`,
    `CREATE TABLE IF NOT EXISTS ${t.database}.${def.name}${onCluster(t)} AS ${storageTable(t, def.name)}
ENGINE = Distributed(${t.cluster}, ${t.database}, ${def.name}_local, ${def.shardingKey})`,
  ];
}

/**
 * Parts smaller than this (uncompressed) are written in the compact format: all
 * columns in one file, instead of a wide part of a file or two per column, whose
 * creation and deletion after merges cost the engine much of its CPU per
 * inserted packet (docs/store.md).
 */
const COMPACT_PART_BYTES = 64 * 1024 * 1024;

/** ALTER statements setting a table's storage settings: on its storage table (on every node of a cluster). */
export function tableSettingsStatements(t: SchemaTarget, name: string, settings: Record<string, number>): string[] {
  const list = Object.entries(settings).map(([key, value]) => `${key} = ${value}`).join(', ');
  return [`ALTER TABLE ${storageTable(t, name)}${onCluster(t)} MODIFY SETTING ${list}`];
}

/** ALTER statements adding columns to a table: to its storage table and, in a cluster, to the Distributed table over it. */
export function addColumnsStatements(t: SchemaTarget, name: string, columns: readonly string[]): string[] {
  const add = columns.map((column) => `ADD COLUMN IF NOT EXISTS ${column}`).join(', ');
  const tables = t.cluster === null ? [storageTable(t, name)] : [storageTable(t, name), `${t.database}.${name}`];
  return tables.map((table) => `ALTER TABLE ${table}${onCluster(t)} ${add}`);
}

/** ALTER statements adding a data-skipping index to a table's storage table (parts written from then on have it). */
export function addIndexStatements(t: SchemaTarget, name: string, index: string): string[] {
  return [`ALTER TABLE ${storageTable(t, name)}${onCluster(t)} ADD INDEX IF NOT EXISTS ${index}`];
}

export function createDatabaseStatement(t: SchemaTarget): string {
  return `CREATE DATABASE IF NOT EXISTS ${t.database}${onCluster(t)}`;
}

/** The applied migrations; in a cluster one table replicated to every node (no shard in its path). */
export function schemaVersionTableStatement(t: SchemaTarget): string {
  const engine = t.cluster === null ? 'MergeTree' : `ReplicatedMergeTree('/clickhouse/tables/{database}/{table}', '{replica}')`;
  return `CREATE TABLE IF NOT EXISTS ${t.database}.schema_version${onCluster(t)} (
  version UInt32,
  applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ${engine} ORDER BY version`;
}

/** Retention of a table: seconds rows are kept after their time column, or null to keep them for ever. */
export type Retention = number | null;

/** The TTL expression for keeping a table's rows `seconds` (a positive integer). */
export function ttlExpression(def: TableDefinition, seconds: number): string {
  if (!Number.isSafeInteger(seconds) || seconds <= 0) {
    throw new FlowLogError('STORE_CONFIG', `retention of ${def.name}: ${seconds} is not a positive number of seconds`);
  }
  return `toDateTime(${def.retentionColumn}) + toIntervalSecond(${seconds})`;
}

/** The statement that sets a table's retention. Expired rows go with whole daily partitions (ttl_only_drop_parts). */
export function retentionStatement(t: SchemaTarget, def: TableDefinition, retention: Retention): string {
  const change = retention === null ? 'REMOVE TTL' : `MODIFY TTL ${ttlExpression(def, retention)}`;
  return `ALTER TABLE ${storageTable(t, def.name)}${onCluster(t)} ${change}`;
}

// ---- tables of schema version 1

/** Codec of the time and counter columns that grow along a connection: deltas, then ZSTD. */
const GROWING = 'CODEC(Delta, ZSTD(1))';
const Z = 'CODEC(ZSTD(1))';
const Z3 = 'CODEC(ZSTD(3))';

/**
 * Where a packet was seen and its five-tuple, in packets (a row per packet) and packet chunks. node,
 * netns and iface are plain Strings: with ZSTD(3) they take as little room as LowCardinality, whose
 * conversion costs a quarter of the engine's time per inserted row (ZSTD(1) misses their short repeats).
 */
const PACKET_POINT_AND_TUPLE = `  node String ${Z3},
  netns String ${Z3},
  netns_ino UInt32 ${Z},
  iface String ${Z3},
  ifindex UInt32 ${Z},
  hook ${enum8(HOOK)} ${Z},
  direction ${enum8(DIRECTION)} ${Z},
  proto ${PROTO_ENUM} ${Z},
  src IPv6 ${Z},
  sport UInt16 ${Z},
  dst IPv6 ${Z},
  dport UInt16 ${Z}`;

/** Packets, one row per packet, in schema versions 1 to 4; since version 5 in PACKET_CHUNKS. */
export const PACKET_ROWS_V1: TableDefinition = {
  name: 'packets',
  columns: `  ts DateTime64(9, 'UTC') ${GROWING},
${PACKET_POINT_AND_TUPLE},
  ip_id UInt16 ${GROWING},
  seq UInt32 ${GROWING},
  ack UInt32 ${GROWING},
  flags UInt8 ${Z},
  win UInt16 ${Z},
  len UInt32 ${Z},
  wire_len UInt32 ${Z},
  opt_present UInt8 COMMENT 'TCP options carried: 1 mss, 2 wscale, 4 sack_perm, 8 ts_val, 16 ts_ecr, 32 sack' ${Z},
  opt_mss UInt16 ${Z},
  opt_wscale UInt8 ${Z},
  opt_sack_perm Bool ${Z},
  opt_ts_val UInt32 ${GROWING},
  opt_ts_ecr UInt32 ${GROWING},
  opt_sack Array(Tuple(UInt32, UInt32)) ${Z},
  link_type UInt16 ${Z},
  packet_id UInt64 ${Z},
  headers_residual String COMMENT 'the raw header bytes XOR what the other columns say they are (flowlog/packets/residual.ts)' ${Z3},
  conn_key UInt64 MATERIALIZED ${connKeySql('proto', 'src', 'sport', 'dst', 'dport')} ${Z}`,
  engine: 'MergeTree',
  engineArgs: [],
  partitionBy: 'toDate(ts)',
  // A connection's packets, one direction after the other, in time order: seq, ack, ids and
  // header residuals change little from row to row, and a packet seen at several capture
  // points comes as adjacent rows with equal packet ids and residuals, which compress away.
  orderBy: '(conn_key, src, sport, ts)',
  retentionColumn: 'ts',
  shardingKey: connKeySql('proto', 'src', 'sport', 'dst', 'dport'),
};

/** Flows; the bloom filter on syn_seq serves flowsBySynSeq in queries.ts (tcp-seq NAT hops). */
export const FLOWS: TableDefinition = {
  name: 'flows',
  columns: `  id String ${Z},
  proto ${PROTO_ENUM} ${Z},
  client_ip IPv6 ${Z},
  client_port UInt16 ${Z},
  server_ip IPv6 ${Z},
  server_port UInt16 ${Z},
  node LowCardinality(String),
  netns LowCardinality(String),
  iface LowCardinality(String),
  start_ts DateTime64(9, 'UTC') ${GROWING},
  end_ts DateTime64(9, 'UTC') ${Z},
  packets_c2s UInt64 ${Z},
  packets_s2c UInt64 ${Z},
  bytes_c2s UInt64 ${Z},
  bytes_s2c UInt64 ${Z},
  conn_state LowCardinality(String),
  history String ${Z},
  rtt_ns Nullable(UInt64) ${Z},
  retrans_c2s UInt32 ${Z},
  retrans_s2c UInt32 ${Z},
  zero_window_c2s UInt32 ${Z},
  zero_window_s2c UInt32 ${Z},
  close Enum8('fin' = 1, 'rst' = 2, 'timeout' = 3, 'open' = 4) ${Z},
  syn_seq Nullable(UInt32) ${Z},
  syn_ack_seq Nullable(UInt32) ${Z},
  version UInt64 COMMENT 'write order of the flushes of one flow; the highest is the current state' ${Z},
  conn_key UInt64 MATERIALIZED ${connKeySql('proto', 'client_ip', 'client_port', 'server_ip', 'server_port')} ${Z},
  INDEX syn_seqs syn_seq TYPE bloom_filter(0.01) GRANULARITY 1`,
  engine: 'ReplacingMergeTree',
  engineArgs: ['version'],
  partitionBy: 'toDate(start_ts)',
  orderBy: '(conn_key, start_ts, id)',
  retentionColumn: 'end_ts',
  shardingKey: connKeySql('proto', 'client_ip', 'client_port', 'server_ip', 'server_port'),
};

export const NAT_TRANSLATIONS: TableDefinition = {
  name: 'nat_translations',
  columns: `  via Enum8('iptables' = 1, 'ipvs' = 2, 'ovs' = 3) ${Z},
  node LowCardinality(String),
  netns LowCardinality(String),
  zone UInt16 ${Z},
  proto ${PROTO_ENUM} ${Z},
  orig_src IPv6 ${Z},
  orig_sport UInt16 ${Z},
  orig_dst IPv6 ${Z},
  orig_dport UInt16 ${Z},
  reply_src IPv6 ${Z},
  reply_sport UInt16 ${Z},
  reply_dst IPv6 ${Z},
  reply_dport UInt16 ${Z},
  first_seen DateTime64(9, 'UTC') ${Z},
  last_seen DateTime64(9, 'UTC') ${Z},
  entry_id UInt32 ${Z},
  orig_key UInt64 MATERIALIZED ${connKeySql('proto', 'orig_src', 'orig_sport', 'orig_dst', 'orig_dport')} ${Z},
  reply_key UInt64 MATERIALIZED ${connKeySql('proto', 'reply_src', 'reply_sport', 'reply_dst', 'reply_dport')} ${Z},
  INDEX tuple_keys (orig_key, reply_key) TYPE bloom_filter(0.001) GRANULARITY 1`,
  engine: 'ReplacingMergeTree',
  engineArgs: ['last_seen'],
  partitionBy: 'toDate(first_seen)',
  orderBy: '(orig_key, node, netns, zone, via, proto, entry_id, orig_src, orig_sport, orig_dst, orig_dport, first_seen)',
  retentionColumn: 'last_seen',
  shardingKey: connKeySql('proto', 'orig_src', 'orig_sport', 'orig_dst', 'orig_dport'),
};

// ---- tables of schema version 2

/** Packets the kernel dropped (skb:kfree_skb), with reason, location and the headers it held; flowlog/drops-table.ts. */
export const DROPS: TableDefinition = {
  name: 'drops',
  columns: `  ts DateTime64(9, 'UTC') ${GROWING},
  node LowCardinality(String),
  netns LowCardinality(String),
  netns_ino UInt32 ${Z},
  iface LowCardinality(String),
  ifindex UInt32 ${Z},
  proto ${PROTO_ENUM} ${Z},
  src IPv6 ${Z},
  sport UInt16 ${Z},
  dst IPv6 ${Z},
  dport UInt16 ${Z},
  reason LowCardinality(String) COMMENT 'the kernel''s name (enum skb_drop_reason, from its BTF), or the number',
  reason_code UInt32 ${Z},
  location LowCardinality(String) COMMENT 'function+0xoffset that freed the packet',
  stack Array(LowCardinality(String)) ${Z},
  cause String ${Z},
  packet_id UInt64 COMMENT 'as capture computes it: joins a drop to the packets seen before it' ${Z},
  wire_len UInt32 ${Z},
  link_type UInt16 ${Z},
  headers String CODEC(ZSTD(3)),
  conn_key UInt64 MATERIALIZED ${connKeySql('proto', 'src', 'sport', 'dst', 'dport')} ${Z},
  INDEX packet_ids packet_id TYPE bloom_filter(0.01) GRANULARITY 1`,
  engine: 'MergeTree',
  engineArgs: [],
  partitionBy: 'toDate(ts)',
  orderBy: '(conn_key, ts)',
  retentionColumn: 'ts',
  shardingKey: connKeySql('proto', 'src', 'sport', 'dst', 'dport'),
};

// ---- tables of schema version 5

/**
 * Packets in chunks (flowlog/packets/chunk-format.ts): one row per capture point,
 * direction of a connection and insert, the per-packet fields packed in
 * `packed`, their packet ids in `packet_ids`. Chunks of a connection's
 * direction come in time order, the same packet's chunks at several capture
 * points as adjacent rows.
 */
export const PACKET_CHUNKS: TableDefinition = {
  name: 'packet_chunks',
  columns: `${PACKET_POINT_AND_TUPLE},
  link_type UInt16 ${Z},
  first_ts DateTime64(9, 'UTC') ${GROWING},
  last_ts DateTime64(9, 'UTC') ${GROWING},
  count UInt32 ${Z},
  packet_ids Array(UInt64) ${Z},
  packed String COMMENT 'the packets'' fields, column by column (flowlog/packets/chunk-format.ts)' ${Z},
  conn_key UInt64 MATERIALIZED ${connKeySql('proto', 'src', 'sport', 'dst', 'dport')} ${Z}`,
  engine: 'MergeTree',
  engineArgs: [],
  partitionBy: 'toDate(first_ts)',
  orderBy: '(conn_key, src, sport, first_ts)',
  retentionColumn: 'last_ts',
  shardingKey: connKeySql('proto', 'src', 'sport', 'dst', 'dport'),
};

// ---- columns of schema version 8

/** A drop's fate (model/records.ts DropFateName); rows stored before version 8 read as 'unknown'. */
export const DROP_FATE_ENUM = enum8({ unknown: 0, lost: 1, copy: 2, consumed: 3 });

/** The drops' fate, its evidence, and the sighting it rests on (flowlog/drop-fate.ts). */
const DROP_FATE_COLUMNS = [
  `fate ${DROP_FATE_ENUM} DEFAULT 'unknown' COMMENT 'lost, copy (the packet went on elsewhere), consumed (processed, then freed), unknown (not decided)' ${Z}`,
  `fate_proof String DEFAULT '' ${Z}`,
  `seen_at String DEFAULT '' COMMENT 'node/netns/iface of the sighting the fate rests on, empty for none' ${Z}`,
  `seen_delta_ns Nullable(Int64) COMMENT 'that sighting''s time minus the drop''s' ${Z}`,
];

/** Where each kind of record is stored. */
export const TABLES: Record<TableName, TableDefinition> = {
  packets: PACKET_CHUNKS,
  flows: FLOWS,
  nat_translations: NAT_TRANSLATIONS,
  drops: DROPS,
};

// ---- migrations

/** Statements run only when `onlyIf` (a query of one number) returns non-zero. */
export interface ConditionalStatements {
  onlyIf: string;
  statements: string[];
}

export interface Migration {
  version: number;
  /**
   * What brings a store from version-1 to version, in order. Run again after
   * an interruption, the steps must bring the store to the same state.
   */
  statements(t: SchemaTarget): Array<string | ConditionalStatements>;
}

/**
 * Version 5: packets move from a row per packet to chunks. While the table
 * with a row per packet exists, its rows are packed into chunks (one per
 * capture point, direction and second) and then it is dropped: interrupted
 * before the drop, the copy starts over; after, it is not repeated.
 */
function packetChunksMigration(t: SchemaTarget): Array<string | ConditionalStatements> {
  const flat = `${t.database}.${PACKET_ROWS_V1.name}`;
  const chunks = `${t.database}.${PACKET_CHUNKS.name}`;
  const drop = t.cluster === null ? [flat] : [flat, storageTable(t, PACKET_ROWS_V1.name)];
  return [
    ...createTableStatements(t, PACKET_CHUNKS),
    ...tableSettingsStatements(t, PACKET_CHUNKS.name, { min_bytes_for_wide_part: COMPACT_PART_BYTES }),
    {
      onlyIf: `SELECT count() FROM system.tables WHERE database = '${t.database}' AND name = '${PACKET_ROWS_V1.name}'`,
      statements: [
        `TRUNCATE TABLE IF EXISTS ${storageTable(t, PACKET_CHUNKS.name)}${onCluster(t)}`,
        `${packChunksSql(chunks, flat)} SETTINGS max_bytes_before_external_group_by = 1000000000`,
        ...drop.map((table) => `DROP TABLE IF EXISTS ${table}${onCluster(t)} SYNC`),
      ],
    },
  ];
}

/**
 * The schema's history, oldest first: the one way the schema changes is a new
 * migration appended here (versions 1, 2, 3, ... without gaps). A table is
 * created with createTableStatements, so that it is laid out the same way on
 * one server and in a cluster.
 */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, statements: (t) => [PACKET_ROWS_V1, FLOWS, NAT_TRANSLATIONS].flatMap((def) => createTableStatements(t, def)) },
  { version: 2, statements: (t) => createTableStatements(t, DROPS) },
  { version: 3, statements: (t) => addColumnsStatements(t, 'flows', [`out_of_order_c2s UInt32 ${Z}`, `out_of_order_s2c UInt32 ${Z}`]) },
  { version: 4, statements: (t) => TABLE_NAMES.flatMap((name) => tableSettingsStatements(t, name, { min_bytes_for_wide_part: COMPACT_PART_BYTES })) },
  { version: 5, statements: packetChunksMigration },
  // Chunks stored before keep their residuals whole; the writer's come as XOR with the previous packet's.
  {
    version: 6,
    statements: (t) => addColumnsStatements(t, PACKET_CHUNKS.name, [
      `residuals ${RESIDUALS_TYPE} DEFAULT 'whole' COMMENT 'how packed holds the header residuals (flowlog/packets/chunk-format.ts)' ${Z}`,
    ]),
  },
  // Flows stored before were not joined into connections: each is a connection of its own.
  {
    version: 7,
    statements: (t) => [
      ...addColumnsStatements(t, 'flows', [
        `connection_id String DEFAULT id COMMENT 'the same at every capture point of one connection: the id of its earliest flow' ${Z}`,
      ]),
      `ALTER TABLE ${storageTable(t, 'flows')}${onCluster(t)} ADD INDEX IF NOT EXISTS connection_ids connection_id TYPE bloom_filter(0.01) GRANULARITY 1`,
    ],
  },
  // Drops get their fate; the packet ids of chunks a bloom filter, so that a drop's sightings are found
  // without reading every chunk of its time (chunks written before keep none and are read whole).
  {
    version: 8,
    statements: (t) => [
      ...addColumnsStatements(t, DROPS.name, DROP_FATE_COLUMNS),
      ...addIndexStatements(t, PACKET_CHUNKS.name, 'packet_ids packet_ids TYPE bloom_filter(0.01) GRANULARITY 1'),
    ],
  },
];

/** The schema version this code writes and reads: the last migration's. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;
