// Records <-> table rows, and the checks every encoder (drops-table.ts and
// packets/record-columns.ts too) puts values through. Inserts are RowBinary rows
// of the *_COLUMNS, in that order, with the tables' own column types. Packets
// are written in chunks (packets/chunk-writer.ts) and read in bulk
// (packets/rows.ts); flows and NAT entries select the *_SELECT_COLUMNS in
// JSONCompactEachRow, 64-bit values through toString() so they stay exact.

import { formatIPv6, fromMappedText, toMappedBytes } from '../model/address.js';
import { PROTO_NUMBER } from '../model/protocol.js';
import type { FlowRecord, FourTuple, NatTranslation } from '../model/records.js';
import { FlowLogError } from './errors.js';
import type { RowBinaryWriter } from './rowbinary.js';

export const U8 = 0xff;
export const U16 = 0xffff;
export const U32 = 0xffffffff;
const U64 = (1n << 64n) - 1n;
/** The largest DateTime64(9) value: 2262-04-11T23:47:16.854775807Z. */
export const MAX_TS_NS = (1n << 63n) - 1n;
const SAFE = Number.MAX_SAFE_INTEGER;

export function invalid(field: string, value: unknown): FlowLogError {
  return new FlowLogError('INVALID_VALUE', `${field}: invalid value ${JSON.stringify(String(value))}`);
}

export function uint(value: number, max: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max) throw invalid(field, value);
  return value;
}

export function u64(value: bigint, field: string): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > U64) throw invalid(field, value);
  return value;
}

/** A DateTime64(9) value: epoch nanoseconds. */
export function timestamp(ns: bigint, field: string): bigint {
  if (typeof ns !== 'bigint' || ns < 0n || ns > MAX_TS_NS) throw invalid(field, ns);
  return ns;
}

/** The Enum8 value of `value`, one of the names of `values` (e.g. HOOK of model/protocol.ts). */
export function enumValue(value: string, values: Readonly<Record<string, number>>, field: string): number {
  if (!Object.hasOwn(values, value)) throw invalid(field, value);
  return values[value];
}

/** The 16 bytes of an IPv6 column for an address (IPv4 as IPv4-mapped). Do not modify them. */
export function addressBytes(ip: string, field: string): Uint8Array {
  const bytes = typeof ip === 'string' ? toMappedBytes(ip) : null;
  if (bytes === null) throw invalid(field, ip);
  return bytes;
}

/** An address as an IPv6 column takes it in text (IPv4 as IPv4-mapped `::ffff:a.b.c.d`). */
export function storedAddress(ip: string, field: string): string {
  return formatIPv6(addressBytes(ip, field));
}

const MAX_CACHED_TEXTS = 4096;
const textCache = new Map<string, Buffer>();

/** UTF-8 bytes of a String column's value; names of nodes, namespaces and interfaces repeat, so they are cached. */
export function utf8(value: string, field: string): Buffer {
  if (typeof value !== 'string') throw invalid(field, value);
  let bytes = textCache.get(value);
  if (bytes === undefined) {
    bytes = Buffer.from(value, 'utf8');
    if (value.length <= 64) {
      if (textCache.size >= MAX_CACHED_TEXTS) textCache.clear();
      textCache.set(value, bytes);
    }
  }
  return bytes;
}

/** SQL reading a DateTime64(9) column as exact epoch nanoseconds (text). */
const nsOf = (column: string): string => `toString(toUnixTimestamp64Nano(${column}))`;

/** Values of the Enum8 columns, as in schema.ts (those of proto, hook and direction: model/protocol.ts). */
const CLOSE = { fin: 1, rst: 2, timeout: 3, open: 4 };
const NAT_VIA = { iptables: 1, ipvs: 2, ovs: 3 };


// ---- flows

export const FLOW_COLUMNS = [
  'id', 'proto', 'client_ip', 'client_port', 'server_ip', 'server_port', 'node', 'netns', 'iface',
  'start_ts', 'end_ts', 'packets_c2s', 'packets_s2c', 'bytes_c2s', 'bytes_s2c', 'conn_state', 'history',
  'rtt_ns', 'retrans_c2s', 'retrans_s2c', 'zero_window_c2s', 'zero_window_s2c', 'close',
  'syn_seq', 'syn_ack_seq', 'version', 'out_of_order_c2s', 'out_of_order_s2c', 'connection_id',
] as const;

function nullableU32(value: number | null, field: string, out: RowBinaryWriter): void {
  out.u8(value === null ? 1 : 0);
  if (value !== null) out.u32(uint(value, U32, field));
}

/** `version` orders the flushes of one flow: the row with the highest is current. */
export function encodeFlow(f: FlowRecord, version: bigint, out: RowBinaryWriter): void {
  if (typeof f.id !== 'string' || f.id === '') throw invalid('id', f.id);
  out.string(Buffer.from(f.id, 'utf8'));
  out.u8(enumValue(f.proto, PROTO_NUMBER, 'proto'));
  out.fixed(addressBytes(f.client.ip, 'client.ip'));
  out.u16(uint(f.client.port, U16, 'client.port'));
  out.fixed(addressBytes(f.server.ip, 'server.ip'));
  out.u16(uint(f.server.port, U16, 'server.port'));
  out.string(utf8(f.node, 'node'));
  out.string(utf8(f.netns, 'netns'));
  out.string(utf8(f.iface, 'iface'));
  out.i64(timestamp(f.start, 'start'));
  out.i64(timestamp(f.end, 'end'));
  out.u64(BigInt(uint(f.packets.c2s, SAFE, 'packets.c2s')));
  out.u64(BigInt(uint(f.packets.s2c, SAFE, 'packets.s2c')));
  out.u64(BigInt(uint(f.bytes.c2s, SAFE, 'bytes.c2s')));
  out.u64(BigInt(uint(f.bytes.s2c, SAFE, 'bytes.s2c')));
  out.string(utf8(f.connState, 'connState'));
  out.string(utf8(f.history, 'history'));
  out.u8(f.rttNs === null ? 1 : 0);
  if (f.rttNs !== null) out.u64(u64(f.rttNs, 'rttNs'));
  out.u32(uint(f.retrans.c2s, U32, 'retrans.c2s'));
  out.u32(uint(f.retrans.s2c, U32, 'retrans.s2c'));
  out.u32(uint(f.zeroWindow.c2s, U32, 'zeroWindow.c2s'));
  out.u32(uint(f.zeroWindow.s2c, U32, 'zeroWindow.s2c'));
  out.u8(enumValue(f.close, CLOSE, 'close'));
  nullableU32(f.synSeq, 'synSeq', out);
  nullableU32(f.synAckSeq, 'synAckSeq', out);
  out.u64(u64(version, 'version'));
  out.u32(uint(f.outOfOrder.c2s, U32, 'outOfOrder.c2s'));
  out.u32(uint(f.outOfOrder.s2c, U32, 'outOfOrder.s2c'));
  if (typeof f.connectionId !== 'string' || f.connectionId === '') throw invalid('connectionId', f.connectionId);
  out.string(Buffer.from(f.connectionId, 'utf8'));
}

export const FLOW_SELECT_COLUMNS = [
  'id', 'proto', 'toString(client_ip)', 'client_port', 'toString(server_ip)', 'server_port', 'node', 'netns', 'iface',
  nsOf('start_ts'), nsOf('end_ts'), 'toString(packets_c2s)', 'toString(packets_s2c)', 'toString(bytes_c2s)',
  'toString(bytes_s2c)', 'conn_state', 'history', 'toString(rtt_ns)', 'retrans_c2s', 'retrans_s2c',
  'zero_window_c2s', 'zero_window_s2c', 'close', 'syn_seq', 'syn_ack_seq', 'out_of_order_c2s', 'out_of_order_s2c', 'connection_id',
].join(', ');

type FlowRow = [
  string, FlowRecord['proto'], string, number, string, number, string, string, string,
  string, string, string, string, string, string, string, string, string | null, number, number,
  number, number, FlowRecord['close'], number | null, number | null, number, number, string,
];

export function decodeFlow(row: unknown): FlowRecord {
  const [
    id, proto, clientIp, clientPort, serverIp, serverPort, node, netns, iface,
    start, end, packetsC2s, packetsS2c, bytesC2s, bytesS2c, connState, history, rttNs,
    retransC2s, retransS2c, zeroWindowC2s, zeroWindowS2c, close, synSeq, synAckSeq, outOfOrderC2s, outOfOrderS2c, connectionId,
  ] = row as FlowRow;
  return {
    id, connectionId, proto,
    client: { ip: fromMappedText(clientIp), port: clientPort },
    server: { ip: fromMappedText(serverIp), port: serverPort },
    node, netns, iface,
    start: BigInt(start), end: BigInt(end),
    packets: { c2s: Number(packetsC2s), s2c: Number(packetsS2c) },
    bytes: { c2s: Number(bytesC2s), s2c: Number(bytesS2c) },
    connState, history,
    rttNs: rttNs === null ? null : BigInt(rttNs),
    retrans: { c2s: retransC2s, s2c: retransS2c },
    zeroWindow: { c2s: zeroWindowC2s, s2c: zeroWindowS2c },
    outOfOrder: { c2s: outOfOrderC2s, s2c: outOfOrderS2c },
    close, synSeq, synAckSeq,
  };
}

// ---- NAT translations

export const NAT_COLUMNS = [
  'via', 'node', 'netns', 'zone', 'proto',
  'orig_src', 'orig_sport', 'orig_dst', 'orig_dport', 'reply_src', 'reply_sport', 'reply_dst', 'reply_dport',
  'first_seen', 'last_seen', 'entry_id',
] as const;

function encodeTuple(t: FourTuple, field: string, out: RowBinaryWriter): void {
  out.fixed(addressBytes(t.src, `${field}.src`));
  out.u16(uint(t.sport, U16, `${field}.sport`));
  out.fixed(addressBytes(t.dst, `${field}.dst`));
  out.u16(uint(t.dport, U16, `${field}.dport`));
}

export function encodeNat(n: NatTranslation, out: RowBinaryWriter): void {
  out.u8(enumValue(n.via, NAT_VIA, 'via'));
  out.string(utf8(n.node, 'node'));
  out.string(utf8(n.netns, 'netns'));
  out.u16(uint(n.zone, U16, 'zone'));
  out.u8(enumValue(n.proto, PROTO_NUMBER, 'proto'));
  encodeTuple(n.orig, 'orig', out);
  encodeTuple(n.reply, 'reply', out);
  out.i64(timestamp(n.firstSeen, 'firstSeen'));
  out.i64(timestamp(n.lastSeen, 'lastSeen'));
  out.u32(uint(n.entryId, U32, 'entryId'));
}

export const NAT_SELECT_COLUMNS = [
  'via', 'node', 'netns', 'zone', 'proto',
  'toString(orig_src)', 'orig_sport', 'toString(orig_dst)', 'orig_dport',
  'toString(reply_src)', 'reply_sport', 'toString(reply_dst)', 'reply_dport',
  nsOf('first_seen'), nsOf('last_seen'), 'entry_id',
].join(', ');

type NatRow = [
  NatTranslation['via'], string, string, number, NatTranslation['proto'],
  string, number, string, number, string, number, string, number, string, string, number,
];

export function decodeNat(row: unknown): NatTranslation {
  const [
    via, node, netns, zone, proto, origSrc, origSport, origDst, origDport,
    replySrc, replySport, replyDst, replyDport, firstSeen, lastSeen, entryId,
  ] = row as NatRow;
  return {
    via, node, netns, zone, proto,
    orig: { src: fromMappedText(origSrc), sport: origSport, dst: fromMappedText(origDst), dport: origDport },
    reply: { src: fromMappedText(replySrc), sport: replySport, dst: fromMappedText(replyDst), dport: replyDport },
    firstSeen: BigInt(firstSeen), lastSeen: BigInt(lastSeen), entryId,
  };
}
