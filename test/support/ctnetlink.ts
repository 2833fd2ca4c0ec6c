// ctnetlink messages laid out as the kernel writes them (ctnetlink_fill_info and
// ctnetlink_conntrack_event, net/netfilter/nf_conntrack_netlink.c; numbers from
// <linux/netlink.h>, <linux/netfilter/nfnetlink.h>, <linux/netfilter/nfnetlink_conntrack.h>),
// for tests of the addon's decoder.
import { parseAddress } from '../../model/address.js';
import type { FourTuple } from '../../model/records.js';

const NLM_F_MULTI = 0x2;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLA_F_NESTED = 0x8000;
const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_NEW = 0;
const IPCTNL_MSG_CT_DELETE = 2;
const AF = { ipv4: 2, ipv6: 10 } as const;
const CTA = { tupleOrig: 1, tupleReply: 2, status: 3, id: 12, zone: 18, timestamp: 20 } as const;
const CTA_TUPLE = { ip: 1, proto: 2 } as const;
const CTA_IP = { v4Src: 1, v4Dst: 2, v6Src: 3, v6Dst: 4 } as const;
const CTA_PROTO = { num: 1, srcPort: 2, dstPort: 3 } as const;
const CTA_TIMESTAMP = { start: 1, stop: 2 } as const;

const align4 = (n: number) => (n + 3) & ~3;

function attr(type: number, payload: Buffer): Buffer {
  const out = Buffer.alloc(align4(4 + payload.length));
  out.writeUInt16LE(4 + payload.length, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}
const nest = (type: number, ...attrs: Buffer[]) => attr(type | NLA_F_NESTED, Buffer.concat(attrs));
const u8 = (v: number) => Buffer.from([v]);
const be16 = (v: number) => Buffer.from([v >> 8, v & 0xff]);
const be32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};
const be64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};

export interface CtnetlinkEntry {
  /** The event, or null for an entry of a dump. */
  event: 'new' | 'update' | 'destroy' | null;
  family: 'ipv4' | 'ipv6';
  /** IPPROTO_* */
  proto: number;
  orig: FourTuple;
  reply: FourTuple;
  id: number;
  status: number;
  zone?: number;
  startNs?: bigint;
  stopNs?: bigint;
}

function tuple(type: number, family: 'ipv4' | 'ipv6', proto: number, t: FourTuple): Buffer {
  const address = (text: string) => Buffer.from(parseAddress(text)!);
  const [src, dst] = family === 'ipv4' ? [CTA_IP.v4Src, CTA_IP.v4Dst] : [CTA_IP.v6Src, CTA_IP.v6Dst];
  return nest(
    type,
    nest(CTA_TUPLE.ip, attr(src, address(t.src)), attr(dst, address(t.dst))),
    nest(CTA_TUPLE.proto, attr(CTA_PROTO.num, u8(proto)), attr(CTA_PROTO.srcPort, be16(t.sport)), attr(CTA_PROTO.dstPort, be16(t.dport))),
  );
}

/** One netlink message carrying a conntrack entry, as an event or as part of a dump. */
export function ctnetlinkEntry(e: CtnetlinkEntry): Buffer {
  const timestamps = [
    ...(e.startNs === undefined ? [] : [attr(CTA_TIMESTAMP.start, be64(e.startNs))]),
    ...(e.stopNs === undefined ? [] : [attr(CTA_TIMESTAMP.stop, be64(e.stopNs))]),
  ];
  const attrs = Buffer.concat([
    tuple(CTA.tupleOrig, e.family, e.proto, e.orig),
    tuple(CTA.tupleReply, e.family, e.proto, e.reply),
    attr(CTA.status, be32(e.status)),
    ...(timestamps.length ? [nest(CTA.timestamp, ...timestamps)] : []),
    attr(CTA.id, be32(e.id)),
    ...(e.zone === undefined ? [] : [attr(CTA.zone, be16(e.zone))]),
  ]);
  const header = Buffer.alloc(16 + 4);
  header.writeUInt32LE(header.length + attrs.length, 0);
  header.writeUInt16LE((NFNL_SUBSYS_CTNETLINK << 8) | (e.event === 'destroy' ? IPCTNL_MSG_CT_DELETE : IPCTNL_MSG_CT_NEW), 4);
  header.writeUInt16LE(e.event === null ? NLM_F_MULTI : e.event === 'new' ? NLM_F_CREATE | NLM_F_EXCL : 0, 6);
  header.writeUInt8(AF[e.family], 16); // nfgenmsg: family, version 0, res_id 0
  return Buffer.concat([header, attrs]);
}
