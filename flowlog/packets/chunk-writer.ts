// The writer's side of packet chunks (chunk-format.ts). Records are checked
// and staged as they are taken in: each packet's fields, SACK blocks and
// header residual as one row of a staging buffer, so the records themselves
// can go at once (held until the insert, the garbage collector would trace
// them again and again). A chunk's rows go into segments of the buffer of its
// own, so that when the batch is sealed and each chunk is packed column by
// column into its RowBinary row (the residuals as XOR with the previous
// packet's: 'xor_previous'), its rows are read one after the other: read in
// arrival order, most of them missed the CPU's caches.

import { headerLayout } from '../../model/headers.js';
import { DIRECTION, HOOK, PROTO_NUMBER } from '../../model/protocol.js';
import type { PacketRecord } from '../../model/records.js';
import { addressBytes, enumValue, invalid, OPTION_BIT, timestamp, U8, U16, U32, u64, uint, utf8 } from '../codec.js';
import { FIELD_OFFSET, FIXED_BYTES, RESIDUALS } from './chunk-format.js';
import { xorColumnBytes } from './residual.js';
import { putVarUInt, varUIntSize, type RowBinaryWriter } from '../rowbinary.js';

/** A chunk holds packets within this long of its first one (either way): its row expires with its last packet. */
const CHUNK_SPAN_NS = 1_000_000_000n;
/**
 * A chunk holds at most this many packets. Reads unpack every chunk that overlaps the time range they
 * want, so a chunk much larger than a read's slice (262 144 packets) is mostly unpacked for nothing.
 */
const MAX_CHUNK_PACKETS = 4096;

/** A staged packet: fixed-width fields at these offsets, then its SACK blocks, then its header residual (8-aligned). */
const STAGED = {
  ts: 0, packetId: 8, seq: 16, ack: 20, len: 24, wireLen: 28, tsVal: 32, tsEcr: 36,
  ipId: 40, win: 42, mss: 44, headerLen: 46, flags: 48, present: 49, wscale: 50, sackPerm: 51, sackBlocks: 52,
} as const;
/** Rows start 8-aligned, and so do their residuals: after 56 bytes and whole SACK blocks. */
const STAGED_FIXED_BYTES = 56;
/** A chunk's first segment of the staging buffer; each next one is twice as large, up to the last size. */
const FIRST_SEGMENT_BYTES = 256;
const LAST_SEGMENT_BYTES = 64 * 1024;

/** Bytes of a staged row: fixed fields, SACK blocks, residual padded to 8 bytes. */
function stagedRowBytes(sackBlocks: number, headerLength: number): number {
  return STAGED_FIXED_BYTES + 8 * sackBlocks + ((headerLength + 7) & ~7);
}

/** Packets of one capture point, hook, link type, protocol and direction of one connection. */
interface Chunk {
  /** The first packet: the chunk's point and tuple. */
  first: PacketRecord;
  src: Uint8Array;
  dst: Uint8Array;
  /** The times the chunk may hold, and the earliest and latest it holds. */
  earliest: bigint;
  latest: bigint;
  minTs: bigint;
  maxTs: bigint;
  packets: number;
  /** Packets given to it by add(), also by a call refused after (so that it never holds more than MAX_CHUNK_PACKETS). */
  taken: number;
  sackBlocks: number;
  headerBytes: number;
  /** Its staged rows: the segments filled, as start and end offsets; then the one being filled, up to `at`. */
  segments: number[];
  segmentStart: number;
  segmentEnd: number;
  at: number;
  nextSegmentBytes: number;
}

/**
 * Packets taken in for one insert, staged and grouped into chunks as they
 * come; encode() writes the chunks' rows. A record is checked when it is
 * added, so encoding cannot fail.
 */
export class PacketChunkBuilder {
  private chunks: Chunk[] = [];
  /** Chunks by source address, then by ports; the few sharing both are told apart by the rest. */
  private bySource = new Map<string, Map<number, Chunk[]>>();
  /** Staged packets, in the chunks' segments; `stagedBytes` are taken by segments. */
  private staged = new Uint8Array(1 << 20);
  private stagedView = new DataView(this.staged.buffer);
  private stagedWords = new Uint32Array(this.staged.buffer);
  private stagedBytes = 0;
  /** The chunks of the records add() is taking in. */
  private adding: Chunk[] = [];

  /** Bytes the staged packets take. */
  get stagedByteLength(): number {
    return this.stagedBytes;
  }

  /**
   * Takes in records[0, count); if one is invalid, throws and takes in none of
   * them (chunks it made stay empty, and are not written).
   */
  add(records: readonly PacketRecord[], count: number): void {
    const chunks = (this.adding.length = 0, this.adding);
    for (let i = 0; i < count; i++) {
      const p = records[i];
      checkPacket(p);
      chunks.push(this.chunkOf(p));
    }
    for (let i = 0; i < count; i++) this.stage(records[i], chunks[i]);
  }

  /** Writes a row per chunk and starts over empty. */
  encode(out: RowBinaryWriter): void {
    for (const chunk of this.chunks) {
      if (chunk.packets > 0) this.encodeChunk(chunk, out);
    }
    this.chunks = [];
    this.bySource = new Map();
    this.stagedBytes = 0;
  }

  /** Where a row of `rowBytes` goes in a new segment of `chunk`'s. */
  private newSegment(chunk: Chunk, rowBytes: number): number {
    if (chunk.segmentEnd > 0) chunk.segments.push(chunk.segmentStart, chunk.at);
    const bytes = Math.max(chunk.nextSegmentBytes, rowBytes);
    chunk.nextSegmentBytes = Math.min(2 * chunk.nextSegmentBytes, LAST_SEGMENT_BYTES);
    if (this.stagedBytes + bytes > this.staged.length) {
      const staged = new Uint8Array(Math.max(2 * this.staged.length, this.stagedBytes + bytes));
      staged.set(this.staged.subarray(0, this.stagedBytes));
      this.staged = staged;
      this.stagedView = new DataView(staged.buffer);
      this.stagedWords = new Uint32Array(staged.buffer);
    }
    chunk.segmentStart = this.stagedBytes;
    chunk.segmentEnd = this.stagedBytes += bytes;
    return chunk.segmentStart;
  }

  private stage(p: PacketRecord, chunk: Chunk): void {
    const o = p.options;
    const sack = o.sack;
    const blocks = sack === undefined ? 0 : sack.length;
    const headers = p.headers;
    const rowBytes = stagedRowBytes(blocks, headers.length);
    const at = chunk.at + rowBytes <= chunk.segmentEnd ? chunk.at : this.newSegment(chunk, rowBytes);
    chunk.at = at + rowBytes;
    const view = this.stagedView;
    const bytes = this.staged;
    view.setBigInt64(at + STAGED.ts, p.ts, true);
    view.setBigUint64(at + STAGED.packetId, p.packetId, true);
    view.setUint32(at + STAGED.seq, p.seq, true);
    view.setUint32(at + STAGED.ack, p.ack, true);
    view.setUint32(at + STAGED.len, p.len, true);
    view.setUint32(at + STAGED.wireLen, p.wireLen, true);
    view.setUint32(at + STAGED.tsVal, o.ts_val ?? 0, true);
    view.setUint32(at + STAGED.tsEcr, o.ts_ecr ?? 0, true);
    view.setUint16(at + STAGED.ipId, p.ipId, true);
    view.setUint16(at + STAGED.win, p.win, true);
    view.setUint16(at + STAGED.mss, o.mss ?? 0, true);
    view.setUint16(at + STAGED.headerLen, headers.length, true);
    bytes[at + STAGED.flags] = p.flags;
    bytes[at + STAGED.present] = (o.mss === undefined ? 0 : OPTION_BIT.mss) | (o.wscale === undefined ? 0 : OPTION_BIT.wscale) |
      (o.sack_perm === undefined ? 0 : OPTION_BIT.sack_perm) | (o.ts_val === undefined ? 0 : OPTION_BIT.ts_val) |
      (o.ts_ecr === undefined ? 0 : OPTION_BIT.ts_ecr) | (sack === undefined ? 0 : OPTION_BIT.sack);
    bytes[at + STAGED.wscale] = o.wscale ?? 0;
    bytes[at + STAGED.sackPerm] = o.sack_perm === true ? 1 : 0;
    bytes[at + STAGED.sackBlocks] = blocks;
    let to = at + STAGED_FIXED_BYTES;
    for (let j = 0; j < blocks; j++, to += 8) {
      view.setUint32(to, sack![j][0], true);
      view.setUint32(to + 4, sack![j][1], true);
    }
    bytes.set(headers, to);
    const end = to + headers.length;
    xorColumnBytes(bytes, end, headerLayout(bytes, to, end, p.linkType), p, chunk.src, chunk.dst);
    chunk.packets++;
    chunk.sackBlocks += blocks;
    chunk.headerBytes += headers.length;
    // A chunk may have been made by a call refused after: its times are its packets'.
    if (chunk.packets === 1 || p.ts < chunk.minTs) chunk.minTs = p.ts;
    if (chunk.packets === 1 || p.ts > chunk.maxTs) chunk.maxTs = p.ts;
  }

  /** The chunk `p` goes in; a new one if none matches (its point and tuple are checked then: a match has the same values). */
  private chunkOf(p: PacketRecord): Chunk {
    let byPorts = this.bySource.get(p.src);
    if (byPorts === undefined) this.bySource.set(p.src, (byPorts = new Map()));
    const ports = p.sport * 0x10000 + p.dport;
    let chunks = byPorts.get(ports);
    if (chunks === undefined) byPorts.set(ports, (chunks = []));
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i];
      const q = chunk.first;
      if (q.dst === p.dst && q.iface === p.iface && q.netns === p.netns && q.node === p.node && q.direction === p.direction &&
          q.ifindex === p.ifindex && q.netnsIno === p.netnsIno && q.hook === p.hook && q.proto === p.proto && q.linkType === p.linkType) {
        if (p.ts >= chunk.earliest && p.ts <= chunk.latest && chunk.taken < MAX_CHUNK_PACKETS) {
          chunk.taken++;
          return chunk;
        }
        // Too far apart in time, or full: a new chunk takes this one's place for the packets to come.
        return (chunks[i] = this.newChunk(p));
      }
    }
    const chunk = this.newChunk(p);
    chunks.push(chunk);
    return chunk;
  }

  private newChunk(p: PacketRecord): Chunk {
    checkChunk(p);
    const chunk: Chunk = {
      first: p, src: addressBytes(p.src, 'src'), dst: addressBytes(p.dst, 'dst'),
      earliest: p.ts - CHUNK_SPAN_NS, latest: p.ts + CHUNK_SPAN_NS, minTs: p.ts, maxTs: p.ts,
      packets: 0, taken: 1, sackBlocks: 0, headerBytes: 0,
      segments: [], segmentStart: 0, segmentEnd: 0, at: 0, nextSegmentBytes: FIRST_SEGMENT_BYTES,
    };
    this.chunks.push(chunk);
    return chunk;
  }

  /** The chunk's row: its columns, then its packets' ids, their packed fields and residuals (chunk-format.ts). */
  private encodeChunk(chunk: Chunk, out: RowBinaryWriter): void {
    const p0 = chunk.first;
    const n = chunk.packets;
    out.string(utf8(p0.node, 'node'));
    out.string(utf8(p0.netns, 'netns'));
    out.u32(p0.netnsIno);
    out.string(utf8(p0.iface, 'iface'));
    out.u32(p0.ifindex);
    out.u8(HOOK[p0.hook]);
    out.u8(DIRECTION[p0.direction]);
    out.u8(PROTO_NUMBER[p0.proto]);
    out.fixed(chunk.src);
    out.u16(p0.sport);
    out.fixed(chunk.dst);
    out.u16(p0.dport);
    out.u16(p0.linkType);
    out.i64(chunk.minTs);
    out.i64(chunk.maxTs);
    out.u32(n);
    // Room for the residuals as they come, and their mask bytes: at most one per 8 bytes, and one per packet for the last few.
    const most = FIXED_BYTES * n + 8 * chunk.sackBlocks + chunk.headerBytes + (chunk.headerBytes >> 3) + n;
    const sizeBytes = varUIntSize(most);
    const start = out.reserve(varUIntSize(n) + 8 * n + sizeBytes + most);
    const bytes = out.raw;
    const view = out.dataView;
    const staged = this.staged;
    const stagedWords = this.stagedWords;
    const from = this.stagedView;
    const ids = putVarUInt(bytes, start, n);
    // Packed after a length of sizeBytes, moved closer once its length is known if that takes fewer.
    const packed = ids + 8 * n + sizeBytes;
    const field = (name: keyof typeof FIELD_OFFSET) => packed + FIELD_OFFSET[name] * n;
    const ts = field('ts');
    const ipId = field('ip_id');
    const seq = field('seq');
    const ack = field('ack');
    const flags = field('flags');
    const win = field('win');
    const len = field('len');
    const wireLen = field('wire_len');
    const present = field('opt_present');
    const mss = field('opt_mss');
    const wscale = field('opt_wscale');
    const sackPerm = field('opt_sack_perm');
    const tsVal = field('opt_ts_val');
    const tsEcr = field('opt_ts_ecr');
    const sackBlocks = field('sack_blocks');
    const headerLen = field('header_len');
    let sackAt = packed + FIXED_BYTES * n;
    let residualAt = sackAt + 8 * chunk.sackBlocks;
    let prevResidual = 0;
    let prevLength = 0;
    // The previous packet's values, for the differences; the first time's is the chunk's first_ts.
    let tsLow = Number(chunk.minTs & 0xffffffffn);
    let tsHigh = Number(chunk.minTs >> 32n);
    let prevIpId = 0;
    let prevSeq = 0;
    let prevAck = 0;
    let prevTsVal = 0;
    let prevTsEcr = 0;
    // The chunk's rows, segment after segment (the last one up to where it is filled).
    const segments = chunk.segments;
    segments.push(chunk.segmentStart, chunk.at);
    let i = 0;
    for (let s = 0; s < segments.length; s += 2) {
      for (let row = segments[s]; row < segments[s + 1]; i++) {
        const low = from.getUint32(row + STAGED.ts, true);
        const high = from.getUint32(row + STAGED.ts + 4, true);
        view.setUint32(ts + 8 * i, (low - tsLow) >>> 0, true);
        view.setUint32(ts + 8 * i + 4, (high - tsHigh - (low < tsLow ? 1 : 0)) >>> 0, true);
        tsLow = low;
        tsHigh = high;
        view.setUint32(ids + 8 * i, from.getUint32(row + STAGED.packetId, true), true);
        view.setUint32(ids + 8 * i + 4, from.getUint32(row + STAGED.packetId + 4, true), true);
        const ipIdValue = from.getUint16(row + STAGED.ipId, true);
        view.setUint16(ipId + 2 * i, (ipIdValue - prevIpId) & U16, true);
        prevIpId = ipIdValue;
        const seqValue = from.getUint32(row + STAGED.seq, true);
        view.setUint32(seq + 4 * i, (seqValue - prevSeq) >>> 0, true);
        prevSeq = seqValue;
        const ackValue = from.getUint32(row + STAGED.ack, true);
        view.setUint32(ack + 4 * i, (ackValue - prevAck) >>> 0, true);
        prevAck = ackValue;
        const tsValValue = from.getUint32(row + STAGED.tsVal, true);
        view.setUint32(tsVal + 4 * i, (tsValValue - prevTsVal) >>> 0, true);
        prevTsVal = tsValValue;
        const tsEcrValue = from.getUint32(row + STAGED.tsEcr, true);
        view.setUint32(tsEcr + 4 * i, (tsEcrValue - prevTsEcr) >>> 0, true);
        prevTsEcr = tsEcrValue;
        bytes[flags + i] = staged[row + STAGED.flags];
        view.setUint16(win + 2 * i, from.getUint16(row + STAGED.win, true), true);
        view.setUint32(len + 4 * i, from.getUint32(row + STAGED.len, true), true);
        view.setUint32(wireLen + 4 * i, from.getUint32(row + STAGED.wireLen, true), true);
        bytes[present + i] = staged[row + STAGED.present];
        view.setUint16(mss + 2 * i, from.getUint16(row + STAGED.mss, true), true);
        bytes[wscale + i] = staged[row + STAGED.wscale];
        bytes[sackPerm + i] = staged[row + STAGED.sackPerm];
        const blocks = (bytes[sackBlocks + i] = staged[row + STAGED.sackBlocks]);
        const headerLength = from.getUint16(row + STAGED.headerLen, true);
        view.setUint16(headerLen + 2 * i, headerLength, true);
        const sacksFrom = row + STAGED_FIXED_BYTES;
        for (let j = 0; j < 8 * blocks; j++) bytes[sackAt++] = staged[sacksFrom + j];
        const residual = sacksFrom + 8 * blocks;
        residualAt = packResidual(bytes, residualAt, staged, stagedWords, residual, headerLength, prevResidual, prevLength);
        prevResidual = residual;
        prevLength = headerLength;
        row = residual + ((headerLength + 7) & ~7);
      }
    }
    const packedSize = residualAt - packed;
    const packedAt = ids + 8 * n + varUIntSize(packedSize);
    if (packedAt < packed) bytes.copyWithin(packedAt, packed, residualAt);
    putVarUInt(bytes, ids + 8 * n, packedSize);
    out.truncate(packedAt + packedSize);
    out.u8(RESIDUALS.xor_previous);
  }
}

/**
 * Writes the residual `staged[from, from + length)` at `out[at]` as its XOR with the previous packet's,
 * `staged[prev, prev + prevLength)`, in groups of 8 bytes: a mask byte (bit j: byte j is not 0), then the
 * bytes that are not 0 (chunk-format.ts). Returns where it ends.
 */
function packResidual(
  out: Uint8Array, at: number, staged: Uint8Array, words: Uint32Array, from: number, length: number, prev: number, prevLength: number,
): number {
  // Residuals start 8-aligned (STAGED_FIXED_BYTES), so groups of 8 bytes both have are compared as two
  // words (little-endian: byte j of a group is bits 8j.. of its word, as the hosts this runs on store them).
  const common = Math.min(length, prevLength);
  let g = 0;
  for (; g + 8 <= common; g += 8) {
    const low = words[(from + g) >> 2] ^ words[(prev + g) >> 2];
    const high = words[(from + g + 4) >> 2] ^ words[(prev + g + 4) >> 2];
    if ((low | high) === 0) {
      out[at++] = 0;
      continue;
    }
    const maskAt = at++;
    let mask = 0;
    for (let j = 0; j < 8; j++) {
      const b = ((j < 4 ? low : high) >>> (8 * (j & 3))) & 0xff;
      if (b !== 0) {
        mask |= 1 << j;
        out[at++] = b;
      }
    }
    out[maskAt] = mask;
  }
  for (; g < length; g += 8) {
    const maskAt = at++;
    let mask = 0;
    const end = Math.min(g + 8, length);
    for (let j = g; j < end; j++) {
      const b = j < common ? staged[from + j] ^ staged[prev + j] : staged[from + j];
      if (b !== 0) {
        mask |= 1 << (j - g);
        out[at++] = b;
      }
    }
    out[maskAt] = mask;
  }
  return at;
}

/** Throws INVALID_VALUE unless the values of `p` a chunk holds once fit their columns. */
function checkChunk(p: PacketRecord): void {
  addressBytes(p.src, 'src');
  addressBytes(p.dst, 'dst');
  utf8(p.node, 'node');
  utf8(p.netns, 'netns');
  utf8(p.iface, 'iface');
  uint(p.netnsIno, U32, 'netnsIno');
  uint(p.ifindex, U32, 'ifindex');
  enumValue(p.hook, HOOK, 'hook');
  enumValue(p.direction, DIRECTION, 'direction');
  enumValue(p.proto, PROTO_NUMBER, 'proto');
  uint(p.sport, U16, 'sport');
  uint(p.dport, U16, 'dport');
  uint(p.linkType, U16, 'linkType');
}

/** Throws INVALID_VALUE unless the values of `p` each packet has fit their columns. */
function checkPacket(p: PacketRecord): void {
  timestamp(p.ts, 'ts');
  u64(p.packetId, 'packetId');
  uint(p.ipId, U16, 'ipId');
  uint(p.seq, U32, 'seq');
  uint(p.ack, U32, 'ack');
  uint(p.flags, U8, 'flags');
  uint(p.win, U16, 'win');
  uint(p.len, U32, 'len');
  uint(p.wireLen, U32, 'wireLen');
  if (!(p.headers instanceof Uint8Array) || p.headers.length > U16) throw invalid('headers', p.headers);
  const o = p.options;
  uint(o.mss ?? 0, U16, 'options.mss');
  uint(o.wscale ?? 0, U8, 'options.wscale');
  uint(o.ts_val ?? 0, U32, 'options.ts_val');
  uint(o.ts_ecr ?? 0, U32, 'options.ts_ecr');
  const sack = o.sack;
  if (sack !== undefined) {
    if (!Array.isArray(sack) || sack.length > U8) throw invalid('options.sack', sack);
    sack.forEach(([left, right], i) => {
      uint(left, U32, `options.sack[${i}][0]`);
      uint(right, U32, `options.sack[${i}][1]`);
    });
  }
}
