// Decodes batches of ring-buffer records (struct nt_packet_event + packet bytes, layout.ts) into PacketRecords.
import { formatIPv4, formatIPv6 } from '../../model/address.js';
import { parseTcpOptions } from '../../model/headers.js';
import { LINKTYPE_ETHERNET, PROTO_NUMBER } from '../../model/protocol.js';
import type { Direction, Hook, PacketRecord } from '../../model/records.js';
import { fieldReader } from '../../model/c-struct.js';
import { decodeBatch, DIRECTION, FAMILY, FRAG, HOOK, LINK, packetEventLayout } from './layout.js';

/** Names for what the kernel reports by number. */
export interface PointNamer {
  node: string;
  netnsName(netnsIno: number): string;
  ifaceName(netnsIno: number, ifindex: number): string;
}

export interface DecodeResult {
  packets: PacketRecord[];
  /** Records too short for the layout or with unknown enum values. */
  malformed: number;
}

const F = packetEventLayout.fields;
const NEXTHDR_FRAGMENT = 44;
const NEXTHDR_AUTH = 51;
const ETH_ADDRS = 12;
const VLAN_TAG = 4;

/** What packetIdOf hashes: fields that NAT, routing and MSS clamping leave alone. */
export interface PacketInvariants {
  proto: number;
  /** IPv4 identification, or the IPv6 fragment identification of a fragment; else 0. */
  ipId: number;
  /** Fragment offset in 8-byte units (0 when not a fragment). */
  fragOffset: number;
  payloadLen: number;
  /** The kernel's hash of the first payload bytes. */
  payloadHash: number;
  /** TCP only: seq, ack, flags, window, urgent pointer, timestamp option values. */
  tcp?: { seq: number; ack: number; flags: number; win: number; urgent: number; tsVal: number; tsEcr: number };
}

/**
 * An id equal for the same packet wherever it is seen. Addresses, ports, TTL,
 * DSCP/ECN, checksums and the MSS option (clamped by routers) are left out;
 * payload bytes are not rewritten by NAT, so their hash separates UDP and IPv6
 * packets that have no IP id.
 */
export function packetIdOf(p: PacketInvariants): bigint {
  const t = p.tcp;
  idWords[0] = p.proto;
  idWords[1] = p.ipId;
  idWords[2] = p.fragOffset;
  idWords[3] = p.payloadLen;
  idWords[4] = p.payloadHash;
  let words = 5;
  if (t) {
    idWords[5] = t.seq;
    idWords[6] = t.ack;
    idWords[7] = t.flags;
    idWords[8] = t.win;
    idWords[9] = t.urgent;
    idWords[10] = t.tsVal;
    idWords[11] = t.tsEcr;
    words = 12;
  }
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < words; i++) {
    for (let shift = 0; shift < 32; shift += 8) {
      const byte = (idWords[i] >>> shift) & 0xff;
      a = Math.imul(a ^ byte, 0x01000193);
      b = Math.imul(b ^ byte, 0x5bd1e995);
      b ^= b >>> 15;
    }
  }
  idView.setUint32(0, a >>> 0);
  idView.setUint32(4, b >>> 0);
  return idView.getBigUint64(0);
}

/** Scratch space of packetIdOf (decoding is synchronous). */
const idWords = new Uint32Array(12);
const idView = new DataView(new ArrayBuffer(8));

/** The IPv6 fragment header's identification and offset, walking the extension headers between l3 and l4. */
function ipv6Fragment(bytes: Uint8Array, l3: number, l4: number): { id: number; offset: number } | null {
  let next = bytes[l3 + 6];
  for (let at = l3 + 40; at + 8 <= l4; ) {
    if (next === NEXTHDR_FRAGMENT) {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return { id: view.getUint32(at + 4), offset: view.getUint16(at + 2) >> 3 };
    }
    const length = next === NEXTHDR_AUTH ? (bytes[at + 1] + 2) * 4 : (bytes[at + 1] + 1) * 8;
    next = bytes[at];
    at += length;
  }
  return null;
}

/**
 * Turns ring-buffer batches into PacketRecords. Stateful for fragments: a later
 * fragment gets the ports of its first fragment when that was seen before it.
 */
export class PacketDecoder {
  readonly #namer: PointNamer;
  /** First fragments' ports by fragment key, oldest first; bounded. */
  readonly #fragmentPorts = new Map<string, { sport: number; dport: number }>();
  static readonly FRAGMENT_MEMORY = 4096;
  /** Later fragments whose first fragment was not seen (kept with ports 0). */
  unattributedFragments = 0;

  constructor(namer: PointNamer) {
    this.#namer = namer;
  }

  /** Decode one batch from BpfObject.consume; `clockOffset` turns kernel monotonic ns into wall-clock ns. */
  decode(batch: Buffer, clockOffset: bigint): DecodeResult {
    const { decoded, malformed } = decodeBatch(batch, packetEventLayout, (view, at, size) =>
      this.#decodeEvent(batch, view, at, size, clockOffset),
    );
    return { packets: decoded, malformed };
  }

  #decodeEvent(batch: Buffer, view: DataView, at: number, size: number, clockOffset: bigint): PacketRecord | null {
    const { u8, u16, u32, u64 } = fieldReader(packetEventLayout, view, at);

    const hook: Hook | null = u8('hook') === HOOK.tc ? 'tc' : u8('hook') === HOOK.xdp ? 'xdp' : null;
    const direction: Direction | null =
      u8('direction') === DIRECTION.ingress ? 'ingress' : u8('direction') === DIRECTION.egress ? 'egress' : null;
    const protoNumber = u8('proto');
    const family = u8('family');
    const capLen = u16('cap_len');
    const frag = u8('frag');
    let l3 = u16('l3_offset');
    let l4 = u16('l4_offset');
    let l4End = u16('l4_end');
    if (!hook || !direction || (protoNumber !== PROTO_NUMBER.tcp && protoNumber !== PROTO_NUMBER.udp)) return null;
    if ((family !== FAMILY.ipv4 && family !== FAMILY.ipv6) || u8('link_type') !== LINK.ethernet) return null;
    if (packetEventLayout.size + capLen > size || l4End > capLen || l4 > l4End || l3 + 20 > l4) return null;
    if (frag !== 0 && frag !== FRAG.first && frag !== FRAG.later) return null;

    // Copy the packet bytes out (the batch buffer is not kept), with a VLAN tag
    // the device held outside them put back where it belongs.
    const from = at + packetEventLayout.size;
    const vlanProto = u16('vlan_proto');
    let bytes: Uint8Array;
    let wireLen = u32('wire_len');
    if (vlanProto !== 0 && capLen >= ETH_ADDRS) {
      bytes = new Uint8Array(capLen + VLAN_TAG);
      bytes.set(new Uint8Array(batch.buffer, batch.byteOffset + from, ETH_ADDRS), 0);
      new DataView(bytes.buffer).setUint16(ETH_ADDRS, vlanProto);
      new DataView(bytes.buffer).setUint16(ETH_ADDRS + 2, u16('vlan_tci'));
      bytes.set(new Uint8Array(batch.buffer, batch.byteOffset + from + ETH_ADDRS, capLen - ETH_ADDRS), ETH_ADDRS + VLAN_TAG);
      l3 += VLAN_TAG;
      l4 += VLAN_TAG;
      l4End += VLAN_TAG;
      wireLen += VLAN_TAG;
    } else {
      bytes = new Uint8Array(batch.buffer, batch.byteOffset + from, capLen).slice();
    }
    const packetView = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

    const netnsIno = u32('netns_ino');
    const ifindex = u32('ifindex');
    const ipId = family === FAMILY.ipv4 ? u16('ip_id') : 0;
    const len = u32('payload_len');
    const isTcp = protoNumber === PROTO_NUMBER.tcp;
    const src = family === FAMILY.ipv4 ? formatIPv4(batch, at + F.saddr.offset) : formatIPv6(batch, at + F.saddr.offset);
    const dst = family === FAMILY.ipv4 ? formatIPv4(batch, at + F.daddr.offset) : formatIPv6(batch, at + F.daddr.offset);
    let sport = u16('sport');
    let dport = u16('dport');

    let fragmentId = ipId;
    let fragOffset = 0;
    if (frag !== 0) {
      if (family === FAMILY.ipv4) {
        fragOffset = packetView.getUint16(l3 + 6) & 0x1fff;
      } else {
        const header = ipv6Fragment(bytes, l3, l4);
        fragmentId = header?.id ?? 0;
        fragOffset = header?.offset ?? 0;
      }
      const fragmentKey = `${src}|${dst}|${protoNumber}|${fragmentId}`;
      if (frag === FRAG.first) this.#rememberFragment(fragmentKey, sport, dport);
      else {
        const ports = this.#fragmentPorts.get(fragmentKey);
        if (ports) ({ sport, dport } = ports);
        else this.unattributedFragments++;
      }
    }

    const hasL4 = frag !== FRAG.later;
    const options = isTcp && hasL4 ? parseTcpOptions(bytes, l4 + 20, l4End) : {};
    const seq = u32('seq');
    const ack = u32('ack');
    const flags = u8('tcp_flags');
    const win = u16('window');
    const packetId = packetIdOf({
      proto: protoNumber,
      ipId: fragmentId,
      fragOffset,
      payloadLen: len,
      payloadHash: u32('payload_hash'),
      tcp: isTcp && hasL4
        ? { seq, ack, flags, win, urgent: packetView.getUint16(l4 + 18), tsVal: options.ts_val ?? 0, tsEcr: options.ts_ecr ?? 0 }
        : undefined,
    });
    const packet: PacketRecord = {
      ts: u64('ts_ns') + clockOffset,
      node: this.#namer.node,
      netns: this.#namer.netnsName(netnsIno),
      iface: this.#namer.ifaceName(netnsIno, ifindex),
      netnsIno,
      ifindex,
      hook,
      direction,
      proto: isTcp ? 'tcp' : 'udp',
      src,
      sport,
      dst,
      dport,
      ipId,
      seq,
      ack,
      flags,
      win,
      len,
      wireLen,
      options,
      packetId,
      linkType: LINKTYPE_ETHERNET,
      headers: bytes,
    };
    if (frag !== 0) packet.fragment = frag === FRAG.first ? 'first' : 'later';
    return packet;
  }

  #rememberFragment(key: string, sport: number, dport: number): void {
    this.#fragmentPorts.delete(key);
    this.#fragmentPorts.set(key, { sport, dport });
    if (this.#fragmentPorts.size > PacketDecoder.FRAGMENT_MEMORY) {
      this.#fragmentPorts.delete(this.#fragmentPorts.keys().next().value!);
    }
  }
}
