// The writer's side of packet chunks (packet-chunks.ts): records checked as
// they are taken in, grouped into chunks, and packed into RowBinary rows of
// the chunk table when their batch is sealed.

import type { PacketRecord } from './records.js';
import { addressBytes } from './address.js';
import { DIRECTION, enumValue, HOOK, invalid, OPTION_BIT, PROTO, timestamp, U8, U16, U32, u64, uint, utf8 } from './codec.js';
import { FIELD_OFFSET, FIXED_BYTES, PACKED_FIELDS, type PackedField } from './packet-chunks.js';
import { headerLayout, xorColumnBytes } from './residual.js';
import { putBytes, putVarUInt, varUIntSize, type RowBinaryWriter } from './rowbinary.js';

/** A chunk holds packets within this long of its first one (either way): its row expires with its last packet. */
const CHUNK_SPAN_NS = 1_000_000_000n;

/** Packets of one capture point, hook, link type, protocol and direction of one connection, and the times a chunk may hold. */
interface Chunk {
  packets: PacketRecord[];
  earliest: bigint;
  latest: bigint;
}

/**
 * Packets taken in for one insert, grouped into chunks as they come; encode()
 * writes the chunks' rows. A record is checked when it is added, so encoding
 * cannot fail.
 */
export class PacketChunkBatch {
  private chunks: Chunk[] = [];
  /** Chunks by source address, then by ports; the few sharing both are told apart by the rest. */
  private bySource = new Map<string, Map<number, Chunk[]>>();
  private packets = 0;
  private bytes = 0;
  /** Scratch space for one chunk's packed bytes: fixed fields, SACK blocks, header residuals. */
  private fixed: Uint8Array = new Uint8Array(0);
  private sacks: Uint8Array = new Uint8Array(0);
  private residuals: Uint8Array = new Uint8Array(0);

  /** Packets taken in since the last encode(). */
  get length(): number {
    return this.packets;
  }

  /** About the bytes those packets will take encoded: their packed fields, ids and headers. */
  get estimatedBytes(): number {
    return this.bytes;
  }

  /** Takes in records[0, count); if one is invalid, throws and takes in none of them. */
  add(records: readonly PacketRecord[], count: number): void {
    let bytes = 0;
    for (let i = 0; i < count; i++) bytes += FIXED_BYTES + 8 + check(records[i]);
    for (let i = 0; i < count; i++) this.chunkOf(records[i]).packets.push(records[i]);
    this.packets += count;
    this.bytes += bytes;
  }

  /** Writes a row per chunk and starts over empty. */
  encode(out: RowBinaryWriter): void {
    for (const chunk of this.chunks) this.encodeChunk(chunk, out);
    this.chunks = [];
    this.bySource = new Map();
    this.packets = 0;
    this.bytes = 0;
  }

  private chunkOf(p: PacketRecord): Chunk {
    let byPorts = this.bySource.get(p.src);
    if (byPorts === undefined) this.bySource.set(p.src, (byPorts = new Map()));
    const ports = p.sport * 0x10000 + p.dport;
    let chunks = byPorts.get(ports);
    if (chunks === undefined) byPorts.set(ports, (chunks = []));
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i];
      const q = chunk.packets[0];
      if (q.dst === p.dst && q.iface === p.iface && q.netns === p.netns && q.node === p.node && q.direction === p.direction &&
          q.ifindex === p.ifindex && q.netnsIno === p.netnsIno && q.hook === p.hook && q.proto === p.proto && q.linkType === p.linkType) {
        if (p.ts >= chunk.earliest && p.ts <= chunk.latest) return chunk;
        // Too far apart in time: a new chunk takes this one's place for the packets to come.
        return (chunks[i] = this.newChunk(p));
      }
    }
    const chunk = this.newChunk(p);
    chunks.push(chunk);
    return chunk;
  }

  /** A new chunk for `p` and the packets that go with it. */
  private newChunk(p: PacketRecord): Chunk {
    const chunk: Chunk = { packets: [], earliest: p.ts - CHUNK_SPAN_NS, latest: p.ts + CHUNK_SPAN_NS };
    this.chunks.push(chunk);
    return chunk;
  }

  private encodeChunk({ packets: chunk }: Chunk, out: RowBinaryWriter): void {
    const n = chunk.length;
    const p0 = chunk[0];
    const src = addressBytes(p0.src, 'src');
    const dst = addressBytes(p0.dst, 'dst');
    const fixedSize = FIXED_BYTES * n;
    if (this.fixed.length < fixedSize + 8 * n) this.fixed = new Uint8Array(2 * (fixedSize + 8 * n));
    const fixed = this.fixed;
    const view = new DataView(fixed.buffer, fixed.byteOffset, fixed.byteLength);
    const at = (field: PackedField) => FIELD_OFFSET[field] * n;
    const [ts, ipId, seq, ack, flags, win, len, wireLen, present, mss, wscale, sackPerm, tsVal, tsEcr, sackBlocks, headerLen] =
      PACKED_FIELDS.map((f) => at(f.name));
    // The packet ids go in their own column, after the packed fields in scratch space.
    const ids = fixedSize;
    let first = p0.ts;
    for (let i = 1; i < n; i++) if (chunk[i].ts < first) first = chunk[i].ts;
    let last = first;
    let prevTs = first;
    let prevIpId = 0;
    let prevSeq = 0;
    let prevAck = 0;
    let prevTsVal = 0;
    let prevTsEcr = 0;
    let sackAt = 0;
    let residualAt = 0;
    for (let i = 0; i < n; i++) {
      const p = chunk[i];
      const o = p.options;
      const t = p.ts;
      view.setBigInt64(ts + 8 * i, t - prevTs, true);
      prevTs = t;
      if (t > last) last = t;
      view.setUint16(ipId + 2 * i, (p.ipId - prevIpId) & U16, true);
      prevIpId = p.ipId;
      view.setUint32(seq + 4 * i, (p.seq - prevSeq) >>> 0, true);
      prevSeq = p.seq;
      view.setUint32(ack + 4 * i, (p.ack - prevAck) >>> 0, true);
      prevAck = p.ack;
      fixed[flags + i] = p.flags;
      view.setUint16(win + 2 * i, p.win, true);
      view.setUint32(len + 4 * i, p.len, true);
      view.setUint32(wireLen + 4 * i, p.wireLen, true);
      const sack = o.sack;
      fixed[present + i] = (o.mss === undefined ? 0 : OPTION_BIT.mss) | (o.wscale === undefined ? 0 : OPTION_BIT.wscale) |
        (o.sack_perm === undefined ? 0 : OPTION_BIT.sack_perm) | (o.ts_val === undefined ? 0 : OPTION_BIT.ts_val) |
        (o.ts_ecr === undefined ? 0 : OPTION_BIT.ts_ecr) | (sack === undefined ? 0 : OPTION_BIT.sack);
      view.setUint16(mss + 2 * i, o.mss ?? 0, true);
      fixed[wscale + i] = o.wscale ?? 0;
      fixed[sackPerm + i] = o.sack_perm === true ? 1 : 0;
      const tv = o.ts_val ?? 0;
      view.setUint32(tsVal + 4 * i, (tv - prevTsVal) >>> 0, true);
      prevTsVal = tv;
      const te = o.ts_ecr ?? 0;
      view.setUint32(tsEcr + 4 * i, (te - prevTsEcr) >>> 0, true);
      prevTsEcr = te;
      const blocks = sack === undefined ? 0 : sack.length;
      fixed[sackBlocks + i] = blocks;
      if (blocks > 0) {
        if (this.sacks.length < sackAt + 8 * blocks) this.sacks = grown(this.sacks, sackAt, sackAt + 8 * blocks);
        const sackView = new DataView(this.sacks.buffer, this.sacks.byteOffset, this.sacks.byteLength);
        for (let j = 0; j < blocks; j++, sackAt += 8) {
          sackView.setUint32(sackAt, sack![j][0], true);
          sackView.setUint32(sackAt + 4, sack![j][1], true);
        }
      }
      view.setBigUint64(ids + 8 * i, p.packetId, true);
      const headers = p.headers;
      view.setUint16(headerLen + 2 * i, headers.length, true);
      if (this.residuals.length < residualAt + headers.length) this.residuals = grown(this.residuals, residualAt, residualAt + headers.length);
      const from = residualAt;
      residualAt = putBytes(this.residuals, from, headers);
      xorColumnBytes(this.residuals, residualAt, headerLayout(this.residuals, from, residualAt, p.linkType), p, src, dst);
    }
    out.string(utf8(p0.node, 'node'));
    out.string(utf8(p0.netns, 'netns'));
    out.u32(p0.netnsIno);
    out.string(utf8(p0.iface, 'iface'));
    out.u32(p0.ifindex);
    out.u8(HOOK.get(p0.hook)!);
    out.u8(DIRECTION.get(p0.direction)!);
    out.u8(PROTO.get(p0.proto)!);
    out.fixed(src);
    out.u16(p0.sport);
    out.fixed(dst);
    out.u16(p0.dport);
    out.u16(p0.linkType);
    out.i64(first);
    out.i64(last);
    out.u32(n);
    const packedSize = fixedSize + sackAt + residualAt;
    let to = out.reserve(varUIntSize(n) + 8 * n + varUIntSize(packedSize) + packedSize);
    const bytes = out.raw;
    to = putVarUInt(bytes, to, n);
    to = putBytes(bytes, to, fixed.subarray(ids, ids + 8 * n));
    to = putVarUInt(bytes, to, packedSize);
    to = putBytes(bytes, to, fixed.subarray(0, fixedSize));
    to = putBytes(bytes, to, this.sacks.subarray(0, sackAt));
    putBytes(bytes, to, this.residuals.subarray(0, residualAt));
  }
}

/** A copy of bytes[0, used) in a buffer of at least `needed` bytes. */
function grown(bytes: Uint8Array, used: number, needed: number): Uint8Array {
  const copy = new Uint8Array(Math.max(2 * bytes.length, needed, 1 << 16));
  copy.set(bytes.subarray(0, used));
  return copy;
}

/** Throws INVALID_VALUE unless every value of `p` fits its column; returns its header bytes' length. */
function check(p: PacketRecord): number {
  timestamp(p.ts, 'ts');
  u64(p.packetId, 'packetId');
  addressBytes(p.src, 'src');
  addressBytes(p.dst, 'dst');
  utf8(p.node, 'node');
  utf8(p.netns, 'netns');
  utf8(p.iface, 'iface');
  uint(p.netnsIno, U32, 'netnsIno');
  uint(p.ifindex, U32, 'ifindex');
  enumValue(p.hook, HOOK, 'hook');
  enumValue(p.direction, DIRECTION, 'direction');
  enumValue(p.proto, PROTO, 'proto');
  uint(p.sport, U16, 'sport');
  uint(p.dport, U16, 'dport');
  uint(p.ipId, U16, 'ipId');
  uint(p.seq, U32, 'seq');
  uint(p.ack, U32, 'ack');
  uint(p.flags, U8, 'flags');
  uint(p.win, U16, 'win');
  uint(p.len, U32, 'len');
  uint(p.wireLen, U32, 'wireLen');
  uint(p.linkType, U16, 'linkType');
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
  return p.headers.length;
}
