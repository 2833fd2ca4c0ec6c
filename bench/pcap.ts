// PCAP export benchmark: packets/s of the pcapng writer alone, of a whole
// export from the store (one connection of N packets, 4 capture points), and
// of tshark reading the same file, side by side in one run.
//   node dist/bench/pcap.js [packets=1000000]
import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { packetRows } from '../connection/capture-file.js';
import { writeCaptureFile, type CaptureItem } from '../pcap/pcapng.js';
import { PacketRows } from '../flowlog/packets/rows.js';
import { packetRowsForTuples } from '../flowlog/queries.js';
import { LINKTYPE_ETHERNET } from '../model/protocol.js';
import type { FourTuple, PacketRecord } from '../model/records.js';
import { openStore } from '../flowlog/store.js';
import { FlowLogWriter } from '../flowlog/writer.js';
import { packetColumnsOfRecords } from '../flowlog/packets/record-columns.js';

const total = Number(process.argv[2] ?? 1_000_000);
const client: FourTuple = { src: '10.231.1.2', sport: 40000, dst: '10.231.1.1', dport: 8080 };
const POINTS = ['client/eth0', 'router/to-client', 'router/to-server', 'server/eth0'];

/** An Ethernet + IPv4 + TCP (timestamps option) header, as capture stores it. */
function header(seq: number, ack: number, ipId: number): Uint8Array {
  const b = Buffer.alloc(66);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(52 + 1448, 16);
  b.writeUInt16BE(ipId, 18);
  b[22] = 64;
  b[23] = 6;
  Buffer.from([10, 231, 1, 2, 10, 231, 1, 1]).copy(b, 26);
  b.writeUInt16BE(client.sport, 34);
  b.writeUInt16BE(client.dport, 36);
  b.writeUInt32BE(seq, 38);
  b.writeUInt32BE(ack, 42);
  b[46] = 0x80;
  b[47] = 0x10;
  b.writeUInt16BE(502, 48);
  Buffer.from([1, 1, 8, 10]).copy(b, 54);
  b.writeUInt32BE(seq >>> 3, 58);
  return b;
}

/** Packets [from, to) of the connection, as capture delivers them: a few thousand records at a time. */
function connectionPackets(from: number, to: number, t0: bigint): PacketRecord[] {
  const packets: PacketRecord[] = [];
  for (let i = from; i < to; i++) {
    const [netns, iface] = POINTS[i % 4].split('/');
    const n = Math.floor(i / 4);
    // Every field in one literal, as capture's decoder makes records (a spread gives each object a slow shape of its own).
    packets.push({
      src: client.src, sport: client.sport, dst: client.dst, dport: client.dport, ts: t0 + BigInt(i) * 1000n, node: 'bench', netns, iface, netnsIno: 1, ifindex: 2 + (i % 4), hook: 'tc',
      direction: i % 2 ? 'ingress' : 'egress', proto: 'tcp', ipId: n & 0xffff, seq: (n * 1448) >>> 0, ack: 1, flags: 0x10, win: 502,
      len: 1448, wireLen: 1514, options: { ts_val: n >>> 3, ts_ecr: 0 }, packetId: BigInt(n), linkType: LINKTYPE_ETHERNET,
      headers: header((n * 1448) >>> 0, 1, n & 0xffff),
    });
  }
  return packets;
}

const rate = (n: number, ms: number) => `${Math.round((n / ms) * 1000).toLocaleString('en')} packets/s`;

async function main() {
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-bench-pcap-'));
  try {
    const t0 = BigInt(Date.now() - 3_600_000) * 1_000_000n;
    // The records are made a chunk at a time and dropped, as capture's are: a million records held
    // until the exports would make the first export pay for collecting them.

    // 1. The writer alone, from memory to nowhere.
    let started: number;
    let bytes = 0;
    // In batches of a read's block size, made before the clock starts.
    const batches: CaptureItem[][] = [];
    for (let i = 0; i < total; i += 8_192) batches.push([packetRows(PacketRows.fromRecords(connectionPackets(i, Math.min(total, i + 8_192), t0)))]);
    started = performance.now();
    for await (const chunk of writeCaptureFile(batches)) bytes += chunk.length;
    const writerMs = performance.now() - started;
    batches.length = 0;

    // 2. Store the connection, then export it from the store to a file.
    const store = await openStore({ path: path.join(dir, 'store') });
    const writer = new FlowLogWriter(store);
    started = performance.now();
    for (let i = 0; i < total; i += 10_000) {
      if (writer.overHighWater) await writer.belowHighWater();
      writer.addPackets(packetColumnsOfRecords(connectionPackets(i, Math.min(total, i + 10_000), t0)));
    }
    await writer.close();
    if (writer.stats().packets.dropped > 0) throw new Error(`the writer dropped ${writer.stats().packets.dropped} packets`);
    const insertMs = performance.now() - started;
    // The exports measure reading, not the merges that follow the inserts: wait until those are done.
    started = performance.now();
    const merging = async () => {
      const result = await store.client.query({ query: 'SELECT count() FROM system.merges', format: 'JSONCompactEachRow' });
      return Number((await result.json<[string]>())[0][0]);
    };
    while ((await merging()) > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    const settleMs = performance.now() - started;

    // Three exports: the first in the process (JIT and engine cold), then two warm ones.
    const file = path.join(dir, 'export.pcapng');
    const rssBefore = process.memoryUsage().rss;
    let peakRss = rssBefore;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
    const exportMs: number[] = [];
    for (let run = 0; run < 3; run++) {
      started = performance.now();
      const exported = async function* (): AsyncGenerator<CaptureItem[]> {
        for await (const batch of packetRowsForTuples(store, 'tcp', [client])) yield [packetRows(batch)];
      };
      await pipeline(Readable.from(writeCaptureFile(exported())), createWriteStream(file));
      exportMs.push(performance.now() - started);
    }
    clearInterval(sampler);
    await store.close();

    // 3. tshark reading the same file.
    started = performance.now();
    execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.number'], { stdio: ['ignore', 'ignore', 'ignore'], maxBuffer: 1 << 30 });
    const tsharkMs = performance.now() - started;
    const capinfos = execFileSync('capinfos', ['-M', '-c', file]).toString();
    const counted = Number(/Number of packets:\s+(\d+)/.exec(capinfos)?.[1]);

    console.log(`pcap export, ${total.toLocaleString('en')} packets of one connection at 4 capture points (${(statSync(file).size / 1e6).toFixed(1)} MB pcapng)`);
    console.log(`  writer alone (memory → pcapng):   ${rate(total, writerMs)} (${(bytes / 1e6).toFixed(1)} MB)`);
    console.log(`  store insert (setup; records made on the fly): ${rate(total, insertMs)}; its merges took ${(settleMs / 1000).toFixed(1)} s more`);
    console.log(`  export (store → pcapng file):      ${exportMs.map((ms) => rate(total, ms)).join(', ')} (cold, then warm); RSS grew ${((peakRss - rssBefore) / 1e6).toFixed(0)} MB at most`);
    console.log(`  tshark -r reading the same file:   ${rate(total, tsharkMs)}`);
    console.log(`  export / tshark (cold export): ${(tsharkMs / exportMs[0]).toFixed(2)}×; capinfos counts ${counted} packets (${counted === total ? 'all' : 'MISMATCH'})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
