// Packets as bulk reads deliver them: the packets of some chunks unpacked
// into columns, with the header bytes rebuilt in one buffer. Exports walk the
// columns without making an object per packet; record() makes one where one
// is wanted (the timeline's JSON, tests).

import { fromMappedBytes } from '../../model/address.js';
import { headerLayout, type HeaderLayout } from '../../model/headers.js';
import { DIRECTION, HOOK, PROTO_NUMBER } from '../../model/protocol.js';
import { OPTION_BIT } from '../../model/packet-columns.js';
import { addressBytes } from '../codec.js';
import { FlowLogError } from '../errors.js';
import { column, type FixedColumn, type NativeBlock, type StringColumn } from '../native-format.js';
import { FIELD_OFFSET, FIXED_BYTES, RESIDUALS } from './chunk-format.js';
import type { CapturePoint, PacketRecord, TcpOptions } from '../../model/records.js';
import { xorColumnBytes, type HeaderColumns } from './residual.js';

/** What the packets seen at one capture point through one hook share. */
export interface RowsPoint extends CapturePoint {
  netnsIno: number;
  ifindex: number;
  hook: PacketRecord['hook'];
  linkType: number;
}

/** The columns of a block of packets; row i of each is packet i. */
export interface PacketColumns {
  ts: BigInt64Array;
  /** `ts` as little-endian 32-bit words: low, high. */
  tsWords: Uint32Array;
  /** Index into `points`. */
  point: Uint16Array;
  points: RowsPoint[];
  /** 1 ingress, 2 egress (the Enum8 values). */
  direction: Uint8Array;
  /** 6 tcp, 17 udp. */
  proto: Uint8Array;
  /** Indexes into `addresses`. */
  src: Uint16Array;
  dst: Uint16Array;
  addresses: StoredAddress[];
  sport: Uint16Array;
  dport: Uint16Array;
  ipId: Uint16Array;
  seq: Uint32Array;
  ack: Uint32Array;
  flags: Uint8Array;
  win: Uint16Array;
  len: Uint32Array;
  wireLen: Uint32Array;
  /** opt_present bits (OPTION_BIT) and the option values. */
  present: Uint8Array;
  mss: Uint16Array;
  wscale: Uint8Array;
  sackPerm: Uint8Array;
  tsVal: Uint32Array;
  tsEcr: Uint32Array;
  /** Row i's SACK blocks are [sackEnds[i - 1] (0 for row 0), sackEnds[i]) of sackLeft/sackRight. */
  sackEnds: Float64Array;
  sackLeft: Uint32Array;
  sackRight: Uint32Array;
  packetId: BigUint64Array;
  /** `packetId` as little-endian 32-bit words: low, high. */
  packetIdWords: Uint32Array;
  /** Row i's header bytes are headerBytes[headerStarts[i], headerEnds[i]). */
  headerBytes: Buffer;
  headerStarts: Uint32Array;
  headerEnds: Uint32Array;
}

const PROTO_NAME = new Map(Object.entries(PROTO_NUMBER).map(([name, value]) => [value, name as PacketRecord['proto']]));
const DIRECTION_NAME = new Map(Object.entries(DIRECTION).map(([name, value]) => [value, name as PacketRecord['direction']]));
const HOOK_NAME = new Map(Object.entries(HOOK).map(([name, value]) => [value, name as PacketRecord['hook']]));
const RESIDUALS_NAME = new Map(Object.entries(RESIDUALS).map(([name, value]) => [value, name]));

/** Some rows, in order, of a block of packet columns. */
export class PacketRows {
  constructor(
    readonly columns: PacketColumns,
    /** The rows of `columns` this batch holds, in time order. */
    readonly rows: Uint32Array,
  ) {}

  get length(): number {
    return this.rows.length;
  }

  /** Rows [from, to) of this batch. */
  slice(from: number, to: number): PacketRows {
    return new PacketRows(this.columns, this.rows.subarray(from, to));
  }

  /** The rows `keep` is true for. */
  filter(keep: (row: number) => boolean): PacketRows {
    return new PacketRows(this.columns, this.rows.filter(keep));
  }

  /** Row `row` of the columns (a row number of `rows`, not a position) as a record; `headers` is a view of the batch's bytes. */
  record(row: number): PacketRecord {
    const c = this.columns;
    const point = c.points[c.point[row]];
    const options: TcpOptions = {};
    const bits = c.present[row];
    if (bits & OPTION_BIT.mss) options.mss = c.mss[row];
    if (bits & OPTION_BIT.wscale) options.wscale = c.wscale[row];
    if (bits & OPTION_BIT.sack_perm) options.sack_perm = c.sackPerm[row] !== 0;
    if (bits & OPTION_BIT.ts_val) options.ts_val = c.tsVal[row];
    if (bits & OPTION_BIT.ts_ecr) options.ts_ecr = c.tsEcr[row];
    if (bits & OPTION_BIT.sack) {
      const blocks: Array<[number, number]> = [];
      for (let j = row === 0 ? 0 : c.sackEnds[row - 1]; j < c.sackEnds[row]; j++) blocks.push([c.sackLeft[j], c.sackRight[j]]);
      options.sack = blocks;
    }
    const start = c.headerStarts[row];
    return {
      ts: c.ts[row], node: point.node, netns: point.netns, netnsIno: point.netnsIno, iface: point.iface, ifindex: point.ifindex,
      hook: point.hook, direction: DIRECTION_NAME.get(c.direction[row])!, proto: PROTO_NAME.get(c.proto[row])!,
      src: c.addresses[c.src[row]].text, sport: c.sport[row], dst: c.addresses[c.dst[row]].text, dport: c.dport[row],
      ipId: c.ipId[row], seq: c.seq[row], ack: c.ack[row], flags: c.flags[row], win: c.win[row], len: c.len[row],
      wireLen: c.wireLen[row], options, packetId: c.packetId[row], linkType: point.linkType,
      headers: new Uint8Array(c.headerBytes.buffer, c.headerBytes.byteOffset + start, c.headerEnds[row] - start),
    };
  }

  /** Every packet of the batch as a record. */
  records(): PacketRecord[] {
    return Array.from(this.rows, (row) => this.record(row));
  }

  /** A batch of `records`, as reads would deliver them (tests and benchmarks build exports from records). */
  static fromRecords(records: readonly PacketRecord[]): PacketRows {
    const n = records.length;
    const points = new PointTable();
    const addresses = new AddressTable();
    const ts = new BigInt64Array(n);
    const packetId = new BigUint64Array(n);
    const sackEnds = new Float64Array(n);
    const sacks: Array<[number, number]> = [];
    const headerStarts = new Uint32Array(n);
    const headerEnds = new Uint32Array(n);
    const headerBytes = Buffer.concat(records.map((p) => p.headers));
    const c: PacketColumns = {
      ts, tsWords: new Uint32Array(ts.buffer), point: new Uint16Array(n), points: points.list, direction: new Uint8Array(n),
      proto: new Uint8Array(n), src: new Uint16Array(n), dst: new Uint16Array(n), addresses: addresses.list,
      sport: new Uint16Array(n), dport: new Uint16Array(n), ipId: new Uint16Array(n), seq: new Uint32Array(n), ack: new Uint32Array(n),
      flags: new Uint8Array(n), win: new Uint16Array(n), len: new Uint32Array(n), wireLen: new Uint32Array(n),
      present: new Uint8Array(n), mss: new Uint16Array(n), wscale: new Uint8Array(n), sackPerm: new Uint8Array(n),
      tsVal: new Uint32Array(n), tsEcr: new Uint32Array(n), sackEnds, sackLeft: new Uint32Array(0), sackRight: new Uint32Array(0),
      packetId, packetIdWords: new Uint32Array(packetId.buffer), headerBytes, headerStarts, headerEnds,
    };
    let at = 0;
    records.forEach((p, i) => {
      ts[i] = p.ts;
      c.point[i] = points.index({ node: p.node, netns: p.netns, netnsIno: p.netnsIno, iface: p.iface, ifindex: p.ifindex, hook: p.hook, linkType: p.linkType });
      c.direction[i] = DIRECTION[p.direction];
      c.proto[i] = PROTO_NUMBER[p.proto];
      c.src[i] = addresses.index(...addressWords(addressBytes(p.src, 'src')), 0, p.src);
      c.dst[i] = addresses.index(...addressWords(addressBytes(p.dst, 'dst')), 0, p.dst);
      [c.sport[i], c.dport[i], c.ipId[i], c.seq[i], c.ack[i]] = [p.sport, p.dport, p.ipId, p.seq, p.ack];
      [c.flags[i], c.win[i], c.len[i], c.wireLen[i]] = [p.flags, p.win, p.len, p.wireLen];
      const o = p.options;
      for (const [name, bit] of Object.entries(OPTION_BIT)) if (o[name as keyof TcpOptions] !== undefined) c.present[i] |= bit;
      [c.mss[i], c.wscale[i], c.sackPerm[i], c.tsVal[i], c.tsEcr[i]] = [o.mss ?? 0, o.wscale ?? 0, o.sack_perm ? 1 : 0, o.ts_val ?? 0, o.ts_ecr ?? 0];
      sacks.push(...(o.sack ?? []));
      sackEnds[i] = sacks.length;
      packetId[i] = p.packetId;
      headerStarts[i] = at;
      at += p.headers.length;
      headerEnds[i] = at;
    });
    c.sackLeft = Uint32Array.from(sacks, ([left]) => left);
    c.sackRight = Uint32Array.from(sacks, ([, right]) => right);
    return new PacketRows(c, allRows(n));
  }
}

function allRows(n: number): Uint32Array {
  const rows = new Uint32Array(n);
  for (let i = 0; i < n; i++) rows[i] = i;
  return rows;
}

/** The distinct capture points of a block, each once. */
class PointTable {
  readonly list: RowsPoint[] = [];

  /** The index of `p` (equal fields). */
  index(p: RowsPoint): number {
    const list = this.list;
    for (let i = 0; i < list.length; i++) {
      const q = list[i];
      if (q.node === p.node && q.netns === p.netns && q.iface === p.iface && q.netnsIno === p.netnsIno &&
          q.ifindex === p.ifindex && q.hook === p.hook && q.linkType === p.linkType) return i;
    }
    return this.add(p);
  }

  add(p: RowsPoint): number {
    if (this.list.length === 0xffff) throw new FlowLogError('STORE_FORMAT', 'more than 65 535 capture points in one block');
    this.list.push(p);
    return this.list.length - 1;
  }
}

/** An address of a block: its record text and its 16 column bytes (do not modify them). */
export interface StoredAddress {
  text: string;
  bytes: Uint8Array;
}

/** The distinct addresses of a block, each once. */
class AddressTable {
  readonly list: StoredAddress[] = [];
  /** The addresses' bytes as 32-bit words, 4 per address, for comparing. */
  private words = new Uint32Array(64);

  /** The index of the address in `words[at, at + 4)` (`bytes`: the same memory as bytes); `text` formats it if it is new. */
  index(bytes: Uint8Array, words: Uint32Array, at: number, text?: string): number {
    const known = this.words;
    for (let i = this.list.length - 1; i >= 0; i--) {
      const k = 4 * i;
      if (known[k] === words[at] && known[k + 1] === words[at + 1] && known[k + 2] === words[at + 2] && known[k + 3] === words[at + 3]) return i;
    }
    const index = this.list.length;
    if (index === 0xffff) throw new FlowLogError('STORE_FORMAT', 'more than 65 535 addresses in one block');
    if (4 * index + 4 > known.length) {
      this.words = new Uint32Array(2 * known.length);
      this.words.set(known);
    }
    this.words.set(words.subarray(at, at + 4), 4 * index);
    const copy = bytes.slice(4 * at, 4 * at + 16);
    this.list.push({ bytes: copy, text: text ?? fromMappedBytes(copy) });
    return index;
  }
}

/** An address's 16 bytes and the same memory as words (an aligned copy). */
function addressWords(bytes: Uint8Array): [Uint8Array, Uint32Array] {
  const copy = bytes.slice();
  return [copy, new Uint32Array(copy.buffer, copy.byteOffset, 4)];
}

function text(c: StringColumn, row: number): string {
  return c.bytes.toString('utf8', c.starts[row], c.ends[row]);
}

function enumValues(block: NativeBlock, name: string, names: ReadonlyMap<number, string>): Uint8Array {
  const values = new Uint8Array((column(block, name, 'fixed').values as Int8Array).buffer);
  for (let i = 0; i < values.length; i++) {
    if (!names.has(values[i])) throw new FlowLogError('STORE_FORMAT', `${name}: unknown value ${values[i]}`);
  }
  return values;
}

/**
 * The packet chunk table's columns as reads select them (packetRowsOfChunks
 * decodes them), and a hash of the capture point's columns: chunks are told
 * apart by point with it, without comparing names.
 */
export const PACKET_READ_COLUMNS = [
  'node', 'netns', 'netns_ino', 'iface', 'ifindex', 'hook', 'direction', 'proto', 'src', 'sport', 'dst', 'dport',
  'link_type', 'first_ts', 'count', 'packet_ids', 'packed', 'residuals', 'cityHash64(node, netns, iface) AS point_key',
].join(', ');

/** A chunk of a block: where its packed bytes are, and how many packets, SACK blocks and header bytes (once unpacked) it holds. */
interface ChunkAt {
  block: ChunkColumns;
  row: number;
  count: number;
  sackBlocks: number;
  headerBytes: number;
}

/** The columns of a Native block of PACKET_READ_COLUMNS, looked up and checked once per block. */
interface ChunkColumns {
  packed: StringColumn;
  /** RESIDUALS values. */
  residuals: Uint8Array;
  count: Uint32Array;
  node: StringColumn;
  netns: StringColumn;
  iface: StringColumn;
  netnsIno: Uint32Array;
  ifindex: Uint32Array;
  hook: Uint8Array;
  direction: Uint8Array;
  proto: Uint8Array;
  srcBytes: Uint8Array;
  srcWords: Uint32Array;
  dstBytes: Uint8Array;
  dstWords: Uint32Array;
  sport: Uint16Array;
  dport: Uint16Array;
  linkType: Uint16Array;
  /** first_ts as little-endian 32-bit words: low, high. */
  firstWords: Uint32Array;
  /** Chunk i's packet ids are [idEnds[i - 1] (0 for i = 0), idEnds[i]) of idWords (two words each). */
  idEnds: Float64Array;
  idWords: Uint32Array;
  /** cityHash64 of the point's names as 32-bit words. */
  pointKey: Uint32Array;
  /** The points seen in the block so far, by the low word of their name hash, then their numbers. */
  knownPoints: Array<{ key: number; keyHigh: number; netnsIno: number; ifindex: number; hook: number; linkType: number; index: number }>;
}

function chunkColumns(block: NativeBlock): ChunkColumns {
  const fixed = <T extends FixedColumn['values']>(name: string, type: string) => column(block, name, 'fixed', type).values as T;
  const srcBytes = fixed<Uint8Array>('src', 'IPv6');
  const dstBytes = fixed<Uint8Array>('dst', 'IPv6');
  const ids = column(block, 'packet_ids', 'array', 'Array(UInt64)');
  return {
    packed: column(block, 'packed', 'string', 'String'),
    residuals: enumValues(block, 'residuals', RESIDUALS_NAME),
    count: fixed('count', 'UInt32'),
    node: column(block, 'node', 'string'),
    netns: column(block, 'netns', 'string'),
    iface: column(block, 'iface', 'string'),
    netnsIno: fixed('netns_ino', 'UInt32'),
    ifindex: fixed('ifindex', 'UInt32'),
    hook: enumValues(block, 'hook', HOOK_NAME),
    direction: enumValues(block, 'direction', DIRECTION_NAME),
    proto: enumValues(block, 'proto', PROTO_NAME),
    srcBytes, srcWords: new Uint32Array(srcBytes.buffer), dstBytes, dstWords: new Uint32Array(dstBytes.buffer),
    sport: fixed('sport', 'UInt16'),
    dport: fixed('dport', 'UInt16'),
    linkType: fixed('link_type', 'UInt16'),
    firstWords: new Uint32Array(fixed<BigInt64Array>('first_ts', "DateTime64(9, 'UTC')").buffer),
    idEnds: ids.offsets,
    idWords: new Uint32Array(((ids.elements[0] as FixedColumn).values as BigUint64Array).buffer),
    pointKey: new Uint32Array(fixed<BigUint64Array>('point_key', 'UInt64').buffer),
    knownPoints: [],
  };
}

const U32_RANGE = 0x1_0000_0000;
const U16_RANGE = 0x1_0000;
/** Rows whose headers are restored together (about 100 KB of headers: they stay in the CPU's caches). */
const RESTORE_BLOCK_ROWS = 1024;

/**
 * The packets of Native blocks of PACKET_READ_COLUMNS with from <= ts < to, in
 * packet order (time, then packet id, then capture point). Header bytes are
 * rebuilt from their residuals in one new buffer.
 */
export function packetRowsOfChunks(blocks: readonly NativeBlock[], from: bigint, to: bigint): PacketRows {
  // What the chunks hold, to size the columns.
  const chunks: ChunkAt[] = [];
  let n = 0;
  let sackTotal = 0;
  let headerTotal = 0;
  for (const native of blocks) {
    const block = chunkColumns(native);
    const { packed } = block;
    const bytes = packed.bytes;
    for (let row = 0; row < native.rows; row++) {
      const count = block.count[row];
      const start = packed.starts[row];
      const size = packed.ends[row] - start;
      if (size < FIXED_BYTES * count) throw new FlowLogError('STORE_FORMAT', `packet chunk of ${count} packets in ${size} bytes`);
      const sackAt = start + FIELD_OFFSET.sack_blocks * count;
      let sackBlocks = 0;
      for (let i = 0; i < count; i++) sackBlocks += bytes[sackAt + i];
      const headerLenAt = start + FIELD_OFFSET.header_len * count;
      let headerBytes = 0;
      for (let i = 0; i < count; i++) headerBytes += bytes[headerLenAt + 2 * i] | (bytes[headerLenAt + 2 * i + 1] << 8);
      const residualBytes = size - FIXED_BYTES * count - 8 * sackBlocks;
      // Whole residuals take exactly their header bytes; packed ones are checked as they are unpacked.
      if (residualBytes < 0 || (block.residuals[row] === RESIDUALS.whole && residualBytes !== headerBytes)) {
        throw new FlowLogError('STORE_FORMAT', `packet chunk of ${count} packets and ${headerBytes} header bytes in ${size} bytes`);
      }
      chunks.push({ block, row, count, sackBlocks, headerBytes });
      n += count;
      sackTotal += sackBlocks;
      headerTotal += headerBytes;
    }
  }
  const ts = new BigInt64Array(n);
  const packetId = new BigUint64Array(n);
  const c: PacketColumns = {
    ts, tsWords: new Uint32Array(ts.buffer), point: new Uint16Array(n), points: [], direction: new Uint8Array(n),
    proto: new Uint8Array(n), src: new Uint16Array(n), dst: new Uint16Array(n), addresses: [],
    sport: new Uint16Array(n), dport: new Uint16Array(n), ipId: new Uint16Array(n), seq: new Uint32Array(n), ack: new Uint32Array(n),
    flags: new Uint8Array(n), win: new Uint16Array(n), len: new Uint32Array(n), wireLen: new Uint32Array(n),
    present: new Uint8Array(n), mss: new Uint16Array(n), wscale: new Uint8Array(n), sackPerm: new Uint8Array(n),
    tsVal: new Uint32Array(n), tsEcr: new Uint32Array(n), sackEnds: new Float64Array(n),
    sackLeft: new Uint32Array(sackTotal), sackRight: new Uint32Array(sackTotal),
    packetId, packetIdWords: new Uint32Array(packetId.buffer),
    headerBytes: Buffer.allocUnsafe(headerTotal), headerStarts: new Uint32Array(n), headerEnds: new Uint32Array(n),
  };
  const points = new PointTable();
  c.points = points.list;
  const addresses = new AddressTable();
  c.addresses = addresses.list;
  const decoder = new ChunkDecoder(c, points, addresses);
  for (const chunk of chunks) decoder.decode(chunk);
  return new PacketRows(c, packetOrder(c, from, to));
}

/** Unpacks chunks one after the other into the columns. */
class ChunkDecoder {
  /** Next row, SACK block and header byte of the columns. */
  private row = 0;
  private sack = 0;
  private headerAt = 0;
  // One object for the column values the residual transform reads, refilled per packet.
  private readonly options: TcpOptions = {};
  private readonly values: HeaderColumns = { sport: 0, dport: 0, ipId: 0, seq: 0, ack: 0, flags: 0, win: 0, len: 0, options: this.options };
  private readonly layout: HeaderLayout = { ip: 0, ipVersion: 4, proto: 0, l4: 0, l4HeaderLength: 0 };
  /** A run's differences from its first residual so far, and the offsets where they may not be 0. */
  private readonly differences = new Uint8Array(U16_RANGE);
  private readonly differing = new Uint16Array(U16_RANGE);
  private readonly marked = new Uint8Array(U16_RANGE);

  constructor(
    private readonly c: PacketColumns,
    private readonly points: PointTable,
    private readonly addresses: AddressTable,
  ) {}

  decode({ block, row, count: n, sackBlocks }: ChunkAt): void {
    const c = this.c;
    const { packed, firstWords, idWords } = block;
    const point = this.pointOf(block, row);
    const src = this.addresses.index(block.srcBytes, block.srcWords, 4 * row);
    const dst = this.addresses.index(block.dstBytes, block.dstWords, 4 * row);
    const srcAddress = c.addresses[src].bytes;
    const dstAddress = c.addresses[dst].bytes;
    const direction = block.direction[row];
    const proto = block.proto[row];
    const sport = block.sport[row];
    const dport = block.dport[row];
    const linkType = block.linkType[row];
    const idStart = row === 0 ? 0 : block.idEnds[row - 1];
    if (block.idEnds[row] - idStart !== n) throw new FlowLogError('STORE_FORMAT', `packet chunk of ${n} packets with ${block.idEnds[row] - idStart} ids`);

    const bytes = packed.bytes;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const base = packed.starts[row];
    const at = (field: keyof typeof FIELD_OFFSET) => base + FIELD_OFFSET[field] * n;
    const [tsAt, ipIdAt, seqAt, ackAt, flagsAt, winAt, lenAt, wireLenAt, presentAt, mssAt, wscaleAt, sackPermAt, tsValAt, tsEcrAt, sackBlocksAt, headerLenAt] =
      [at('ts'), at('ip_id'), at('seq'), at('ack'), at('flags'), at('win'), at('len'), at('wire_len'), at('opt_present'), at('opt_mss'),
        at('opt_wscale'), at('opt_sack_perm'), at('opt_ts_val'), at('opt_ts_ecr'), at('sack_blocks'), at('header_len')];
    let sackAt = base + FIXED_BYTES * n;
    let residualAt = sackAt + 8 * sackBlocks;
    const end = packed.ends[row];
    const headers = c.headerBytes;
    const firstRow = this.row;
    let tsLow = firstWords[2 * row];
    let tsHigh = firstWords[2 * row + 1];
    let ipId = 0;
    let seq = 0;
    let ack = 0;
    let tsVal = 0;
    let tsEcr = 0;
    for (let i = 0; i < n; i++) {
      const r = this.row++;
      // ts: the 64-bit sum of the previous one and the delta, in 32-bit words.
      const low = tsLow + view.getUint32(tsAt + 8 * i, true);
      tsHigh = (tsHigh + view.getUint32(tsAt + 8 * i + 4, true) + (low >= U32_RANGE ? 1 : 0)) >>> 0;
      tsLow = low >>> 0;
      c.tsWords[2 * r] = tsLow;
      c.tsWords[2 * r + 1] = tsHigh;
      c.point[r] = point;
      c.direction[r] = direction;
      c.proto[r] = proto;
      c.src[r] = src;
      c.dst[r] = dst;
      c.sport[r] = sport;
      c.dport[r] = dport;
      ipId = (ipId + view.getUint16(ipIdAt + 2 * i, true)) & 0xffff;
      seq = (seq + view.getUint32(seqAt + 4 * i, true)) >>> 0;
      ack = (ack + view.getUint32(ackAt + 4 * i, true)) >>> 0;
      tsVal = (tsVal + view.getUint32(tsValAt + 4 * i, true)) >>> 0;
      tsEcr = (tsEcr + view.getUint32(tsEcrAt + 4 * i, true)) >>> 0;
      c.ipId[r] = ipId;
      c.seq[r] = seq;
      c.ack[r] = ack;
      c.flags[r] = bytes[flagsAt + i];
      c.win[r] = view.getUint16(winAt + 2 * i, true);
      c.len[r] = view.getUint32(lenAt + 4 * i, true);
      c.wireLen[r] = view.getUint32(wireLenAt + 4 * i, true);
      c.present[r] = bytes[presentAt + i];
      c.mss[r] = view.getUint16(mssAt + 2 * i, true);
      c.wscale[r] = bytes[wscaleAt + i];
      c.sackPerm[r] = bytes[sackPermAt + i];
      c.tsVal[r] = tsVal;
      c.tsEcr[r] = tsEcr;
      for (let j = bytes[sackBlocksAt + i]; j > 0; j--, sackAt += 8) {
        c.sackLeft[this.sack] = view.getUint32(sackAt, true);
        c.sackRight[this.sack++] = view.getUint32(sackAt + 4, true);
      }
      c.sackEnds[r] = this.sack;
      c.packetIdWords[2 * r] = idWords[2 * (idStart + i)];
      c.packetIdWords[2 * r + 1] = idWords[2 * (idStart + i) + 1];
      c.headerStarts[r] = this.headerAt;
      c.headerEnds[r] = this.headerAt += view.getUint16(headerLenAt + 2 * i, true);
    }
    if (sackAt !== residualAt) throw new FlowLogError('STORE_FORMAT', `packet chunk of ${n} packets: its SACK blocks do not end where they should`);
    // Each residual is put where its header bytes go and turned back into them in place, a block of rows at a time (while
    // they are in the CPU's caches); an 'xor_previous' one once the next one, which is XOR it, is unpacked.
    if (block.residuals[row] === RESIDUALS.whole) {
      for (let from = firstRow; from < this.row; from += RESTORE_BLOCK_ROWS) {
        const to = Math.min(this.row, from + RESTORE_BLOCK_ROWS);
        const length = c.headerEnds[to - 1] - c.headerStarts[from];
        headers.set(bytes.subarray(residualAt, (residualAt += length)), c.headerStarts[from]);
        for (let r = from; r < to; r++) this.restoreHeader(r, linkType, srcAddress, dstAddress);
      }
    } else {
      for (let from = firstRow; from < this.row; from += RESTORE_BLOCK_ROWS) {
        const to = Math.min(this.row, from + RESTORE_BLOCK_ROWS);
        residualAt = this.unpackResiduals(bytes, residualAt, end, firstRow, from, to);
        for (let r = Math.max(firstRow, from - 1); r < to - 1; r++) this.restoreHeader(r, linkType, srcAddress, dstAddress);
      }
      if (n > 0) this.restoreHeader(this.row - 1, linkType, srcAddress, dstAddress);
    }
    if (residualAt !== end) throw new FlowLogError('STORE_FORMAT', `packet chunk of ${n} packets: its fields do not fill its ${end - base} bytes`);
  }

  /**
   * Unpacks the 'xor_previous' residuals (chunk-format.ts) of rows [from, to) of a chunk whose first row is
   * `firstRow` from `bytes[at, end)` to their header bytes' places; row from - 1's residual is still there.
   * Returns where the next one starts. A run of residuals of one length is the run's first one (copied
   * over the others), XOR the differences from it so far: usually a few bytes (the TCP checksum).
   */
  private unpackResiduals(bytes: Uint8Array, at: number, end: number, firstRow: number, from: number, to: number): number {
    const { headerBytes: headers, headerStarts: starts, headerEnds: ends } = this.c;
    for (let r = from; r < to; ) {
      const start = starts[r];
      const length = ends[r] - start;
      at = unpackResidual(bytes, at, end, headers, start, length, r > firstRow ? starts[r - 1] : 0, r > firstRow ? ends[r - 1] - starts[r - 1] : 0);
      let runEnd = r + 1;
      while (runEnd < to && ends[runEnd] - starts[runEnd] === length) runEnd++;
      // Rows of a run are next to each other: the first residual, doubled until the run is full.
      for (let filled = length, total = ends[runEnd - 1] - start; filled < total; filled *= 2) {
        headers.copyWithin(start + filled, start, start + Math.min(filled, total - filled));
      }
      const { differences, differing, marked } = this;
      let differingCount = 0;
      for (let q = r + 1; q < runEnd; q++) {
        const qStart = starts[q];
        for (let g = 0; g < length; g += 8) {
          const mask = bytes[at++];
          if (mask === 0) continue;
          if (mask >> Math.min(8, length - g) !== 0) throw new FlowLogError('STORE_FORMAT', `packet chunk: residual group mask ${mask} past its bytes`);
          for (let m = mask, j = g; m !== 0; m >>= 1, j++) {
            if ((m & 1) === 0) continue;
            if (marked[j] === 0) {
              marked[j] = 1;
              differing[differingCount++] = j;
            }
            differences[j] ^= bytes[at++];
          }
        }
        for (let k = 0; k < differingCount; k++) headers[qStart + differing[k]] ^= differences[differing[k]];
      }
      for (let k = 0; k < differingCount; k++) differences[differing[k]] = marked[differing[k]] = 0;
      if (at > end) throw new FlowLogError('STORE_FORMAT', 'packet chunk: its header residuals run past their bytes');
      r = runEnd;
    }
    return at;
  }

  /** Turns the residual of row `r` back into its header bytes, in place. */
  private restoreHeader(r: number, linkType: number, src: Uint8Array, dst: Uint8Array): void {
    const c = this.c;
    const values = this.values;
    const options = this.options;
    values.sport = c.sport[r];
    values.dport = c.dport[r];
    values.ipId = c.ipId[r];
    values.seq = c.seq[r];
    values.ack = c.ack[r];
    values.flags = c.flags[r];
    values.win = c.win[r];
    values.len = c.len[r];
    const bits = c.present[r];
    options.mss = bits & OPTION_BIT.mss ? c.mss[r] : undefined;
    options.wscale = bits & OPTION_BIT.wscale ? c.wscale[r] : undefined;
    options.ts_val = bits & OPTION_BIT.ts_val ? c.tsVal[r] : undefined;
    options.ts_ecr = bits & OPTION_BIT.ts_ecr ? c.tsEcr[r] : undefined;
    let sack: Array<[number, number]> | undefined;
    if (bits & OPTION_BIT.sack) {
      sack = [];
      for (let j = r === 0 ? 0 : c.sackEnds[r - 1]; j < c.sackEnds[r]; j++) sack.push([c.sackLeft[j], c.sackRight[j]]);
    }
    options.sack = sack;
    const start = c.headerStarts[r];
    const end = c.headerEnds[r];
    xorColumnBytes(c.headerBytes, end, headerLayout(c.headerBytes, start, end, linkType, this.layout), values, src, dst);
  }

  /** The index of the capture point of chunk `row` of `block`. */
  private pointOf(block: ChunkColumns, row: number): number {
    const { knownPoints: known, pointKey, netnsIno, ifindex, hook, linkType } = block;
    for (const p of known) {
      if (p.key === pointKey[2 * row] && p.keyHigh === pointKey[2 * row + 1] && p.netnsIno === netnsIno[row] &&
          p.ifindex === ifindex[row] && p.hook === hook[row] && p.linkType === linkType[row]) return p.index;
    }
    // Equal names hash equally, so a point missing here is new to this block (another block may know it: index() finds it).
    const index = this.points.index({
      node: text(block.node, row), netns: text(block.netns, row), netnsIno: netnsIno[row],
      iface: text(block.iface, row), ifindex: ifindex[row], hook: HOOK_NAME.get(hook[row])!, linkType: linkType[row],
    });
    known.push({ key: pointKey[2 * row], keyHigh: pointKey[2 * row + 1], netnsIno: netnsIno[row], ifindex: ifindex[row], hook: hook[row], linkType: linkType[row], index });
    return index;
  }
}

/**
 * Unpacks an 'xor_previous' residual (chunk-format.ts) of `length` bytes from `bytes[at, end)` into
 * `headers[start, start + length)`, next to the previous packet's residual, `headers[previous, previous + previousLength)`;
 * returns where the next one starts.
 */
function unpackResidual(
  bytes: Uint8Array, at: number, end: number, headers: Uint8Array, start: number, length: number, previous: number, previousLength: number,
): number {
  // The previous residual, then the bytes that differ XORed in: most groups differ in none.
  const common = Math.min(length, previousLength);
  headers.copyWithin(start, previous, previous + common);
  if (common < length) headers.fill(0, start + common, start + length);
  for (let g = 0; g < length; g += 8) {
    const mask = bytes[at++];
    if (mask === 0) continue;
    if (mask >> Math.min(8, length - g) !== 0) throw new FlowLogError('STORE_FORMAT', `packet chunk: residual group mask ${mask} past its bytes`);
    for (let m = mask, j = start + g; m !== 0; m >>= 1, j++) {
      if (m & 1) headers[j] ^= bytes[at++];
    }
  }
  if (at > end) throw new FlowLogError('STORE_FORMAT', 'packet chunk: its header residuals run past their bytes');
  return at;
}

/** The rows of `c` with from <= ts < to, in packet order: time, packet id, then the capture point's names and numbers, direction and hook. */
function packetOrder(c: PacketColumns, from: bigint, to: bigint): Uint32Array {
  const rows: number[] = [];
  const t = c.tsWords;
  // The bounds as 32-bit words, to compare without a BigInt per row.
  const [fromLow, fromHigh, toLow, toHigh] = [from, to].flatMap((ns) => [Number(ns & 0xffffffffn), Number(ns >> 32n)]);
  for (let r = 0; r < c.ts.length; r++) {
    const high = t[2 * r + 1];
    const low = t[2 * r];
    if ((high > fromHigh || (high === fromHigh && low >= fromLow)) && (high < toHigh || (high === toHigh && low < toLow))) rows.push(r);
  }
  const id = c.packetIdWords;
  const points = c.points;
  // Each chunk's packets come in the order they were captured, so the rows are in runs already sorted; sort() merges runs.
  rows.sort((a, b) => {
    const byTime = t[2 * a + 1] - t[2 * b + 1] || t[2 * a] - t[2 * b];
    if (byTime !== 0) return byTime;
    const byId = id[2 * a + 1] - id[2 * b + 1] || id[2 * a] - id[2 * b];
    if (byId !== 0) return byId;
    const p = points[c.point[a]];
    const q = points[c.point[b]];
    return compareText(p.node, q.node) || compareText(p.netns, q.netns) || compareText(p.iface, q.iface) ||
      p.ifindex - q.ifindex || c.direction[a] - c.direction[b] || HOOK[p.hook] - HOOK[q.hook];
  });
  return Uint32Array.from(rows);
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
