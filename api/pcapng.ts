// Streaming pcapng / classic pcap writer. Turns an (async) iterable of items
// into Buffers of about CHUNK_BYTES each, so that an export of any size is
// written with bounded memory: `Readable.from(writeCaptureFile(items))` for
// HTTP, `pipeline(writeCaptureFile(items), createWriteStream(path))` for files.
// Formats: pcapng (draft-ietf-opsawg-pcapng), little endian; classic pcap with
// nanosecond timestamps (magic 0xa1b23c4d).

import os from 'node:os';
import { LINKTYPE_ETHERNET, type PacketRecord } from '../flowlog/records.js';

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

export type CaptureItem = PacketItem;

export interface CaptureFileOptions {
  /** Default pcapng. */
  format?: CaptureFileFormat;
  /** pcapng only: a comment on the whole file (Section Header Block), e.g. the connection asked for. */
  sectionComment?: string;
}

export type CaptureFileErrorCode = 'PCAP_MIXED_LINKTYPES' | 'PCAP_TIMESTAMP_RANGE';

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
  for await (const item of items) {
    encoder.packet(item);
    if (sink.size >= CHUNK_BYTES) yield sink.take();
  }
  encoder.end?.();
  if (sink.size > 0) yield sink.take();
}

/** Collects encoded blocks until a chunk is due. */
class ChunkSink {
  private parts: Buffer[] = [];
  size = 0;

  push(block: Buffer): void {
    this.parts.push(block);
    this.size += block.length;
  }

  take(): Buffer {
    const chunk = Buffer.concat(this.parts, this.size);
    this.parts = [];
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

class PcapngEncoder implements Encoder {
  /** Interface id by capture point key, in the order the IDBs were written. */
  private readonly interfaceIds = new Map<string, number>();

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

  packet(item: CaptureItem): void {
    const p = item.packet;
    const [tsHigh, tsLow] = splitTimestamp(p.ts);
    const options: BlockOption[] = [
      u32Option(EPB_FLAGS, p.direction === 'ingress' ? EPB_FLAGS_INBOUND : EPB_FLAGS_OUTBOUND),
      u64Option(EPB_PACKETID, p.packetId),
    ];
    if (item.comment !== undefined) options.push(textOption(OPT_COMMENT, item.comment));
    const fields = [this.interfaceId(p), tsHigh, tsLow, p.headers.length, originalLength(p)];
    this.sink.push(encodeBlock(BLOCK_EPB, fields, p.headers, options));
  }

  /** The packet's interface id, writing its IDB first if this is the first packet seen there. */
  private interfaceId(p: PacketRecord): number {
    // The hook and link type are part of the key: tc and xdp on one device are separate interfaces.
    const key = `${p.node}\0${p.netns}\0${p.iface}\0${p.hook}\0${p.linkType}`;
    let id = this.interfaceIds.get(key);
    if (id === undefined) {
      id = this.interfaceIds.size;
      this.interfaceIds.set(key, id);
      const options = [
        textOption(IF_NAME, `${p.node}/${p.netns}/${p.iface}`),
        textOption(IF_DESCRIPTION, `${p.hook} hook, netns ${p.netns} on node ${p.node}`),
        { code: IF_TSRESOL, value: Uint8Array.of(TSRESOL_NANOSECONDS) },
      ];
      // Fields: link type (u16) + reserved (u16), snaplen 0 (no limit).
      this.sink.push(encodeBlock(BLOCK_IDB, [p.linkType & 0xffff, 0], null, options));
    }
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

function u32Option(code: number, value: number): BlockOption {
  const bytes = Buffer.allocUnsafe(4);
  bytes.writeUInt32LE(value >>> 0);
  return { code, value: bytes };
}

function u64Option(code: number, value: bigint): BlockOption {
  const bytes = Buffer.allocUnsafe(8);
  bytes.writeBigUInt64LE(BigInt.asUintN(64, value));
  return { code, value: bytes };
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
    const record = Buffer.allocUnsafe(16 + p.headers.length);
    record.writeUInt32LE(Number(seconds), 0);
    record.writeUInt32LE(Number(p.ts % 1_000_000_000n), 4);
    record.writeUInt32LE(p.headers.length, 8);
    record.writeUInt32LE(originalLength(p), 12);
    record.set(p.headers, 16);
    this.sink.push(record);
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
