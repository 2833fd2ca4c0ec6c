// Packets as bulk reads deliver them: a block of rows held as columns, with
// the header bytes rebuilt in one buffer. Exports walk the columns without
// making an object per packet; record() makes one where one is wanted (the
// timeline's JSON, tests).

import { addressBytes, columnAddress, type StoredAddress } from './address.js';
import { DIRECTION, HOOK, OPTION_BIT, PROTO } from './codec.js';
import { FlowLogError } from './errors.js';
import { column, type FixedColumn, type NativeBlock, type StringColumn } from './native.js';
import type { CapturePoint, PacketRecord, TcpOptions } from './records.js';
import { headerLayout, xorColumnBytes, type HeaderColumns } from './residual.js';

/** What the packets seen at one capture point through one hook share. */
export interface BatchPoint extends CapturePoint {
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
  points: BatchPoint[];
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

const PROTO_NAME = new Map([...PROTO].map(([name, value]) => [value, name as PacketRecord['proto']]));
const DIRECTION_NAME = new Map([...DIRECTION].map(([name, value]) => [value, name as PacketRecord['direction']]));
const HOOK_NAME = new Map([...HOOK].map(([name, value]) => [value, name as PacketRecord['hook']]));

/** Some rows, in order, of a block of packet columns. */
export class PacketBatch {
  constructor(
    readonly columns: PacketColumns,
    /** The rows of `columns` this batch holds, in time order. */
    readonly rows: Uint32Array,
  ) {}

  get length(): number {
    return this.rows.length;
  }

  /** Rows [from, to) of this batch. */
  slice(from: number, to: number): PacketBatch {
    return new PacketBatch(this.columns, this.rows.subarray(from, to));
  }

  /** The rows `keep` is true for. */
  filter(keep: (row: number) => boolean): PacketBatch {
    return new PacketBatch(this.columns, this.rows.filter(keep));
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
  static fromRecords(records: readonly PacketRecord[]): PacketBatch {
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
      c.direction[i] = DIRECTION.get(p.direction)!;
      c.proto[i] = PROTO.get(p.proto)!;
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
    return new PacketBatch(c, allRows(n));
  }
}

function allRows(n: number): Uint32Array {
  const rows = new Uint32Array(n);
  for (let i = 0; i < n; i++) rows[i] = i;
  return rows;
}

/** The distinct capture points of a block, each once. */
class PointTable {
  readonly list: BatchPoint[] = [];

  /** The index of `p` (equal fields). */
  index(p: BatchPoint): number {
    const list = this.list;
    for (let i = 0; i < list.length; i++) {
      const q = list[i];
      if (q.node === p.node && q.netns === p.netns && q.iface === p.iface && q.netnsIno === p.netnsIno &&
          q.ifindex === p.ifindex && q.hook === p.hook && q.linkType === p.linkType) return i;
    }
    return this.add(p);
  }

  add(p: BatchPoint): number {
    if (this.list.length === 0xffff) throw new FlowLogError('STORE_FORMAT', 'more than 65 535 capture points in one block');
    this.list.push(p);
    return this.list.length - 1;
  }
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
    this.list.push({ bytes: copy, text: text ?? columnAddress(copy) });
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
 * The packets table's columns as reads select them (packetBatchOf decodes
 * them), and a hash of the capture point's columns: rows are told apart by
 * point with it, without comparing names.
 */
export const PACKET_READ_COLUMNS = [
  'ts', 'node', 'netns', 'netns_ino', 'iface', 'ifindex', 'hook', 'direction', 'proto',
  'src', 'sport', 'dst', 'dport', 'ip_id', 'seq', 'ack', 'flags', 'win', 'len', 'wire_len',
  'opt_present', 'opt_mss', 'opt_wscale', 'opt_sack_perm', 'opt_ts_val', 'opt_ts_ecr', 'opt_sack',
  'link_type', 'packet_id', 'headers_residual', 'cityHash64(node, netns, iface) AS point_key',
].join(', ');

/**
 * The packets of a Native block of PACKET_READ_COLUMNS. Headers are rebuilt
 * from their residual in place, in the block's bytes.
 */
export function packetBatchOf(block: NativeBlock): PacketBatch {
  const n = block.rows;
  const fixed = <T extends FixedColumn['values']>(name: string, type: string) => column(block, name, 'fixed', type).values as T;
  const ts = column(block, 'ts', 'fixed').values as BigInt64Array;
  const packetId = fixed<BigUint64Array>('packet_id', 'UInt64');
  const sack = column(block, 'opt_sack', 'array', 'Array(Tuple(UInt32, UInt32))');
  const [sackLeft, sackRight] = sack.elements.map((e) => (e as FixedColumn).values as Uint32Array);
  const residual = column(block, 'headers_residual', 'string');
  const c: PacketColumns = {
    ts, tsWords: new Uint32Array(ts.buffer), point: new Uint16Array(n), points: [], direction: enumValues(block, 'direction', DIRECTION_NAME),
    proto: enumValues(block, 'proto', PROTO_NAME), src: new Uint16Array(n), dst: new Uint16Array(n), addresses: [],
    sport: fixed('sport', 'UInt16'), dport: fixed('dport', 'UInt16'), ipId: fixed('ip_id', 'UInt16'), seq: fixed('seq', 'UInt32'),
    ack: fixed('ack', 'UInt32'), flags: fixed('flags', 'UInt8'), win: fixed('win', 'UInt16'), len: fixed('len', 'UInt32'),
    wireLen: fixed('wire_len', 'UInt32'), present: fixed('opt_present', 'UInt8'), mss: fixed('opt_mss', 'UInt16'),
    wscale: fixed('opt_wscale', 'UInt8'), sackPerm: fixed('opt_sack_perm', 'Bool'), tsVal: fixed('opt_ts_val', 'UInt32'),
    tsEcr: fixed('opt_ts_ecr', 'UInt32'), sackEnds: sack.offsets, sackLeft, sackRight,
    packetId, packetIdWords: new Uint32Array(packetId.buffer),
    headerBytes: residual.bytes, headerStarts: residual.starts, headerEnds: residual.ends,
  };
  const points = new PointTable();
  c.points = points.list;
  const addresses = new AddressTable();
  c.addresses = addresses.list;
  const node = column(block, 'node', 'string');
  const netns = column(block, 'netns', 'string');
  const iface = column(block, 'iface', 'string');
  const pointKey = new Uint32Array(fixed<BigUint64Array>('point_key', 'UInt64').buffer);
  // The points seen so far, by the low word of their name hash, then their numbers.
  const known: Array<{ key: number; keyHigh: number; netnsIno: number; ifindex: number; hook: number; linkType: number; index: number }> = [];
  const netnsIno = fixed<Uint32Array>('netns_ino', 'UInt32');
  const ifindex = fixed<Uint32Array>('ifindex', 'UInt32');
  const hook = enumValues(block, 'hook', HOOK_NAME);
  const linkType = fixed<Uint16Array>('link_type', 'UInt16');
  const srcBytes = fixed<Uint8Array>('src', 'IPv6');
  const dstBytes = fixed<Uint8Array>('dst', 'IPv6');
  const srcWords = new Uint32Array(srcBytes.buffer);
  const dstWords = new Uint32Array(dstBytes.buffer);
  // One object for the column values the residual transform reads, refilled per row.
  const options: TcpOptions = {};
  const values: HeaderColumns = { sport: 0, dport: 0, ipId: 0, seq: 0, ack: 0, flags: 0, win: 0, len: 0, options };
  const bytes = residual.bytes;
  for (let i = 0; i < n; i++) {
    let point = -1;
    for (let k = 0; k < known.length; k++) {
      const p = known[k];
      if (p.key === pointKey[2 * i] && p.keyHigh === pointKey[2 * i + 1] && p.netnsIno === netnsIno[i] &&
          p.ifindex === ifindex[i] && p.hook === hook[i] && p.linkType === linkType[i]) {
        point = p.index;
        break;
      }
    }
    if (point < 0) {
      // Equal names hash equally, so a point missing here is a new one.
      point = points.add({
        node: text(node, i), netns: text(netns, i), netnsIno: netnsIno[i], iface: text(iface, i), ifindex: ifindex[i],
        hook: HOOK_NAME.get(hook[i])!, linkType: linkType[i],
      });
      known.push({ key: pointKey[2 * i], keyHigh: pointKey[2 * i + 1], netnsIno: netnsIno[i], ifindex: ifindex[i], hook: hook[i], linkType: linkType[i], index: point });
    }
    c.point[i] = point;
    const src = (c.src[i] = addresses.index(srcBytes, srcWords, 4 * i));
    const dst = (c.dst[i] = addresses.index(dstBytes, dstWords, 4 * i));
    values.sport = c.sport[i];
    values.dport = c.dport[i];
    values.ipId = c.ipId[i];
    values.seq = c.seq[i];
    values.ack = c.ack[i];
    values.flags = c.flags[i];
    values.win = c.win[i];
    values.len = c.len[i];
    const bits = c.present[i];
    options.mss = bits & OPTION_BIT.mss ? c.mss[i] : undefined;
    options.wscale = bits & OPTION_BIT.wscale ? c.wscale[i] : undefined;
    options.ts_val = bits & OPTION_BIT.ts_val ? c.tsVal[i] : undefined;
    options.ts_ecr = bits & OPTION_BIT.ts_ecr ? c.tsEcr[i] : undefined;
    options.sack = undefined;
    if (bits & OPTION_BIT.sack) {
      const blocks: Array<[number, number]> = [];
      for (let j = i === 0 ? 0 : sack.offsets[i - 1]; j < sack.offsets[i]; j++) blocks.push([sackLeft[j], sackRight[j]]);
      options.sack = blocks;
    }
    const start = residual.starts[i];
    const end = residual.ends[i];
    xorColumnBytes(bytes, end, headerLayout(bytes, start, end, linkType[i]), values, c.addresses[src].bytes, c.addresses[dst].bytes);
  }
  return new PacketBatch(c, allRows(n));
}
