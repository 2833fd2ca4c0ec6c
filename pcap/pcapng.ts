// Streaming pcapng / classic pcap writer. Turns an (async) iterable of
// batches of items into Buffers of about CHUNK_BYTES each, so that an export
// of any size is written with bounded memory:
// `Readable.from(writeCaptureFile(batches))` for HTTP,
// `pipeline(writeCaptureFile(batches), createWriteStream(path))` for files.
// Formats: pcapng (draft-ietf-opsawg-pcapng), little endian; classic pcap with
// nanosecond timestamps (magic 0xa1b23c4d). Self-contained: packets come in
// through the interfaces below, whatever holds them.

import os from 'node:os';

export type CaptureFileFormat = 'pcapng' | 'pcap';

export const CAPTURE_FILE_TYPES: Record<CaptureFileFormat, { contentType: string; extension: string }> = {
  pcapng: { contentType: 'application/x-pcapng', extension: 'pcapng' },
  pcap: { contentType: 'application/vnd.tcpdump.pcap', extension: 'pcap' },
};

/** Packet directions: the values of epb_flags bits 0-1. */
export const EPB_INBOUND = 1;
export const EPB_OUTBOUND = 2;

/**
 * Where packets were captured. pcapng writes an Interface Description Block
 * for each distinct one (equal in all three fields) before its first packet;
 * classic pcap keeps only the link type, one per file.
 */
export interface CaptureInterface {
  /** if_name. */
  name: string;
  /** if_description. */
  description: string;
  /** The LINKTYPE_* of its packets' bytes. */
  linkType: number;
}

/** Packets as columns: entry r of each array belongs to packet (row) r. */
export interface CaptureColumns {
  /** Each row's interface, an index into `interfaces`. */
  interface: Uint16Array;
  interfaces: readonly CaptureInterface[];
  /** Nanoseconds since 1970; the formats hold none before. */
  ts: BigInt64Array;
  /** EPB_INBOUND or EPB_OUTBOUND (epb_flags, pcapng only). */
  direction: Uint8Array;
  /** Length on the wire; the captured length where that is longer. */
  originalLength: Uint32Array;
  /** epb_packetid (pcapng only). */
  packetId: BigUint64Array;
  /** Row r's captured bytes are bytes[starts[r], ends[r]). */
  bytes: Buffer;
  starts: Uint32Array;
  ends: Uint32Array;
}

/** Rows of packet columns to write, in order. */
export interface CaptureRows {
  kind: 'rows';
  columns: CaptureColumns;
  rows: Uint32Array;
  /** opt_comment options by row of `columns`, one per text (pcapng only). */
  comments?: ReadonlyMap<number, readonly string[]>;
}

/** One packet by value, its direction unknown (no epb_flags). */
export interface CapturePacket {
  kind: 'packet';
  interface: CaptureInterface;
  /** Nanoseconds since 1970. */
  ts: bigint;
  /** epb_packetid, 64 bits unsigned (pcapng only). */
  packetId: bigint;
  bytes: Uint8Array;
  /** Length on the wire; the captured length where that is longer. */
  originalLength: number;
  /** opt_comment (pcapng only). */
  comment?: string;
}

export type CaptureItem = CaptureRows | CapturePacket;

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
const CHUNK_BYTES = 256 * 1024;

/**
 * Encodes the items of `batches` in order and yields the file in chunks
 * (a batch is read without a promise per item). Throws CaptureFileError
 * (mid-stream, after earlier chunks were yielded) on a timestamp outside the
 * format's range or, for classic pcap, on a link type other than the first packet's.
 */
export async function* writeCaptureFile(
  batches: AsyncIterable<readonly CaptureItem[]> | Iterable<readonly CaptureItem[]>,
  options: CaptureFileOptions = {},
): AsyncGenerator<Buffer, void, undefined> {
  const sink = new ChunkSink();
  const encoder: Encoder = options.format === 'pcap' ? new PcapEncoder(sink) : new PcapngEncoder(sink, options.sectionComment);
  for await (const items of batches) {
    for (const item of items) {
      if (item.kind === 'packet') {
        encoder.packet(item);
        if (sink.size >= CHUNK_BYTES) yield sink.take();
        continue;
      }
      const { columns, rows, comments } = item;
      for (let k = 0; k < rows.length; k++) {
        const row = rows[k];
        encoder.row(columns, row, comments?.get(row));
        if (sink.size >= CHUNK_BYTES) yield sink.take();
      }
    }
  }
  encoder.end?.();
  if (sink.size > 0) yield sink.take();
}

/**
 * Encoded bytes of the chunk being filled; blocks are written into it in
 * place. A chunk starts 8-byte aligned and pcapng blocks are multiples of 4
 * bytes, so their 32-bit fields can be written through `words`.
 */
class ChunkSink {
  buffer!: Buffer;
  /** The buffer as little-endian 32-bit words (every host nettrail runs on is little-endian). */
  words!: Uint32Array;
  view!: DataView;
  size = 0;

  constructor() {
    this.allocate(2 * CHUNK_BYTES);
  }

  private allocate(length: number): void {
    const memory = new ArrayBuffer(length);
    this.buffer = Buffer.from(memory);
    this.words = new Uint32Array(memory, 0, length >>> 2);
    this.view = new DataView(memory);
  }

  /** Room for `length` more bytes: the offset to write at in `buffer` (valid until the next reserve). */
  reserve(length: number): number {
    if (this.size + length > this.buffer.length) {
      const old = this.buffer;
      this.allocate(Math.max(2 * old.length, (this.size + length + 3) & ~3));
      old.copy(this.buffer, 0, 0, this.size);
    }
    const at = this.size;
    this.size += length;
    return at;
  }

  push(block: Buffer): void {
    const at = this.reserve(block.length);
    block.copy(this.buffer, at);
  }

  /** The chunk so far; later blocks go into a fresh buffer, so the chunk is the caller's. */
  take(): Buffer {
    const chunk = this.buffer.subarray(0, this.size);
    this.allocate(2 * CHUNK_BYTES);
    this.size = 0;
    return chunk;
  }
}

interface Encoder {
  /** Row `row` of `c`, with its comments if any. */
  row(c: CaptureColumns, row: number, comments: readonly string[] | undefined): void;
  /** A packet given by value. */
  packet(p: CapturePacket): void;
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

/** if_tsresol 9: timestamps count 10^-9 s. */
const TSRESOL_NANOSECONDS = 9;
const MAX_OPTION_BYTES = 0xffff;

interface BlockOption {
  code: number;
  value: Uint8Array;
}

class PcapngEncoder implements Encoder {
  /** Interface id by the interface's fields, in the order the IDBs were written. */
  private readonly interfaceIds = new Map<string, number>();
  /** The columns written last: their interface ids by index, timestamps and packet ids as little-endian 32-bit words (low, high). */
  private columnsOf: CaptureColumns | null = null;
  private ids: number[] = [];
  private tsWords: Uint32Array = new Uint32Array(0);
  private packetIdWords: Uint32Array = new Uint32Array(0);

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

  /** An EPB written in place: fields, data, epb_flags, epb_packetid, an opt_comment per comment. */
  row(c: CaptureColumns, row: number, commentTexts: readonly string[] | undefined): void {
    if (c !== this.columnsOf) {
      this.columnsOf = c;
      this.ids = [];
      this.tsWords = new Uint32Array(c.ts.buffer, c.ts.byteOffset, 2 * c.ts.length);
      this.packetIdWords = new Uint32Array(c.packetId.buffer, c.packetId.byteOffset, 2 * c.packetId.length);
    }
    const index = c.interface[row];
    const interfaceId = this.ids[index] ?? (this.ids[index] = this.interfaceId(c.interfaces[index]));
    const tsWords = this.tsWords;
    const tsHigh = tsWords[2 * row + 1];
    if (tsHigh & 0x80000000) throw timestampBefore1970(c.ts[row]);
    const comments = commentTexts === undefined ? null : commentTexts.map((text) => textOption(OPT_COMMENT, text).value);
    const from = c.starts[row];
    const captured = c.ends[row] - from;
    const dataLength = pad4(captured);
    let commentLength = 0;
    if (comments !== null) for (const comment of comments) commentLength += 4 + pad4(comment.length);
    const total = 28 + dataLength + 8 + 12 + commentLength + 4 + 4;
    const sink = this.sink;
    const start = sink.reserve(total);
    const { buffer: b, words: w } = sink;
    let word = start >>> 2;
    w[word] = BLOCK_EPB;
    w[word + 1] = total;
    w[word + 2] = interfaceId;
    w[word + 3] = tsHigh;
    w[word + 4] = tsWords[2 * row];
    w[word + 5] = captured;
    w[word + 6] = Math.max(c.originalLength[row], captured);
    if (dataLength > 0) w[word + 6 + (dataLength >>> 2)] = 0; // the padding after the data
    c.bytes.copy(b, start + 28, from, from + captured);
    word += 7 + (dataLength >>> 2);
    w[word] = EPB_FLAGS | (4 << 16);
    w[word + 1] = c.direction[row];
    w[word + 2] = EPB_PACKETID | (8 << 16);
    w[word + 3] = this.packetIdWords[2 * row];
    w[word + 4] = this.packetIdWords[2 * row + 1];
    word += 5;
    if (comments !== null) {
      for (const comment of comments) {
        w[word] = OPT_COMMENT | (comment.length << 16);
        if (comment.length > 0) w[word + (pad4(comment.length) >>> 2)] = 0; // the padding after the text
        b.set(comment, (word + 1) << 2);
        word += 1 + (pad4(comment.length) >>> 2);
      }
    }
    w[word] = OPT_ENDOFOPT;
    w[word + 1] = total;
  }

  /** An EPB: fields, data, epb_packetid, opt_comment if any. */
  packet(p: CapturePacket): void {
    if (p.ts < 0n) throw timestampBefore1970(p.ts);
    const [tsHigh, tsLow] = [Number(p.ts >> 32n), Number(p.ts & 0xffffffffn)];
    const packetId = Buffer.alloc(8);
    packetId.writeBigUInt64LE(BigInt.asUintN(64, p.packetId));
    const fields = [this.interfaceId(p.interface), tsHigh, tsLow, p.bytes.length, Math.max(p.originalLength, p.bytes.length)];
    const options: BlockOption[] = [{ code: EPB_PACKETID, value: packetId }];
    if (p.comment !== undefined) options.push(textOption(OPT_COMMENT, p.comment));
    this.sink.push(encodeBlock(BLOCK_EPB, fields, p.bytes, options));
  }

  /** The id of an interface, writing its IDB first if this is its first packet. */
  private interfaceId(i: CaptureInterface): number {
    const key = `${i.name}\0${i.description}\0${i.linkType}`;
    let id = this.interfaceIds.get(key);
    if (id === undefined) {
      id = this.interfaceIds.size;
      this.interfaceIds.set(key, id);
      const options = [
        textOption(IF_NAME, i.name),
        textOption(IF_DESCRIPTION, i.description),
        { code: IF_TSRESOL, value: Uint8Array.of(TSRESOL_NANOSECONDS) },
      ];
      // Fields: link type (u16) + reserved (u16), snaplen 0 (no limit).
      this.sink.push(encodeBlock(BLOCK_IDB, [i.linkType & 0xffff, 0], null, options));
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

/** Timestamps are signed 64-bit nanoseconds; pcapng's are unsigned. */
function timestampBefore1970(ts: bigint): CaptureFileError {
  return new CaptureFileError('PCAP_TIMESTAMP_RANGE', `timestamp ${ts} ns is before 1970: not representable in pcapng or pcap`);
}

// ---- classic pcap ----

const PCAP_MAGIC_NANOSECONDS = 0xa1b23c4d;
/** The link type of a file without packets. */
const LINKTYPE_ETHERNET = 1;
/** Largest snaplen libpcap and Wireshark accept for every link type. */
const PCAP_SNAPLEN = 262144;

class PcapEncoder implements Encoder {
  /** Set by the first packet; the whole file has one link type. */
  private linkType: number | null = null;

  constructor(private readonly sink: ChunkSink) {}

  row(c: CaptureColumns, row: number): void {
    const from = c.starts[row];
    const captured = c.ends[row] - from;
    const at = this.record(c.interfaces[c.interface[row]], c.ts[row], captured, c.originalLength[row]);
    c.bytes.copy(this.sink.buffer, at, from, from + captured);
  }

  packet(p: CapturePacket): void {
    const at = this.record(p.interface, p.ts, p.bytes.length, p.originalLength);
    this.sink.buffer.set(p.bytes, at);
  }

  /** A record's header, the file header first if this is the first packet; returns where its `captured` bytes go. */
  private record(i: CaptureInterface, ts: bigint, captured: number, originalLength: number): number {
    if (this.linkType === null) {
      this.linkType = i.linkType;
      this.sink.push(pcapFileHeader(i.linkType));
    } else if (i.linkType !== this.linkType) {
      throw new CaptureFileError(
        'PCAP_MIXED_LINKTYPES',
        `classic pcap holds one link type: ${i.name} has link type ${i.linkType}, earlier packets ${this.linkType}; use pcapng`,
      );
    }
    const seconds = ts / 1_000_000_000n;
    if (ts < 0n) throw timestampBefore1970(ts);
    if (seconds > 0xffffffffn) {
      throw new CaptureFileError('PCAP_TIMESTAMP_RANGE', `timestamp ${ts} ns does not fit classic pcap's 32-bit seconds`);
    }
    const at = this.sink.reserve(16 + captured);
    const b = this.sink.buffer;
    b.writeUInt32LE(Number(seconds), at);
    b.writeUInt32LE(Number(ts % 1_000_000_000n), at + 4);
    b.writeUInt32LE(captured, at + 8);
    b.writeUInt32LE(Math.max(originalLength, captured), at + 12);
    return at + 16;
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
