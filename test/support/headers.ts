// Packet header bytes as a kernel builds them, for the flow-log tests.
import { addressBytes } from '../../flowlog/codec.js';
import type { HeaderColumns } from '../../flowlog/packets/residual.js';

export interface HeaderFields extends HeaderColumns {
  src: string;
  dst: string;
}

function sum16(bytes: Uint8Array, from: number, to: number, start = 0): number {
  let sum = start;
  for (let i = from; i < to; i += 2) sum += (bytes[i] << 8) | (i + 1 < to ? bytes[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/**
 * Ethernet (+ VLAN tags) + IPv4/IPv6 + TCP/UDP header bytes as a kernel builds
 * them: IPv4 checksum computed; the L4 checksum either the pseudo-header sum
 * checksum offload leaves (`offloaded`) or a full checksum over a payload that
 * is not kept.
 */
export function packetHeaders(p: HeaderFields, proto: 6 | 17, opts: { vlans?: number; offloaded: boolean; optionBytes?: number[] }): Uint8Array {
  const v6 = p.src.includes(':');
  const optionBytes = opts.optionBytes ?? [];
  const l4Header = proto === 6 ? 20 + optionBytes.length : 8;
  const vlans = opts.vlans ?? 0;
  const ip = 14 + 4 * vlans;
  const l4 = ip + (v6 ? 40 : 20);
  const b = new Uint8Array(l4 + l4Header);
  const view = new DataView(b.buffer);
  b.set([0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0x02, 0x42, 0xac, 0x11, 0x00, 0x03]);
  for (let i = 0; i < vlans; i++) {
    view.setUint16(12 + 4 * i, i === 0 && vlans === 2 ? 0x88a8 : 0x8100);
    view.setUint16(14 + 4 * i, 100 + i);
  }
  const src = addressBytes(p.src, 'src');
  const dst = addressBytes(p.dst, 'dst');
  if (v6) {
    view.setUint16(ip - 2, 0x86dd);
    view.setUint32(ip, 0x6000_0000 | 0x12345);
    view.setUint16(ip + 4, l4Header + p.len);
    b[ip + 6] = proto;
    b[ip + 7] = 64;
    b.set(src, ip + 8);
    b.set(dst, ip + 24);
  } else {
    view.setUint16(ip - 2, 0x0800);
    b[ip] = 0x45;
    view.setUint16(ip + 2, 20 + l4Header + p.len);
    view.setUint16(ip + 4, p.ipId);
    view.setUint16(ip + 6, 0x4000);
    b[ip + 8] = 63;
    b[ip + 9] = proto;
    b.set(src.subarray(12), ip + 12);
    b.set(dst.subarray(12), ip + 16);
    view.setUint16(ip + 10, ~sum16(b, ip, ip + 20) & 0xffff);
  }
  view.setUint16(l4, p.sport);
  view.setUint16(l4 + 2, p.dport);
  if (proto === 6) {
    view.setUint32(l4 + 4, p.seq);
    view.setUint32(l4 + 8, p.ack);
    b[l4 + 12] = (l4Header / 4) << 4;
    b[l4 + 13] = p.flags;
    view.setUint16(l4 + 14, p.win);
    b.set(optionBytes, l4 + 20);
  } else {
    view.setUint16(l4 + 4, l4Header + p.len);
  }
  const addressFrom = v6 ? 0 : 12;
  const pseudo = sum16(dst, addressFrom, 16, sum16(src, addressFrom, 16)) + proto + l4Header + p.len;
  const partial = sum16(new Uint8Array(0), 0, 0, pseudo);
  // A full checksum covers the payload too, which is not kept: any value is as good.
  view.setUint16(l4 + (proto === 6 ? 16 : 6), opts.offloaded ? partial : 0xbeef);
  return b;
}

/** A deterministic pseudo-random number source (xorshift32). */
export function random(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}
