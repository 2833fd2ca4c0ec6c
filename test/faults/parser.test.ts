// Hostile packets through the kernel parser: valid frames of every kind the
// parser knows, mutated at random (seeded: NETTRAIL_FUZZ_SEED repeats a run)
// and run through each program with BPF_PROG_TEST_RUN. Every run must let the
// packet through unchanged, and land in exactly one per-point counter: an event
// (exactly one ring record, decoded in user space without error, whose bytes are
// a prefix of the frame) or one counted reason (filtered, not_ip, other_l4,
// malformed). The three programs must agree on every frame, and the flow-log
// writer must take every event (an invalid record would be refused, and a
// refusal inside capture's batch callback would end `nettrail serve`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { decodeRecords } from '../support/packet-decode.js';
import { DIRECTION, HOOK, POINT_COUNTERS, pointKeyLayout, pointStatsLayout, type PointCounter } from '../../capture/packets/layout.js';
import { BpfObject, CaptureError, bpfObjectPath, PacketRecordDecoder } from '../../native/addon.js';
import { PacketChunkBuilder } from '../../flowlog/packets/chunk-writer.js';
import { RowBinaryWriter } from '../../flowlog/rowbinary.js';
import { prng } from '../../bench/support/prng.js';
import { ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, bytesOf, ethernet, ipv4, ipv6, ipv6Ext, tcp, tcpOption, udp } from '../support/packets.js';

const SEED = Number(process.env.NETTRAIL_FUZZ_SEED ?? 0xf00dfa11);
const MUTANTS = Number(process.env.NETTRAIL_FUZZ_PACKETS ?? 4000);
const PROGRAMS = ['tc_ingress', 'tc_egress', 'xdp_ingress'] as const;
type Program = (typeof PROGRAMS)[number];
const TCP = 6;
const UDP = 17;
const F = { SYN: 0x02, ACK: 0x10, PSH: 0x08 };
const NETNS_INO = statSync('/proc/self/ns/net').ino;
const LOOPBACK_IFINDEX = 1;

/** Valid frames of every shape the parser handles: the starting points of the mutations. */
function seeds(): Buffer[] {
  const syn = [...tcpOption.mss(1460), ...tcpOption.sackPerm(), ...tcpOption.timestamps(1, 0), ...tcpOption.nop(), ...tcpOption.wscale(7)];
  const sack = [...tcpOption.nop(), ...tcpOption.nop(), ...tcpOption.sack([[1, 2], [3, 4]])];
  const seg = (options: number[] = [], payload = bytesOf(0)) => tcp({ sport: 40000, dport: 80, seq: 1, ack: 2, flags: F.ACK | F.PSH, win: 512, options, payload });
  const v4 = (proto: number, l4: Uint8Array, extra: Partial<Parameters<typeof ipv4>[0]> = {}) => ipv4({ src: '10.0.0.1', dst: '10.0.0.2', proto, id: 7, ...extra }, l4);
  const v6 = (proto: number, l4: Uint8Array, exts: Parameters<typeof ipv6>[4] = []) => ipv6('fd00::1', 'fd00::2', proto, l4, exts);
  return [
    ethernet(ETH_P_IP, v4(TCP, tcp({ sport: 40000, dport: 80, seq: 1, flags: F.SYN, win: 64240, options: syn }))),
    ethernet(ETH_P_IP, v4(TCP, seg(sack, bytesOf(100)))),
    ethernet(ETH_P_IP, v4(TCP, seg([], bytesOf(40)), { options: [0x94, 4, 0, 0] })),
    ethernet(ETH_P_IP, v4(UDP, udp(5353, 53, bytesOf(60)))),
    ethernet(ETH_P_IP, v4(UDP, udp(4000, 4001, bytesOf(600)).subarray(0, 200), { moreFragments: true })),
    ethernet(ETH_P_IP, v4(UDP, bytesOf(80), { fragOffset: 25 })),
    ethernet(ETH_P_IP, v4(1, bytesOf(64))),
    ethernet(ETH_P_IPV6, v6(TCP, seg(syn))),
    ethernet(ETH_P_IPV6, v6(UDP, udp(1, 2, bytesOf(32)), [ipv6Ext.hopByHop(), ipv6Ext.routing(), ipv6Ext.destination()])),
    ethernet(ETH_P_IPV6, v6(TCP, seg([], bytesOf(20)), [ipv6Ext.auth(), ipv6Ext.fragment(0, true, 0x1234)])),
    ethernet(ETH_P_IPV6, v6(TCP, bytesOf(40), [ipv6Ext.fragment(9, false, 0x1234)])),
    ethernet(ETH_P_IPV6, v6(58, bytesOf(48))),
    ethernet(ETH_P_IP, v4(TCP, seg()), [[0x8100, 100]]),
    ethernet(ETH_P_IPV6, v6(UDP, udp(1, 2, bytesOf(8))), [[0x88a8, 10], [0x8100, 20]]),
    ethernet(ETH_P_ARP, bytesOf(28)),
  ];
}

const BOUNDARY = [0x00, 0x01, 0x05, 0x0f, 0x10, 0x2c, 0x3b, 0x3c, 0x40, 0x45, 0x4f, 0x60, 0x7f, 0x80, 0x81, 0x86, 0x88, 0xdd, 0xf0, 0xfe, 0xff];

/** One to four random mutations: bit flips, boundary bytes and 16-bit fields, cuts, insertions, deletions, growth. */
function mutate(random: () => number, frame: Buffer): Buffer {
  let bytes = [...frame];
  const at = (limit = bytes.length) => Math.floor((random() < 0.8 ? Math.min(limit, 96) : limit) * random());
  const count = 1 + Math.floor(random() * 4);
  for (let m = 0; m < count; m++) {
    const i = at();
    switch (Math.floor(random() * 8)) {
      case 0:
        bytes[i] ^= 1 << Math.floor(random() * 8);
        break;
      case 1:
        bytes[i] = BOUNDARY[Math.floor(random() * BOUNDARY.length)];
        break;
      case 2: {
        const value = [0, 1, 0xffff, 0x7fff, 0x8000, bytes.length, bytes.length - 14, bytes.length + 1, 20, 40][Math.floor(random() * 10)] & 0xffff;
        bytes[i] = value >> 8;
        if (i + 1 < bytes.length) bytes[i + 1] = value & 0xff;
        break;
      }
      case 3:
        bytes = bytes.slice(0, Math.max(14, at()));
        break;
      case 4:
        bytes.splice(i, 0, ...Array.from({ length: 1 + Math.floor(random() * 16) }, () => Math.floor(random() * 256)));
        break;
      case 5:
        bytes.splice(i, 1 + Math.floor(random() * 16));
        break;
      case 6:
        bytes.push(...Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256)));
        break;
      default:
        bytes[i] = Math.floor(random() * 256);
    }
  }
  // BPF_PROG_TEST_RUN takes at least an Ethernet header.
  while (bytes.length < 14) bytes.push(0);
  return Buffer.from(bytes.slice(0, 1500));
}

function load(snaplen: number): BpfObject {
  const rodata = Buffer.alloc(4);
  rodata.writeUInt32LE(snaplen);
  return BpfObject.load(bpfObjectPath('capture'), { packet_events: 1 << 16 }, { snaplen: rodata });
}

/** This process's counters of one program at the loopback point, summed over CPUs. */
function counters(bpf: BpfObject, program: Program): Record<PointCounter, number> {
  const hook = program === 'xdp_ingress' ? HOOK.xdp : HOOK.tc;
  const direction = program === 'tc_egress' ? DIRECTION.egress : DIRECTION.ingress;
  const sum = Object.fromEntries(POINT_COUNTERS.map((c) => [c, 0])) as Record<PointCounter, number>;
  const K = pointKeyLayout.fields;
  const slot = (pointStatsLayout.size + 7) & ~7;
  for (const { key, value } of bpf.mapEntries('point_stats')) {
    if (key.readUInt32LE(K.netns_ino.offset) !== NETNS_INO || key.readUInt32LE(K.ifindex.offset) !== LOOPBACK_IFINDEX) continue;
    if (key.readUInt8(K.hook.offset) !== hook || key.readUInt8(K.direction.offset) !== direction) continue;
    for (let cpu = 0; cpu + pointStatsLayout.size <= value.length; cpu += slot) {
      for (const c of POINT_COUNTERS) sum[c] += Number(value.readBigUInt64LE(cpu + pointStatsLayout.fields[c].offset));
    }
  }
  return sum;
}

interface Outcome {
  /** The counter the run landed in. */
  verdict: PointCounter;
  /** The recorded bytes, for an event. */
  bytes?: Buffer;
}

/** Runs one frame through one program; checks what every run must satisfy; null when the kernel's test harness refused the frame. */
function runOnce(bpf: BpfObject, program: Program, frame: Buffer, decoder: PacketRecordDecoder, where: string): Outcome | null {
  const before = counters(bpf, program);
  let result;
  try {
    result = bpf.testRun(program, frame, 'packet_events');
  } catch (err) {
    // The harness itself (not the program) refuses skbs it cannot build, with EINVAL.
    if (err instanceof CaptureError && err.code === 'TEST_RUN_FAILED' && err.errno === 22) return null;
    throw err;
  }
  const after = counters(bpf, program);
  assert.equal(result.retval, program === 'xdp_ingress' ? 2 /* XDP_PASS */ : -1 /* TC_ACT_UNSPEC */, `${where}: the packet is let through`);
  const moved = POINT_COUNTERS.filter((c) => after[c] !== before[c]);
  assert.equal(moved.length, 1, `${where}: exactly one counter moved (${moved.join(', ') || 'none'})`);
  const verdict = moved[0];
  assert.equal(after[verdict] - before[verdict], 1, `${where}: by one`);
  assert.notEqual(verdict, 'lost', `${where}: the ring was drained before the run`);
  assert.equal(result.records, verdict === 'events' ? 1 : 0, `${where}: a ring record exactly for an event`);
  const { packets, columns, malformed } = decodeRecords(decoder, result.batch, { node: 'fuzz', netns: 'test', iface: 'lo' });
  assert.equal(malformed, 0, `${where}: user space decodes what the kernel wrote`);
  assert.equal(packets.length, result.records);
  if (verdict !== 'events') return { verdict };
  const [packet] = packets;
  const bytes = Buffer.from(packet.headers);
  assert.ok(bytes.length > 0 && bytes.length <= frame.length, `${where}: ${bytes.length} bytes recorded of ${frame.length}`);
  assert.deepEqual(bytes, frame.subarray(0, bytes.length), `${where}: the recorded bytes are the frame's first bytes`);
  assert.equal(packet.wireLen, frame.length, `${where}: wire length`);
  assert.ok(packet.sport >= 0 && packet.sport <= 65535 && packet.dport >= 0 && packet.dport <= 65535);
  assert.ok(packet.proto === 'tcp' || packet.proto === 'udp');
  const chunk = new PacketChunkBuilder();
  chunk.add(columns, 1);
  chunk.encode(new RowBinaryWriter(4096));
  return { verdict, bytes };
}

for (const snaplen of [0, 4096]) {
  test(`${MUTANTS} mutated frames × ${PROGRAMS.length} programs (snaplen ${snaplen}): let through, one counter each, programs agree`, async (t) => {
    const seed = SEED + snaplen;
    t.diagnostic(`seed ${seed} (repeat with NETTRAIL_FUZZ_SEED=${SEED})`);
    const random = prng(seed);
    const bpf = load(snaplen);
    t.after(() => bpf.close());
    const decoder = new PacketRecordDecoder();
    const frames = seeds();
    const verdicts = new Map<string, number>();
    let refused = 0;
    let runs = 0;
    for (let i = 0; i < MUTANTS; i++) {
      const frame = i < frames.length ? frames[i] : mutate(random, frames[Math.floor(random() * frames.length)]);
      const where = `mutant ${i} (seed ${seed}) ${frame.toString('hex').slice(0, 240)}`;
      const outcomes = PROGRAMS.map((program) => runOnce(bpf, program, frame, decoder, `${where} at ${program}`));
      runs += outcomes.filter((o) => o !== null).length;
      const ran = outcomes.filter((o): o is Outcome => o !== null);
      refused += outcomes.length - ran.length;
      // XDP runs every frame; the skb harness refuses some short ones.
      assert.notEqual(outcomes[2], null, `${where}: XDP ran it`);
      for (const o of ran) {
        assert.equal(o.verdict, ran[0].verdict, `${where}: the programs agree (${outcomes.map((x) => x?.verdict ?? 'refused').join(', ')})`);
        if (o.bytes) assert.deepEqual(o.bytes, ran[0].bytes, `${where}: the same bytes at every program`);
      }
      verdicts.set(ran[0].verdict, (verdicts.get(ran[0].verdict) ?? 0) + 1);
      if (i < frames.length) assert.equal(ran[0].verdict, i === frames.length - 1 ? 'not_ip' : i === 6 || i === 11 ? 'other_l4' : 'events', `valid frame ${i}`);
    }
    t.diagnostic(`${runs} runs, ${refused} refused by the skb harness; frames by verdict: ${[...verdicts].map(([v, n]) => `${v} ${n}`).join(', ')}`);
    // The mutations reached both sides of the parser.
    assert.ok((verdicts.get('events') ?? 0) > MUTANTS / 10, 'events');
    assert.ok((verdicts.get('malformed') ?? 0) > MUTANTS / 20, 'malformed');
    assert.equal(verdicts.get('lost') ?? 0, 0);
  });
}
