// Packets as they travel from capture to the flow table and the flow-log writer: one typed array
// per field (columns), never an object per packet, all in one batch laid out as native/packet_columns.h
// says. native/packet-columns-layout.ts reads them out of the native decoder's batches and lays out
// batches for flowlog/packets/record-columns.ts, which makes them from PacketRecords.
import { formatIPv4, formatIPv6 } from './address.js';
import { DIRECTION, HOOK, PROTO_NUMBER } from './protocol.js';
import type { Direction, Hook, PacketRecord, Proto, TcpOptions } from './records.js';

/** Which TCP options a packet carries: the `options` column, and the flow log's `opt_present`. */
export const OPTION_BIT = { mss: 1, wscale: 2, sack_perm: 4, ts_val: 8, ts_ecr: 16, sack: 32 } as const;

/** SACK blocks a packet's columns hold (a TCP header has room for 4). */
export const SACK_MAX = 4;

/** The `fragment` column. */
export const FRAGMENT = { first: 1, later: 2 } as const;

/** The names of capture points, by the numbers the kernel gives them. */
export interface PointNames {
  netnsName(netnsIno: number): string;
  ifaceName(netnsIno: number, ifindex: number): string;
}

export interface PacketColumns {
  count: number;
  node: string;
  names: PointNames;
  /** LINKTYPE_* of every packet's `headers`. */
  linkType: number;
  /** The batch the columns below are views of (native/packet_columns.h): the native chunk encoder reads them there. */
  batch: Uint8Array;
  /** Wall-clock ns. */
  ts: BigInt64Array;
  /** `ts` as 32-bit words, low then high: compared and subtracted without a BigInt. */
  tsWords: Uint32Array;
  packetId: BigUint64Array;
  /** `packetId` as 32-bit words, low then high. */
  packetIdWords: Uint32Array;
  /** 16 bytes per packet: IPv6, or IPv4 as IPv4-mapped IPv6. */
  src: Uint8Array;
  dst: Uint8Array;
  /** The addresses as four 32-bit words per packet (memory order), for comparing them. */
  srcWords: Uint32Array;
  dstWords: Uint32Array;
  netnsIno: Uint32Array;
  ifindex: Uint32Array;
  seq: Uint32Array;
  ack: Uint32Array;
  /** L4 payload bytes. */
  len: Uint32Array;
  wireLen: Uint32Array;
  tsVal: Uint32Array;
  tsEcr: Uint32Array;
  /** Where each packet's bytes start in `headers`, and how many there are. */
  headerAt: Uint32Array;
  headerLen: Uint16Array;
  /** Index of each packet's first SACK block in `sacks` (left, right edge pairs), and how many. */
  sackAt: Uint32Array;
  sackCount: Uint8Array;
  sport: Uint16Array;
  dport: Uint16Array;
  win: Uint16Array;
  /** IPv4 identification (0 for IPv6). */
  ipId: Uint16Array;
  mss: Uint16Array;
  /** HOOK and DIRECTION (protocol.ts) numbers, the IP protocol number. */
  hook: Uint8Array;
  direction: Uint8Array;
  proto: Uint8Array;
  flags: Uint8Array;
  /** OPTION_BIT bits. */
  options: Uint8Array;
  wscale: Uint8Array;
  /** FRAGMENT value, or 0. */
  fragment: Uint8Array;
  headers: Uint8Array;
  sacks: Uint32Array;
}

/**
 * `c` as an object of one shape, whatever made it: the write path reads its columns for every packet,
 * and reads of an object of another shape (or of one made property by property) take V8's slow path.
 */
export function packetColumns(c: PacketColumns): PacketColumns {
  return {
    count: c.count, node: c.node, names: c.names, linkType: c.linkType, batch: c.batch,
    ts: c.ts, tsWords: c.tsWords, packetId: c.packetId, packetIdWords: c.packetIdWords,
    src: c.src, dst: c.dst, srcWords: c.srcWords, dstWords: c.dstWords,
    netnsIno: c.netnsIno, ifindex: c.ifindex, seq: c.seq, ack: c.ack, len: c.len, wireLen: c.wireLen, tsVal: c.tsVal, tsEcr: c.tsEcr,
    headerAt: c.headerAt, headerLen: c.headerLen, sackAt: c.sackAt, sackCount: c.sackCount,
    sport: c.sport, dport: c.dport, win: c.win, ipId: c.ipId, mss: c.mss,
    hook: c.hook, direction: c.direction, proto: c.proto, flags: c.flags, options: c.options, wscale: c.wscale, fragment: c.fragment,
    headers: c.headers, sacks: c.sacks,
  };
}

/** Is the address of packet `i` in `words` (srcWords or dstWords) IPv4-mapped? */
export function isMappedIPv4(words: Uint32Array, i: number): boolean {
  const at = 4 * i;
  // Memory order on a little-endian host: bytes 8..11 = 00 00 ff ff.
  return words[at] === 0 && words[at + 1] === 0 && words[at + 2] === 0xffff0000;
}

/** The text of address bytes[16 * i, 16 * i + 16) (a column's): dotted for IPv4-mapped ones. */
export function columnAddress(bytes: Uint8Array, words: Uint32Array, i: number): string {
  return isMappedIPv4(words, i) ? formatIPv4(bytes, 16 * i + 12) : formatIPv6(bytes, 16 * i);
}

const HOOK_NAME = new Map<number, Hook>(Object.entries(HOOK).map(([name, n]) => [n, name as Hook]));
const DIRECTION_NAME = new Map<number, Direction>(Object.entries(DIRECTION).map(([name, n]) => [n, name as Direction]));
const PROTO_NAME = new Map<number, Proto>(Object.entries(PROTO_NUMBER).map(([name, n]) => [n, name as Proto]));

/** The TCP options of packet `i`. */
export function tcpOptionsAt(c: PacketColumns, i: number): TcpOptions {
  const present = c.options[i];
  const options: TcpOptions = {};
  if (present & OPTION_BIT.mss) options.mss = c.mss[i];
  if (present & OPTION_BIT.wscale) options.wscale = c.wscale[i];
  if (present & OPTION_BIT.sack_perm) options.sack_perm = true;
  if (present & OPTION_BIT.ts_val) options.ts_val = c.tsVal[i];
  if (present & OPTION_BIT.ts_ecr) options.ts_ecr = c.tsEcr[i];
  if (present & OPTION_BIT.sack) {
    const sack: Array<[number, number]> = [];
    for (let b = c.sackAt[i]; b < c.sackAt[i] + c.sackCount[i]; b++) sack.push([c.sacks[2 * b], c.sacks[2 * b + 1]]);
    options.sack = sack;
  }
  return options;
}

/** Packet `i` as a PacketRecord: for the edges that want objects (a response's rows, tests), never the write path. */
export function packetRecordAt(c: PacketColumns, i: number): PacketRecord {
  const netnsIno = c.netnsIno[i];
  const ifindex = c.ifindex[i];
  const record: PacketRecord = {
    ts: c.ts[i],
    node: c.node,
    netns: c.names.netnsName(netnsIno),
    iface: c.names.ifaceName(netnsIno, ifindex),
    netnsIno,
    ifindex,
    hook: HOOK_NAME.get(c.hook[i])!,
    direction: DIRECTION_NAME.get(c.direction[i])!,
    proto: PROTO_NAME.get(c.proto[i])!,
    src: columnAddress(c.src, c.srcWords, i),
    sport: c.sport[i],
    dst: columnAddress(c.dst, c.dstWords, i),
    dport: c.dport[i],
    ipId: c.ipId[i],
    seq: c.seq[i],
    ack: c.ack[i],
    flags: c.flags[i],
    win: c.win[i],
    len: c.len[i],
    wireLen: c.wireLen[i],
    options: tcpOptionsAt(c, i),
    packetId: c.packetId[i],
    linkType: c.linkType,
    headers: c.headers.slice(c.headerAt[i], c.headerAt[i] + c.headerLen[i]),
  };
  if (c.fragment[i] !== 0) record.fragment = c.fragment[i] === FRAGMENT.first ? 'first' : 'later';
  return record;
}

/** Every packet as a PacketRecord (see packetRecordAt). */
export function packetRecordsOf(c: PacketColumns): PacketRecord[] {
  return Array.from({ length: c.count }, (_, i) => packetRecordAt(c, i));
}
