import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FlowRecord, FourTuple, NatTranslation, PacketRecord } from '../flowlog/records.js';
import { checkServerVersion, openStore, type FlowLogStore } from '../flowlog/store.js';
import { FlowLogWriter } from '../flowlog/writer.js';
import { flowsForTuples, natForTuple, natTranslations, packetsForTuples, recentFlows } from '../flowlog/queries.js';

let dir: string;
let storePath: string;
let store: FlowLogStore;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nettrail-flowlog-'));
  storePath = path.join(dir, 'store');
  store = await openStore({ path: storePath });
});

after(async () => {
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

const T0 = 1_763_752_983_123_456_789n;
const SECOND = 1_000_000_000n;
const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);

const reverse = (t: FourTuple): FourTuple => ({ src: t.dst, sport: t.dport, dst: t.src, dport: t.sport });

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function count(sql: string): Promise<number> {
  const result = await store.client.query({ query: sql, format: 'JSONCompactEachRow' });
  const [[n]] = await result.json<[string | number]>();
  return Number(n);
}

function packet(tuple: FourTuple, fields: Partial<PacketRecord> = {}): PacketRecord {
  return {
    ts: T0, node: 'node-a', netns: 'root', netnsIno: 4026531840, iface: 'eth0', ifindex: 2,
    hook: 'tc', direction: 'egress', proto: 'tcp', ...tuple,
    ipId: 0xbeef, seq: 0xfffffff0, ack: 0, flags: 0b10, win: 64240, len: 0, wireLen: 74,
    options: {}, packetId: 1n, linkType: 1, headers: ALL_BYTES.slice(0, 54),
    ...fields,
  };
}

function flow(fields: Partial<FlowRecord> & Pick<FlowRecord, 'id'>): FlowRecord {
  return {
    proto: 'tcp', client: { ip: '10.3.0.1', port: 42000 }, server: { ip: '10.3.0.2', port: 443 },
    node: 'node-a', netns: 'root', iface: 'eth0', start: T0, end: T0 + SECOND,
    packets: { c2s: 3, s2c: 2 }, bytes: { c2s: 180, s2c: 120 }, connState: 'S1', history: 'ShA',
    rttNs: 123_456n, retrans: { c2s: 0, s2c: 0 }, zeroWindow: { c2s: 0, s2c: 0 }, close: 'open',
    synSeq: 1000, synAckSeq: 4_000_000_000,
    ...fields,
  };
}

test('a new store records schema version 1 and answers ping', async () => {
  assert.equal(await count('SELECT max(version) FROM nettrail.schema_version'), 1);
  assert.match(store.serverVersion, /^\d+\.\d+\./);
  assert.equal(await store.ping(), true);
  assert.throws(() => checkServerVersion('23.3.2.1'), (err: Error & { code?: string }) => {
    return err.code === 'STORE_VERSION' && err.message.includes('23.8');
  });
  assert.doesNotThrow(() => checkServerVersion('23.8.1.1'));
  assert.doesNotThrow(() => checkServerVersion('26.7.2.1'));
});

test('packets round-trip exactly and are found from either direction', async () => {
  const c2s = { src: '10.1.0.1', sport: 40000, dst: '10.1.0.2', dport: 80 };
  const syn = packet(c2s, {
    ts: T0, packetId: (1n << 64n) - 1n, headers: ALL_BYTES, wireLen: 256,
    options: { mss: 1460, wscale: 7, sack_perm: true, ts_val: 0xffffffff, ts_ecr: 0 },
  });
  const synAck = packet(reverse(c2s), {
    ts: T0 + 1n, direction: 'ingress', hook: 'xdp', flags: 0b10010, seq: 7, ack: 0xfffffff1, packetId: 2n,
    options: { sack_perm: false, sack: [] }, headers: new Uint8Array(0), linkType: 101,
  });
  const ack = packet(c2s, {
    ts: T0 + 2n, flags: 0b10000, seq: 0xfffffff1, ack: 8, len: 1448, packetId: 3n,
    options: { sack: [[1, 2], [0xffffffff, 0]] }, iface: 'veth-ü', netns: 'pid:4242',
  });
  const otherConnection = packet({ ...c2s, sport: 40001 }, { packetId: 4n });
  const v6 = { src: 'fd00::1', sport: 50000, dst: '2001:db8:0:1::2', dport: 443 };
  const v6Packet = packet(v6, { proto: 'udp', ts: 1n, flags: 0, ipId: 0, packetId: 5n, headers: ALL_BYTES.slice(7, 9) });

  const writer = new FlowLogWriter(store);
  assert.equal(writer.addPackets([ack, otherConnection, synAck, v6Packet, syn]), 5);
  await writer.close();
  assert.deepEqual(writer.stats().packets, { accepted: 5, written: 5, dropped: 0, failures: 0, bufferedRows: 0 });

  assert.deepEqual(await collect(packetsForTuples(store, 'tcp', [c2s])), [syn, synAck, ack]);
  assert.deepEqual(await collect(packetsForTuples(store, 'tcp', [reverse(c2s)])), [syn, synAck, ack]);
  assert.deepEqual(await collect(packetsForTuples(store, 'udp', [reverse(v6)])), [v6Packet]);
  assert.deepEqual(await collect(packetsForTuples(store, 'udp', [c2s])), []);
  assert.deepEqual(
    await collect(packetsForTuples(store, 'tcp', [reverse(c2s), { ...c2s, sport: 40001 }])),
    [otherConnection, syn, synAck, ack], // equal timestamps: by packet id
  );
  assert.deepEqual(await collect(packetsForTuples(store, 'tcp', [c2s], { from: T0 + 1n, to: T0 + 1n })), [synAck]);
  // Stored as IPv6 (IPv4-mapped), raw bytes as binary.
  const stored = await store.client.query({
    query: `SELECT toString(src), length(headers), hex(headers) = {hex:String} FROM nettrail.packets WHERE packet_id = {id:UInt64}`,
    query_params: { hex: Buffer.from(ALL_BYTES).toString('hex').toUpperCase(), id: syn.packetId },
    format: 'JSONCompactEachRow',
  });
  assert.deepEqual(await stored.json(), [['::ffff:10.1.0.1', 256, 1]]);
});

test('packet pages split inside runs of equal timestamps without losing or repeating rows', async () => {
  const tuple = { src: '10.4.0.1', sport: 45000, dst: '10.4.0.2', dport: 22 };
  const offsets = [0n, 0n, 0n, 1n, 1n, 2n, 2n, 2n, 2n, 3n];
  const packets = offsets.map((offset, i) => packet(tuple, { ts: T0 + offset, packetId: BigInt(100 + i) }));
  const writer = new FlowLogWriter(store);
  writer.addPackets([...packets].reverse());
  await writer.close();
  for (const pageRows of [1, 2, 3, 4, 10, 11]) {
    assert.deepEqual(await collect(packetsForTuples(store, 'tcp', [tuple], {}, { pageRows })), packets, `pageRows ${pageRows}`);
  }
  assert.deepEqual(
    await collect(packetsForTuples(store, 'tcp', [tuple], { from: T0 + 1n, to: T0 + 2n }, { pageRows: 2 })),
    packets.slice(3, 9),
  );
});

test('flows: the newest flush of each flow wins, found from either direction', async () => {
  const tuple = { src: '10.3.0.1', sport: 42000, dst: '10.3.0.2', dport: 443 };
  const first = flow({ id: 'node-a/eth0/1' });
  const grown = flow({ id: 'node-a/eth0/1', end: T0 + 5n * SECOND, packets: { c2s: 10, s2c: 9 }, connState: 'S1', history: 'ShAD' });
  // The final flush may keep `end` and change only the close state.
  const closed = { ...grown, close: 'timeout' as const, connState: 'SF' };
  const otherPoint = flow({
    id: 'node-b/eth1/7', node: 'node-b', iface: 'eth1', start: T0 + 1n, end: T0 + 2n,
    rttNs: null, synSeq: null, synAckSeq: null, close: 'rst', retrans: { c2s: 4, s2c: 1 }, zeroWindow: { c2s: 0, s2c: 2 },
  });
  const v6 = flow({
    id: 'node-a/eth0/9', proto: 'udp', client: { ip: 'fd00::5', port: 5353 }, server: { ip: 'ff02::fb', port: 5353 },
    packets: { c2s: Number.MAX_SAFE_INTEGER, s2c: 0 }, rttNs: (1n << 64n) - 1n,
  });

  const writer = new FlowLogWriter(store);
  writer.addFlows([first, v6]);
  await writer.flush();
  writer.addFlows([grown, otherPoint]);
  writer.addFlows([closed]);
  await writer.close();

  assert.deepEqual(await flowsForTuples(store, 'tcp', [tuple]), [closed, otherPoint]);
  assert.deepEqual(await flowsForTuples(store, 'tcp', [reverse(tuple)]), [closed, otherPoint]);
  assert.deepEqual(await flowsForTuples(store, 'udp', [{ src: 'ff02::fb', sport: 5353, dst: 'fd00::5', dport: 5353 }]), [v6]);
  assert.deepEqual(await flowsForTuples(store, 'tcp', [tuple], { from: T0 + 3n }), [closed]);
  assert.deepEqual(await flowsForTuples(store, 'tcp', [tuple], { to: T0 - 1n }), []);
  // Most recently active first: by end.
  assert.deepEqual(await recentFlows(store, 3), [closed, v6, otherPoint]);
});

test('NAT entries are found from the original and the reply tuple, in both directions', async () => {
  const orig = { src: '10.2.0.1', sport: 41000, dst: '10.96.0.10', dport: 80 };
  const reply = { src: '10.2.0.5', sport: 8080, dst: '10.2.0.1', dport: 41000 };
  const seen = (lastSeen: bigint): NatTranslation => ({
    via: 'iptables', node: 'node-a', netns: 'root', zone: 0, proto: 'tcp', orig, reply,
    firstSeen: T0, lastSeen, entryId: 4_000_000_000,
  });
  const latest = seen(T0 + 5n * SECOND);
  const ipvs: NatTranslation = {
    via: 'ipvs', node: 'node-b', netns: 'pid:77', zone: 65535, proto: 'tcp',
    orig: { src: 'fd00::10', sport: 33000, dst: 'fd00::100', dport: 443 },
    reply: { src: 'fd00::20', sport: 8443, dst: 'fd00::1:1', dport: 61000 },
    firstSeen: T0 + SECOND, lastSeen: T0 + 2n * SECOND, entryId: 0,
  };

  const writer = new FlowLogWriter(store);
  writer.addNat([seen(T0 + SECOND), ipvs]);
  await writer.flush();
  writer.addNat([seen(T0 + 3n * SECOND)]);
  await writer.flush();
  writer.addNat([latest]);
  await writer.close();

  for (const tuple of [orig, reverse(orig), reply, reverse(reply)]) {
    assert.deepEqual(await natForTuple(store, 'tcp', tuple), [latest], JSON.stringify(tuple));
  }
  assert.deepEqual(await natForTuple(store, 'tcp', reverse(ipvs.reply)), [ipvs]);
  assert.deepEqual(await natForTuple(store, 'udp', orig), []);
  assert.deepEqual(await natForTuple(store, 'tcp', orig, T0 + 4n * SECOND), [latest]);
  assert.deepEqual(await natForTuple(store, 'tcp', orig, T0 - 1n), []);
  assert.deepEqual(await natForTuple(store, 'tcp', orig, T0 + 6n * SECOND), []);

  assert.deepEqual(await natTranslations(store, { ip: '10.2.0.5', limit: 10 }), [latest]);
  assert.deepEqual(await natTranslations(store, { ip: 'fd00::1:1', proto: 'tcp', limit: 10 }), [ipvs]);
  assert.deepEqual(await natTranslations(store, { port: 8080, node: 'node-a', netns: 'root', limit: 10 }), [latest]);
  assert.deepEqual(await natTranslations(store, { node: 'node-c', limit: 10 }), []);
  assert.deepEqual(await natTranslations(store, { proto: 'udp', limit: 10 }), []);
  assert.deepEqual(await natTranslations(store, { from: T0 + 4n * SECOND, limit: 10 }), [latest]);
  assert.deepEqual(await natTranslations(store, { to: T0 + SECOND / 2n, limit: 10 }), [latest]);
  assert.deepEqual(await natTranslations(store, { limit: 1 }), [latest]);
  assert.deepEqual(await natTranslations(store, { limit: 10 }), [latest, ipvs]);
});

test('a failed insert keeps its rows buffered, is counted, and is retried', async () => {
  const parked = flow({ id: 'retry/1', client: { ip: '10.5.0.1', port: 1 }, server: { ip: '10.5.0.2', port: 2 } });
  await store.client.command({ query: 'RENAME TABLE nettrail.flows TO nettrail.flows_parked' });
  const writer = new FlowLogWriter(store, { retryInitialMs: 10, drainTimeoutMs: 200 });
  try {
    writer.addFlows([parked]);
    await assert.rejects(writer.flush(), { code: 'FLUSH_FAILED' });
    const stats = writer.stats().flows;
    assert.ok(stats.failures >= 1, `failures ${stats.failures}`);
    assert.equal(stats.bufferedRows, 1);
    assert.equal(stats.written, 0);
  } finally {
    await store.client.command({ query: 'RENAME TABLE nettrail.flows_parked TO nettrail.flows' });
  }
  await writer.close();
  assert.equal(writer.stats().flows.written, 1);
  assert.equal(writer.stats().flows.bufferedRows, 0);
  assert.deepEqual(await flowsForTuples(store, 'tcp', [{ src: '10.5.0.1', sport: 1, dst: '10.5.0.2', dport: 2 }]), [parked]);
});

test('the writer drops and counts rows beyond its buffer bound; close() writes everything accepted', async () => {
  const tuple = { src: '10.6.0.1', sport: 46000, dst: '10.6.0.2', dport: 80 };
  const packets = Array.from({ length: 8 }, (_, i) => packet(tuple, { ts: T0 + BigInt(i), packetId: BigInt(200 + i) }));
  const writer = new FlowLogWriter(store, { maxBufferedRows: 5, batchRows: 1000, flushIntervalMs: 60_000 });
  assert.equal(writer.addPackets(packets), 5);
  assert.equal(writer.addPackets(packets.slice(0, 2)), 0);
  assert.deepEqual(writer.stats().packets, { accepted: 5, written: 0, dropped: 5, failures: 0, bufferedRows: 5 });
  await writer.close();
  assert.deepEqual(writer.stats().packets, { accepted: 5, written: 5, dropped: 5, failures: 0, bufferedRows: 0 });
  assert.deepEqual(await collect(packetsForTuples(store, 'tcp', [tuple])), packets.slice(0, 5));
  assert.throws(() => writer.addPackets(packets), { code: 'WRITER_CLOSED' });
});

test('a call with an invalid record is refused whole', async () => {
  const tuple = { src: '10.7.0.1', sport: 47000, dst: '10.7.0.2', dport: 80 };
  const writer = new FlowLogWriter(store);
  assert.throws(() => writer.addPackets([packet(tuple), packet({ ...tuple, sport: 70000 })]), {
    code: 'INVALID_VALUE',
    message: /sport/,
  });
  assert.throws(() => writer.addNat([{
    via: 'ovs', node: 'n', netns: 'root', zone: 0, proto: 'tcp', orig: { ...tuple, src: 'not-an-ip' }, reply: tuple,
    firstSeen: T0, lastSeen: T0, entryId: 0,
  }]), { code: 'INVALID_VALUE', message: /orig\.src/ });
  assert.throws(() => writer.addFlows([flow({ id: 'x', start: -1n })]), { code: 'INVALID_VALUE', message: /start/ });
  assert.deepEqual(writer.stats().packets.accepted + writer.stats().nat_translations.accepted + writer.stats().flows.accepted, 0);
  await writer.close();
  await assert.rejects(collect(packetsForTuples(store, 'tcp', [{ ...tuple, dst: '10.7.0.300' }])), { code: 'INVALID_VALUE' });
});

test('100 000 packets written in one bulk are all stored', async () => {
  const rows = 100_000;
  const tuple = { src: '10.8.0.1', sport: 48000, dst: '10.8.0.2', dport: 80 };
  const packets = Array.from({ length: rows }, (_, i) =>
    packet(tuple, { ts: T0 + BigInt(i) * 1000n, packetId: BigInt(i), seq: i, headers: ALL_BYTES.subarray(0, 66) }));
  const writer = new FlowLogWriter(store);
  const started = performance.now();
  for (let i = 0; i < rows; i += 1000) writer.addPackets(packets.slice(i, i + 1000));
  await writer.close();
  const seconds = (performance.now() - started) / 1000;
  console.log(`flowlog: wrote ${rows} packets in ${seconds.toFixed(2)} s (${Math.round(rows / seconds)} rows/s)`);
  assert.equal(writer.stats().packets.written, rows);
  assert.equal(await count(`SELECT count() FROM nettrail.packets WHERE sport = 48000`), rows);
});

test('data is kept after closing and re-opening the same path', async () => {
  const tuple = { src: '10.1.0.1', sport: 40000, dst: '10.1.0.2', dport: 80 };
  const before = await collect(packetsForTuples(store, 'tcp', [tuple]));
  await store.close();
  store = await openStore({ path: storePath });
  assert.equal(await count('SELECT count() FROM nettrail.schema_version'), 1);
  assert.deepEqual(await collect(packetsForTuples(store, 'tcp', [tuple])), before);
  assert.equal(before.length, 3);
  assert.equal((await flowsForTuples(store, 'tcp', [{ src: '10.3.0.1', sport: 42000, dst: '10.3.0.2', dport: 443 }])).length, 2);
  assert.equal((await natForTuple(store, 'tcp', { src: '10.2.0.1', sport: 41000, dst: '10.96.0.10', dport: 80 })).length, 1);
});
