// Flow-log store benchmark on the embedded engine (chDB). Run it alone (it
// measures time); it needs no root and keeps everything in a temp dir
// (bench/store-capture.sh, which records the real captures, needs root).
//   node dist/bench/store.js [--pcap DIR]... [--insert-rows N] [--lookup-flows N|0] [--lookup-packets-per-flow N] [--lookups N]
// Defaults: 10 M rows for the insert rates, 10 M flows × 10 packets for the lookups (about 10 minutes and 4 GB of disk here).
// 1. bytes per stored header on real captures (DIRs from bench/store-capture.sh) and on synthetic TCP streams;
//    bytes per stored flow;
// 2. insert rates: packets and flows through the writer (records → stored), and the engine alone (RowBinary → stored);
// 3. connection lookup latency (flows + packets of one connection) with N flows and N × P packets stored,
//    generated inside ClickHouse (INSERT ... SELECT FROM numbers()); flows by SYN sequence numbers.
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { packetIdOf } from '../native/addon.js';
import { formatIPv4, formatIPv6 } from '../model/address.js';
import { parseTcpOptions } from '../model/headers.js';
import { flowsBySynSeq, flowsForTuples, packetRowsForTuples } from '../flowlog/queries.js';
import { LINKTYPE_ETHERNET } from '../model/protocol.js';
import type { FlowRecord, FourTuple, PacketRecord } from '../model/records.js';
import { PacketChunkBuilder } from '../flowlog/packets/chunk-writer.js';
import { packChunksSql, PACKET_CHUNK_COLUMNS } from '../flowlog/packets/chunk-format.js';
import { RowBinaryWriter } from '../flowlog/rowbinary.js';
import { TABLES, type TableName } from '../flowlog/schema.js';
import { openStore, type FlowLogStore } from '../flowlog/store.js';
import { DEFAULT_BATCH_ROWS, FlowLogWriter } from '../flowlog/writer.js';
import { packetColumnsOfRecords } from '../flowlog/packets/record-columns.js';

const { values: args } = parseArgs({
  options: {
    pcap: { type: 'string', multiple: true, default: [] },
    'insert-rows': { type: 'string', default: '10000000' },
    'lookup-flows': { type: 'string', default: '10000000' },
    'lookup-packets-per-flow': { type: 'string', default: '10' },
    lookups: { type: 'string', default: '200' },
  },
});

const SECOND = 1_000_000_000n;

/** CPU time of the whole process (JavaScript and the engine's threads) since `from`, per row. */
const cpuPerRow = (from: NodeJS.CpuUsage, rows: number) => {
  const used = process.cpuUsage(from);
  return ((used.user + used.system) / rows).toFixed(2);
};

/** Which threads of this process do what, by their names (/proc/self/task/N/comm). */
function threadRole(tid: string, name: string): string {
  if (tid === String(process.pid)) return 'main thread (JavaScript)';
  if (name === 'MergeMutate') return 'ClickHouse merges';
  if (name === 'ThreadPool' || name.startsWith('QueryPipeline') || name.startsWith('QueryCompPipe')) return 'ClickHouse queries (inserts)';
  // V8's garbage collector helpers and libuv's pool (file writes, chDB's calls) are all named after the process.
  if (name === 'node' || name.startsWith('libuv')) return "Node's other threads (GC, libuv)";
  return 'other threads';
}

/** CPU microseconds used so far by each live thread, by tid. */
function threadCpu(): Map<string, { role: string; us: number }> {
  const byTid = new Map<string, { role: string; us: number }>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime and stime, fields 14 and 15 of stat, in clock ticks (USER_HZ, 100 a second on Linux).
      const us = (Number(fields[11]) + Number(fields[12])) * 10_000;
      byTid.set(tid, { role: threadRole(tid, readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim()), us });
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return byTid;
}

/** µs of CPU per row by thread role since `from` (threadCpu()); threads that ended meanwhile count as 'other threads'. */
function cpuPerRowByRole(from: ReturnType<typeof threadCpu>, cpuFrom: NodeJS.CpuUsage, rows: number): string {
  const used = process.cpuUsage(cpuFrom);
  const byRole = new Map<string, number>();
  let counted = 0;
  for (const [tid, { role, us }] of threadCpu()) {
    const spent = us - (from.get(tid)?.us ?? 0);
    byRole.set(role, (byRole.get(role) ?? 0) + spent);
    counted += spent;
  }
  byRole.set('other threads', (byRole.get('other threads') ?? 0) + Math.max(0, used.user + used.system - counted));
  return [...byRole].filter(([, us]) => us / rows >= 0.005).sort((a, b) => b[1] - a[1])
    .map(([role, us]) => `${role} ${(us / rows).toFixed(2)}`).join(', ');
}

/** Packet records the insert rates are measured with (see where the sample is made). */
const SAMPLE_RECORDS = 100_000;
const fmt = (n: number, digits = 0) => n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function rows<T = unknown[]>(store: FlowLogStore, query: string, params: Record<string, unknown> = {}): Promise<T[]> {
  const result = await store.client.query({ query, query_params: params, format: 'JSONCompactEachRow' });
  return result.json<T>();
}

async function command(store: FlowLogStore, query: string): Promise<void> {
  await store.client.command({ query });
}

/** Rows, compressed column bytes and bytes on disk (marks, index, checksums too) of a table's active parts. */
/** Bytes a table takes, and its records: rows, or for packets the packets in their chunks. */
async function tableSize(store: FlowLogStore, name: TableName) {
  const table = TABLES[name].name;
  await command(store, `OPTIMIZE TABLE ${store.table(name)} FINAL`);
  const [[data, disk]] = await rows<[string, string]>(
    store,
    `SELECT sum(data_compressed_bytes), sum(bytes_on_disk) FROM system.parts
     WHERE database = 'nettrail' AND table = {table:String} AND active`,
    { table },
  );
  const [[count]] = await rows<[string]>(store, `SELECT ${name === 'packets' ? 'sum(count)' : 'count()'} FROM ${store.table(name)}`);
  const columns = await rows<[string, string]>(
    store,
    `SELECT column, sum(column_data_compressed_bytes) FROM system.parts_columns
     WHERE database = 'nettrail' AND table = {table:String} AND active GROUP BY column ORDER BY 2 DESC`,
    { table },
  );
  return { rows: Number(count), data: Number(data), disk: Number(disk), columns: columns.map(([c, b]) => [c, Number(b)] as const) };
}

function reportSize(label: string, size: Awaited<ReturnType<typeof tableSize>>, unit: string): void {
  console.log(`  ${label}: ${fmt(size.rows)} ${unit}s, ${fmt(size.data / size.rows, 2)} bytes/${unit} of column data, ` +
    `${fmt(size.disk / size.rows, 2)} bytes/${unit} on disk`);
  // Compact parts (below 64 MiB) keep all columns in one file, and the engine does not count them apart.
  const counted = size.columns.filter(([, b]) => b > 0);
  const top = counted.slice(0, 8).map(([c, b]) => `${c} ${fmt(b / size.rows, 2)}`).join(', ');
  console.log(`    largest columns (bytes/${unit}): ${counted.length > 0 ? top : 'not counted apart in compact parts'}`);
}

// ---- packets from a pcap file (tcpdump, nanosecond timestamps, Ethernet)

/** FNV-1a of the first payload bytes: stands in for the kernel's payload hash in the packet id. */
function payloadHash(bytes: Uint8Array, from: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < Math.min(bytes.length, from + 64); i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}

function* pcapPackets(file: string, point: { netns: string; iface: string; local: string }): Generator<PacketRecord> {
  const data = readFileSync(file);
  const magic = data.readUInt32LE(0);
  const nanos = magic === 0xa1b23c4d;
  if (!nanos && magic !== 0xa1b2c3d4) throw new Error(`${file}: not a little-endian pcap file`);
  if (data.readUInt32LE(20) !== LINKTYPE_ETHERNET) throw new Error(`${file}: not Ethernet`);
  for (let at = 24; at + 16 <= data.length; ) {
    const ts = BigInt(data.readUInt32LE(at)) * SECOND + BigInt(data.readUInt32LE(at + 4)) * (nanos ? 1n : 1000n);
    const caplen = data.readUInt32LE(at + 8);
    const wireLen = data.readUInt32LE(at + 12);
    const frame = new Uint8Array(data.buffer, data.byteOffset + at + 16, caplen);
    at += 16 + caplen;
    const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const etherType = view.getUint16(12);
    let l4: number;
    let proto: number;
    let src: string;
    let dst: string;
    let ipId = 0;
    let l4Length: number;
    if (etherType === 0x0800) {
      l4 = 14 + (frame[14] & 0x0f) * 4;
      proto = frame[23];
      ipId = view.getUint16(18);
      src = formatIPv4(frame, 26);
      dst = formatIPv4(frame, 30);
      l4Length = view.getUint16(16) - (l4 - 14);
    } else if (etherType === 0x86dd) {
      l4 = 54;
      proto = frame[20];
      src = formatIPv6(frame, 22);
      dst = formatIPv6(frame, 38);
      l4Length = view.getUint16(18);
    } else continue;
    if (proto !== 6 && proto !== 17) continue;
    const tcp = proto === 6;
    const l4End = l4 + (tcp ? (frame[l4 + 12] >> 4) * 4 : 8);
    if (l4End > frame.length) continue;
    const len = l4Length - (l4End - l4);
    const options = tcp ? parseTcpOptions(frame, l4 + 20, l4End) : {};
    const seq = tcp ? view.getUint32(l4 + 4) : 0;
    const ack = tcp ? view.getUint32(l4 + 8) : 0;
    const flags = tcp ? frame[l4 + 13] : 0;
    const win = tcp ? view.getUint16(l4 + 14) : 0;
    yield {
      ts, node: 'bench', netns: point.netns, netnsIno: point.netns === 'a' ? 4026532001 : 4026532002, iface: point.iface,
      ifindex: 2, hook: 'tc', direction: src === point.local ? 'egress' : 'ingress', proto: tcp ? 'tcp' : 'udp',
      src, sport: view.getUint16(l4), dst, dport: view.getUint16(l4 + 2), ipId, seq, ack, flags, win, len, wireLen, options,
      packetId: packetIdOf({
        proto, ipId, fragOffset: 0, payloadLen: len, payloadHash: payloadHash(frame, l4End),
        tcp: tcp ? { seq, ack, flags, win, urgent: view.getUint16(l4 + 18), tsVal: options.ts_val ?? 0, tsEcr: options.ts_ecr ?? 0 } : undefined,
      }),
      linkType: LINKTYPE_ETHERNET,
      headers: frame.slice(0, l4End),
    };
  }
}

// ---- synthetic TCP streams

/** A deterministic pseudo-random generator (xorshift32), so that runs compare. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

/** Ethernet + IPv4 + TCP with the timestamps option (66 bytes), with a real IPv4 checksum and a random TCP one. */
function tcpHeader(p: PacketRecord, macs: Uint8Array, ttl: number, tcpChecksum: number): Uint8Array {
  const b = Buffer.alloc(66);
  b.set(macs, 0);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(52 + p.len, 16);
  b.writeUInt16BE(p.ipId, 18);
  b[20] = 0x40;
  b[22] = ttl;
  b[23] = 6;
  for (const [i, part] of p.src.split('.').entries()) b[26 + i] = Number(part);
  for (const [i, part] of p.dst.split('.').entries()) b[30 + i] = Number(part);
  let sum = 0;
  for (let i = 14; i < 34; i += 2) sum += b.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  b.writeUInt16BE(~sum & 0xffff, 24);
  b.writeUInt16BE(p.sport, 34);
  b.writeUInt16BE(p.dport, 36);
  b.writeUInt32BE(p.seq, 38);
  b.writeUInt32BE(p.ack, 42);
  b[46] = 0x80;
  b[47] = p.flags;
  b.writeUInt16BE(p.win, 48);
  b.writeUInt16BE(tcpChecksum, 50);
  b.set([1, 1, 8, 10], 54);
  b.writeUInt32BE(p.options.ts_val ?? 0, 58);
  b.writeUInt32BE(p.options.ts_ecr ?? 0, 62);
  return new Uint8Array(b.buffer, b.byteOffset, 66);
}

/**
 * `connections` TCP connections of `packets` packets each (handshake, then two
 * 1448-byte segments per ACK, then FIN), `active` at a time interleaved as
 * capture sees them; each packet seen at two points (the client's and the
 * server's interface), a few microseconds apart.
 */
function* syntheticPackets(connections: number, packets: number, active: number, t0: bigint): Generator<PacketRecord> {
  const rnd = random(42);
  interface Conn { n: number; sent: number; ts: bigint; c2s: FourTuple; seqC: number; seqS: number; idC: number; idS: number; tsC: number; tsS: number }
  const open: Conn[] = [];
  let next = 0;
  const start = (ts: bigint): Conn => {
    const n = next++;
    return {
      n, sent: 0, ts,
      c2s: { src: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, sport: 1024 + (n % 60000), dst: '10.200.0.1', dport: 443 },
      seqC: (rnd() * 2 ** 32) >>> 0, seqS: (rnd() * 2 ** 32) >>> 0, idC: (rnd() * 65536) | 0, idS: (rnd() * 65536) | 0,
      tsC: (rnd() * 2 ** 31) >>> 0, tsS: (rnd() * 2 ** 31) >>> 0,
    };
  };
  const macsC2s = Uint8Array.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
  const macsS2c = Uint8Array.from([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
  let ts = t0;
  while (next < connections || open.length > 0) {
    while (open.length < active && next < connections) open.push(start(ts));
    const i = Math.floor(rnd() * open.length);
    const c = open[i];
    ts += BigInt(1 + Math.floor(rnd() * 20_000));
    const k = c.sent++;
    const last = k === packets - 1;
    // Handshake, then data-data-ack.
    const fromClient = k === 0 || k === 2 || (k > 2 && (k - 3) % 3 !== 2);
    const flags = k === 0 ? 0x02 : k === 1 ? 0x12 : last ? 0x11 : k > 2 && fromClient ? 0x18 : 0x10;
    const len = k > 2 && fromClient && !last ? 1448 : 0;
    const tuple = fromClient ? c.c2s : { src: c.c2s.dst, sport: c.c2s.dport, dst: c.c2s.src, dport: c.c2s.sport };
    const tsMs = Number((ts - t0) / 1_000_000n);
    const record: PacketRecord = {
      ts, node: 'bench', netns: '', netnsIno: 0, iface: '', ifindex: 0, hook: 'tc', direction: 'egress', proto: 'tcp', ...tuple,
      ipId: fromClient ? c.idC++ & 0xffff : c.idS++ & 0xffff,
      seq: fromClient ? c.seqC : c.seqS, ack: k === 0 ? 0 : fromClient ? c.seqS : c.seqC,
      flags, win: fromClient ? 502 : 1024 + (k % 7), len, wireLen: 66 + len,
      options: { ts_val: ((fromClient ? c.tsC : c.tsS) + tsMs) >>> 0, ts_ecr: k === 0 ? 0 : ((fromClient ? c.tsS : c.tsC) + tsMs - 1) >>> 0 },
      packetId: 0n, linkType: LINKTYPE_ETHERNET, headers: new Uint8Array(0),
    };
    if (fromClient) c.seqC = (c.seqC + len + (k === 0 || last ? 1 : 0)) >>> 0;
    else c.seqS = (c.seqS + (k === 1 ? 1 : 0)) >>> 0;
    record.packetId = BigInt.asUintN(64, BigInt(Math.floor(rnd() * 2 ** 32)) << 32n | BigInt(Math.floor(rnd() * 2 ** 32)));
    record.headers = tcpHeader(record, fromClient ? macsC2s : macsS2c, 64, Math.floor(rnd() * 65536));
    const points = fromClient
      ? [['client', 'eth0', 'egress'], ['server', 'eth0', 'ingress']]
      : [['server', 'eth0', 'egress'], ['client', 'eth0', 'ingress']];
    for (const [j, [netns, iface, direction]] of points.entries()) {
      // An object literal with every field, as capture's decoder makes them (a spread copy would be slower to read).
      const r = record;
      yield {
        ts: r.ts + BigInt(j * (3000 + Math.floor(rnd() * 2000))), node: r.node, netns, netnsIno: netns === 'client' ? 1 : 2, iface,
        ifindex: 2, hook: r.hook, direction: direction as 'egress' | 'ingress', proto: r.proto, src: r.src, sport: r.sport, dst: r.dst,
        dport: r.dport, ipId: r.ipId, seq: r.seq, ack: r.ack, flags: r.flags, win: r.win, len: r.len, wireLen: r.wireLen,
        options: r.options, packetId: r.packetId, linkType: r.linkType, headers: r.headers,
      };
    }
    if (last) open.splice(i, 1);
  }
}

function syntheticFlows(count: number, t0: bigint): FlowRecord[] {
  const rnd = random(7);
  return Array.from({ length: count }, (_, n) => {
    const start = t0 + BigInt(n) * 1_000_000n;
    const id = Math.floor(rnd() * 2 ** 32).toString(16).padStart(8, '0') + Math.floor(rnd() * 2 ** 32).toString(16).padStart(8, '0');
    return {
      id,
      connectionId: id,
      proto: 'tcp', client: { ip: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, port: 1024 + (n % 60000) },
      server: { ip: '10.200.0.1', port: 443 }, node: 'bench', netns: 'client', iface: 'eth0',
      start, end: start + BigInt(Math.floor(rnd() * 5e9)),
      packets: { c2s: 5 + Math.floor(rnd() * 50), s2c: 5 + Math.floor(rnd() * 50) },
      bytes: { c2s: Math.floor(rnd() * 1e5), s2c: Math.floor(rnd() * 1e6) }, connState: 'SF', history: 'ShADadFf',
      rttNs: BigInt(Math.floor(rnd() * 1e6)), retrans: { c2s: 0, s2c: rnd() < 0.05 ? 1 : 0 }, zeroWindow: { c2s: 0, s2c: 0 }, outOfOrder: { c2s: 0, s2c: 0 },
      close: 'fin', synSeq: Math.floor(rnd() * 2 ** 32), synAckSeq: Math.floor(rnd() * 2 ** 32),
    };
  });
}

async function writeAll(store: FlowLogStore, packets: Iterable<PacketRecord>): Promise<number> {
  const writer = new FlowLogWriter(store, { maxBufferedRows: 4_000_000 });
  let batch: PacketRecord[] = [];
  let count = 0;
  for (const p of packets) {
    batch.push(p);
    if (batch.length === 10_000) {
      count += writer.addPackets(packetColumnsOfRecords(batch));
      batch = [];
    }
  }
  count += writer.addPackets(packetColumnsOfRecords(batch));
  await writer.close();
  return count;
}

/**
 * Writes `flows` through a writer. A function of its own: locals of a suspended async function can outlive their
 * block, and a million flows kept alive made the later insert rates pay for the garbage collector marking them.
 */
async function writeFlows(store: FlowLogStore, flows: FlowRecord[]): Promise<number> {
  const writer = new FlowLogWriter(store, { batchRows: 100_000 });
  for (let i = 0; i < flows.length; i += 10_000) {
    writer.addFlows(flows.slice(i, i + 10_000));
    await writer.belowHighWater();
  }
  await writer.close();
  return flows.length;
}

/** Flows per second `flows` are written at. */
async function flowRate(store: FlowLogStore, flows: FlowRecord[]): Promise<number> {
  const started = performance.now();
  await writeFlows(store, flows);
  return flows.length / ((performance.now() - started) / 1000);
}

async function main() {
  const dir = await mkdtemp(path.join(tmpdir(), 'nettrail-bench-store-'));
  const store = await openStore({ path: path.join(dir, 'store') });
  const t0 = BigInt(Date.now() - 3_600_000) * 1_000_000n;
  try {
    console.log(`nettrail store benchmark: chDB ${store.serverVersion}, ${(await import('node:os')).cpus().length} CPUs`);

    // 1. Bytes per stored header and per flow.
    console.log('\n1. storage (after OPTIMIZE FINAL)');
    for (const capture of args.pcap as string[]) {
      const packets = function* () {
        yield* pcapPackets(path.join(capture, 'client.pcap'), { netns: 'a', iface: 'ntb0', local: '10.250.0.1' });
        yield* pcapPackets(path.join(capture, 'server.pcap'), { netns: 'b', iface: 'ntb1', local: '10.250.0.2' });
      };
      await writeAll(store, packets());
      reportSize(`real capture ${path.basename(capture)}`, await tableSize(store, 'packets'), 'header');
      await command(store, 'TRUNCATE TABLE nettrail.packet_chunks');
    }
    await writeAll(store, syntheticPackets(20_000, 60, 200, t0));
    reportSize('synthetic streams (20 000 connections × 60 packets × 2 points, random TCP checksums)', await tableSize(store, 'packets'), 'header');
    await command(store, 'TRUNCATE TABLE nettrail.packet_chunks');
    await writeFlows(store, syntheticFlows(1_000_000, t0));
    reportSize('synthetic flows', await tableSize(store, 'flows'), 'flow');
    await command(store, 'TRUNCATE TABLE nettrail.flows');

    // 2. Insert rates.
    console.log('\n2. insert rates (embedded)');
    const insertRows = Number(args['insert-rows']);
    // 100 000 records, used again and again: capture's records are dropped once encoded, and a larger
    // sample kept alive made the writer's run pay for the garbage collector marking it (docs/store.md).
    const sample = [...syntheticPackets(Math.ceil(SAMPLE_RECORDS / 120), 60, 200, t0)].slice(0, SAMPLE_RECORDS);
    await command(store, 'TRUNCATE TABLE nettrail.packet_chunks');
    {
      // Encoding on the main thread, with nothing else running: the best of ten passes of one insert's worth
      // (the writer's default batch, the sample over and over, 10 000 records a call), into a buffer allocated once.
      const out = new RowBinaryWriter(64_000_000);
      const chunks = new PacketChunkBuilder();
      let best = Infinity;
      const slices = [];
      for (let taken = 0; taken < DEFAULT_BATCH_ROWS; taken += 10_000) {
        slices.push(packetColumnsOfRecords(sample.slice(taken % sample.length, taken % sample.length + 10_000)));
      }
      for (let pass = 0; pass < 10; pass++) {
        out.truncate(0);
        const started = performance.now();
        for (const slice of slices) chunks.add(slice, slice.count);
        chunks.encode(out);
        best = Math.min(best, performance.now() - started);
      }
      const body = out.contents();
      console.log(`  packets, encoding alone (columns → RowBinary, main thread): ${fmt(DEFAULT_BATCH_ROWS / (best / 1000))} headers/s, ` +
        `${fmt(body.length / DEFAULT_BATCH_ROWS, 1)} bytes/header`);
      const started = performance.now();
      const cpu = process.cpuUsage();
      const threads = threadCpu();
      let inserted = 0;
      while (inserted < insertRows) {
        await store.insertRowBinary('packets', PACKET_CHUNK_COLUMNS, body);
        inserted += DEFAULT_BATCH_ROWS;
      }
      const seconds = (performance.now() - started) / 1000;
      console.log(`  packets, engine alone (RowBinary → stored, ${fmt(DEFAULT_BATCH_ROWS)} headers per insert, one at a time): ${fmt(inserted / seconds)} headers/s; ` +
        `${cpuPerRow(cpu, inserted)} µs of CPU per header\n    by thread (µs per header): ${cpuPerRowByRole(threads, cpu, inserted)}`);
    }
    await command(store, 'TRUNCATE TABLE nettrail.packet_chunks');
    {
      const writer = new FlowLogWriter(store);
      const started = performance.now();
      const cpu = process.cpuUsage();
      const threads = threadCpu();
      let accepted = 0;
      while (accepted < insertRows) {
        for (let i = 0; i < sample.length && accepted < insertRows; i += 10_000) {
          accepted += writer.addPackets(packetColumnsOfRecords(sample.slice(i, Math.min(i + 10_000, sample.length, i + insertRows - accepted))));
          // As capture does after each ring-buffer batch: the event loop turns (the writer's inserts go on meanwhile).
          await setImmediate();
          await writer.belowHighWater();
        }
      }
      await writer.close();
      const seconds = (performance.now() - started) / 1000;
      console.log(`  packets through the writer (records → stored; encoding and inserts overlap): ${fmt(accepted / seconds)} headers/s ` +
        `(${fmt(accepted)} in ${fmt(seconds, 1)} s, ${writer.stats().packets.dropped} dropped); ${cpuPerRow(cpu, accepted)} µs of CPU per header (all threads)\n` +
        `    by thread (µs per header): ${cpuPerRowByRole(threads, cpu, accepted)}`);
    }
    console.log(`  flows through the writer: ${fmt(await flowRate(store, syntheticFlows(1_000_000, t0)))} flows/s`);
    await command(store, 'TRUNCATE TABLE nettrail.packet_chunks');
    await command(store, 'TRUNCATE TABLE nettrail.flows');

    // 3. Lookup latency at scale (--lookup-flows 0 skips it).
    const flowCount = Number(args['lookup-flows']);
    if (flowCount === 0) return;
    const perFlow = Number(args['lookup-packets-per-flow']);
    const packetCount = flowCount * perFlow;
    console.log(`\n3. connection lookups with ${fmt(flowCount)} flows and ${fmt(packetCount)} packet headers stored`);
    // Connection n: 10.a.b.c:sport -> 10.200.0.1:443, started n × 20 ms after t0 (so the data spans days).
    const client = (n: string) => `toIPv6(concat('::ffff:10.', toString(intDiv(${n}, 65536) % 256), '.', toString(intDiv(${n}, 256) % 256), '.', toString(${n} % 256)))`;
    const sport = (n: string) => `toUInt16(1024 + ${n} % 60000)`;
    let started = performance.now();
    await command(store, `INSERT INTO nettrail.flows (id, proto, client_ip, client_port, server_ip, server_port, node, netns, iface,
        start_ts, end_ts, packets_c2s, packets_s2c, bytes_c2s, bytes_s2c, conn_state, history, rtt_ns, close, syn_seq, syn_ack_seq, version)
      SELECT hex(cityHash64(number)), 'tcp', ${client('number')}, ${sport('number')}, toIPv6('::ffff:10.200.0.1'), 443, 'bench', 'client', 'eth0',
        fromUnixTimestamp64Nano(toInt64(${t0}) + toInt64(number) * 20000000, 'UTC'),
        fromUnixTimestamp64Nano(toInt64(${t0}) + toInt64(number) * 20000000 + 5000000000, 'UTC'),
        ${perFlow / 2}, ${perFlow / 2}, 1000 + number % 5000, 20000 + number % 50000, 'SF', 'ShADadFf', 100000 + number % 1000, 'fin',
        toUInt32(cityHash64(number, 1) % 4294967296), toUInt32(cityHash64(number, 2) % 4294967296), 1
      FROM numbers(${flowCount})`);
    const flowSeconds = (performance.now() - started) / 1000;
    started = performance.now();
    const residual = '00'.repeat(14) + '4500' + '00'.repeat(4) + '4000' + '4006' + '00'.repeat(32) + '0101080a' + '00'.repeat(8);
    // Generated a row per packet, packed into chunks as the migration from a row per packet packs them, in blocks of flows.
    const flowsPerInsert = 500_000;
    for (let first = 0; first < flowCount; first += flowsPerInsert) {
      const flows = Math.min(flowsPerInsert, flowCount - first);
      await command(store, packChunksSql(store.table('packets'), `(SELECT
          fromUnixTimestamp64Nano(toInt64(${t0}) + toInt64(intDiv(number, ${perFlow})) * 20000000 + toInt64(number % ${perFlow}) * 500000, 'UTC') AS ts,
          'bench' AS node, 'client' AS netns, 'eth0' AS iface, toUInt32(1) AS netns_ino, toUInt32(2) AS ifindex, 'tc' AS hook,
          if(number % 2 = 0, 'egress', 'ingress') AS direction, 'tcp' AS proto,
          if(number % 2 = 0, ${client(`intDiv(number, ${perFlow})`)}, toIPv6('::ffff:10.200.0.1')) AS src,
          if(number % 2 = 0, ${sport(`intDiv(number, ${perFlow})`)}, 443) AS sport,
          if(number % 2 = 0, toIPv6('::ffff:10.200.0.1'), ${client(`intDiv(number, ${perFlow})`)}) AS dst,
          if(number % 2 = 0, 443, ${sport(`intDiv(number, ${perFlow})`)}) AS dport,
          toUInt16(number % 65536) AS ip_id, toUInt32(number * 1448 % 4294967296) AS seq, toUInt32(number * 700 % 4294967296) AS ack,
          toUInt8(16) AS flags, toUInt16(502) AS win, toUInt32(1448) AS len, toUInt32(1514) AS wire_len, toUInt8(24) AS opt_present,
          toUInt16(0) AS opt_mss, toUInt8(0) AS opt_wscale, false AS opt_sack_perm,
          toUInt32(intDiv(number, 10) % 4294967296) AS opt_ts_val, toUInt32(intDiv(number, 10) % 4294967296) AS opt_ts_ecr,
          CAST([], 'Array(Tuple(UInt32, UInt32))') AS opt_sack, toUInt16(1) AS link_type, cityHash64(number) AS packet_id,
          concat(unhex('${residual.slice(0, 100)}'), reinterpretAsString(toUInt16(cityHash64(number, 3) % 65536)), unhex('${residual.slice(104)}')) AS headers_residual
        FROM numbers(${first * perFlow}, ${flows * perFlow}))`));
    }
    const packetSeconds = (performance.now() - started) / 1000;
    console.log(`  generated in ClickHouse: flows ${fmt(flowSeconds, 1)} s (${fmt(flowCount / flowSeconds)}/s), ` +
      `packets ${fmt(packetSeconds, 1)} s (${fmt(packetCount / packetSeconds)}/s)`);
    const lookups = Number(args.lookups);
    for (const state of ['as loaded', 'after OPTIMIZE FINAL']) {
      if (state !== 'as loaded') {
        started = performance.now();
        await command(store, 'OPTIMIZE TABLE nettrail.packet_chunks FINAL');
        await command(store, 'OPTIMIZE TABLE nettrail.flows FINAL');
        console.log(`  OPTIMIZE FINAL of both tables: ${fmt((performance.now() - started) / 1000, 1)} s`);
      }
      const [[parts, partitions]] = await rows<[string, string]>(store,
        `SELECT count(), uniqExact(partition) FROM system.parts WHERE database = 'nettrail' AND table = 'packet_chunks' AND active`);
      console.log(`  ${state}: packets in ${parts} parts over ${partitions} daily partitions`);
      const rnd = random(99);
      const times = { flows: [] as number[], packets: [] as number[], both: [] as number[] };
      for (let i = 0; i < lookups; i++) {
        const n = Math.floor(rnd() * flowCount);
        const tuple: FourTuple = { src: '10.200.0.1', sport: 443, dst: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, dport: 1024 + (n % 60000) };
        const begin = performance.now();
        const flows = await flowsForTuples(store, 'tcp', [tuple]);
        const between = performance.now();
        if (flows.length !== 1) throw new Error(`connection ${n}: ${flows.length} flows`);
        let packets = 0;
        // In the time range the connection view reads them in: its flow's start and end.
        const range = { from: flows[0].start, to: flows[0].end };
        for await (const batch of packetRowsForTuples(store, 'tcp', [tuple], range)) packets += batch.length;
        const end = performance.now();
        times.flows.push(between - begin);
        times.packets.push(end - between);
        times.both.push(end - begin);
        if (packets !== perFlow) throw new Error(`connection ${n}: ${packets} packets`);
      }
      const pct = (list: number[], q: number) => fmt([...list].sort((a, b) => a - b)[Math.min(list.length - 1, Math.floor(q * list.length))], 1);
      for (const [what, list] of Object.entries(times)) {
        console.log(`    ${lookups} lookups of random connections, ${what === 'both' ? 'flows + packets (the connection view)' : what}: ` +
          `p50 ${pct(list, 0.5)} ms, p95 ${pct(list, 0.95)} ms, max ${pct(list, 1)} ms`);
      }
      const picks = await rows<[number, number]>(store, `SELECT syn_seq, syn_ack_seq FROM nettrail.flows ORDER BY rand() LIMIT 50`);
      const seqTimes: number[] = [];
      for (const [synSeq, synAckSeq] of picks) {
        const begin = performance.now();
        const flows = await flowsBySynSeq(store, 'tcp', synSeq, synAckSeq, {});
        seqTimes.push(performance.now() - begin);
        if (flows.length === 0) throw new Error(`no flow with syn_seq ${synSeq}`);
      }
      console.log(`    ${picks.length} flow lookups by SYN/SYN-ACK sequence numbers (nat-tracker's tcp-seq query, no time range): ` +
        `p50 ${pct(seqTimes, 0.5)} ms, p95 ${pct(seqTimes, 0.95)} ms`);
    }
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
