// Crafted packets for the parser tests: Ethernet with VLAN tags, IPv4 with options
// and fragments, IPv6 with extension headers, TCP with options, UDP. Checksums are
// left 0: the capture programs never look at them.
import { parseAddress } from '../../model/address.js';

const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];
const u32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_ARP = 0x0806;

export interface TcpSpec {
  sport: number;
  dport: number;
  seq: number;
  ack?: number;
  flags: number;
  win: number;
  urgent?: number;
  /** Raw option bytes, padded here to a multiple of 4. */
  options?: number[];
  payload?: Uint8Array;
}

export const tcpOption = {
  eol: () => [0],
  nop: () => [1],
  mss: (mss: number) => [2, 4, ...u16(mss)],
  wscale: (shift: number) => [3, 3, shift],
  sackPerm: () => [4, 2],
  sack: (blocks: Array<[number, number]>) => [5, 2 + 8 * blocks.length, ...blocks.flatMap(([a, b]) => [...u32(a), ...u32(b)])],
  timestamps: (val: number, ecr: number) => [8, 10, ...u32(val), ...u32(ecr)],
};

export function tcp(spec: TcpSpec): Uint8Array {
  const options = [...(spec.options ?? [])];
  while (options.length % 4) options.push(0);
  const doff = (20 + options.length) / 4;
  return Uint8Array.from([
    ...u16(spec.sport), ...u16(spec.dport), ...u32(spec.seq), ...u32(spec.ack ?? 0),
    doff << 4, spec.flags, ...u16(spec.win), 0, 0, ...u16(spec.urgent ?? 0),
    ...options, ...(spec.payload ?? []),
  ]);
}

export function udp(sport: number, dport: number, payload: Uint8Array): Uint8Array {
  return Uint8Array.from([...u16(sport), ...u16(dport), ...u16(8 + payload.length), 0, 0, ...payload]);
}

export interface Ipv4Spec {
  src: string;
  dst: string;
  proto: number;
  id?: number;
  ttl?: number;
  /** Raw option bytes (a multiple of 4). */
  options?: number[];
  moreFragments?: boolean;
  /** In 8-byte units. */
  fragOffset?: number;
  /** Overrides the total length field. */
  totalLength?: number;
  /** Overrides the header length (in 32-bit words). */
  ihl?: number;
}

export function ipv4(spec: Ipv4Spec, payload: Uint8Array): Uint8Array {
  const options = spec.options ?? [];
  const ihl = spec.ihl ?? 5 + options.length / 4;
  const total = spec.totalLength ?? 20 + options.length + payload.length;
  const frag = (spec.moreFragments ? 0x2000 : 0) | (spec.fragOffset ?? 0);
  return Uint8Array.from([
    0x40 | ihl, 0, ...u16(total), ...u16(spec.id ?? 0), ...u16(frag), spec.ttl ?? 64, spec.proto, 0, 0,
    ...parseAddress(spec.src)!, ...parseAddress(spec.dst)!, ...options, ...payload,
  ]);
}

/** An IPv6 extension header: next header is filled in by ipv6(). */
export interface Ipv6Ext {
  type: number;
  /** Body after the next-header and length bytes (HBH, DST, routing: pad to 8n+6; AH: 4n+2). */
  body: number[];
}

export const ipv6Ext = {
  hopByHop: (): Ipv6Ext => ({ type: 0, body: [1, 4, 0, 0, 0, 0] }), // PadN
  destination: (): Ipv6Ext => ({ type: 60, body: [1, 12, ...Array(12).fill(0)] }), // PadN, 16 bytes total
  routing: (): Ipv6Ext => ({ type: 43, body: [0, 0, 0, 0, 0, 0] }), // type 0, no segments left
  fragment: (offset: number, more: boolean, id: number): Ipv6Ext => ({ type: 44, body: [...u16((offset << 3) | (more ? 1 : 0)), ...u32(id)] }),
  auth: (): Ipv6Ext => ({ type: 51, body: [0, 0, ...u32(0x100), ...u32(1), ...u32(0), ...u32(0), ...u32(0)] }),
};

export function ipv6(src: string, dst: string, proto: number, payload: Uint8Array, exts: Ipv6Ext[] = [], payloadLength?: number): Uint8Array {
  const chain: number[] = [];
  exts.forEach((ext, i) => {
    const next = i + 1 < exts.length ? exts[i + 1].type : proto;
    const length = 2 + ext.body.length;
    const lengthField = ext.type === 44 ? 0 : ext.type === 51 ? length / 4 - 2 : length / 8 - 1;
    chain.push(next, lengthField, ...ext.body);
  });
  const first = exts.length > 0 ? exts[0].type : proto;
  return Uint8Array.from([
    0x60, 0, 0, 0, ...u16(payloadLength ?? chain.length + payload.length), first, 64,
    ...parseAddress(src)!, ...parseAddress(dst)!, ...chain, ...payload,
  ]);
}

export const MAC_A = [0x02, 0, 0, 0, 0, 0x0a];
export const MAC_B = [0x02, 0, 0, 0, 0, 0x0b];

/** Ethernet frame; `vlans` are [TPID, TCI] pairs, outermost first. */
export function ethernet(type: number, payload: Uint8Array, vlans: Array<[number, number]> = []): Buffer {
  return Buffer.from([...MAC_B, ...MAC_A, ...vlans.flatMap(([tpid, tci]) => [...u16(tpid), ...u16(tci)]), ...u16(type), ...payload]);
}

export const bytesOf = (length: number, seed = 1) => Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);
