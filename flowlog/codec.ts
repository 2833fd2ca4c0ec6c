// Records <-> table rows. Inserts are JSONCompactEachRow lines (one JSON array
// per row, in the order of the *_INSERT_COLUMNS); reads select the
// *_SELECT_COLUMNS in JSONCompactEachRow and decode them here. 64-bit values
// are read through toString() so they stay exact.

import { isIPv4, isIPv6 } from 'node:net';
import type { FlowRecord, FourTuple, NatTranslation, PacketRecord, TcpOptions } from './records.js';
import { FlowLogError } from './errors.js';

const U8 = 0xff;
const U16 = 0xffff;
const U32 = 0xffffffff;
const U64 = (1n << 64n) - 1n;
/** The largest DateTime64(9) value: 2262-04-11T23:47:16.854775807Z. */
const MAX_TS_NS = (1n << 63n) - 1n;

function invalid(field: string, value: unknown): FlowLogError {
  return new FlowLogError('INVALID_VALUE', `${field}: invalid value ${JSON.stringify(String(value))}`);
}

function uint(value: number, max: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max) throw invalid(field, value);
  return value;
}

function oneOf<T extends string>(value: T, allowed: readonly T[], field: string): T {
  if (!allowed.includes(value)) throw invalid(field, value);
  return value;
}

function text(value: string, field: string): string {
  if (typeof value !== 'string') throw invalid(field, value);
  return value;
}

function u64Text(value: bigint, field: string): string {
  if (typeof value !== 'bigint' || value < 0n || value > U64) throw invalid(field, value);
  return value.toString();
}

/** An address as the IPv6 columns take it: IPv4 becomes IPv4-mapped `::ffff:a.b.c.d`. */
export function storedAddress(ip: string, field: string): string {
  if (isIPv4(ip)) return `::ffff:${ip}`;
  if (isIPv6(ip)) return ip;
  throw invalid(field, ip);
}

/** An IPv6 column's text back as the records spell it: IPv4-mapped becomes dotted IPv4. */
function recordAddress(stored: string): string {
  return stored.startsWith('::ffff:') && stored.includes('.') ? stored.slice(7) : stored;
}

let cachedSecond = -1n;
let cachedSecondText = '';

/** `YYYY-MM-DD hh:mm:ss.nnnnnnnnn` (UTC): the unambiguous text form of DateTime64(9). */
export function dateTime64Text(ns: bigint, field: string): string {
  if (typeof ns !== 'bigint' || ns < 0n || ns > MAX_TS_NS) throw invalid(field, ns);
  const second = ns / 1_000_000_000n;
  if (second !== cachedSecond) {
    const iso = new Date(Number(second) * 1000).toISOString();
    cachedSecond = second;
    cachedSecondText = `${iso.slice(0, 10)} ${iso.slice(11, 19)}`;
  }
  return `${cachedSecondText}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
}

/** SQL reading a DateTime64(9) column as exact epoch nanoseconds (text). */
const nsOf = (column: string): string => `toString(toUnixTimestamp64Nano(${column}))`;

const HOOKS = ['tc', 'xdp'] as const;
const DIRECTIONS = ['ingress', 'egress'] as const;
const PROTOS = ['tcp', 'udp'] as const;
const CLOSE_TYPES = ['fin', 'rst', 'timeout', 'open'] as const;
const NAT_VIAS = ['iptables', 'ipvs', 'ovs'] as const;

/** Bits of `opt_present`. */
const OPTION_BIT = { mss: 1, wscale: 2, sack_perm: 4, ts_val: 8, ts_ecr: 16, sack: 32 } as const;

// ---- packets

export const PACKET_INSERT_COLUMNS = [
  'ts', 'node', 'netns', 'netns_ino', 'iface', 'ifindex', 'hook', 'direction', 'proto',
  'src', 'sport', 'dst', 'dport', 'ip_id', 'seq', 'ack', 'flags', 'win', 'len', 'wire_len',
  'opt_present', 'opt_mss', 'opt_wscale', 'opt_sack_perm', 'opt_ts_val', 'opt_ts_ecr', 'opt_sack',
  'packet_id', 'link_type', 'headers_base64',
] as const;

export function encodePacket(p: PacketRecord): string {
  const o = p.options;
  let present = 0;
  for (const name of Object.keys(OPTION_BIT) as Array<keyof typeof OPTION_BIT>) {
    if (o[name] !== undefined) present |= OPTION_BIT[name];
  }
  const sack = (o.sack ?? []).map(([left, right], i) => [
    uint(left, U32, `options.sack[${i}][0]`),
    uint(right, U32, `options.sack[${i}][1]`),
  ]);
  if (!(p.headers instanceof Uint8Array)) throw invalid('headers', p.headers);
  return JSON.stringify([
    dateTime64Text(p.ts, 'ts'), text(p.node, 'node'), text(p.netns, 'netns'), uint(p.netnsIno, U32, 'netnsIno'),
    text(p.iface, 'iface'), uint(p.ifindex, U32, 'ifindex'), oneOf(p.hook, HOOKS, 'hook'),
    oneOf(p.direction, DIRECTIONS, 'direction'), oneOf(p.proto, PROTOS, 'proto'),
    storedAddress(p.src, 'src'), uint(p.sport, U16, 'sport'), storedAddress(p.dst, 'dst'), uint(p.dport, U16, 'dport'),
    uint(p.ipId, U16, 'ipId'), uint(p.seq, U32, 'seq'), uint(p.ack, U32, 'ack'), uint(p.flags, U8, 'flags'),
    uint(p.win, U16, 'win'), uint(p.len, U32, 'len'), uint(p.wireLen, U32, 'wireLen'),
    present, uint(o.mss ?? 0, U16, 'options.mss'), uint(o.wscale ?? 0, U8, 'options.wscale'), o.sack_perm === true,
    uint(o.ts_val ?? 0, U32, 'options.ts_val'), uint(o.ts_ecr ?? 0, U32, 'options.ts_ecr'), sack,
    u64Text(p.packetId, 'packetId'), uint(p.linkType, U16, 'linkType'),
    Buffer.from(p.headers.buffer, p.headers.byteOffset, p.headers.byteLength).toString('base64'),
  ]);
}

export const PACKET_SELECT_COLUMNS = [
  nsOf('ts'), 'node', 'netns', 'netns_ino', 'iface', 'ifindex', 'hook', 'direction', 'proto',
  'toString(src)', 'sport', 'toString(dst)', 'dport', 'ip_id', 'seq', 'ack', 'flags', 'win', 'len', 'wire_len',
  'opt_present', 'opt_mss', 'opt_wscale', 'opt_sack_perm', 'opt_ts_val', 'opt_ts_ecr', 'opt_sack',
  'toString(packet_id)', 'link_type', 'base64Encode(headers)',
].join(', ');

type PacketRow = [
  string, string, string, number, string, number, PacketRecord['hook'], PacketRecord['direction'], PacketRecord['proto'],
  string, number, string, number, number, number, number, number, number, number, number,
  number, number, number, boolean, number, number, Array<[number, number]>,
  string, number, string,
];

export function decodePacket(row: unknown): PacketRecord {
  const [
    ts, node, netns, netnsIno, iface, ifindex, hook, direction, proto,
    src, sport, dst, dport, ipId, seq, ack, flags, win, len, wireLen,
    present, mss, wscale, sackPerm, tsVal, tsEcr, sack,
    packetId, linkType, headers,
  ] = row as PacketRow;
  const options: TcpOptions = {};
  if (present & OPTION_BIT.mss) options.mss = mss;
  if (present & OPTION_BIT.wscale) options.wscale = wscale;
  if (present & OPTION_BIT.sack_perm) options.sack_perm = sackPerm;
  if (present & OPTION_BIT.ts_val) options.ts_val = tsVal;
  if (present & OPTION_BIT.ts_ecr) options.ts_ecr = tsEcr;
  if (present & OPTION_BIT.sack) options.sack = sack;
  const bytes = Buffer.from(headers, 'base64');
  return {
    ts: BigInt(ts), node, netns, netnsIno, iface, ifindex, hook, direction, proto,
    src: recordAddress(src), sport, dst: recordAddress(dst), dport,
    ipId, seq, ack, flags, win, len, wireLen, options,
    packetId: BigInt(packetId), linkType,
    headers: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
  };
}

// ---- flows

export const FLOW_INSERT_COLUMNS = [
  'id', 'proto', 'client_ip', 'client_port', 'server_ip', 'server_port', 'node', 'netns', 'iface',
  'start_ts', 'end_ts', 'packets_c2s', 'packets_s2c', 'bytes_c2s', 'bytes_s2c', 'conn_state', 'history',
  'rtt_ns', 'retrans_c2s', 'retrans_s2c', 'zero_window_c2s', 'zero_window_s2c', 'close',
  'syn_seq', 'syn_ack_seq', 'version',
] as const;

const SAFE = Number.MAX_SAFE_INTEGER;

/** `version` orders the flushes of one flow: the row with the highest is current. */
export function encodeFlow(f: FlowRecord, version: bigint): string {
  if (typeof f.id !== 'string' || f.id === '') throw invalid('id', f.id);
  return JSON.stringify([
    f.id, oneOf(f.proto, PROTOS, 'proto'),
    storedAddress(f.client.ip, 'client.ip'), uint(f.client.port, U16, 'client.port'),
    storedAddress(f.server.ip, 'server.ip'), uint(f.server.port, U16, 'server.port'),
    text(f.node, 'node'), text(f.netns, 'netns'), text(f.iface, 'iface'),
    dateTime64Text(f.start, 'start'), dateTime64Text(f.end, 'end'),
    uint(f.packets.c2s, SAFE, 'packets.c2s'), uint(f.packets.s2c, SAFE, 'packets.s2c'),
    uint(f.bytes.c2s, SAFE, 'bytes.c2s'), uint(f.bytes.s2c, SAFE, 'bytes.s2c'),
    text(f.connState, 'connState'), text(f.history, 'history'),
    f.rttNs === null ? null : u64Text(f.rttNs, 'rttNs'),
    uint(f.retrans.c2s, U32, 'retrans.c2s'), uint(f.retrans.s2c, U32, 'retrans.s2c'),
    uint(f.zeroWindow.c2s, U32, 'zeroWindow.c2s'), uint(f.zeroWindow.s2c, U32, 'zeroWindow.s2c'),
    oneOf(f.close, CLOSE_TYPES, 'close'),
    f.synSeq === null ? null : uint(f.synSeq, U32, 'synSeq'),
    f.synAckSeq === null ? null : uint(f.synAckSeq, U32, 'synAckSeq'),
    version.toString(),
  ]);
}

export const FLOW_SELECT_COLUMNS = [
  'id', 'proto', 'toString(client_ip)', 'client_port', 'toString(server_ip)', 'server_port', 'node', 'netns', 'iface',
  nsOf('start_ts'), nsOf('end_ts'), 'toString(packets_c2s)', 'toString(packets_s2c)', 'toString(bytes_c2s)',
  'toString(bytes_s2c)', 'conn_state', 'history', 'toString(rtt_ns)', 'retrans_c2s', 'retrans_s2c',
  'zero_window_c2s', 'zero_window_s2c', 'close', 'syn_seq', 'syn_ack_seq',
].join(', ');

type FlowRow = [
  string, FlowRecord['proto'], string, number, string, number, string, string, string,
  string, string, string, string, string, string, string, string, string | null, number, number,
  number, number, FlowRecord['close'], number | null, number | null,
];

export function decodeFlow(row: unknown): FlowRecord {
  const [
    id, proto, clientIp, clientPort, serverIp, serverPort, node, netns, iface,
    start, end, packetsC2s, packetsS2c, bytesC2s, bytesS2c, connState, history, rttNs,
    retransC2s, retransS2c, zeroWindowC2s, zeroWindowS2c, close, synSeq, synAckSeq,
  ] = row as FlowRow;
  return {
    id, proto,
    client: { ip: recordAddress(clientIp), port: clientPort },
    server: { ip: recordAddress(serverIp), port: serverPort },
    node, netns, iface,
    start: BigInt(start), end: BigInt(end),
    packets: { c2s: Number(packetsC2s), s2c: Number(packetsS2c) },
    bytes: { c2s: Number(bytesC2s), s2c: Number(bytesS2c) },
    connState, history,
    rttNs: rttNs === null ? null : BigInt(rttNs),
    retrans: { c2s: retransC2s, s2c: retransS2c },
    zeroWindow: { c2s: zeroWindowC2s, s2c: zeroWindowS2c },
    close, synSeq, synAckSeq,
  };
}

// ---- NAT translations

export const NAT_INSERT_COLUMNS = [
  'via', 'node', 'netns', 'zone', 'proto',
  'orig_src', 'orig_sport', 'orig_dst', 'orig_dport', 'reply_src', 'reply_sport', 'reply_dst', 'reply_dport',
  'first_seen', 'last_seen', 'entry_id',
] as const;

function encodeTuple(t: FourTuple, field: string): [string, number, string, number] {
  return [
    storedAddress(t.src, `${field}.src`), uint(t.sport, U16, `${field}.sport`),
    storedAddress(t.dst, `${field}.dst`), uint(t.dport, U16, `${field}.dport`),
  ];
}

export function encodeNat(n: NatTranslation): string {
  return JSON.stringify([
    oneOf(n.via, NAT_VIAS, 'via'), text(n.node, 'node'), text(n.netns, 'netns'), uint(n.zone, U16, 'zone'),
    oneOf(n.proto, PROTOS, 'proto'), ...encodeTuple(n.orig, 'orig'), ...encodeTuple(n.reply, 'reply'),
    dateTime64Text(n.firstSeen, 'firstSeen'), dateTime64Text(n.lastSeen, 'lastSeen'), uint(n.entryId, U32, 'entryId'),
  ]);
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
    orig: { src: recordAddress(origSrc), sport: origSport, dst: recordAddress(origDst), dport: origDport },
    reply: { src: recordAddress(replySrc), sport: replySport, dst: recordAddress(replyDst), dport: replyDport },
    firstSeen: BigInt(firstSeen), lastSeen: BigInt(lastSeen), entryId,
  };
}
