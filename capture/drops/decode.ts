// Decodes batches of nt_drop_event records (layout.ts) into DropRecords:
// the tuple and packet id from the header bytes, reason names from BTF, location
// and stack from kallsyms, names of namespaces, and the cause.
import { formatIPv4, formatIPv6 } from '../../model/address.js';
import { etherTypeBefore, ethernetPayloadOffset, parseTcpOptions } from '../../model/headers.js';
import { ETHERTYPE, LINKTYPE_ETHERNET, LINKTYPE_RAW, PROTO_NUMBER } from '../../model/protocol.js';
import type { TracedDrop } from '../../model/records.js';
import { packetIdOf } from '../../native/addon.js';
import { dropCause } from './causes.js';
import { DROP_LINK, dropEventLayout } from './layout.js';
import type { DropReasons } from './reasons.js';
import { formatSymbol, type KernelSymbols } from './symbols.js';
import { fieldReader } from '../../model/c-struct.js';
import { decodeBatch, FAMILY, PAYLOAD_HASH_BYTES } from '../packets/layout.js';

export interface DropNamer {
  node: string;
  netnsName(netnsIno: number): string;
}

export interface DropDecodeResult {
  drops: TracedDrop[];
  /** Records too short or inconsistent. */
  malformed: number;
}

const F = dropEventLayout.fields;
/** Symbolized addresses kept; the same few stacks repeat. */
const SYMBOL_CACHE_SIZE = 10_000;

/** FNV-1a of bytes[from, to), as capture hashes the first payload bytes (0 when there are none). */
export function payloadHash(bytes: Uint8Array, from: number, to: number): number {
  if (from >= to) return 0;
  let h = 2166136261;
  for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i], 16777619) >>> 0;
  return h;
}

/** True when an Ethernet header (with up to two VLAN tags) at 0 leads to an IP header of `family` at `l3`. */
function ethernetLeadsTo(bytes: Uint8Array, l3: number, family: number): boolean {
  return ethernetPayloadOffset(bytes, 0, l3) === l3 && etherTypeBefore(bytes, l3) === (family === FAMILY.ipv4 ? ETHERTYPE.ipv4 : ETHERTYPE.ipv6);
}

export class DropDecoder {
  readonly #reasons: DropReasons;
  readonly #symbols: KernelSymbols;
  readonly #namer: DropNamer;
  readonly #symbolCache = new Map<bigint, string>();
  /** An address of the batch being decoded was not covered by kallsyms. */
  #unresolved = false;

  constructor(reasons: DropReasons, symbols: KernelSymbols, namer: DropNamer) {
    this.#reasons = reasons;
    this.#symbols = symbols;
    this.#namer = namer;
  }

  /**
   * Decode one batch from BpfObject.consume; `clockOffset` turns kernel monotonic
   * ns into wall-clock ns. An address kallsyms did not cover has kallsyms read
   * again (throttled) and the batch decoded anew.
   */
  async decode(batch: Buffer, clockOffset: bigint): Promise<DropDecodeResult> {
    this.#unresolved = false;
    const result = this.#decodeBatch(batch, clockOffset);
    if (!this.#unresolved || !(await this.#symbols.reload())) return result;
    this.#symbolCache.clear();
    return this.#decodeBatch(batch, clockOffset);
  }

  #decodeBatch(batch: Buffer, clockOffset: bigint): DropDecodeResult {
    const { decoded, malformed } = decodeBatch(batch, dropEventLayout, (view, at) => this.#decodeEvent(batch, view, at, clockOffset));
    return { drops: decoded, malformed };
  }

  #symbol(address: bigint): string {
    let text = this.#symbolCache.get(address);
    if (text === undefined) {
      const symbol = this.#symbols.resolve(address);
      if (!symbol) this.#unresolved = true;
      text = formatSymbol(address, symbol);
      if (this.#symbolCache.size >= SYMBOL_CACHE_SIZE) this.#symbolCache.clear();
      this.#symbolCache.set(address, text);
    }
    return text;
  }

  #decodeEvent(batch: Buffer, view: DataView, at: number, clockOffset: bigint): TracedDrop | null {
    const { u8, u16, u32, u64 } = fieldReader(dropEventLayout, view, at);

    const family = u8('family');
    const protoNumber = u8('proto');
    const capLen = u16('cap_len');
    const l3 = u8('l3_offset');
    const l4 = u8('l4_offset');
    const l4End = u8('l4_end');
    const depth = u16('stack_depth');
    if ((family !== FAMILY.ipv4 && family !== FAMILY.ipv6) || (protoNumber !== PROTO_NUMBER.tcp && protoNumber !== PROTO_NUMBER.udp)) return null;
    if (capLen > F.header.size || l4End > capLen || l4 + (protoNumber === PROTO_NUMBER.tcp ? 20 : 8) > l4End) return null;
    if (l3 + (family === FAMILY.ipv4 ? 20 : 40) > l4 || depth > F.stack.size / 8) return null;

    // Copy the bytes out: the batch buffer is not kept.
    const bytes = Uint8Array.prototype.slice.call(batch, at + F.header.offset, at + F.header.offset + capLen);
    const packet = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const isIPv4 = family === FAMILY.ipv4;
    const ipEnd = l3 + (isIPv4 ? packet.getUint16(l3 + 2) : 40 + packet.getUint16(l3 + 4));
    const isTcp = protoNumber === PROTO_NUMBER.tcp;
    const tcpFlags = isTcp ? bytes[l4 + 13] : 0;
    const options = isTcp ? parseTcpOptions(bytes, l4 + 20, l4End) : {};
    const packetId = packetIdOf({
      proto: protoNumber,
      ipId: isIPv4 ? packet.getUint16(l3 + 4) : 0,
      fragOffset: 0,
      payloadLen: Math.max(0, ipEnd - l4End),
      payloadHash: payloadHash(bytes, l4End, Math.min(ipEnd, capLen, l4End + PAYLOAD_HASH_BYTES)),
      tcp: isTcp
        ? {
            seq: packet.getUint32(l4 + 4),
            ack: packet.getUint32(l4 + 8),
            flags: tcpFlags,
            win: packet.getUint16(l4 + 14),
            urgent: packet.getUint16(l4 + 18),
            tsVal: options.ts_val ?? 0,
            tsEcr: options.ts_ecr ?? 0,
          }
        : undefined,
    });

    // The MAC header is kept when it checks out; else the packet starts at its IP header.
    const ethernet = u8('link_type') === DROP_LINK.ethernet && ethernetLeadsTo(bytes, l3, family);
    const from = ethernet ? 0 : l3;
    const src = isIPv4 ? formatIPv4(bytes, l3 + 12) : formatIPv6(bytes, l3 + 8);
    const dst = isIPv4 ? formatIPv4(bytes, l3 + 16) : formatIPv6(bytes, l3 + 24);
    const sport = packet.getUint16(l4);
    const dport = packet.getUint16(l4 + 2);

    // The stack from the frame that freed the packet outwards (the frames above it are the tracing's own).
    const location = u64('location');
    const frames: bigint[] = [];
    for (let i = 0; i < depth; i++) frames.push(view.getBigUint64(at + F.stack.offset + 8 * i, true));
    const first = frames.indexOf(location);
    const stack = (first >= 0 ? frames.slice(first) : frames).map((frame) => this.#symbol(frame));
    const locationText = this.#symbol(location);

    const reasonCode = u32('reason');
    const reason = this.#reasons.name(reasonCode);
    const netnsIno = u32('netns_ino');
    const netns = this.#namer.netnsName(netnsIno);
    const ifnameBytes = batch.subarray(at + F.ifname.offset, at + F.ifname.offset + F.ifname.size);
    const nul = ifnameBytes.indexOf(0);
    const iface = ifnameBytes.subarray(0, nul < 0 ? ifnameBytes.length : nul).toString('utf8');
    const proto = isTcp ? 'tcp' : 'udp';
    const cause = dropCause({
      reason,
      subsystem: this.#reasons.subsystem(reasonCode),
      functions: (stack.length > 0 ? stack : [locationText]).map((frame) => frame.replace(/\+0x[0-9a-f]+( \[.*\])?$/, '')),
      netns,
      iface,
      proto,
      src,
      sport,
      dst,
      dport,
      tcpFlags,
      ttl: bytes[l3 + (isIPv4 ? 8 : 7)],
    });
    return {
      ts: u64('ts_ns') + clockOffset,
      node: this.#namer.node,
      netns,
      iface,
      netnsIno,
      ifindex: u32('ifindex'),
      proto,
      src,
      sport,
      dst,
      dport,
      reason,
      reasonCode,
      location: locationText,
      stack,
      cause,
      packetId,
      wireLen: Math.max(u32('wire_len') - from, l4End - from),
      linkType: ethernet ? LINKTYPE_ETHERNET : LINKTYPE_RAW,
      headers: bytes.slice(from, l4End),
    };
  }
}
