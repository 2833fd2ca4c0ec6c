// The batches of decoded packets (native/packet_columns.h): a header, each column for `capacity`
// packets (8-aligned), the packets' header bytes, their SACK blocks. The native decoder hands them
// over; newPacketColumns() lays out one for columns made in TypeScript, so that the native chunk
// encoder reads every batch alike. test/capture/packet-columns-layout.test.ts checks these constants
// against the C header.
import { packetColumns, type PacketColumns, type PointNames } from '../model/packet-columns.js';
import { LINKTYPE_ETHERNET } from '../model/protocol.js';
import { cStruct } from '../model/c-struct.js';

export const COLUMNS_VERSION = 1;

/** struct nt_columns_header */
export const columnsHeaderLayout = cStruct({
  version: 'u32', count: 'u32', capacity: 'u32', malformed: 'u32', unattributed_fragments: 'u32',
  header_bytes: 'u32', sack_blocks: 'u32', pad: 'u32',
});

/** NT_PACKET_COLUMNS: each column's name in the header, bytes per packet, and its PacketColumns field, in order. */
export const PACKET_COLUMNS = [
  ['ts', 8, 'ts'], ['packet_id', 8, 'packetId'], ['src', 16, 'src'], ['dst', 16, 'dst'],
  ['netns_ino', 4, 'netnsIno'], ['ifindex', 4, 'ifindex'], ['seq', 4, 'seq'], ['ack', 4, 'ack'], ['len', 4, 'len'],
  ['wire_len', 4, 'wireLen'], ['ts_val', 4, 'tsVal'], ['ts_ecr', 4, 'tsEcr'], ['header_at', 4, 'headerAt'], ['sack_at', 4, 'sackAt'],
  ['sport', 2, 'sport'], ['dport', 2, 'dport'], ['win', 2, 'win'], ['ip_id', 2, 'ipId'], ['mss', 2, 'mss'], ['header_len', 2, 'headerLen'],
  ['hook', 1, 'hook'], ['direction', 1, 'direction'], ['proto', 1, 'proto'], ['flags', 1, 'flags'], ['options', 1, 'options'],
  ['wscale', 1, 'wscale'], ['sack_count', 1, 'sackCount'], ['fragment', 1, 'fragment'],
] as const;

export class ColumnsFormatError extends Error {}

export interface DecodedBatch {
  columns: PacketColumns;
  /** Ring records the decoder refused. */
  malformed: number;
  /** Later fragments whose first fragment was not seen (kept with ports 0). */
  unattributedFragments: number;
}

const align8 = (n: number) => (n + 7) & ~7;

const H = columnsHeaderLayout.fields;

/**
 * Views of the columns in `batch` (no copy); the batch must stay as it is while they are used. Its packets'
 * header bytes are of link type `linkType` (the native decoder's are Ethernet).
 */
export function readPacketColumns(batch: Uint8Array, node: string, names: PointNames, linkType = LINKTYPE_ETHERNET): DecodedBatch {
  const header = new DataView(batch.buffer, batch.byteOffset, Math.min(batch.byteLength, columnsHeaderLayout.size));
  const word = (field: keyof typeof H) => header.getUint32(H[field].offset, true);
  if (batch.length < columnsHeaderLayout.size || word('version') !== COLUMNS_VERSION) {
    throw new ColumnsFormatError(`packet batch of version ${batch.length >= 4 ? word('version') : '?'}, not ${COLUMNS_VERSION}`);
  }
  if (batch.byteOffset % 8 !== 0) throw new ColumnsFormatError('packet batch not 8-aligned');
  const count = word('count');
  const capacity = word('capacity');
  const buffer = batch.buffer;
  let at = batch.byteOffset + columnsHeaderLayout.size;
  const views: Record<string, ArrayBufferView> = {};
  for (const [, bytes, field] of PACKET_COLUMNS) {
    const length = bytes === 16 ? 16 * count : count;
    views[field] = bytes === 8 ? (field === 'ts' ? new BigInt64Array(buffer, at, length) : new BigUint64Array(buffer, at, length))
      : bytes === 4 ? new Uint32Array(buffer, at, length)
      : bytes === 2 ? new Uint16Array(buffer, at, length)
      : new Uint8Array(buffer, at, length);
    at += align8(bytes * capacity);
  }
  const headers = new Uint8Array(buffer, at, word('header_bytes'));
  at += align8(word('header_bytes'));
  const sacks = new Uint32Array(buffer, at, 2 * word('sack_blocks'));
  if (at + sacks.byteLength > batch.byteOffset + batch.length) throw new ColumnsFormatError('packet batch cut short');
  const v = views as unknown as PacketColumns;
  const columns = packetColumns({
    ...v, count, node, names, linkType, batch, headers, sacks,
    tsWords: new Uint32Array(v.ts.buffer, v.ts.byteOffset, 2 * count),
    packetIdWords: new Uint32Array(v.packetId.buffer, v.packetId.byteOffset, 2 * count),
    srcWords: new Uint32Array(v.src.buffer, v.src.byteOffset, 4 * count),
    dstWords: new Uint32Array(v.dst.buffer, v.dst.byteOffset, 4 * count),
  });
  return { columns, malformed: word('malformed'), unattributedFragments: word('unattributed_fragments') };
}

/**
 * Empty columns of `count` packets with room for `headerBytes` header bytes and `sackBlocks` SACK blocks,
 * in a batch of their own: for packets that do not come from the native decoder (imports, benchmarks, tests).
 */
export function newPacketColumns(
  count: number, headerBytes: number, sackBlocks: number, node: string, names: PointNames, linkType: number,
): PacketColumns {
  const columnBytes = PACKET_COLUMNS.reduce((sum, [, bytes]) => sum + align8(bytes * count), 0);
  const batch = new Uint8Array(columnsHeaderLayout.size + columnBytes + align8(headerBytes) + 8 * sackBlocks);
  const header = new DataView(batch.buffer);
  const put = (field: keyof typeof H, value: number) => header.setUint32(H[field].offset, value, true);
  put('version', COLUMNS_VERSION);
  put('count', count);
  put('capacity', count);
  put('header_bytes', headerBytes);
  put('sack_blocks', sackBlocks);
  return readPacketColumns(batch, node, names, linkType).columns;
}
