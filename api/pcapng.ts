// Streaming pcapng / classic pcap writer. Turns an (async) iterable of items
// into Buffers of about CHUNK_BYTES each, so that an export of any size is
// written with bounded memory: `Readable.from(writeCaptureFile(items))` for
// HTTP, `pipeline(writeCaptureFile(items), createWriteStream(path))` for files.
// Formats: pcapng (draft-ietf-opsawg-pcapng), little endian; classic pcap with
// nanosecond timestamps (magic 0xa1b23c4d).

import os from 'node:os';
import { LINKTYPE_ETHERNET, type DropRecord, type PacketRecord } from '../flowlog/records.js';

export type CaptureFileFormat = 'pcapng' | 'pcap';

export const CAPTURE_FILE_TYPES: Record<CaptureFileFormat, { contentType: string; extension: string }> = {
  pcapng: { contentType: 'application/x-pcapng', extension: 'pcapng' },
  pcap: { contentType: 'application/vnd.tcpdump.pcap', extension: 'pcap' },
};

/** One packet to write; `comment` (pcapng only) becomes the packet's opt_comment, e.g. a NAT or drop note. */
export interface PacketItem {
  kind: 'packet';
  packet: PacketRecord;
  comment?: string;
}

/** A packet the kernel dropped: its headers as dropped, with `comment` (reason, location) — pcapng only, classic pcap leaves drops out. */
export interface DropItem {
  kind: 'drop';
  drop: DropRecord;
  comment: string;
}

export type CaptureItem = PacketItem | DropItem;

export interface CaptureFileOptions {
  /** Default pcapng. */
  format?: CaptureFileFormat;
  /** pcapng only: a comment on the whole file (Section Header Block), e.g. the connection asked for. */
  sectionComment?: string;
}

export type CaptureFileErrorCode = 'PCAP_MIXED_LINKTYPES' | 'PCAP_TIMESTAMP_RANGE' | 'PCAPNG_MALFORMED';

export class CaptureFileError extends Error {
  constructor(
    readonly code: CaptureFileErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'CaptureFileError';
  }
}

/** Target size of the Buffers yielded. */
const CHUNK_BYTES = 64 * 1024;

/**
 * Encodes `items` in order and yields the file in chunks. Throws CaptureFileError
 * (mid-stream, after earlier chunks were yielded) on a timestamp outside the
 * format's range or, for classic pcap, on a link type other than the first packet's.
 */
export async function* writeCaptureFile(
  items: AsyncIterable<CaptureItem> | Iterable<CaptureItem>,
  options: CaptureFileOptions = {},
): AsyncGenerator<Buffer, void, undefined> {
  const sink = new ChunkSink();
  const encoder: Encoder = options.format === 'pcap' ? new PcapEncoder(sink) : new PcapngEncoder(sink, options.sectionComment);
  // A sync source is read without a promise per item.
  if (Symbol.iterator in items) {
    for (const item of items) {
      encoder.packet(item);
      if (sink.size >= CHUNK_BYTES) yield sink.take();
    }
  } else {
    for await (const item of items) {
      encoder.packet(item);
      if (sink.size >= CHUNK_BYTES) yield sink.take();
    }
  }
  encoder.end?.();
  if (sink.size > 0) yield sink.take();
}

/** Encoded bytes of the chunk being filled; blocks are written into it in place. */
class ChunkSink {
  private buffer = Buffer.allocUnsafe(2 * CHUNK_BYTES);
  size = 0;

  /** Room for `length` more bytes: the buffer and the offset to write at. */
  reserve(length: number): [Buffer, number] {
    if (this.size + length > this.buffer.length) {
      const larger = Buffer.allocUnsafe(Math.max(2 * this.buffer.length, this.size + length));
      this.buffer.copy(larger, 0, 0, this.size);
      this.buffer = larger;
    }
    const at = this.size;
    this.size += length;
    return [this.buffer, at];
  }

  push(block: Buffer): void {
    const [buffer, at] = this.reserve(block.length);
    block.copy(buffer, at);
  }

  /** The chunk so far; later blocks go into a fresh buffer, so the chunk is the caller's. */
  take(): Buffer {
    const chunk = this.buffer.subarray(0, this.size);
    this.buffer = Buffer.allocUnsafe(2 * CHUNK_BYTES);
    this.size = 0;
    return chunk;
  }
}

interface Encoder {
  packet(item: CaptureItem): void;
  /** Called once after the last item. */
  end?(): void;
}

// ---- pcapng ----

const BLOCK_SHB = 0x0a0d0d0a;
const BLOCK_IDB = 0x00000001;
const BLOCK_EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

const OPT_ENDOFOPT = 0;
const OPT_COMMENT = 1;
const SHB_HARDWARE = 2;
const SHB_OS = 3;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;
const EPB_PACKETID = 5;

/** epb_flags bits 0-1. */
const EPB_FLAGS_INBOUND = 1;
const EPB_FLAGS_OUTBOUND = 2;
/** if_tsresol 9: timestamps count 10^-9 s. */
const TSRESOL_NANOSECONDS = 9;
const MAX_OPTION_BYTES = 0xffff;

interface BlockOption {
  code: number;
  value: Uint8Array;
}

/** What makes a pcapng interface: a capture point, its hook (or `drop`) and link type. */
type InterfaceKey = Pick<PacketRecord, 'node' | 'netns' | 'iface' | 'linkType'> & { hook: PacketRecord['hook'] | 'drop' };

class PcapngEncoder implements Encoder {
  /** Interface id by capture point key, in the order the IDBs were written. */
  private readonly interfaceIds = new Map<string, number>();
  /** The interface of the previous packet: consecutive packets mostly share one. */
  private lastInterface: (InterfaceKey & { id: number }) | null = null;

  constructor(
    private readonly sink: ChunkSink,
    sectionComment: string | undefined,
  ) {
    const options: BlockOption[] = [];
    if (sectionComment !== undefined) options.push(textOption(OPT_COMMENT, sectionComment));
    options.push(
      textOption(SHB_HARDWARE, os.machine()),
      textOption(SHB_OS, `${os.type()} ${os.release()}`),
      textOption(SHB_USERAPPL, 'nettrail'),
    );
    // Fields: byte-order magic, version 1.0, section length -1 (unknown: we stream).
    sink.push(encodeBlock(BLOCK_SHB, [BYTE_ORDER_MAGIC, 1, 0xffffffff, 0xffffffff], null, options));
  }

  /** An EPB written in place: fields, data, epb_flags, epb_packetid, opt_comment if any. */
  packet(item: CaptureItem): void {
    if (item.kind === 'drop') return this.drop(item);
    const p = item.packet;
    const interfaceId = this.interfaceId(p);
    const [tsHigh, tsLow] = splitTimestamp(p.ts);
    const comment = item.comment === undefined ? null : textOption(OPT_COMMENT, item.comment).value;
    const dataLength = pad4(p.headers.length);
    const commentLength = comment === null ? 0 : 4 + pad4(comment.length);
    const total = 28 + dataLength + 8 + 12 + commentLength + 4 + 4;
    const [b, start] = this.sink.reserve(total);
    let at = start;
    at = b.writeUInt32LE(BLOCK_EPB, at);
    at = b.writeUInt32LE(total, at);
    at = b.writeUInt32LE(interfaceId, at);
    at = b.writeUInt32LE(tsHigh, at);
    at = b.writeUInt32LE(tsLow, at);
    at = b.writeUInt32LE(p.headers.length, at);
    at = b.writeUInt32LE(originalLength(p), at);
    b.set(p.headers, at);
    b.fill(0, at + p.headers.length, at + dataLength);
    at += dataLength;
    at = b.writeUInt16LE(EPB_FLAGS, at);
    at = b.writeUInt16LE(4, at);
    at = b.writeUInt32LE(p.direction === 'ingress' ? EPB_FLAGS_INBOUND : EPB_FLAGS_OUTBOUND, at);
    at = b.writeUInt16LE(EPB_PACKETID, at);
    at = b.writeUInt16LE(8, at);
    at = b.writeBigUInt64LE(BigInt.asUintN(64, p.packetId), at);
    if (comment !== null) {
      at = b.writeUInt16LE(OPT_COMMENT, at);
      at = b.writeUInt16LE(comment.length, at);
      b.set(comment, at);
      b.fill(0, at + comment.length, at + pad4(comment.length));
      at += pad4(comment.length);
    }
    at = b.writeUInt32LE(OPT_ENDOFOPT, at);
    b.writeUInt32LE(total, at);
  }

  /** A dropped packet: on an interface of its own per point (hook `drop`), no direction, the drop's comment. */
  private drop({ drop: d, comment }: DropItem): void {
    const [tsHigh, tsLow] = splitTimestamp(d.ts);
    const packetId = Buffer.alloc(8);
    packetId.writeBigUInt64LE(BigInt.asUintN(64, d.packetId));
    const fields = [this.interfaceId({ ...d, hook: 'drop' }), tsHigh, tsLow, d.headers.length, Math.max(d.wireLen, d.headers.length)];
    this.sink.push(encodeBlock(BLOCK_EPB, fields, d.headers, [{ code: EPB_PACKETID, value: packetId }, textOption(OPT_COMMENT, comment)]));
  }

  /** The packet's interface id, writing its IDB first if this is the first packet seen there. */
  private interfaceId(p: InterfaceKey): number {
    const last = this.lastInterface;
    if (last && last.node === p.node && last.netns === p.netns && last.iface === p.iface && last.hook === p.hook && last.linkType === p.linkType) {
      return last.id;
    }
    // The hook and link type are part of the key: tc and xdp on one device are separate interfaces.
    const key = `${p.node}\0${p.netns}\0${p.iface}\0${p.hook}\0${p.linkType}`;
    let id = this.interfaceIds.get(key);
    if (id === undefined) {
      id = this.interfaceIds.size;
      this.interfaceIds.set(key, id);
      const options = [
        textOption(IF_NAME, `${p.node}/${p.netns}/${p.iface}`),
        textOption(IF_DESCRIPTION, `${p.hook === 'drop' ? 'packets the kernel dropped (skb:kfree_skb)' : `${p.hook} hook`}, netns ${p.netns} on node ${p.node}`),
        { code: IF_TSRESOL, value: Uint8Array.of(TSRESOL_NANOSECONDS) },
      ];
      // Fields: link type (u16) + reserved (u16), snaplen 0 (no limit).
      this.sink.push(encodeBlock(BLOCK_IDB, [p.linkType & 0xffff, 0], null, options));
    }
    this.lastInterface = { node: p.node, netns: p.netns, iface: p.iface, hook: p.hook, linkType: p.linkType, id };
    return id;
  }
}

/**
 * One pcapng block: type, total length, `fields` as little-endian u32s, `data`
 * padded to 32 bits, options ended by opt_endofopt, total length again.
 */
function encodeBlock(type: number, fields: readonly number[], data: Uint8Array | null, options: readonly BlockOption[]): Buffer {
  let optionsLength = 0;
  for (const o of options) optionsLength += 4 + pad4(o.value.length);
  if (options.length > 0) optionsLength += 4;
  const dataLength = data === null ? 0 : pad4(data.length);
  const total = 12 + 4 * fields.length + dataLength + optionsLength;

  const block = Buffer.allocUnsafe(total).fill(0);
  block.writeUInt32LE(type, 0);
  block.writeUInt32LE(total, 4);
  let at = 8;
  for (const f of fields) at = block.writeUInt32LE(f, at);
  if (data !== null) {
    block.set(data, at);
    at += dataLength;
  }
  for (const o of options) {
    at = block.writeUInt16LE(o.code, at);
    at = block.writeUInt16LE(o.value.length, at);
    block.set(o.value, at);
    at += pad4(o.value.length);
  }
  if (options.length > 0) block.writeUInt32LE(OPT_ENDOFOPT, at); // code 0, length 0
  block.writeUInt32LE(total, total - 4);
  return block;
}

/** UTF-8 text, cut at a character boundary if longer than an option can hold. */
function textOption(code: number, text: string): BlockOption {
  const bytes = Buffer.from(text, 'utf8');
  let length = Math.min(bytes.length, MAX_OPTION_BYTES);
  while (length < bytes.length && (bytes[length]! & 0xc0) === 0x80) length--;
  return { code, value: bytes.subarray(0, length) };
}

function splitTimestamp(ts: bigint): [number, number] {
  if (ts < 0n || ts > 0xffffffffffffffffn) {
    throw new CaptureFileError('PCAP_TIMESTAMP_RANGE', `timestamp ${ts} ns is outside 0..2^64-1`);
  }
  return [Number(ts >> 32n), Number(ts & 0xffffffffn)];
}

// ---- classic pcap ----

const PCAP_MAGIC_NANOSECONDS = 0xa1b23c4d;
/** Largest snaplen libpcap and Wireshark accept for every link type. */
const PCAP_SNAPLEN = 262144;

class PcapEncoder implements Encoder {
  /** Set by the first packet; the whole file has one link type. */
  private linkType: number | null = null;

  constructor(private readonly sink: ChunkSink) {}

  packet(item: CaptureItem): void {
    if (item.kind === 'drop') return; // no comments in classic pcap to say why: drops are left out
    const p = item.packet;
    if (this.linkType === null) {
      this.linkType = p.linkType;
      this.sink.push(pcapFileHeader(p.linkType));
    } else if (p.linkType !== this.linkType) {
      throw new CaptureFileError(
        'PCAP_MIXED_LINKTYPES',
        `classic pcap holds one link type: ${p.node}/${p.netns}/${p.iface} has link type ${p.linkType}, earlier packets ${this.linkType}; use pcapng`,
      );
    }
    const seconds = p.ts / 1_000_000_000n;
    if (p.ts < 0n || seconds > 0xffffffffn) {
      throw new CaptureFileError('PCAP_TIMESTAMP_RANGE', `timestamp ${p.ts} ns does not fit classic pcap's 32-bit seconds`);
    }
    const [b, at] = this.sink.reserve(16 + p.headers.length);
    b.writeUInt32LE(Number(seconds), at);
    b.writeUInt32LE(Number(p.ts % 1_000_000_000n), at + 4);
    b.writeUInt32LE(p.headers.length, at + 8);
    b.writeUInt32LE(originalLength(p), at + 12);
    b.set(p.headers, at + 16);
  }

  /** A file without packets still gets a header (Ethernet). */
  end(): void {
    if (this.linkType === null) this.sink.push(pcapFileHeader(LINKTYPE_ETHERNET));
  }
}

function pcapFileHeader(linkType: number): Buffer {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(PCAP_MAGIC_NANOSECONDS, 0);
  header.writeUInt16LE(2, 4); // version 2.4
  header.writeUInt16LE(4, 6);
  // thiszone and sigfigs stay 0
  header.writeUInt32LE(PCAP_SNAPLEN, 16);
  header.writeUInt32LE(linkType, 20);
  return header;
}

// ---- shared ----

/** Original length may not be below the captured length. */
function originalLength(p: PacketRecord): number {
  return Math.max(p.wireLen, p.headers.length);
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

/**
 * Counts the packet blocks (EPB) of a little-endian pcapng stream as its
 * chunks go by, for progress: block boundaries are followed through chunk
 * boundaries by their total-length fields.
 */
export class PcapngPacketCounter {
  packets = 0;
  bytes = 0;
  /** Bytes still to skip of the current block. */
  private skip = 0;
  /** A block header split across chunks. */
  private partial = Buffer.alloc(0);

  push(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    let data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.partial.length > 0) {
      data = Buffer.concat([this.partial, data]);
      this.partial = Buffer.alloc(0);
    }
    let at = Math.min(this.skip, data.length);
    this.skip -= at;
    while (this.skip === 0 && at < data.length) {
      if (data.length - at < 8) {
        this.partial = Buffer.from(data.subarray(at));
        return;
      }
      const type = data.readUInt32LE(at);
      const length = data.readUInt32LE(at + 4);
      if (length < 12) throw new CaptureFileError('PCAPNG_MALFORMED', `block at byte ${this.bytes - data.length + at} has length ${length}`);
      if (type === BLOCK_EPB) this.packets++;
      const inChunk = Math.min(length, data.length - at);
      this.skip = length - inChunk;
      at += inChunk;
    }
  }
}
