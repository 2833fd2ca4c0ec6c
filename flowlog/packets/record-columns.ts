// PacketRecords made into the columns the writer takes (model/packet-columns.ts, in a batch laid out as
// the native decoder's), for packets that do not come from capture's native decoder (imports,
// benchmarks, tests). Every value is checked
// against its column here, as the native decoder checks what it decodes: the writer then takes the
// columns as they are.
import { DIRECTION, HOOK, PROTO_NUMBER } from '../../model/protocol.js';
import { FRAGMENT, OPTION_BIT, SACK_MAX, type PacketColumns } from '../../model/packet-columns.js';
import { newPacketColumns } from '../../native/packet-columns-layout.js';
import type { PacketRecord } from '../../model/records.js';
import { addressBytes, enumValue, invalid, timestamp, U8, U16, U32, u64, uint, utf8 } from '../codec.js';

/** Throws INVALID_VALUE unless every value of `p` fits its column. */
function checkRecord(p: PacketRecord): void {
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
    if (!Array.isArray(sack) || sack.length > SACK_MAX) throw invalid('options.sack', sack);
    sack.forEach(([left, right], i) => {
      uint(left, U32, `options.sack[${i}][0]`);
      uint(right, U32, `options.sack[${i}][1]`);
    });
  }
}

/**
 * The records as columns. They must share one node and link type, and the names of a namespace and
 * interface number; throws INVALID_VALUE naming the first value that does not fit (and makes nothing).
 */
export function packetColumnsOfRecords(records: readonly PacketRecord[]): PacketColumns {
  const n = records.length;
  const netnsNames = new Map<number, string>();
  const ifaceNames = new Map<string, string>();
  let headerBytes = 0;
  let sackBlocks = 0;
  for (const p of records) {
    checkRecord(p);
    if (p.node !== records[0].node) throw invalid('node', p.node);
    if (p.linkType !== records[0].linkType) throw invalid('linkType', p.linkType);
    if ((netnsNames.get(p.netnsIno) ?? p.netns) !== p.netns) throw invalid('netns', p.netns);
    netnsNames.set(p.netnsIno, p.netns);
    const point = `${p.netnsIno}/${p.ifindex}`;
    if ((ifaceNames.get(point) ?? p.iface) !== p.iface) throw invalid('iface', p.iface);
    ifaceNames.set(point, p.iface);
    headerBytes += p.headers.length;
    sackBlocks += p.options.sack?.length ?? 0;
  }
  const c = newPacketColumns(n, headerBytes, sackBlocks, records[0]?.node ?? '', {
    netnsName: (ino) => netnsNames.get(ino) ?? `ino:${ino}`,
    ifaceName: (ino, ifindex) => ifaceNames.get(`${ino}/${ifindex}`) ?? `if${ifindex}`,
  }, records[0]?.linkType ?? 0);
  let headerAt = 0;
  let sackAt = 0;
  records.forEach((p, i) => {
    const o = p.options;
    c.ts[i] = p.ts;
    c.packetId[i] = p.packetId;
    c.src.set(addressBytes(p.src, 'src'), 16 * i);
    c.dst.set(addressBytes(p.dst, 'dst'), 16 * i);
    c.netnsIno[i] = p.netnsIno;
    c.ifindex[i] = p.ifindex;
    c.seq[i] = p.seq;
    c.ack[i] = p.ack;
    c.len[i] = p.len;
    c.wireLen[i] = p.wireLen;
    c.tsVal[i] = o.ts_val ?? 0;
    c.tsEcr[i] = o.ts_ecr ?? 0;
    c.sport[i] = p.sport;
    c.dport[i] = p.dport;
    c.win[i] = p.win;
    c.ipId[i] = p.ipId;
    c.mss[i] = o.mss ?? 0;
    c.hook[i] = HOOK[p.hook];
    c.direction[i] = DIRECTION[p.direction];
    c.proto[i] = PROTO_NUMBER[p.proto];
    c.flags[i] = p.flags;
    c.options[i] = (o.mss === undefined ? 0 : OPTION_BIT.mss) | (o.wscale === undefined ? 0 : OPTION_BIT.wscale) |
      (o.sack_perm === true ? OPTION_BIT.sack_perm : 0) | (o.ts_val === undefined ? 0 : OPTION_BIT.ts_val) |
      (o.ts_ecr === undefined ? 0 : OPTION_BIT.ts_ecr) | (o.sack === undefined ? 0 : OPTION_BIT.sack);
    c.wscale[i] = o.wscale ?? 0;
    c.fragment[i] = p.fragment === undefined ? 0 : FRAGMENT[p.fragment];
    c.headerAt[i] = headerAt;
    c.headerLen[i] = p.headers.length;
    c.headers.set(p.headers, headerAt);
    headerAt += p.headers.length;
    c.sackAt[i] = sackAt;
    c.sackCount[i] = o.sack?.length ?? 0;
    for (const [left, right] of o.sack ?? []) {
      c.sacks[2 * sackAt] = left;
      c.sacks[2 * sackAt + 1] = right;
      sackAt++;
    }
  });
  return c;
}
