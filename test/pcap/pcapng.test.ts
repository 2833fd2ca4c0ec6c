// The capture file writer, checked by reading its files back with the real
// tshark and capinfos, plus a streaming test with bounded memory.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import { packetRows } from '../../connection/capture-file.js';
import { PacketRows } from '../../flowlog/packets/rows.js';
import {
  CAPTURE_FILE_TYPES,
  CaptureFileError,
  PcapngPacketCounter,
  writeCaptureFile,
  type CaptureFileFormat,
  type CaptureItem,
} from '../../pcap/pcapng.js';
import { LINKTYPE_ETHERNET, LINKTYPE_RAW } from '../../model/protocol.js';
import type { Direction, Hook, PacketRecord } from '../../model/records.js';

// ---- packet bytes ----

function internetChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i]! << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ipv4Bytes(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

/** Parses an IPv6 address with at most one `::`. */
function ipv6Bytes(text: string): Buffer {
  const [head, tail] = text.split('::') as [string, string | undefined];
  const groups = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const front = groups(head);
  const back = groups(tail);
  const all = [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, 2 * i));
  return out;
}

function ethernet(etherType: number): Buffer {
  const header = Buffer.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 0]); // dst, src, type
  header.writeUInt16BE(etherType, 12);
  return header;
}

/** IPv4 + TCP headers (no options); the TCP checksum is that of a zero payload of `payloadLen` bytes. */
function ipv4Tcp(p: PacketRecord): Buffer {
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(40 + p.len, 2);
  ip.writeUInt16BE(p.ipId, 4);
  ip.writeUInt16BE(0x4000, 6); // DF
  ip[8] = 64;
  ip[9] = 6;
  ipv4Bytes(p.src).copy(ip, 12);
  ipv4Bytes(p.dst).copy(ip, 16);
  ip.writeUInt16BE(internetChecksum(ip), 10);

  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(p.sport, 0);
  tcp.writeUInt16BE(p.dport, 2);
  tcp.writeUInt32BE(p.seq, 4);
  tcp.writeUInt32BE(p.ack, 8);
  tcp[12] = 5 << 4;
  tcp[13] = p.flags;
  tcp.writeUInt16BE(p.win, 14);
  const pseudo = Buffer.alloc(12);
  ip.copy(pseudo, 0, 12, 20);
  pseudo[9] = 6;
  pseudo.writeUInt16BE(20 + p.len, 10);
  tcp.writeUInt16BE(internetChecksum(Buffer.concat([pseudo, tcp])), 16);
  return Buffer.concat([ip, tcp]);
}

function ipv6Udp(p: PacketRecord): Buffer {
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(8 + p.len, 4);
  ip[6] = 17;
  ip[7] = 64;
  ipv6Bytes(p.src).copy(ip, 8);
  ipv6Bytes(p.dst).copy(ip, 24);

  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(p.sport, 0);
  udp.writeUInt16BE(p.dport, 2);
  udp.writeUInt16BE(8 + p.len, 4);
  const pseudo = Buffer.alloc(40);
  ip.copy(pseudo, 0, 8, 40);
  pseudo.writeUInt32BE(8 + p.len, 32);
  pseudo[39] = 17;
  udp.writeUInt16BE(internetChecksum(Buffer.concat([pseudo, udp])) || 0xffff, 6);
  return Buffer.concat([ip, udp]);
}

// ---- synthetic traffic ----

interface Point {
  node: string;
  netns: string;
  iface: string;
  hook: Hook;
  linkType: number;
  /** The connection's tuple as seen there (NAT rewrites it between points). */
  src: string;
  dst: string;
  sport: number;
  dport: number;
  proto: 'tcp' | 'udp';
}

const POINTS: Point[] = [
  { node: 'node-a', netns: 'root', iface: 'eth0', hook: 'tc', linkType: LINKTYPE_ETHERNET, proto: 'tcp', src: '10.0.0.1', sport: 43210, dst: '10.0.0.2', dport: 80 },
  { node: 'node-a', netns: 'lb', iface: 'veth-lb0', hook: 'tc', linkType: LINKTYPE_ETHERNET, proto: 'tcp', src: '192.0.2.1', sport: 61000, dst: '10.0.0.2', dport: 80 },
  { node: 'node-b', netns: 'pid:4242', iface: 'wg0', hook: 'tc', linkType: LINKTYPE_RAW, proto: 'tcp', src: '100.64.0.1', sport: 61000, dst: '10.0.0.2', dport: 8080 },
  { node: 'node-b', netns: 'root', iface: 'eth0', hook: 'xdp', linkType: LINKTYPE_ETHERNET, proto: 'udp', src: 'fd00:1::10', sport: 5353, dst: 'fd00:2::20', dport: 53 },
];

// SYN, SYN-ACK, ACK, PSH-ACK, FIN-ACK, SYN with ECE+CWR, RST-ACK
const FLAG_CYCLE = [0x02, 0x12, 0x10, 0x18, 0x11, 0xc2, 0x14];
const TCP_ACK = 0x10;
const BASE_TS = 1_763_752_983_123_456_789n;
const PAYLOAD = 1448;

/** A packet to write and its comment, if any. */
interface TestPacket {
  packet: PacketRecord;
  comment?: string;
}

/** Packet number `i` of a deterministic mix over `points`, headers only (wireLen counts the payload). */
function makeItem(i: number, points: Point[] = POINTS): TestPacket {
  const pt = points[i % points.length]!;
  const flags = pt.proto === 'tcp' ? FLAG_CYCLE[i % FLAG_CYCLE.length]! : 0;
  const direction: Direction = pt.hook === 'xdp' || i % 2 === 0 ? 'ingress' : 'egress';
  const packet: PacketRecord = {
    node: pt.node,
    netns: pt.netns,
    iface: pt.iface,
    src: pt.src,
    sport: pt.sport,
    dst: pt.dst,
    dport: pt.dport,
    ts: BASE_TS + BigInt(i) * 1_000_003n + BigInt(i % 997),
    netnsIno: 4026531840 + (i % points.length),
    ifindex: 2 + (i % points.length),
    hook: pt.hook,
    direction,
    proto: pt.proto,
    ipId: pt.proto === 'tcp' ? (i * 31) & 0xffff : 0,
    seq: pt.proto === 'tcp' ? (0x9abcdef0 + i * PAYLOAD) >>> 0 : 0,
    ack: flags & TCP_ACK ? (0x10000000 + i * 7) >>> 0 : 0,
    flags,
    win: pt.proto === 'tcp' ? (i * 13) & 0xffff : 0,
    len: i % 3 === 0 ? 0 : PAYLOAD,
    wireLen: 0,
    options: {},
    // above 2^63 so that unsigned 64-bit handling shows
    packetId: BigInt.asUintN(64, 0xf000000000000000n | (BigInt(i) * 0x9e3779b97f4an)),
    linkType: pt.linkType,
    headers: new Uint8Array(0),
  };
  const l3l4 = pt.proto === 'tcp' ? ipv4Tcp(packet) : ipv6Udp(packet);
  packet.headers = pt.linkType === LINKTYPE_RAW ? l3l4 : Buffer.concat([ethernet(pt.proto === 'tcp' ? 0x0800 : 0x86dd), l3l4]);
  packet.wireLen = packet.headers.length + packet.len;
  const item: TestPacket = { packet };
  if (i % 7 === 0) item.comment = `SNAT ${pt.src}:${pt.sport} → 198.51.100.7:${pt.sport} (#${i})`;
  else if (i % 11 === 0) item.comment = `drop: NETFILTER_DROP at nf_hook_slow+0x9f — “Grüße” #${i}`;
  // Two opt_comment options on one packet (one per line here).
  else if (i % 13 === 0) item.comment = `nettrail: hop +1.500us from #${i} at a/b/c\nnettrail: retransmission of #${i} at d/e/f`;
  return item;
}

function* makeItems(count: number, points?: Point[]): Generator<TestPacket> {
  for (let i = 0; i < count; i++) yield makeItem(i, points);
}

function epochText(ts: bigint): string {
  return `${ts / 1_000_000_000n}.${(ts % 1_000_000_000n).toString().padStart(9, '0')}`;
}

// ---- helpers ----

const workDir = mkdtempSync(path.join(tmpdir(), 'nettrail-pcapng-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

/** Packets as capture-file items in batches of `size`, as reads deliver them (any size works). */
function* inBatches(packets: Iterable<TestPacket>, size = 97): Generator<CaptureItem[]> {
  const all = [...packets];
  for (let i = 0; i < all.length; i += size) {
    const slice = all.slice(i, i + size);
    const comments = new Map<number, string[]>();
    slice.forEach(({ comment }, row) => comment !== undefined && comments.set(row, comment.split('\n')));
    yield [packetRows(PacketRows.fromRecords(slice.map(({ packet }) => packet)), comments)];
  }
}

async function writeFile(name: string, items: Iterable<TestPacket>, format: CaptureFileFormat): Promise<string> {
  const file = path.join(workDir, name);
  await pipeline(Readable.from(writeCaptureFile(inBatches(items), { format, sectionComment: 'tcp 10.0.0.1:43210 -> 10.0.0.2:80' })), createWriteStream(file));
  return file;
}

/** Runs a Wireshark tool; fails on a non-zero exit or anything on stderr but tshark's warning about running as root. */
function wireshark(tool: string, args: string[]): string {
  const run = spawnSync(tool, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const stderr = run.stderr
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('Running as user "root"'))
    .join('\n');
  assert.equal(run.status, 0, `${tool} ${args.join(' ')} exited ${run.status}: ${stderr}`);
  assert.equal(stderr, '', `${tool} ${args.join(' ')} wrote to stderr`);
  return run.stdout;
}

function tsharkFields(file: string, fields: string[], extra: string[] = []): string[][] {
  const out = wireshark('tshark', ['-r', file, ...extra, '-T', 'fields', '-E', 'separator=/t', ...fields.flatMap((f) => ['-e', f])]);
  return out
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split('\t'));
}

/** Walks the pcapng blocks: both length fields agree and are 32-bit aligned, and every EPB follows its IDB. */
function pcapngBlocks(bytes: Buffer): { types: number[]; idbAfterEpb: boolean } {
  const types: number[] = [];
  let interfaces = 0;
  let sawEpb = false;
  let idbAfterEpb = false;
  for (let at = 0; at < bytes.length; ) {
    const type = bytes.readUInt32LE(at);
    const length = bytes.readUInt32LE(at + 4);
    assert.equal(length % 4, 0, `block at ${at} length ${length}`);
    assert.equal(bytes.readUInt32LE(at + length - 4), length, `trailing length of block at ${at}`);
    if (type === 1) {
      interfaces++;
      idbAfterEpb ||= sawEpb;
    } else if (type === 6) {
      sawEpb = true;
      assert.ok(bytes.readUInt32LE(at + 8) < interfaces, `EPB at ${at} precedes its IDB`);
    }
    types.push(type);
    at += length;
  }
  return { types, idbAfterEpb };
}

// ---- tests ----

const PACKETS = 1200;

test('pcapng: every field round-trips through tshark, capinfos agrees', async () => {
  const file = await writeFile('mixed.pcapng', makeItems(PACKETS), 'pcapng');

  const blocks = pcapngBlocks(readFileSync(file));
  assert.equal(blocks.types[0], 0x0a0d0d0a);
  assert.equal(blocks.types.filter((t) => t === 1).length, POINTS.length);
  assert.equal(blocks.types.filter((t) => t === 6).length, PACKETS);
  assert.ok(blocks.idbAfterEpb, 'IDBs are written lazily, after packets of other interfaces');

  wireshark('tshark', ['-r', file]);
  const fields = [
    'frame.interface_name', 'frame.interface_description', 'frame.packet_flags_direction', 'frame.p2p_dir',
    'frame.packet_id', 'frame.comment', 'frame.time_epoch', 'frame.len', 'frame.cap_len',
    'ip.src', 'ip.dst', 'ip.id', 'ipv6.src', 'ipv6.dst', 'tcp.srcport', 'tcp.dstport', 'tcp.seq_raw', 'tcp.ack_raw',
    'tcp.flags', 'tcp.window_size_value', 'udp.srcport', 'udp.dstport',
  ];
  const rows = tsharkFields(file, fields);
  assert.equal(rows.length, PACKETS);
  rows.forEach((row, i) => {
    const { packet: p, comment } = makeItem(i);
    const got = Object.fromEntries(fields.map((f, k) => [f, row[k] ?? '']));
    const tcp = p.proto === 'tcp';
    const want = {
      'frame.interface_name': `${p.node}/${p.netns}/${p.iface}`,
      'frame.interface_description': `${p.hook} hook, netns ${p.netns} on node ${p.node}`,
      'frame.packet_flags_direction': p.direction === 'ingress' ? '0x00000001' : '0x00000002',
      'frame.p2p_dir': p.direction === 'ingress' ? '1' : '0',
      'frame.packet_id': p.packetId.toString(),
      'frame.comment': comment?.replace('\n', ',') ?? '',
      'frame.time_epoch': epochText(p.ts),
      'frame.len': String(p.wireLen),
      'frame.cap_len': String(p.headers.length),
      'ip.src': tcp ? p.src : '',
      'ip.dst': tcp ? p.dst : '',
      'ip.id': tcp ? `0x${p.ipId.toString(16).padStart(4, '0')}` : '',
      'ipv6.src': tcp ? '' : p.src,
      'ipv6.dst': tcp ? '' : p.dst,
      'tcp.srcport': tcp ? String(p.sport) : '',
      'tcp.dstport': tcp ? String(p.dport) : '',
      'tcp.seq_raw': tcp ? String(p.seq) : '',
      'tcp.ack_raw': tcp ? String(p.ack) : '',
      'tcp.flags': tcp ? `0x${p.flags.toString(16).padStart(4, '0')}` : '',
      'tcp.window_size_value': tcp ? String(p.win) : '',
      'udp.srcport': tcp ? '' : String(p.sport),
      'udp.dstport': tcp ? '' : String(p.dport),
    };
    assert.deepEqual(got, want, `packet ${i + 1}`);
  });

  // Nothing malformed, and no warnings or errors besides those that judge the
  // traffic rather than the file: TCP sequence analysis (each packet is seen at
  // several points) and "Connection reset" on RST frames.
  assert.equal(tsharkFields(file, ['frame.number'], ['-Y', '_ws.malformed']).length, 0);
  const problems = tsharkFields(file, ['frame.number', '_ws.expert.message'], [
    '-o', 'tcp.analyze_sequence_numbers:FALSE', '-Y', '_ws.expert.severity >= 0x00600000 && !(tcp.flags.reset == 1)',
  ]);
  assert.deepEqual(problems, []);

  const info = wireshark('capinfos', ['-M', file]);
  assert.match(info, /^File type:\s+pcapng$/m);
  assert.match(info, new RegExp(`^Number of packets:\\s+${PACKETS}$`, 'm'));
  assert.match(info, new RegExp(`^Number of interfaces in file: ${POINTS.length}$`, 'm'));
  assert.match(info, /^File timestamp precision:\s+nanoseconds \(9\)$/m);
  assert.match(info, /^Capture application:\s+nettrail$/m);
  assert.match(info, /^Capture comment:\s+tcp 10\.0\.0\.1:43210 -> 10\.0\.0\.2:80$/m);
  const names = [...info.matchAll(/^\s+Name = (.*)$/gm)].map((m) => m[1]);
  assert.deepEqual(names, POINTS.map((pt) => `${pt.node}/${pt.netns}/${pt.iface}`));
  const encapsulations = [...info.matchAll(/^\s+Encapsulation = .*\((\d+) - /gm)].map((m) => Number(m[1]));
  // Wireshark's own encapsulation numbers: 1 Ethernet, 7 raw IP
  assert.deepEqual(encapsulations, POINTS.map((pt) => (pt.linkType === LINKTYPE_RAW ? 7 : 1)));
  const perInterface = [...info.matchAll(/^\s+Number of packets = (\d+)$/gm)].map((m) => Number(m[1]));
  assert.deepEqual(perInterface, POINTS.map(() => PACKETS / POINTS.length));
});

test('pcapng: a comment longer than an option holds is cut at a UTF-8 character boundary', async () => {
  const item = makeItem(1);
  item.comment = 'x' + '€'.repeat(30000); // 90001 bytes
  const file = await writeFile('long-comment.pcapng', [item], 'pcapng');
  pcapngBlocks(readFileSync(file));
  const [[comment]] = tsharkFields(file, ['frame.comment']) as [[string]];
  assert.equal(comment, 'x' + '€'.repeat(21844)); // 1 + 3 * 21844 = 65533 ≤ 65535 bytes
});

test('pcapng: an export without packets is a valid empty file', async () => {
  const file = await writeFile('empty.pcapng', [], 'pcapng');
  wireshark('tshark', ['-r', file]);
  assert.match(wireshark('capinfos', ['-M', file]), /^Number of packets:\s+0$/m);
});

test('pcap: nanosecond timestamps exact, one link type', async () => {
  const ethernetPoints = POINTS.filter((pt) => pt.linkType === LINKTYPE_ETHERNET);
  const file = await writeFile('ether.pcap', makeItems(PACKETS, ethernetPoints), 'pcap');
  const bytes = readFileSync(file);
  assert.equal(bytes.readUInt32LE(0), 0xa1b23c4d);

  const rows = tsharkFields(file, ['frame.time_epoch', 'frame.len', 'frame.cap_len', 'tcp.seq_raw', 'udp.srcport']);
  assert.equal(rows.length, PACKETS);
  rows.forEach((row, i) => {
    const { packet: p } = makeItem(i, ethernetPoints);
    const want = [epochText(p.ts), String(p.wireLen), String(p.headers.length), p.proto === 'tcp' ? String(p.seq) : '', p.proto === 'udp' ? String(p.sport) : ''];
    assert.deepEqual(row, want, `packet ${i + 1}`);
  });
  assert.equal(tsharkFields(file, ['frame.number'], ['-Y', '_ws.malformed']).length, 0);

  const info = wireshark('capinfos', ['-M', file]);
  assert.match(info, /^File type:\s+nsecpcap$/m);
  assert.match(info, /^File encapsulation:\s+ether$/m);
  assert.match(info, new RegExp(`^Number of packets:\\s+${PACKETS}$`, 'm'));
});

test('pcap: mixed link types fail with PCAP_MIXED_LINKTYPES', async () => {
  const consume = async () => {
    for await (const chunk of writeCaptureFile(inBatches(makeItems(10)), { format: 'pcap' })) assert.ok(chunk.length > 0);
  };
  await assert.rejects(consume, (err: unknown) => {
    assert.ok(err instanceof CaptureFileError);
    assert.equal(err.code, 'PCAP_MIXED_LINKTYPES');
    assert.match(err.message, /node-b\/pid:4242\/wg0 has link type 101/);
    return true;
  });
});

test('timestamps before 1970 fail with PCAP_TIMESTAMP_RANGE', async () => {
  for (const format of ['pcapng', 'pcap'] as const) {
    const item = makeItem(0);
    item.packet.ts = -1n;
    await assert.rejects(Readable.from(writeCaptureFile(inBatches([item]), { format })).toArray(), { code: 'PCAP_TIMESTAMP_RANGE' });
  }
});

test('content types match the contract', () => {
  assert.equal(CAPTURE_FILE_TYPES.pcapng.contentType, 'application/x-pcapng');
  assert.equal(CAPTURE_FILE_TYPES.pcap.contentType, 'application/vnd.tcpdump.pcap');
});

test('a large export streams with bounded memory', async () => {
  // What is retained is about one source batch (1000 packets: 3-6 MB here), whatever the file's size.
  const count = 600_000;
  // A full GC before each sample measures what the writer retains, not garbage.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const retained = () => {
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };

  // Distinct packets are costly to build; vary a pool's timestamps and ids so the writer's time dominates.
  const pool = [...makeItems(1000)];
  async function* asyncSource(): AsyncGenerator<CaptureItem[]> {
    for (let i = 0; i < count; i += pool.length) {
      yield* inBatches(pool.map(({ packet, comment }, j) => ({ packet: { ...packet, ts: BASE_TS + BigInt(i + j) * 1000n, packetId: BigInt(i + j) }, comment })), pool.length);
    }
  }
  const baseline = retained();
  let peak = 0;
  let fileBytes = 0;
  let chunks = 0;
  const started = process.hrtime.bigint();
  for await (const chunk of writeCaptureFile(asyncSource())) {
    fileBytes += chunk.length;
    assert.ok(chunk.length <= 512 * 1024, `chunk of ${chunk.length} bytes`);
    if (++chunks % 50 === 0) peak = Math.max(peak, retained() - baseline);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(
    `pcapng: ${count} packets, ${(fileBytes / 1e6).toFixed(1)} MB in ${chunks} chunks, ` +
      `${Math.round(count / seconds)} packets/s (with GC sampling), peak retained +${(peak / 1e6).toFixed(2)} MB`,
  );
  assert.ok(fileBytes > 70e6, `file of ${fileBytes} bytes`);
  assert.ok(peak < fileBytes / 6, `retained ${peak} bytes while writing ${fileBytes}`);
});

test('the packet counter follows blocks across any chunking of the stream', async () => {
  const chunks: Buffer[] = [];
  for await (const chunk of writeCaptureFile(inBatches(makeItems(500)))) chunks.push(chunk);
  const file = Buffer.concat(chunks);
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (const maxPiece of [1, 7, 64, 4096, file.length]) {
    const counter = new PcapngPacketCounter();
    for (let at = 0; at < file.length; ) {
      const piece = 1 + Math.floor(random() * maxPiece);
      counter.push(file.subarray(at, at + piece));
      at += piece;
    }
    assert.equal(counter.packets, 500, `pieces up to ${maxPiece} bytes`);
    assert.equal(counter.bytes, file.length);
  }
  const broken = Buffer.from(file);
  broken.writeUInt32LE(4, 4); // the section header claims 4 bytes
  assert.throws(() => new PcapngPacketCounter().push(broken), /PCAPNG_MALFORMED|length 4/);
});
