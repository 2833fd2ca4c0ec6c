// The kernel parser run with BPF_PROG_TEST_RUN on crafted packets: each event is
// decoded as capture does it and checked field by field; what the kernel does not
// record is checked in its per-point counters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { decodeRecords } from '../support/packet-decode.js';
import { parseFilter, writeFilter, CAPTURE_EVERYTHING } from '../../capture/packets/filter.js';
import { HOOK, DIRECTION, POINT_COUNTERS, pointKeyLayout, pointStatsLayout, type PointCounter } from '../../capture/packets/layout.js';
import { BpfObject, bpfObjectPath, PacketRecordDecoder } from '../../native/addon.js';
import type { PacketRecord } from '../../model/records.js';
import {
  ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, bytesOf, ethernet, ipv4, ipv6, ipv6Ext, tcp, tcpOption, udp,
} from '../support/packets.js';

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const F = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 };
const ETH_P_8021Q = 0x8100;
const ETH_P_8021AD = 0x88a8;
const PROGRAMS = ['tc_ingress', 'tc_egress', 'xdp_ingress'] as const;
type Program = (typeof PROGRAMS)[number];

/** BPF_PROG_TEST_RUN runs in this process's network namespace, on its loopback device. */
const NETNS_INO = statSync('/proc/self/ns/net').ino;
const LOOPBACK_IFINDEX = 1;

function load(snaplen = 0): BpfObject {
  const rodata = Buffer.alloc(4);
  rodata.writeUInt32LE(snaplen);
  return BpfObject.load(bpfObjectPath('capture'), { packet_events: 1 << 16 }, { snaplen: rodata });
}

function withObject(snaplen: number, fn: (bpf: BpfObject) => void | Promise<void>) {
  return async () => {
    const bpf = load(snaplen);
    try {
      await fn(bpf);
    } finally {
      await bpf.close();
    }
  };
}

const decoder = () => new PacketRecordDecoder();

/** Runs one packet through a program; the packets it recorded, decoded. */
function run(bpf: BpfObject, packet: Buffer, program: Program = 'tc_ingress', using = decoder()): PacketRecord[] {
  const { retval, records, batch } = bpf.testRun(program, packet, 'packet_events');
  assert.equal(retval, program === 'xdp_ingress' ? 2 /* XDP_PASS */ : -1 /* TC_ACT_UNSPEC */, 'the packet is let through');
  const { packets, malformed } = decodeRecords(using, batch);
  assert.equal(malformed, 0);
  assert.equal(packets.length, records);
  return packets;
}

function one(bpf: BpfObject, packet: Buffer, program: Program = 'tc_ingress'): PacketRecord {
  const packets = run(bpf, packet, program);
  assert.equal(packets.length, 1, 'one event');
  return packets[0];
}

/** This process's point counters for a program, summed over CPUs. */
function counters(bpf: BpfObject, program: Program): Record<PointCounter, number> {
  const hook = program === 'xdp_ingress' ? HOOK.xdp : HOOK.tc;
  const direction = program === 'tc_egress' ? DIRECTION.egress : DIRECTION.ingress;
  const sum = Object.fromEntries(POINT_COUNTERS.map((c) => [c, 0])) as Record<PointCounter, number>;
  const K = pointKeyLayout.fields;
  for (const { key, value } of bpf.mapEntries('point_stats')) {
    if (key.readUInt32LE(K.netns_ino.offset) !== NETNS_INO || key.readUInt32LE(K.ifindex.offset) !== LOOPBACK_IFINDEX) continue;
    if (key.readUInt8(K.hook.offset) !== hook || key.readUInt8(K.direction.offset) !== direction) continue;
    for (let cpu = 0; cpu < value.length; cpu += 48) {
      for (const c of POINT_COUNTERS) sum[c] += Number(value.readBigUInt64LE(cpu + pointStatsLayout.fields[c].offset));
    }
  }
  return sum;
}

/** Runs a packet that must not be recorded; returns which counter it went to. */
function counted(bpf: BpfObject, packet: Buffer, program: Program = 'tc_ingress'): PointCounter[] {
  const before = counters(bpf, program);
  assert.equal(run(bpf, packet, program).length, 0, 'no event');
  const after = counters(bpf, program);
  return POINT_COUNTERS.flatMap((c) => Array<PointCounter>(after[c] - before[c]).fill(c));
}

const synOptions = [...tcpOption.mss(1460), ...tcpOption.sackPerm(), ...tcpOption.timestamps(123456789, 0), ...tcpOption.nop(), ...tcpOption.wscale(7)];

test('IPv4 TCP SYN with every option: each field, at TC ingress, TC egress and XDP', withObject(0, (bpf) => {
  const segment = tcp({ sport: 43210, dport: 80, seq: 0xfffffff0, flags: F.SYN, win: 64240, options: synOptions });
  const packet = ethernet(ETH_P_IP, ipv4({ src: '10.1.2.3', dst: '192.168.7.9', proto: TCP, id: 0xbeef }, segment));
  for (const program of PROGRAMS) {
    const p = one(bpf, packet, program);
    assert.equal(p.hook, program === 'xdp_ingress' ? 'xdp' : 'tc');
    assert.equal(p.direction, program === 'tc_egress' ? 'egress' : 'ingress');
    assert.equal(p.netnsIno, NETNS_INO);
    assert.equal(p.ifindex, LOOPBACK_IFINDEX);
    assert.equal(p.proto, 'tcp');
    assert.deepEqual([p.src, p.sport, p.dst, p.dport], ['10.1.2.3', 43210, '192.168.7.9', 80]);
    assert.equal(p.seq, 0xfffffff0);
    assert.equal(p.ack, 0);
    assert.equal(p.flags, F.SYN);
    assert.equal(p.win, 64240);
    assert.equal(p.ipId, 0xbeef);
    assert.equal(p.len, 0);
    assert.equal(p.wireLen, packet.length);
    assert.deepEqual(p.options, { mss: 1460, sack_perm: true, ts_val: 123456789, ts_ecr: 0, wscale: 7 });
    assert.deepEqual(Buffer.from(p.headers), packet, 'the whole packet: it is all headers');
    assert.equal(p.fragment, undefined);
  }
}));

test('SACK blocks, IPv4 options, and a payload that is left out by default', withObject(0, (bpf) => {
  const payload = bytesOf(300);
  const options = [...tcpOption.nop(), ...tcpOption.nop(), ...tcpOption.timestamps(5, 6), ...tcpOption.nop(), ...tcpOption.nop(),
    ...tcpOption.sack([[1000, 2000], [3000, 4000], [0xfffffff0, 16]])];
  const segment = tcp({ sport: 80, dport: 43210, seq: 7, ack: 99, flags: F.ACK | F.PSH, win: 501, options, payload });
  const ipOptions = [0x94, 4, 0, 0, 1, 1, 1, 0]; // router alert, NOP, NOP, NOP, EOL
  const packet = ethernet(ETH_P_IP, ipv4({ src: '10.0.0.2', dst: '10.0.0.1', proto: TCP, options: ipOptions }, segment));
  const p = one(bpf, packet);
  assert.deepEqual(p.options, { ts_val: 5, ts_ecr: 6, sack: [[1000, 2000], [3000, 4000], [0xfffffff0, 16]] });
  assert.equal(p.len, 300);
  assert.equal(p.ack, 99);
  assert.equal(p.flags, F.ACK | F.PSH);
  const headerBytes = 14 + 28 + segment.length - payload.length;
  assert.deepEqual(Buffer.from(p.headers), packet.subarray(0, headerBytes), 'headers to the end of TCP, no payload');
  assert.equal(p.wireLen, packet.length);
}));

test('--snaplen keeps payload up to that many bytes; headers always whole', withObject(200, (bpf) => {
  const payload = bytesOf(1400, 7);
  const big = ethernet(ETH_P_IP, ipv4({ src: '10.0.0.1', dst: '10.0.0.2', proto: TCP }, tcp({ sport: 1, dport: 2, seq: 1, flags: F.ACK, win: 1, payload })));
  const p = one(bpf, big);
  assert.deepEqual(Buffer.from(p.headers), big.subarray(0, 200));
  assert.equal(p.len, 1400);
  assert.equal(p.wireLen, big.length);
  // Headers longer than snaplen are kept whole all the same.
  const options = [...tcpOption.sack([[1, 2], [3, 4], [5, 6], [7, 8]])];
  const exts = [ipv6Ext.hopByHop(), ipv6Ext.destination(), ipv6Ext.routing(), ...Array.from({ length: 4 }, () => ipv6Ext.destination())];
  const v6 = ethernet(ETH_P_IPV6, ipv6('fd00::1', 'fd00::2', TCP, tcp({ sport: 1, dport: 2, seq: 1, flags: F.ACK, win: 1, options, payload: bytesOf(10) }), exts));
  const q = one(bpf, v6);
  assert.equal(q.headers.length, 14 + 40 + 96 + 56, '206 header bytes kept over a snaplen of 200');
  assert.deepEqual(Buffer.from(q.headers), v6.subarray(0, 206));
  assert.deepEqual(q.options, { sack: [[1, 2], [3, 4], [5, 6], [7, 8]] });
}));

test('snaplen at its 4096-byte ceiling, on a frame of two buffers (xdp.frags)', withObject(4096, (bpf) => {
  const payload = bytesOf(5000, 3);
  const packet = ethernet(ETH_P_IPV6, ipv6('fd00::1', 'fd00::2', UDP, udp(53, 5353, payload)));
  const p = one(bpf, packet, 'xdp_ingress');
  assert.deepEqual(Buffer.from(p.headers), packet.subarray(0, 4096));
  assert.equal(p.len, 5000);
  assert.equal(p.wireLen, packet.length);
  // Headers must end within the 256-byte parse window, however much is copied.
  const padded = { type: 60, body: [1, 60, ...Array(60).fill(0)] }; // 64-byte destination options
  const deep = ethernet(ETH_P_IPV6, ipv6('fd00::1', 'fd00::2', TCP, tcp({ sport: 1, dport: 2, seq: 1, flags: F.ACK, win: 1 }), [padded, padded, padded, padded]));
  assert.deepEqual(counted(bpf, deep), ['malformed']);
}));

test('802.1Q VLAN with UDP over IPv4; QinQ with TCP over IPv6', withObject(0, (bpf) => {
  const dns = bytesOf(40);
  const tagged = ethernet(ETH_P_IP, ipv4({ src: '172.16.0.1', dst: '172.16.0.53', proto: UDP, id: 7 }, udp(5353, 53, dns)), [[ETH_P_8021Q, 100]]);
  const u = one(bpf, tagged);
  assert.deepEqual([u.proto, u.src, u.sport, u.dst, u.dport, u.len, u.ipId], ['udp', '172.16.0.1', 5353, '172.16.0.53', 53, 40, 7]);
  assert.deepEqual([u.seq, u.ack, u.flags, u.win], [0, 0, 0, 0]);
  assert.deepEqual(u.options, {});
  assert.deepEqual(Buffer.from(u.headers), tagged.subarray(0, 14 + 4 + 20 + 8));

  const segment = tcp({ sport: 443, dport: 50000, seq: 1, ack: 2, flags: F.ACK, win: 3 });
  const qinq = ethernet(ETH_P_IPV6, ipv6('2001:db8::1', '2001:db8:0:1::2', TCP, segment), [[ETH_P_8021AD, 10], [ETH_P_8021Q, 20]]);
  const t = one(bpf, qinq);
  assert.deepEqual([t.proto, t.src, t.sport, t.dst, t.dport, t.seq, t.ack, t.win], ['tcp', '2001:db8::1', 443, '2001:db8:0:1::2', 50000, 1, 2, 3]);
  assert.deepEqual(Buffer.from(t.headers), qinq);
  assert.equal(t.ipId, 0);
}));

test('IPv6 extension headers: hop-by-hop, routing, destination, AH are walked to TCP', withObject(0, (bpf) => {
  const segment = tcp({ sport: 1234, dport: 22, seq: 42, flags: F.SYN, win: 1000, options: tcpOption.mss(1220) });
  const packet = ethernet(ETH_P_IPV6, ipv6('fe80::1', 'ff02::1:ff00:1', TCP, segment,
    [ipv6Ext.hopByHop(), ipv6Ext.routing(), ipv6Ext.auth(), ipv6Ext.destination()]));
  const p = one(bpf, packet);
  assert.deepEqual([p.src, p.dst, p.sport, p.dport, p.seq, p.flags], ['fe80::1', 'ff02::1:ff00:1', 1234, 22, 42, F.SYN]);
  assert.deepEqual(p.options, { mss: 1220 });
  assert.deepEqual(Buffer.from(p.headers), packet);

  const tooDeep = ethernet(ETH_P_IPV6, ipv6('fd00::1', 'fd00::2', TCP, segment, Array.from({ length: 9 }, () => ipv6Ext.destination())));
  assert.deepEqual(counted(bpf, tooDeep), ['malformed'], 'deeper than NT_IPV6_EXT_MAX');
}));

test('IPv4 and IPv6 fragments: the first with its ports, later ones as such with the first one\'s ports', withObject(0, (bpf) => {
  const using = decoder();
  const datagram = udp(4000, 4001, bytesOf(2000));
  const first = ethernet(ETH_P_IP, ipv4({ src: '10.9.0.1', dst: '10.9.0.2', proto: UDP, id: 0x1234, moreFragments: true }, datagram.subarray(0, 1480)));
  const later = ethernet(ETH_P_IP, ipv4({ src: '10.9.0.1', dst: '10.9.0.2', proto: UDP, id: 0x1234, fragOffset: 185 }, datagram.subarray(1480)));
  const [f1] = run(bpf, first, 'tc_ingress', using);
  assert.deepEqual([f1.fragment, f1.sport, f1.dport, f1.len], ['first', 4000, 4001, 1480 - 8]);
  const [f2] = run(bpf, later, 'tc_ingress', using);
  assert.deepEqual([f2.fragment, f2.sport, f2.dport, f2.len, f2.ipId], ['later', 4000, 4001, datagram.length - 1480, 0x1234]);
  assert.deepEqual(Buffer.from(f2.headers), later.subarray(0, 34), 'IP header only');
  assert.notEqual(f1.packetId, f2.packetId);
  // A later fragment with no first one seen is kept, with ports 0, and counted.
  const [orphan] = run(bpf, later, 'tc_ingress', decoder());
  assert.deepEqual([orphan.fragment, orphan.sport, orphan.dport], ['later', 0, 0]);

  const segment = tcp({ sport: 5000, dport: 5001, seq: 9, flags: F.ACK, win: 9, payload: bytesOf(64) });
  const v6first = ethernet(ETH_P_IPV6, ipv6('fd00::a', 'fd00::b', TCP, segment.subarray(0, 48), [ipv6Ext.fragment(0, true, 0xabcdef01)]));
  const v6later = ethernet(ETH_P_IPV6, ipv6('fd00::a', 'fd00::b', TCP, segment.subarray(48), [ipv6Ext.hopByHop(), ipv6Ext.fragment(6, false, 0xabcdef01)]));
  const [g1] = run(bpf, v6first, 'xdp_ingress', using);
  assert.deepEqual([g1.fragment, g1.sport, g1.dport, g1.seq], ['first', 5000, 5001, 9]);
  const [g2] = run(bpf, v6later, 'xdp_ingress', using);
  assert.deepEqual([g2.fragment, g2.sport, g2.dport, g2.seq, g2.flags, g2.len], ['later', 5000, 5001, 0, 0, segment.length - 48]);
}));

test('truncated and malformed packets are counted, not recorded; other protocols too', withObject(0, (bpf) => {
  const segment = tcp({ sport: 1, dport: 2, seq: 3, flags: F.ACK, win: 4 });
  const good = ethernet(ETH_P_IP, ipv4({ src: '10.0.0.1', dst: '10.0.0.2', proto: TCP }, segment));
  // BPF_PROG_TEST_RUN refuses skbs shorter than an IPv4 header: that cut is tried at XDP only.
  assert.deepEqual(counted(bpf, good.subarray(0, 14 + 12), 'xdp_ingress'), ['malformed'], 'cut inside the IPv4 header');
  for (const program of PROGRAMS) {
    assert.deepEqual(counted(bpf, good.subarray(0, 14 + 20 + 10), program), ['malformed'], 'cut inside the TCP header');
  }
  const badIhl = ethernet(ETH_P_IP, ipv4({ src: '10.0.0.1', dst: '10.0.0.2', proto: TCP, ihl: 4 }, segment));
  assert.deepEqual(counted(bpf, badIhl), ['malformed'], 'IHL below 5');
  const longer = ethernet(ETH_P_IP, ipv4({ src: '10.0.0.1', dst: '10.0.0.2', proto: TCP, totalLength: 1500 }, segment));
  assert.deepEqual(counted(bpf, longer), ['malformed'], 'total length past the packet');
  const shortTotal = ethernet(ETH_P_IP, ipv4({ src: '10.0.0.1', dst: '10.0.0.2', proto: TCP, totalLength: 30 }, segment));
  assert.deepEqual(counted(bpf, shortTotal), ['malformed'], 'total length inside the TCP header');
  const badDoff = Buffer.from(good);
  badDoff[14 + 20 + 12] = 4 << 4;
  assert.deepEqual(counted(bpf, badDoff), ['malformed'], 'data offset below 5');
  const doffPastEnd = Buffer.from(good);
  doffPastEnd[14 + 20 + 12] = 15 << 4;
  assert.deepEqual(counted(bpf, doffPastEnd), ['malformed'], 'data offset past the packet');
  const v6short = ethernet(ETH_P_IPV6, ipv6('fd00::1', 'fd00::2', TCP, segment)).subarray(0, 14 + 40 + 8);
  assert.deepEqual(counted(bpf, v6short), ['malformed'], 'IPv6 cut inside TCP');
  const udpShort = ethernet(ETH_P_IPV6, ipv6('fd00::1', 'fd00::2', UDP, udp(1, 2, bytesOf(0)), [], 4));
  assert.deepEqual(counted(bpf, udpShort), ['malformed'], 'IPv6 payload length shorter than the UDP header');
  const vlanCut = ethernet(ETH_P_IP, new Uint8Array(0), [[ETH_P_8021Q, 1]]).subarray(0, 16);
  assert.deepEqual(counted(bpf, vlanCut, 'xdp_ingress'), ['malformed'], 'cut inside a VLAN tag');

  assert.deepEqual(counted(bpf, ethernet(ETH_P_ARP, bytesOf(28))), ['not_ip']);
  assert.deepEqual(counted(bpf, ethernet(0x8100, Uint8Array.from([0, 1, 0x88, 0xcc, ...bytesOf(30)]))), ['not_ip'], 'LLDP in a VLAN');
  assert.deepEqual(counted(bpf, ethernet(ETH_P_IP, ipv4({ src: '10.0.0.1', dst: '10.0.0.2', proto: ICMP }, bytesOf(64)))), ['other_l4']);
  assert.deepEqual(counted(bpf, ethernet(ETH_P_IPV6, ipv6('fd00::1', 'fd00::2', 58, bytesOf(64), [ipv6Ext.hopByHop()]))), ['other_l4'], 'ICMPv6');
  assert.deepEqual(counted(bpf, ethernet(ETH_P_IPV6, ipv6('fd00::1', 'fd00::2', 50, bytesOf(64)))), ['other_l4'], 'ESP');
  assert.equal(counters(bpf, 'tc_ingress').lost, 0);
}));

test('in-kernel filter: addresses (LPM), ports, protocols; AND across kinds, OR within', withObject(0, (bpf) => {
  const make = (src: string, dst: string, sport: number, dport: number, proto = TCP) => {
    const l4 = proto === TCP ? tcp({ sport, dport, seq: 1, flags: F.ACK, win: 1 }) : udp(sport, dport, bytesOf(4));
    return src.includes(':') ? ethernet(ETH_P_IPV6, ipv6(src, dst, proto, l4)) : ethernet(ETH_P_IP, ipv4({ src, dst, proto }, l4));
  };
  const kept = (packet: Buffer) => run(bpf, packet).length === 1;

  let current = CAPTURE_EVERYTHING;
  const apply = (specs: string[]) => {
    const next = parseFilter(specs);
    writeFilter(bpf, next, current);
    current = next;
  };
  apply(['net=10.1.0.0/16,fd00:1::/32', 'port=80,443']);
  assert.equal(kept(make('10.1.200.3', '8.8.8.8', 5555, 80)), true, 'source in the /16, port 80');
  assert.equal(kept(make('8.8.8.8', '10.1.0.1', 443, 5555)), true, 'destination in the /16, source port 443');
  assert.equal(kept(make('10.2.0.1', '8.8.8.8', 5555, 80)), false, 'address outside');
  assert.equal(kept(make('10.1.0.1', '8.8.8.8', 5555, 8080)), false, 'port outside');
  assert.equal(kept(make('fd00:1:ffff::1', '2001:db8::1', 80, 1, UDP)), true, 'IPv6 in the /32, UDP');
  assert.equal(kept(make('fd00:2::1', '2001:db8::1', 80, 1)), false, 'IPv6 outside');
  const before = counters(bpf, 'tc_ingress').filtered;
  kept(make('10.2.0.1', '8.8.8.8', 5555, 80));
  assert.equal(counters(bpf, 'tc_ingress').filtered, before + 1, 'counted as filtered');

  apply(['proto=udp']);
  assert.equal(kept(make('10.2.0.1', '8.8.8.8', 5555, 8080, UDP)), true, 'old address and port entries are gone');
  assert.equal(kept(make('10.1.0.1', '8.8.8.8', 5555, 80, TCP)), false, 'TCP filtered');

  apply([]);
  assert.equal(kept(make('10.2.0.1', '8.8.8.8', 1, 2)), true, 'everything again');
  assert.deepEqual(bpf.mapEntries('filter_v4').length + bpf.mapEntries('filter_v6').length, 0, 'LPM tries emptied');
}));

test('packet_id: equal across NAT rewriting, different for different packets', withObject(0, (bpf) => {
  const options = [...tcpOption.nop(), ...tcpOption.nop(), ...tcpOption.timestamps(777, 888)];
  const seg = (sport: number, dport: number, mss?: number) =>
    tcp({ sport, dport, seq: 100, ack: 200, flags: F.SYN, win: 1000, options: mss ? [...tcpOption.mss(mss), ...options] : options });
  const before = one(bpf, ethernet(ETH_P_IP, ipv4({ src: '10.0.0.1', dst: '10.0.0.9', proto: TCP, id: 5, ttl: 64 }, seg(40000, 8080))));
  const after = one(bpf, ethernet(ETH_P_IP, ipv4({ src: '172.16.0.1', dst: '172.16.0.2', proto: TCP, id: 5, ttl: 63 }, seg(61000, 80))));
  assert.equal(before.packetId, after.packetId, 'SNAT+DNAT, TTL decremented');
  const clamped = one(bpf, ethernet(ETH_P_IP, ipv4({ src: '10.0.0.1', dst: '10.0.0.9', proto: TCP, id: 5 }, seg(40000, 8080, 1400))));
  const clampedLater = one(bpf, ethernet(ETH_P_IP, ipv4({ src: '10.0.0.1', dst: '10.0.0.9', proto: TCP, id: 5 }, seg(40000, 8080, 1360))));
  assert.equal(clamped.packetId, clampedLater.packetId, 'MSS clamping leaves the id alone');
  const otherId = one(bpf, ethernet(ETH_P_IP, ipv4({ src: '10.0.0.1', dst: '10.0.0.9', proto: TCP, id: 6 }, seg(40000, 8080))));
  assert.notEqual(otherId.packetId, before.packetId, 'another IP id');

  // IPv6 UDP has no IP id: the payload tells datagrams of one length apart.
  const dgram = (src: string, sport: number, seed: number) => ethernet(ETH_P_IPV6, ipv6(src, 'fd00::53', UDP, udp(sport, 53, bytesOf(48, seed))));
  const a = one(bpf, dgram('fd00::1', 40000, 1));
  const aNatted = one(bpf, dgram('fd00:ffff::7', 61000, 1));
  const b = one(bpf, dgram('fd00::1', 40000, 2));
  assert.equal(a.packetId, aNatted.packetId);
  assert.notEqual(a.packetId, b.packetId);
}));
