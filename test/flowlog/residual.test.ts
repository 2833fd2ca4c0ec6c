import { test } from 'node:test';
import assert from 'node:assert/strict';
import { headerLayout, parseTcpOptions } from '../../model/headers.js';
import { addressBytes } from '../../flowlog/codec.js';
import { LINKTYPE_ETHERNET, LINKTYPE_RAW } from '../../model/protocol.js';
import type { TcpOptions } from '../../model/records.js';
import { xorColumnBytes } from '../../flowlog/packets/residual.js';
import { packetHeaders, random, type HeaderFields } from '../support/headers.js';

function residualOf(bytes: Uint8Array, linkType: number, p: HeaderFields): Uint8Array {
  const residual = bytes.slice();
  xorColumnBytes(residual, residual.length, headerLayout(residual, 0, residual.length, linkType), p, addressBytes(p.src, 'src'), addressBytes(p.dst, 'dst'));
  return residual;
}

function restored(residual: Uint8Array, linkType: number, p: HeaderFields): Uint8Array {
  return residualOf(residual, linkType, p);
}

const TS_OPTION = [1, 1, 8, 10, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
const SYN_OPTIONS = [2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
const SACK_OPTION = [1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

function packet(src: string, dst: string, options: number[], fields: Partial<HeaderFields> = {}): HeaderFields {
  const bytes = Uint8Array.from(options);
  const parsed: TcpOptions = options.length > 0 ? parseTcpOptions(bytes, 0, bytes.length) : {};
  return { src, dst, sport: 43210, dport: 443, ipId: 0xbeef, seq: 0xfffffff0, ack: 12345, flags: 0x18, win: 502, len: 1448, options: parsed, ...fields };
}

test('the residual of headers the columns describe is zero in every column-determined byte; XOR back gives the bytes', () => {
  const cases: Array<[string, HeaderFields, 6 | 17, { vlans?: number; offloaded: boolean; optionBytes?: number[] }]> = [
    ['IPv4 TCP timestamps, offloaded', packet('10.0.0.1', '10.0.0.2', TS_OPTION), 6, { offloaded: true, optionBytes: TS_OPTION }],
    ['IPv4 TCP SYN options, two VLAN tags', packet('10.0.0.1', '10.0.0.2', SYN_OPTIONS, { flags: 2, len: 0 }), 6, { vlans: 2, offloaded: true, optionBytes: SYN_OPTIONS }],
    ['IPv4 TCP SACK, full checksum', packet('192.168.1.7', '10.9.8.7', SACK_OPTION), 6, { offloaded: false, optionBytes: SACK_OPTION }],
    ['IPv6 TCP, offloaded', packet('fd00::1', '2001:db8::2', TS_OPTION), 6, { offloaded: true, optionBytes: TS_OPTION }],
    ['IPv4 UDP, offloaded', packet('10.0.0.1', '10.0.0.53', [], { seq: 0, ack: 0, flags: 0, win: 0, len: 40 }), 17, { offloaded: true }],
    ['IPv6 UDP, one VLAN tag', packet('fd00::1', 'fd00::53', [], { seq: 0, ack: 0, flags: 0, win: 0, len: 40 }), 17, { vlans: 1, offloaded: true }],
  ];
  for (const [name, p, proto, opts] of cases) {
    const bytes = packetHeaders(p, proto, opts);
    const residual = residualOf(bytes, LINKTYPE_ETHERNET, p);
    assert.deepEqual(restored(residual, LINKTYPE_ETHERNET, p), bytes, name);
    // What is left: MACs, VLAN tags, EtherType, version/IHL/TOS or traffic class/flow label,
    // flags/fragment, TTL/hop limit, protocol, data offset, urgent pointer, option kinds and
    // lengths; and a full L4 checksum XOR the pseudo-header sum.
    const layout = headerLayout(bytes, 0, bytes.length, LINKTYPE_ETHERNET)!;
    const l4 = layout.l4;
    const kept = new Set<number>();
    const fullChecksum = new Set<number>();
    for (let i = 0; i < layout.ip; i++) kept.add(i);
    const v4Kept = [0, 1, 6, 7, 8, 9];
    const v6Kept = [0, 1, 2, 3, 6, 7];
    for (const i of layout.ipVersion === 4 ? v4Kept : v6Kept) kept.add(layout.ip + i);
    if (proto === 6) {
      kept.add(l4 + 12);
      kept.add(l4 + 18);
      kept.add(l4 + 19);
      if (!opts.offloaded) [l4 + 16, l4 + 17].forEach((i) => fullChecksum.add(i));
      const options = opts.optionBytes ?? [];
      for (let at = 0; at < options.length; ) {
        kept.add(l4 + 20 + at);
        if (options[at] === 1) {
          at++;
          continue;
        }
        kept.add(l4 + 21 + at);
        // Option values the columns do not hold (here: none but the ones parsed).
        at += options[at + 1];
      }
    } else if (!opts.offloaded) {
      [l4 + 6, l4 + 7].forEach((i) => fullChecksum.add(i));
    }
    for (let i = 0; i < residual.length; i++) {
      if (fullChecksum.has(i)) continue;
      if (!kept.has(i)) assert.equal(residual[i], 0, `${name}: byte ${i} of the residual`);
      else assert.equal(residual[i], bytes[i], `${name}: byte ${i} is kept as it is`);
    }
  }
});

test('any bytes come back exactly: random, cut short, or disagreeing with the columns', () => {
  const next = random(0x5eed);
  const base = packet('10.0.0.1', '10.0.0.2', TS_OPTION);
  const good = packetHeaders(base, 6, { offloaded: true, optionBytes: TS_OPTION });
  for (let round = 0; round < 3000; round++) {
    let bytes: Uint8Array;
    if (round % 3 === 0) {
      // Random bytes that still look like Ethernet/IP/TCP, so that the transform does its work.
      bytes = Uint8Array.from({ length: 14 + (next() % 120) }, () => next() & 0xff);
      bytes[12] = round % 2 ? 0x08 : 0x86;
      bytes[13] = round % 2 ? 0x00 : 0xdd;
      if (bytes.length > 14) bytes[14] = (round % 2 ? 0x40 : 0x60) | (bytes[14] & 0x0f);
      if (bytes.length > 23) bytes[23] = next() % 2 ? 6 : 17;
    } else if (round % 3 === 1) {
      bytes = good.slice(0, next() % (good.length + 1));
    } else {
      bytes = good.slice();
      bytes[next() % bytes.length] ^= 1 << (next() % 8);
    }
    const p: HeaderFields = {
      ...base,
      seq: next(), ack: next(), ipId: next() & 0xffff, sport: next() & 0xffff, len: next() & 0xffff,
      options: { ts_val: next(), ts_ecr: next(), mss: next() & 0xffff, sack: [[next(), next()]] },
    };
    for (const linkType of [LINKTYPE_ETHERNET, LINKTYPE_RAW]) {
      assert.deepEqual(restored(residualOf(bytes, linkType, p), linkType, p), bytes, `round ${round}`);
    }
  }
});
