// Walks of packet header bytes: where the IP and L4 headers start after an
// Ethernet header and its VLAN tags, and the TCP options. Nothing here copies
// the bytes or allocates per option.
import { ETHERTYPE, LINKTYPE_ETHERNET, LINKTYPE_RAW, PROTO_NUMBER, TCP_OPTION } from './protocol.js';
import type { TcpOptions } from './records.js';

const ETHERNET_HEADER = 14;
const VLAN_TAG = 4;
const MAX_VLAN_TAGS = 2;

const u16 = (bytes: Uint8Array, at: number): number => (bytes[at] << 8) | bytes[at + 1];
const u32 = (bytes: Uint8Array, at: number): number => ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;

/**
 * Where the network header starts after the Ethernet header at `from` and its
 * VLAN tags (at most two, each only when wholly before `to`); -1 when
 * `bytes[from, to)` is shorter than an Ethernet header. The network header's
 * EtherType is the two bytes before it (etherTypeBefore).
 */
export function ethernetPayloadOffset(bytes: Uint8Array, from: number, to: number): number {
  let at = from + ETHERNET_HEADER;
  if (to < at) return -1;
  for (let tags = 0; tags < MAX_VLAN_TAGS && to >= at + VLAN_TAG; tags++) {
    const etherType = etherTypeBefore(bytes, at);
    if (etherType !== ETHERTYPE.vlan && etherType !== ETHERTYPE.qinq) break;
    at += VLAN_TAG;
  }
  return at;
}

/** The EtherType of the header at `at` (from ethernetPayloadOffset): the two bytes before it. */
export const etherTypeBefore = (bytes: Uint8Array, at: number): number => u16(bytes, at - 2);

/** Where the IP and L4 headers start (offsets into the array). */
export interface HeaderLayout {
  ip: number;
  ipVersion: 4 | 6;
  /** IANA protocol number of the L4 header. */
  proto: number;
  /** Start of the TCP/UDP header, or -1 when there is none (other protocol or extension headers, a later fragment, cut short). */
  l4: number;
  /** Length of the TCP/UDP header by its own account (TCP data offset), whether or not all of it was kept. */
  l4HeaderLength: number;
}

/**
 * The layout of the packet in `bytes[from, to)` of link type `linkType` (LINKTYPE_*); null when it is not IP.
 * Written into `into` when given (a per-packet caller's scratch object), else into a new object.
 */
export function headerLayout(bytes: Uint8Array, from: number, to: number, linkType: number, into?: HeaderLayout): HeaderLayout | null {
  let ip: number;
  if (linkType === LINKTYPE_ETHERNET) {
    ip = ethernetPayloadOffset(bytes, from, to);
    if (ip < 0) return null;
    const etherType = etherTypeBefore(bytes, ip);
    if (etherType !== ETHERTYPE.ipv4 && etherType !== ETHERTYPE.ipv6) return null;
  } else if (linkType === LINKTYPE_RAW) {
    ip = from;
  } else {
    return null;
  }
  if (to <= ip) return null;
  const version = bytes[ip] >> 4;
  let proto: number;
  let l4: number;
  if (version === 4) {
    if (to < ip + 20 || (bytes[ip] & 0x0f) < 5) return null;
    proto = bytes[ip + 9];
    const fragmentOffset = u16(bytes, ip + 6) & 0x1fff;
    l4 = fragmentOffset === 0 ? ip + (bytes[ip] & 0x0f) * 4 : -1;
  } else if (version === 6) {
    if (to < ip + 40) return null;
    proto = bytes[ip + 6];
    l4 = ip + 40;
  } else {
    return null;
  }
  let l4HeaderLength = 0;
  if (proto === PROTO_NUMBER.tcp && l4 >= 0 && to > l4 + 12) l4HeaderLength = (bytes[l4 + 12] >> 4) * 4;
  else if (proto === PROTO_NUMBER.udp && l4 >= 0) l4HeaderLength = 8;
  if (l4HeaderLength === 0) l4 = -1;
  if (into === undefined) return { ip, ipVersion: version, proto, l4, l4HeaderLength };
  into.ip = ip;
  into.ipVersion = version;
  into.proto = proto;
  into.l4 = l4;
  into.l4HeaderLength = l4HeaderLength;
  return into;
}

/** Called for an option at `bytes[at, at + length)` of kind `kind` (TCP_OPTION); `state` is what the walk was given. */
export type TcpOptionVisitor<S> = (bytes: Uint8Array, kind: number, at: number, length: number, state: S) => void;

/** Whether an option of kind `kind` and `length` bytes is one TcpOptions holds, of its kind's length. */
function isKnownOption(kind: number, length: number): boolean {
  switch (kind) {
    case TCP_OPTION.mss:
      return length === 4;
    case TCP_OPTION.wscale:
      return length === 3;
    case TCP_OPTION.sackPermitted:
      return length === 2;
    case TCP_OPTION.sack:
      return (length - 2) % 8 === 0;
    case TCP_OPTION.timestamps:
      return length === 10;
    default:
      return false;
  }
}

/**
 * Walks the TCP options in `bytes[from, to)` up to an end-of-list option or a
 * malformed one (cut short, or a length below 2), and calls `visit` for each
 * option TcpOptions holds that has its kind's length (SACK: 2 + 8 per block).
 * `state` is passed to `visit`, which then needs no closure.
 */
export function walkTcpOptions<S>(bytes: Uint8Array, from: number, to: number, visit: TcpOptionVisitor<S>, state: S): void {
  let at = from;
  while (at < to) {
    const kind = bytes[at];
    if (kind === TCP_OPTION.end) return;
    if (kind === TCP_OPTION.nop) {
      at++;
      continue;
    }
    if (at + 1 >= to) return;
    const length = bytes[at + 1];
    if (length < 2 || at + length > to) return;
    if (isKnownOption(kind, length)) visit(bytes, kind, at, length, state);
    at += length;
  }
}

function readOption(bytes: Uint8Array, kind: number, at: number, length: number, options: TcpOptions): void {
  switch (kind) {
    case TCP_OPTION.mss:
      options.mss = u16(bytes, at + 2);
      break;
    case TCP_OPTION.wscale:
      options.wscale = bytes[at + 2];
      break;
    case TCP_OPTION.sackPermitted:
      options.sack_perm = true;
      break;
    case TCP_OPTION.sack: {
      const sack: Array<[number, number]> = [];
      for (let block = at + 2; block < at + length; block += 8) sack.push([u32(bytes, block), u32(bytes, block + 4)]);
      options.sack = sack;
      break;
    }
    case TCP_OPTION.timestamps:
      options.ts_val = u32(bytes, at + 2);
      options.ts_ecr = u32(bytes, at + 6);
      break;
  }
}

/** TCP options from the option bytes `bytes[from, to)` of a TCP header. */
export function parseTcpOptions(bytes: Uint8Array, from: number, to: number): TcpOptions {
  const options: TcpOptions = {};
  walkTcpOptions(bytes, from, to, readOption, options);
  return options;
}
