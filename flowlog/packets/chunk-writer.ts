// The writer's side of packet chunks (chunk-format.ts). Packets are staged as
// they are taken in: each packet's fields, SACK blocks and header residual as
// one row of a staging buffer, so the columns they came in can go at once
// (capture's ring batches are handed back to the native consumer). A chunk's rows go into segments of the buffer of its
// own, so that when the batch is sealed and each chunk is packed column by
// column into its RowBinary row (the residuals as XOR with the previous
// packet's: 'xor_previous'), its rows are read one after the other: read in
// arrival order, most of them missed the CPU's caches.

import { headerLayout, type HeaderLayout } from '../../model/headers.js';
import { OPTION_BIT, type PacketColumns } from '../../model/packet-columns.js';
import type { TcpOptions } from '../../model/records.js';
import { U16, utf8 } from '../codec.js';
import { FIELD_OFFSET, FIXED_BYTES, RESIDUALS } from './chunk-format.js';
import { xorColumnBytes, type HeaderColumns } from './residual.js';
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

/** Slots of PacketChunkBuilder.recent (a power of two). */
const RECENT_CHUNKS = 256;
/** Headers up to this long are copied byte by byte: cheaper than a subarray to copy from. */
const SHORT_HEADERS = 128;

/** Bytes of a staged row: fixed fields, SACK blocks, residual padded to 8 bytes. */
function stagedRowBytes(sackBlocks: number, headerLength: number): number {
  return STAGED_FIXED_BYTES + 8 * sackBlocks + ((headerLength + 7) & ~7);
}

/** Packets of one capture point, hook, link type, protocol and direction of one connection. */
interface Chunk {
  node: string;
  netns: string;
  iface: string;
  netnsIno: number;
  ifindex: number;
  hook: number;
  direction: number;
  proto: number;
  linkType: number;
  sport: number;
  dport: number;
  src: Uint8Array;
  dst: Uint8Array;
  /** `src` and `dst` as words, to compare packets' addresses with. */
  srcWords: Uint32Array;
  dstWords: Uint32Array;
  /** The times the chunk may hold (ns words), and the earliest and latest it holds. */
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

/** Is packet i of `c` in `chunk`'s point, hook, direction and tuple? */
function inChunk(chunk: Chunk, c: PacketColumns, i: number): boolean {
  const s = c.srcWords;
  const d = c.dstWords;
  const w = 4 * i;
  const cs = chunk.srcWords;
  const cd = chunk.dstWords;
  return chunk.sport === c.sport[i] && chunk.dport === c.dport[i] && chunk.netnsIno === c.netnsIno[i] && chunk.ifindex === c.ifindex[i] &&
    chunk.hook === c.hook[i] && chunk.direction === c.direction[i] && chunk.proto === c.proto[i] && chunk.linkType === c.linkType &&
    chunk.node === c.node && cs[0] === s[w] && cs[1] === s[w + 1] && cs[2] === s[w + 2] && cs[3] === s[w + 3] &&
    cd[0] === d[w] && cd[1] === d[w + 1] && cd[2] === d[w + 2] && cd[3] === d[w + 3];
}

/** A hash of packet i's point, hook, direction and tuple: the chunks' map key. */
function chunkKey(c: PacketColumns, i: number): number {
  const w = 4 * i;
  let h = Math.imul(c.netnsIno[i] ^ (c.ifindex[i] << 7) ^ (c.hook[i] << 3) ^ c.direction[i], 0x9e3779b1);
  h = Math.imul(h ^ (c.sport[i] << 16 | c.dport[i]), 0x85ebca6b);
  h = Math.imul(h ^ c.srcWords[w + 3] ^ c.srcWords[w], 0xc2b2ae35);
  h = Math.imul(h ^ c.dstWords[w + 3] ^ c.dstWords[w + 2], 0x27d4eb2f);
  return (h ^ (h >>> 15) ^ c.proto[i]) >>> 0;
}

/**
 * Packets taken in for one insert, staged and grouped into chunks as they come; encode() writes the
 * chunks' rows. The columns come checked (by the native decoder, or by record-columns.ts), so neither
 * taking them in nor encoding can fail.
 */
export class PacketChunkBuilder {
  private chunks: Chunk[] = [];
  /** Chunks by chunkKey; the few sharing a key are told apart by inChunk. */
  private byKey = new Map<number, Chunk[]>();
  /** The chunk last chosen per slot of chunkKey: packets of a chunk mostly come close together, and a look here is cheaper than in byKey. */
  private recent: Array<Chunk | undefined> = new Array<Chunk | undefined>(RECENT_CHUNKS);
  /** Staged packets, in the chunks' segments; `stagedBytes` are taken by segments. */
  private staged = new Uint8Array(1 << 20);
  private stagedView = new DataView(this.staged.buffer);
  private stagedWords = new Uint32Array(this.staged.buffer);
  private stagedBytes = 0;
  // One object for the column values the residual transform reads, refilled per packet; SACK blocks in
  // arrays kept by their count.
  private readonly options: TcpOptions = {};
  private readonly values: HeaderColumns = { sport: 0, dport: 0, ipId: 0, seq: 0, ack: 0, flags: 0, win: 0, len: 0, options: this.options };
  private readonly sackByCount: Array<Array<[number, number]>> = [];
  private readonly layout: HeaderLayout = { ip: 0, ipVersion: 4, proto: 0, l4: 0, l4HeaderLength: 0 };

  /** Bytes the staged packets take. */
  get stagedByteLength(): number {
    return this.stagedBytes;
  }

  /** Takes in packets [0, count) of `columns`. */
  add(columns: PacketColumns, count: number): void {
    for (let i = 0; i < count; i++) this.stage(columns, i, this.chunkOf(columns, i));
  }

  /** Writes a row per chunk and starts over empty. */
  encode(out: RowBinaryWriter): void {
    for (const chunk of this.chunks) {
      if (chunk.packets > 0) this.encodeChunk(chunk, out);
    }
    this.chunks = [];
    this.byKey = new Map();
    this.recent.fill(undefined);
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

  private stage(c: PacketColumns, i: number, chunk: Chunk): void {
    const blocks = c.sackCount[i];
    const headerLength = c.headerLen[i];
    const headerAt = c.headerAt[i];
    const rowBytes = stagedRowBytes(blocks, headerLength);
    const at = chunk.at + rowBytes <= chunk.segmentEnd ? chunk.at : this.newSegment(chunk, rowBytes);
    chunk.at = at + rowBytes;
    const view = this.stagedView;
    const words = this.stagedWords;
    const bytes = this.staged;
    const present = c.options[i];
    const w = at >> 2;
    words[w] = c.tsWords[2 * i];
    words[w + 1] = c.tsWords[2 * i + 1];
    words[w + 2] = c.packetIdWords[2 * i];
    words[w + 3] = c.packetIdWords[2 * i + 1];
    words[(at + STAGED.seq) >> 2] = c.seq[i];
    words[(at + STAGED.ack) >> 2] = c.ack[i];
    words[(at + STAGED.len) >> 2] = c.len[i];
    words[(at + STAGED.wireLen) >> 2] = c.wireLen[i];
    words[(at + STAGED.tsVal) >> 2] = c.tsVal[i];
    words[(at + STAGED.tsEcr) >> 2] = c.tsEcr[i];
    view.setUint16(at + STAGED.ipId, c.ipId[i], true);
    view.setUint16(at + STAGED.win, c.win[i], true);
    view.setUint16(at + STAGED.mss, c.mss[i], true);
    view.setUint16(at + STAGED.headerLen, headerLength, true);
    bytes[at + STAGED.flags] = c.flags[i];
    bytes[at + STAGED.present] = present;
    bytes[at + STAGED.wscale] = c.wscale[i];
    bytes[at + STAGED.sackPerm] = present & OPTION_BIT.sack_perm ? 1 : 0;
    bytes[at + STAGED.sackBlocks] = blocks;
    let to = at + STAGED_FIXED_BYTES;
    const sackFrom = 2 * c.sackAt[i];
    for (let j = 0; j < 2 * blocks; j++, to += 4) words[to >> 2] = c.sacks[sackFrom + j];
    const headers = c.headers;
    if (headerLength <= SHORT_HEADERS) for (let j = 0; j < headerLength; j++) bytes[to + j] = headers[headerAt + j];
    else bytes.set(headers.subarray(headerAt, headerAt + headerLength), to);
    const end = to + headerLength;
    xorColumnBytes(bytes, end, headerLayout(bytes, to, end, c.linkType, this.layout), this.headerColumns(c, i), chunk.src, chunk.dst);
    chunk.packets++;
    chunk.sackBlocks += blocks;
    chunk.headerBytes += headerLength;
    const ts = c.ts[i];
    // A chunk may have been made by a call refused after: its times are its packets'.
    if (chunk.packets === 1 || ts < chunk.minTs) chunk.minTs = ts;
    if (chunk.packets === 1 || ts > chunk.maxTs) chunk.maxTs = ts;
  }

  /** The values the residual transform reads, of packet i. */
  private headerColumns(c: PacketColumns, i: number): HeaderColumns {
    const values = this.values;
    const options = this.options;
    values.sport = c.sport[i];
    values.dport = c.dport[i];
    values.ipId = c.ipId[i];
    values.seq = c.seq[i];
    values.ack = c.ack[i];
    values.flags = c.flags[i];
    values.win = c.win[i];
    values.len = c.len[i];
    const bits = c.options[i];
    options.mss = bits & OPTION_BIT.mss ? c.mss[i] : undefined;
    options.wscale = bits & OPTION_BIT.wscale ? c.wscale[i] : undefined;
    options.ts_val = bits & OPTION_BIT.ts_val ? c.tsVal[i] : undefined;
    options.ts_ecr = bits & OPTION_BIT.ts_ecr ? c.tsEcr[i] : undefined;
    options.sack = undefined;
    if (bits & OPTION_BIT.sack) {
      const count = c.sackCount[i];
      while (this.sackByCount.length <= count) this.sackByCount.push(Array.from({ length: this.sackByCount.length }, () => [0, 0]));
      const sack = this.sackByCount[count];
      for (let b = 0, from = 2 * c.sackAt[i]; b < count; b++, from += 2) {
        sack[b][0] = c.sacks[from];
        sack[b][1] = c.sacks[from + 1];
      }
      options.sack = sack;
    }
    return values;
  }

  /** The chunk packet i goes in; a new one if none matches. */
  private chunkOf(c: PacketColumns, i: number): Chunk {
    const key = chunkKey(c, i);
    const slot = key & (RECENT_CHUNKS - 1);
    const recent = this.recent[slot];
    if (recent !== undefined && inChunk(recent, c, i)) {
      const ts = c.ts[i];
      if (ts >= recent.earliest && ts <= recent.latest && recent.taken < MAX_CHUNK_PACKETS) {
        recent.taken++;
        return recent;
      }
    }
    return (this.recent[slot] = this.findChunk(key, c, i));
  }

  /** chunkOf() through the map of every chunk. */
  private findChunk(key: number, c: PacketColumns, i: number): Chunk {
    let chunks = this.byKey.get(key);
    if (chunks === undefined) this.byKey.set(key, (chunks = []));
    for (let k = 0; k < chunks.length; k++) {
      const chunk = chunks[k];
      if (!inChunk(chunk, c, i)) continue;
      const ts = c.ts[i];
      if (ts >= chunk.earliest && ts <= chunk.latest && chunk.taken < MAX_CHUNK_PACKETS) {
        chunk.taken++;
        return chunk;
      }
      // Too far apart in time, or full: a new chunk takes this one's place for the packets to come.
      return (chunks[k] = this.newChunk(c, i));
    }
    const chunk = this.newChunk(c, i);
    chunks.push(chunk);
    return chunk;
  }

  private newChunk(c: PacketColumns, i: number): Chunk {
    const ts = c.ts[i];
    const netnsIno = c.netnsIno[i];
    const ifindex = c.ifindex[i];
    const src = c.src.slice(16 * i, 16 * i + 16);
    const dst = c.dst.slice(16 * i, 16 * i + 16);
    const chunk: Chunk = {
      node: c.node, netns: c.names.netnsName(netnsIno), iface: c.names.ifaceName(netnsIno, ifindex), netnsIno, ifindex,
      hook: c.hook[i], direction: c.direction[i], proto: c.proto[i], linkType: c.linkType, sport: c.sport[i], dport: c.dport[i],
      src, dst, srcWords: new Uint32Array(src.buffer), dstWords: new Uint32Array(dst.buffer),
      earliest: ts - CHUNK_SPAN_NS, latest: ts + CHUNK_SPAN_NS, minTs: ts, maxTs: ts,
      packets: 0, taken: 1, sackBlocks: 0, headerBytes: 0,
      segments: [], segmentStart: 0, segmentEnd: 0, at: 0, nextSegmentBytes: FIRST_SEGMENT_BYTES,
    };
    this.chunks.push(chunk);
    return chunk;
  }

  /** The chunk's row: its columns, then its packets' ids, their packed fields and residuals (chunk-format.ts). */
  private encodeChunk(chunk: Chunk, out: RowBinaryWriter): void {
    const n = chunk.packets;
    out.string(utf8(chunk.node, 'node'));
    out.string(utf8(chunk.netns, 'netns'));
    out.u32(chunk.netnsIno);
    out.string(utf8(chunk.iface, 'iface'));
    out.u32(chunk.ifindex);
    out.u8(chunk.hook);
    out.u8(chunk.direction);
    out.u8(chunk.proto);
    out.fixed(chunk.src);
    out.u16(chunk.sport);
    out.fixed(chunk.dst);
    out.u16(chunk.dport);
    out.u16(chunk.linkType);
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

