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
// Functions work on `bytes[from, to)` in place, without copying: the reader
// runs them once per packet it unpacks. The writer's transform is the same in
// C++ (native/chunk_encoder.cc); test/flowlog/store.test.ts writes headers of
// every kind through that one and reads them back through this one.

import { walkTcpOptions, type HeaderLayout } from '../../model/headers.js';
import { PROTO_NUMBER, TCP_OPTION } from '../../model/protocol.js';
import type { PacketRecord, TcpOptions } from '../../model/records.js';

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
 * headerLayout() (model/headers.ts) of those bytes (the same for the bytes
 * and their residual); `src` and `dst` are the addresses' 16 column bytes.
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
  if (proto === PROTO_NUMBER.udp) {
    xor16(bytes, l4 + 4, to, l4Length);
    xor16(bytes, l4 + 6, to, checksum);
    return;
  }
  xor32(bytes, l4 + 4, to, c.seq);
  xor32(bytes, l4 + 8, to, c.ack);
  xor8(bytes, l4 + 13, to, c.flags);
  xor16(bytes, l4 + 14, to, c.win);
  xor16(bytes, l4 + 16, to, checksum);
  walkTcpOptions(bytes, l4 + 20, Math.min(to, l4 + layout.l4HeaderLength), xorOption, c.options);
}

/** XORs the value of the TCP option at `bytes[at, at + length)` with the options' (kinds and lengths are left alone). */
function xorOption(bytes: Uint8Array, kind: number, at: number, length: number, o: TcpOptions): void {
  const to = at + length;
  if (kind === TCP_OPTION.mss) xor16(bytes, at + 2, to, o.mss ?? 0);
  else if (kind === TCP_OPTION.wscale) xor8(bytes, at + 2, to, o.wscale ?? 0);
  else if (kind === TCP_OPTION.sack && o.sack !== undefined) {
    for (let i = 0; i < (length - 2) / 8 && i < o.sack.length; i++) {
      xor32(bytes, at + 2 + 8 * i, to, o.sack[i][0]);
      xor32(bytes, at + 6 + 8 * i, to, o.sack[i][1]);
    }
  } else if (kind === TCP_OPTION.timestamps) {
    xor32(bytes, at + 2, to, o.ts_val ?? 0);
    xor32(bytes, at + 6, to, o.ts_ecr ?? 0);
  }
}
