// A writer under load, for test/flowlog/shutdown.test.ts: adds packets as fast
// as it can into the store at argv[2] and, on SIGTERM, stops adding, closes the
// writer (which writes everything accepted) and the store, and prints what it
// counted as one JSON line. Prints `loaded` once the first insert is stored.
import { LINKTYPE_ETHERNET } from '../../model/protocol.js';
import type { PacketRecord } from '../../model/records.js';
import { openStore } from '../../flowlog/store.js';
import { FlowLogWriter } from '../../flowlog/writer.js';
import { packetColumnsOfRecords } from '../../flowlog/packets/record-columns.js';

const store = await openStore({ path: process.argv[2] });
const writer = new FlowLogWriter(store, { batchRows: 20_000, maxBufferedRows: 100_000, flushIntervalMs: 60_000 });
const headers = Uint8Array.from({ length: 66 }, (_, i) => i);
const t0 = BigInt(Date.now()) * 1_000_000n;
let offered = 0;
let stopping = false;
let loaded = false;

function batch(size: number): PacketRecord[] {
  return Array.from({ length: size }, () => {
    const n = offered++;
    return {
      ts: t0 + BigInt(n) * 1000n, node: 'load', netns: 'root', netnsIno: 1, iface: 'eth0', ifindex: 2, hook: 'tc', direction: 'egress',
      proto: 'tcp', src: '10.11.0.1', sport: 40000 + (n % 100), dst: '10.11.0.2', dport: 80, ipId: n & 0xffff, seq: n >>> 0, ack: 1,
      flags: 0x10, win: 502, len: 1448, wireLen: 1514, options: { ts_val: n >>> 0, ts_ecr: 1 }, packetId: BigInt(n),
      linkType: LINKTYPE_ETHERNET, headers,
    };
  });
}

function produce(): void {
  if (stopping) return;
  writer.addPackets(packetColumnsOfRecords(batch(1000)));
  if (!loaded && writer.stats().packets.written > 0) {
    loaded = true;
    process.stdout.write('loaded\n');
  }
  setImmediate(produce);
}

process.once('SIGTERM', () => {
  stopping = true;
  const atSignal = writer.stats().packets;
  void (async () => {
    await writer.close();
    await store.close();
    const { accepted, dropped, written } = writer.stats().packets;
    process.stdout.write(`${JSON.stringify({ offered, accepted, dropped, written, bufferedAtSignal: atSignal.bufferedRows })}\n`);
    process.exit(0);
  })();
});

produce();
