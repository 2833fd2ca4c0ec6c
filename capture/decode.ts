// Decodes batches of nt_packet_event records (layout.ts) into PacketRecords.
import type { Direction, Hook, PacketRecord, TcpOptions } from '../flowlog/records.js';
import { LINKTYPE_ETHERNET } from '../flowlog/records.js';
import { BATCH_RECORD_HEADER, DIRECTION, FAMILY, HOOK, LINK, packetEventLayout } from './layout.js';

/** Names for what the kernel reports by number, and how much of each packet to keep. */
export interface PointNamer {
  node: string;
  /** Header bytes kept per packet (the rest is cut). */
  snaplen: number;
  netnsName(netnsIno: number): string;
  ifaceName(netnsIno: number, ifindex: number): string;
}

export interface DecodeResult {
  packets: PacketRecord[];
  /** Records too short for the layout or with unknown enum values. */
  malformed: number;
}

const F = packetEventLayout.fields;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

export function formatIPv4(bytes: Uint8Array, at = 0): string {
  return `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`;
}

/** RFC 5952 text: lower case, the longest run (≥ 2) of zero groups as `::`. */
export function formatIPv6(bytes: Uint8Array, at = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((bytes[at + 2 * i] << 8) | bytes[at + 2 * i + 1]);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = (from: number, to: number) => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** TCP options from the option bytes of a TCP header. Stops at EOL or a malformed option. */
export function parseTcpOptions(bytes: Uint8Array, from: number, to: number): TcpOptions {
  const options: TcpOptions = {};
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = from;
  while (at < to) {
    const kind = bytes[at];
    if (kind === 0) break;
    if (kind === 1) {
      at++;
      continue;
    }
    if (at + 1 >= to) break;
    const length = bytes[at + 1];
    if (length < 2 || at + length > to) break;
    if (kind === 2 && length === 4) options.mss = view.getUint16(at + 2);
    else if (kind === 3 && length === 3) options.wscale = bytes[at + 2];
    else if (kind === 4 && length === 2) options.sack_perm = true;
    else if (kind === 5 && (length - 2) % 8 === 0) {
      const sack: Array<[number, number]> = [];
      for (let b = at + 2; b < at + length; b += 8) sack.push([view.getUint32(b), view.getUint32(b + 4)]);
      options.sack = sack;
    } else if (kind === 8 && length === 10) {
      options.ts_val = view.getUint32(at + 2);
      options.ts_ecr = view.getUint32(at + 6);
    }
    at += length;
  }
  return options;
}

/**
 * An id equal for the same packet wherever it is seen: a hash of what NAT and
 * forwarding leave alone (IP id, the TCP header after the ports — minus its
 * checksum — with options, the payload length); addresses, ports, TTL and
 * checksums are left out.
 */
export function packetIdOf(headers: Uint8Array, l4: number, l4End: number, proto: number, ipId: number, payloadLen: number): bigint {
  let a = 0x811c9dc5 ^ proto;
  let b = 0x9747b28c ^ payloadLen;
  const mix = (byte: number) => {
    a = Math.imul(a ^ byte, 0x01000193);
    b = Math.imul(b ^ byte, 0x5bd1e995);
    b ^= b >>> 15;
  };
  mix(ipId >>> 8);
  mix(ipId & 0xff);
  mix(payloadLen >>> 8);
  mix(payloadLen & 0xff);
  if (proto === IPPROTO_TCP) {
    for (let i = l4 + 4; i < l4End; i++) if (i !== l4 + 16 && i !== l4 + 17) mix(headers[i]);
  }
  return (BigInt(a >>> 0) << 32n) | BigInt(b >>> 0);
}

/** Decode one batch from BpfObject.consume; `clockOffset` turns kernel monotonic ns into wall-clock ns. */
export function decodePacketBatch(batch: Buffer, clockOffset: bigint, namer: PointNamer): DecodeResult {
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const packets: PacketRecord[] = [];
  let malformed = 0;
  for (let at = 0; at + BATCH_RECORD_HEADER <= batch.length; ) {
    const size = view.getUint32(at, true);
    const record = at + BATCH_RECORD_HEADER;
    at = record + ((size + 7) & ~7);
    if (size < packetEventLayout.size || record + size > batch.length) {
      malformed++;
      continue;
    }
    const packet = decodePacketEvent(batch, view, record, clockOffset, namer);
    if (packet) packets.push(packet);
    else malformed++;
  }
  return { packets, malformed };
}

function decodePacketEvent(batch: Buffer, view: DataView, at: number, clockOffset: bigint, namer: PointNamer): PacketRecord | null {
  const u8 = (f: keyof typeof F) => view.getUint8(at + F[f].offset);
  const u16 = (f: keyof typeof F) => view.getUint16(at + F[f].offset, true);
  const u32 = (f: keyof typeof F) => view.getUint32(at + F[f].offset, true);

  const hook: Hook | null = u8('hook') === HOOK.tc ? 'tc' : u8('hook') === HOOK.xdp ? 'xdp' : null;
  const direction: Direction | null =
    u8('direction') === DIRECTION.ingress ? 'ingress' : u8('direction') === DIRECTION.egress ? 'egress' : null;
  const protoNumber = u8('proto');
  const family = u8('family');
  const headerLen = u16('header_len');
  const l4 = u8('l4_offset');
  if (!hook || !direction || (protoNumber !== IPPROTO_TCP && protoNumber !== IPPROTO_UDP)) return null;
  if ((family !== FAMILY.ipv4 && family !== FAMILY.ipv6) || u8('link_type') !== LINK.ethernet) return null;
  if (headerLen > F.header.size || l4 >= headerLen) return null;

  // Copy the header bytes out: the batch buffer is not kept.
  const headers = Uint8Array.prototype.slice.call(batch, at + F.header.offset, at + F.header.offset + headerLen);
  const isTcp = protoNumber === IPPROTO_TCP;
  const l4End = isTcp ? Math.min(headerLen, l4 + (headers[l4 + 12] >> 4) * 4) : headerLen;
  const netnsIno = u32('netns_ino');
  const ifindex = u32('ifindex');
  const ipId = u16('ip_id');
  const len = u16('payload_len');
  const addressAt = (f: 'saddr' | 'daddr') =>
    family === FAMILY.ipv4 ? formatIPv4(batch, at + F[f].offset) : formatIPv6(batch, at + F[f].offset);
  return {
    ts: view.getBigUint64(at + F.ts_ns.offset, true) + clockOffset,
    node: namer.node,
    netns: namer.netnsName(netnsIno),
    iface: namer.ifaceName(netnsIno, ifindex),
    netnsIno,
    ifindex,
    hook,
    direction,
    proto: isTcp ? 'tcp' : 'udp',
    src: addressAt('saddr'),
    sport: u16('sport'),
    dst: addressAt('daddr'),
    dport: u16('dport'),
    ipId,
    seq: u32('seq'),
    ack: u32('ack'),
    flags: u8('tcp_flags'),
    win: u16('window'),
    len,
    wireLen: u32('wire_len'),
    options: isTcp ? parseTcpOptions(headers, l4 + 20, l4End) : {},
    packetId: packetIdOf(headers, l4, l4End, protoNumber, ipId, len),
    linkType: LINKTYPE_ETHERNET,
    headers: headers.length > namer.snaplen ? headers.slice(0, namer.snaplen) : headers,
  };
}
