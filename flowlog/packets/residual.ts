// What the packets table keeps of a packet's raw header bytes: the residual,
// i.e. the bytes XOR what the packet's other columns say they are. Addresses,
// ports, seq/ack, flags, window, lengths, IP id, TCP options and both
// checksums (IPv4's computed, TCP/UDP's as checksum offload leaves it: the
// pseudo-header sum) are determined by the columns, so in the residual they
// are zero whenever the columns agree with the bytes; what is left (MAC
// addresses, TTL, ...) repeats from packet to packet of a connection and
// compresses to almost nothing.
//
// The transform reads only bytes it leaves alone (EtherTypes, IP version and
// header length, fragment offset, protocol, TCP data offset, option kinds and
// lengths), so it is its own inverse: applied to the residual it gives back
// the exact bytes, whatever they were — cut short, malformed, or disagreeing
// with the columns.
//
// Functions work on `bytes[from, to)` in place, without copying: the encoder
// runs them on the insert buffer, once per stored packet.

import type { PacketRecord, TcpOptions } from '../../model/records.js';
import { LINKTYPE_ETHERNET, LINKTYPE_RAW } from '../../model/records.js';

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_QINQ = 0x88a8;
const MAX_VLAN_TAGS = 2;

/** Where the IP and L4 headers start (offsets into the array), read from the bytes the transform leaves alone. */
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

/** The layout of the packet in `bytes[from, to)`; null when it is not IP. */
export function headerLayout(bytes: Uint8Array, from: number, to: number, linkType: number): HeaderLayout | null {
  let ip: number;
  if (linkType === LINKTYPE_ETHERNET) {
    ip = from + 14;
    if (to < ip) return null;
    let etherType = (bytes[from + 12] << 8) | bytes[from + 13];
    for (let tags = 0; tags < MAX_VLAN_TAGS && (etherType === ETHERTYPE_VLAN || etherType === ETHERTYPE_QINQ) && to >= ip + 4; tags++) {
      etherType = (bytes[ip + 2] << 8) | bytes[ip + 3];
      ip += 4;
    }
    if (etherType !== ETHERTYPE_IPV4 && etherType !== ETHERTYPE_IPV6) return null;
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
    const fragmentOffset = ((bytes[ip + 6] & 0x1f) << 8) | bytes[ip + 7];
    l4 = fragmentOffset === 0 ? ip + (bytes[ip] & 0x0f) * 4 : -1;
  } else if (version === 6) {
    if (to < ip + 40) return null;
    proto = bytes[ip + 6];
    l4 = ip + 40;
  } else {
    return null;
  }
  let l4HeaderLength = 0;
  if (proto === IPPROTO_TCP && l4 >= 0 && to > l4 + 12) l4HeaderLength = (bytes[l4 + 12] >> 4) * 4;
  else if (proto === IPPROTO_UDP && l4 >= 0) l4HeaderLength = 8;
  if (l4HeaderLength === 0) l4 = -1;
  return { ip, ipVersion: version, proto, l4, l4HeaderLength };
}

/** The column values the transform derives header bytes from (a PacketRecord has them all but the addresses). */
export type HeaderColumns = Pick<PacketRecord, 'sport' | 'dport' | 'ipId' | 'seq' | 'ack' | 'flags' | 'win' | 'len' | 'options'>;

// Bytes past `to` were not kept: each helper checks its field's end once, and byte by byte only for a field cut short.

function xor8(bytes: Uint8Array, at: number, to: number, value: number): void {
  if (at < to) bytes[at] ^= value & 0xff;
}

function xor16(bytes: Uint8Array, at: number, to: number, value: number): void {
  if (at + 2 <= to) {
    bytes[at] ^= value >>> 8;
    bytes[at + 1] ^= value & 0xff;
  } else {
    xor8(bytes, at, to, value >>> 8);
  }
}

function xor32(bytes: Uint8Array, at: number, to: number, value: number): void {
  if (at + 4 <= to) {
    bytes[at] ^= value >>> 24;
    bytes[at + 1] ^= (value >>> 16) & 0xff;
    bytes[at + 2] ^= (value >>> 8) & 0xff;
    bytes[at + 3] ^= value & 0xff;
  } else {
    xor16(bytes, at, to, value >>> 16);
    xor16(bytes, at + 2, to, value);
  }
}

/** XORs `value[vFrom, vTo)` into `bytes` at `at`. */
function xorBytes(bytes: Uint8Array, at: number, to: number, value: Uint8Array, vFrom: number, vTo: number): void {
  const end = Math.min(to, at + vTo - vFrom);
  for (let i = at; i < end; i++) bytes[i] ^= value[vFrom + i - at];
}

/** Adds the 16-bit big-endian words of `bytes[from, to)` to a ones'-complement sum. */
function addWords(sum: number, bytes: Uint8Array, from: number, to: number): number {
  for (let i = from; i < to; i += 2) sum += (bytes[i] << 8) | (i + 1 < to ? bytes[i + 1] : 0);
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/**
 * The IPv4 header checksum of the header at `ip`, with the fields the columns
 * determine taken from the columns (so it is the same computed from the bytes
 * or from their residual).
 */
function ipv4Checksum(bytes: Uint8Array, ip: number, headerLength: number, totalLength: number | null, c: HeaderColumns, src: Uint8Array, dst: Uint8Array): number {
  let sum = totalLength ?? ((bytes[ip + 2] << 8) | bytes[ip + 3]);
  sum += c.ipId & 0xffff;
  sum = addWords(sum, bytes, ip, ip + 2); // version, IHL, DSCP, ECN
  sum = addWords(sum, bytes, ip + 6, ip + 10); // flags, fragment offset, TTL, protocol
  sum = addWords(sum, src, 12, 16);
  sum = addWords(sum, dst, 12, 16);
  sum = addWords(sum, bytes, ip + 20, ip + headerLength); // options
  return ~fold(sum) & 0xffff;
}

/** The L4 checksum field as checksum offload leaves it: the folded pseudo-header sum. */
function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, ipVersion: 4 | 6, proto: number, l4Length: number): number {
  const from = ipVersion === 4 ? 12 : 0;
  const sum = addWords(addWords(0, src, from, 16), dst, from, 16);
  return fold(sum + proto + (l4Length >>> 16) + (l4Length & 0xffff));
}

/**
 * XORs, in place, every byte of `bytes[from, to)` the columns determine with
 * the value they give it (see the top of this file). `layout` is
 * headerLayout() of those bytes (the same for the bytes and their residual);
 * `src` and `dst` are the addresses' 16 column bytes.
 */
export function xorColumnBytes(
  bytes: Uint8Array, to: number, layout: HeaderLayout | null, c: HeaderColumns, src: Uint8Array, dst: Uint8Array,
): void {
  if (!layout) return;
  const { ip, l4, proto, ipVersion } = layout;
  const l4Length = layout.l4HeaderLength + c.len;
  if (ipVersion === 4) {
    const headerLength = (bytes[ip] & 0x0f) * 4;
    // Without an L4 header the total length is not known from the columns and stays as it is.
    const totalLength = l4 >= 0 ? (headerLength + l4Length) & 0xffff : null;
    if (to >= ip + headerLength) xor16(bytes, ip + 10, to, ipv4Checksum(bytes, ip, headerLength, totalLength, c, src, dst));
    if (totalLength !== null) xor16(bytes, ip + 2, to, totalLength);
    xor16(bytes, ip + 4, to, c.ipId);
    xorBytes(bytes, ip + 12, to, src, 12, 16);
    xorBytes(bytes, ip + 16, to, dst, 12, 16);
  } else {
    if (l4 >= 0) xor16(bytes, ip + 4, to, l4Length);
    xorBytes(bytes, ip + 8, to, src, 0, 16);
    xorBytes(bytes, ip + 24, to, dst, 0, 16);
  }
  if (l4 < 0) return;
  xor16(bytes, l4, to, c.sport);
  xor16(bytes, l4 + 2, to, c.dport);
  const checksum = pseudoHeaderSum(src, dst, ipVersion, proto, l4Length);
  if (proto === IPPROTO_UDP) {
    xor16(bytes, l4 + 4, to, l4Length);
    xor16(bytes, l4 + 6, to, checksum);
    return;
  }
  xor32(bytes, l4 + 4, to, c.seq);
  xor32(bytes, l4 + 8, to, c.ack);
  xor8(bytes, l4 + 13, to, c.flags);
  xor16(bytes, l4 + 14, to, c.win);
  xor16(bytes, l4 + 16, to, checksum);
  xorOptions(bytes, l4 + 20, Math.min(to, l4 + layout.l4HeaderLength), c.options);
}

/** The TCP options' values, walked as capture's parser walks them (kinds and lengths are left alone). */
function xorOptions(bytes: Uint8Array, from: number, to: number, o: TcpOptions): void {
  let at = from;
  while (at < to) {
    const kind = bytes[at];
    if (kind === 0) return;
    if (kind === 1) {
      at++;
      continue;
    }
    if (at + 1 >= to) return;
    const length = bytes[at + 1];
    if (length < 2 || at + length > to) return;
    if (kind === 2 && length === 4) xor16(bytes, at + 2, to, o.mss ?? 0);
    else if (kind === 3 && length === 3) xor8(bytes, at + 2, to, o.wscale ?? 0);
    else if (kind === 5 && (length - 2) % 8 === 0 && o.sack !== undefined) {
      for (let i = 0; i < (length - 2) / 8 && i < o.sack.length; i++) {
        xor32(bytes, at + 2 + 8 * i, to, o.sack[i][0]);
        xor32(bytes, at + 6 + 8 * i, to, o.sack[i][1]);
      }
    } else if (kind === 8 && length === 10) {
      xor32(bytes, at + 2, to, o.ts_val ?? 0);
      xor32(bytes, at + 6, to, o.ts_ecr ?? 0);
    }
    at += length;
  }
}
