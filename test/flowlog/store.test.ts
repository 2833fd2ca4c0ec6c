import { after, before, test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FlowRecord, FourTuple, NatTranslation, PacketRecord, TcpOptions } from '../../model/records.js';
import { addressBytes, storedAddress } from '../../flowlog/codec.js';
import { OPTION_BIT } from '../../model/packet-columns.js';
import { headerLayout, parseTcpOptions } from '../../model/headers.js';
import { xorColumnBytes } from '../../flowlog/packets/residual.js';
import { checkServerVersion, openStore, parseRetention, type FlowLogStore } from '../../flowlog/store.js';
import { FlowLogWriter } from '../../flowlog/writer.js';
import {
  connKeySql, createDatabaseStatement, createTableStatements, MIGRATIONS, PACKET_CHUNKS, PACKET_ROWS_V1, retentionStatement, SCHEMA_VERSION, schemaVersionTableStatement, TABLE_NAMES, TABLES, type Migration, type SchemaTarget,
} from '../../flowlog/schema.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { packetHeaders, random } from '../support/headers.js';
import { FIXED_BYTES } from '../../flowlog/packets/chunk-format.js';
import { chunkResiduals } from '../support/chunk-residuals.js';
import { flowsBySynSeq, flowsForTuples, natForTuple, natTranslations, packetRowsForTuples } from '../../flowlog/queries.js';
import { connKeyList } from '../../flowlog/query-params.js';
import { column, nativeBlocks, type FixedColumn, type NativeBlock } from '../../flowlog/native-format.js';
import type { PacketRows } from '../../flowlog/packets/rows.js';
import { packetColumnsOfRecords } from '../../flowlog/packets/record-columns.js';

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

async function collectPackets(batches: AsyncIterable<PacketRows>): Promise<PacketRecord[]> {
  return (await collect(batches)).flatMap((batch) => batch.records());
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
    connectionId: fields.id,
    proto: 'tcp', client: { ip: '10.3.0.1', port: 42000 }, server: { ip: '10.3.0.2', port: 443 },
    node: 'node-a', netns: 'root', iface: 'eth0', start: T0, end: T0 + SECOND,
    packets: { c2s: 3, s2c: 2 }, bytes: { c2s: 180, s2c: 120 }, connState: 'S1', history: 'ShA',
    rttNs: 123_456n, retrans: { c2s: 0, s2c: 0 }, zeroWindow: { c2s: 0, s2c: 0 }, outOfOrder: { c2s: 3, s2c: 1 }, close: 'open',
    synSeq: 1000, synAckSeq: 4_000_000_000,
    ...fields,
  };
}

test('a new store records the schema version and answers ping', async () => {
  assert.equal(await count('SELECT max(version) FROM nettrail.schema_version'), SCHEMA_VERSION);
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
    options: { sack: [] }, headers: new Uint8Array(0), linkType: 101,
  });
  const ack = packet(c2s, {
    ts: T0 + 2n, flags: 0b10000, seq: 0xfffffff1, ack: 8, len: 1448, packetId: 3n,
    options: { sack: [[1, 2], [0xffffffff, 0]] }, iface: 'veth-ü', netns: 'pid:4242', netnsIno: 4026532424, ifindex: 7,
  });
  // Headers as a kernel builds them: stored as a residual that is zero wherever the columns say what the bytes are.
  const dataFields = { seq: 0xfffffff1, ack: 8, flags: 0x18, win: 502, len: 1448, ipId: 7, options: { ts_val: 0xfedcba98, ts_ecr: 77 } };
  const data = packet(c2s, {
    ts: T0 + 3n, packetId: 6n, wireLen: 1514, ...dataFields,
    headers: packetHeaders({ ...c2s, ...dataFields }, 6, { offloaded: true, optionBytes: [1, 1, 8, 10, 0xfe, 0xdc, 0xba, 0x98, 0, 0, 0, 77] }),
  });
  const otherConnection = packet({ ...c2s, sport: 40001 }, { packetId: 4n });
  const v6 = { src: 'fd00::1', sport: 50000, dst: '2001:db8:0:1::2', dport: 443 };
  const v6Packet = packet(v6, { proto: 'udp', ts: 1n, flags: 0, ipId: 0, packetId: 5n, headers: ALL_BYTES.slice(7, 9) });

  const writer = new FlowLogWriter(store);
  // A call's packets share a link type (capture's are Ethernet): the raw-IP one comes in a call of its own.
  assert.equal(writer.addPackets(packetColumnsOfRecords([ack, otherConnection, data, v6Packet, syn])), 5);
  assert.equal(writer.addPackets(packetColumnsOfRecords([synAck])), 1);
  await writer.close();
  assert.deepEqual(writer.stats().packets, { accepted: 6, written: 6, dropped: 0, failures: 0, consecutiveFailures: 0, bufferedRows: 0, bufferedBytes: 0 });

  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [c2s])), [syn, synAck, ack, data]);
  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [reverse(c2s)])), [syn, synAck, ack, data]);
  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'udp', [reverse(v6)])), [v6Packet]);
  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'udp', [c2s])), []);
  assert.deepEqual(
    await collectPackets(packetRowsForTuples(store, 'tcp', [reverse(c2s), { ...c2s, sport: 40001 }])),
    [otherConnection, syn, synAck, ack, data], // equal timestamps: by packet id
  );
  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [c2s], { from: T0 + 1n, to: T0 + 1n })), [synAck]);
  // Stored as IPv6 (IPv4-mapped); the header bytes as their residual (test/flowlog/residual.test.ts), as long as they are.
  const stored = await storedPacket(syn.packetId);
  assert.equal(stored.src, '::ffff:10.1.0.1');
  assert.equal(stored.residual.length, 256);
  const { residual } = await storedPacket(data.packetId);
  assert.equal(residual.length, data.headers.length);
  const nonZero = residual.filter((byte) => byte !== 0).length;
  assert.ok(nonZero <= 24, `${nonZero} of ${residual.length} residual bytes are not zero`);
});

test("a chunk's header residuals are stored as XOR with the previous packet's: every length round-trips, a repeat takes a byte per 8", async () => {
  const tuple = { src: '10.9.0.1', sport: 41000, dst: '10.9.0.2', dport: 80 };
  // Not IP (EtherType 0x0c0d): the residual is the bytes as they are.
  const first = ALL_BYTES.slice(0, 70);
  const changed = first.slice();
  changed[69] ^= 0x5a;
  const headers = [first, first.slice(), new Uint8Array(0), ALL_BYTES.slice(1, 4), new Uint8Array(66).fill(0xff), ALL_BYTES.slice(100, 230), changed, first.slice(0, 9)];
  const packets = headers.map((bytes, i) => packet(tuple, { ts: T0 + BigInt(i), packetId: 9000n + BigInt(i), headers: bytes, wireLen: 1000 }));
  const writer = new FlowLogWriter(store);
  writer.addPackets(packetColumnsOfRecords(packets));
  await writer.close();

  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [tuple])), packets);
  for (const p of packets) assert.deepEqual((await storedPacket(p.packetId)).residual, Buffer.from(p.headers));
  // Per packet: a mask byte per 8 bytes, and the bytes that differ from the previous packet's (the repeat: 9 bytes for 70).
  const residualBytes = headers.reduce((sum, bytes, i) => {
    const previous = i === 0 ? new Uint8Array(0) : headers[i - 1];
    const differing = bytes.filter((byte, j) => byte !== (j < previous.length ? previous[j] : 0)).length;
    return sum + Math.ceil(bytes.length / 8) + differing;
  }, 0);
  assert.equal(await count(`SELECT length(packed) FROM nettrail.packet_chunks WHERE sport = 41000`), FIXED_BYTES * packets.length + residualBytes);
});

/** The stored source address and header residual of the packet with id `id`, from its chunk's packed bytes (chunkResiduals). */
async function storedPacket(id: bigint): Promise<{ src: string; residual: Buffer }> {
  const result = await store.client.query({
    query: `SELECT toString(src), count, arrayFirstIndex(x -> x = {id:UInt64}, packet_ids), hex(packed), toString(residuals)
      FROM nettrail.packet_chunks WHERE has(packet_ids, {id:UInt64})`,
    query_params: { id },
    format: 'JSONCompactEachRow',
  });
  const [[src, n, position, hex, residuals]] = await result.json<[string, number, number, string, string]>();
  assert.equal(residuals, 'xor_previous');
  const residual = chunkResiduals(Buffer.from(hex, 'hex'), n, residuals)[position - 1];
  return { src, residual };
}

test('Native results decode the same whatever their chunking; a result cut inside a block is an error', async () => {
  // Every column type the packet reader takes, over several blocks (3 rows each).
  const query = `SELECT fromUnixTimestamp64Nano(toInt64(1763752983123456789) + number * 1000000000, 'UTC') AS ts, repeat('é', number % 4) AS text,
      toUInt8(number) AS u8, toUInt16(number * 300) AS u16, toUInt32(number * 70000) AS u32, toUInt64(number) * 1000000000000 AS u64,
      CAST(number % 2 + 1, 'Enum8(\\'tc\\' = 1, \\'xdp\\' = 2)') AS hook, number % 2 = 1 AS flag,
      toIPv6(concat('2001:db8::', toString(number))) AS address,
      arrayMap(i -> (toUInt32(i), toUInt32(i + number)), range(number % 3)) AS blocks
    FROM numbers(10) SETTINGS max_block_size = 3`;
  const whole = Buffer.concat(await collect((await store.client.exec({ query: `${query} FORMAT Native` })).stream));
  const rowsOf = (blocks: NativeBlock[]) => blocks.flatMap((block) => {
    const value = (name: string, i: number) => {
      const c = column(block, name, name === 'text' ? 'string' : name === 'blocks' ? 'array' : 'fixed');
      if (c.kind === 'string') return c.bytes.toString('utf8', c.starts[i], c.ends[i]);
      if (c.kind === 'array') {
        const [left, right] = c.elements.map((e) => (e as FixedColumn).values);
        const pairs = [];
        for (let j = i === 0 ? 0 : c.offsets[i - 1]; j < c.offsets[i]; j++) pairs.push([left[j], right[j]]);
        return pairs;
      }
      return name === 'address' ? Buffer.from(c.values.subarray(16 * i, 16 * i + 16) as Uint8Array).toString('hex') : c.values[i];
    };
    return Array.from({ length: block.rows }, (_, i) => block.names.map((name) => value(name, i)));
  });
  async function* chunked(size: number) {
    for (let at = 0; at < whole.length; at += size) yield whole.subarray(at, at + size);
  }
  const blocks = await collect(nativeBlocks(chunked(whole.length)));
  assert.deepEqual(blocks.map((block) => block.rows), [3, 3, 3, 1]);
  const expected = rowsOf(blocks);
  assert.deepEqual(expected[7], [1763752990123456789n, 'ééé', 7, 2100, 490000, 7000000000000n, 2, 1, '20010db8000000000000000000000007', [[0, 7]]]);
  for (const size of [1, 2, 7, 64, 333]) assert.deepEqual(rowsOf(await collect(nativeBlocks(chunked(size)))), expected, `chunks of ${size} bytes`);
  async function* cut() {
    yield whole.subarray(0, whole.length - 5);
  }
  await assert.rejects(collect(nativeBlocks(cut())), { code: 'STORE_FORMAT' });
});

test('packets come back in time order across Native blocks and time slices of any size, runs of equal timestamps included', async () => {
  const tuple = { src: '10.4.0.1', sport: 45000, dst: '10.4.0.2', dport: 22 };
  const offsets = [0n, 0n, 0n, 1n, 1n, 2n, 2n, 2n, 2n, 3n];
  const packets = offsets.map((offset, i) => packet(tuple, { ts: T0 + offset, packetId: BigInt(100 + i) }));
  const writer = new FlowLogWriter(store);
  writer.addPackets(packetColumnsOfRecords([...packets].reverse()));
  await writer.close();
  for (const blockRows of [1, 2, 3, 4, 10, 11]) {
    assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [tuple], {}, { blockRows })), packets, `blockRows ${blockRows}`);
  }
  // Time slices cut inside runs of equal timestamps: each packet in exactly one slice.
  for (const sliceRows of [1, 2, 3, 5]) {
    assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [tuple], {}, { sliceRows })), packets, `sliceRows ${sliceRows}`);
  }
  assert.deepEqual(
    await collectPackets(packetRowsForTuples(store, 'tcp', [tuple], { from: T0 + 1n, to: T0 + 2n }, { blockRows: 2 })),
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
    rttNs: null, synSeq: null, synAckSeq: null, close: 'rst', retrans: { c2s: 4, s2c: 1 }, zeroWindow: { c2s: 0, s2c: 2 }, outOfOrder: { c2s: 0, s2c: 7 },
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
});

test('flows: a time range is matched against the newest flush, not an older one', async () => {
  const client = { ip: '10.3.1.1', port: 42001 };
  const tuple = { src: client.ip, sport: client.port, dst: '10.3.0.2', dport: 443 };
  // Written in this order, so the second is the newest although it ends earlier.
  const older = flow({ id: 'node-a/eth0/20', client, end: T0 + 10n * SECOND });
  const newest = flow({ id: 'node-a/eth0/20', client, end: T0 + 2n * SECOND, close: 'rst' });
  const writer = new FlowLogWriter(store);
  writer.addFlows([older]);
  await writer.flush();
  writer.addFlows([newest]);
  await writer.close();

  assert.deepEqual(await flowsForTuples(store, 'tcp', [tuple]), [newest]);
  assert.deepEqual(await flowsForTuples(store, 'tcp', [tuple], { from: T0 + 5n * SECOND }), []);
  assert.deepEqual(await flowsForTuples(store, 'tcp', [tuple], { from: T0 + SECOND, to: T0 }), [newest]);
});

test('flows by SYN/SYN-ACK sequence numbers: the newest flush of each flow, and only if it still matches', async () => {
  const client = { ip: '10.3.2.1', port: 42002 };
  // The SYN-ACK arrives with the second flush.
  const synOnly = flow({ id: 'node-a/eth0/30', client, synSeq: 777, synAckSeq: null });
  const handshake = flow({ id: 'node-a/eth0/30', client, synSeq: 777, synAckSeq: 888, end: T0 + 3n * SECOND });
  // Another flow whose older flush matches but whose newest does not.
  const renumbered = flow({ id: 'node-b/eth0/31', node: 'node-b', client, synSeq: 777, synAckSeq: 888 });
  const writer = new FlowLogWriter(store);
  writer.addFlows([synOnly, renumbered]);
  await writer.flush();
  writer.addFlows([handshake, { ...renumbered, synAckSeq: 999 }]);
  await writer.close();

  assert.deepEqual(await flowsBySynSeq(store, 'tcp', 777, 888, {}), [handshake]);
  assert.deepEqual(await flowsBySynSeq(store, 'tcp', 777, 888, { from: T0, to: T0 }), [handshake]);
  assert.deepEqual(await flowsBySynSeq(store, 'tcp', 777, 888, { from: T0 + 1n }), []);
  assert.deepEqual(await flowsBySynSeq(store, 'udp', 777, 888, {}), []);
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
  assert.equal(writer.addPackets(packetColumnsOfRecords(packets)), 5);
  assert.equal(writer.addPackets(packetColumnsOfRecords(packets.slice(0, 2))), 0);
  const { bufferedBytes, ...counts } = writer.stats().packets;
  assert.deepEqual(counts, { accepted: 5, written: 0, dropped: 5, failures: 0, consecutiveFailures: 0, bufferedRows: 5 });
  assert.ok(bufferedBytes > 5 * 54, `bufferedBytes ${bufferedBytes}`);
  await writer.close();
  assert.deepEqual(writer.stats().packets, { accepted: 5, written: 5, dropped: 5, failures: 0, consecutiveFailures: 0, bufferedRows: 0, bufferedBytes: 0 });
  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [tuple])), packets.slice(0, 5));
  assert.throws(() => writer.addPackets(packetColumnsOfRecords(packets)), { code: 'WRITER_CLOSED' });
});

test('a call with an invalid record is refused whole', async () => {
  const tuple = { src: '10.7.0.1', sport: 47000, dst: '10.7.0.2', dport: 80 };
  const writer = new FlowLogWriter(store);
  assert.throws(() => writer.addPackets(packetColumnsOfRecords([packet(tuple), packet({ ...tuple, sport: 70000 })])), {
    code: 'INVALID_VALUE',
    message: /sport/,
  });
  assert.throws(() => writer.addNat([{
    via: 'ovs', node: 'n', netns: 'root', zone: 0, proto: 'tcp', orig: { ...tuple, src: 'not-an-ip' }, reply: tuple,
    firstSeen: T0, lastSeen: T0, entryId: 0,
  }]), { code: 'INVALID_VALUE', message: /orig\.src/ });
  assert.throws(() => writer.addFlows([flow({ id: 'x', start: -1n })]), { code: 'INVALID_VALUE', message: /start/ });
  // A packet field checked per packet, in a chunk the call made before it failed.
  assert.throws(() => writer.addPackets(packetColumnsOfRecords([packet(tuple, { ts: T0 + 1n }), packet(tuple, { ts: T0 + 2n, seq: -1 })])), { code: 'INVALID_VALUE', message: /seq/ });
  assert.deepEqual(writer.stats().packets.accepted + writer.stats().nat_translations.accepted + writer.stats().flows.accepted, 0);
  // The next call's packet goes in the chunk the refused calls made: its times are that packet's alone.
  const accepted = packet(tuple, { ts: T0 + 5n, packetId: 77n });
  assert.equal(writer.addPackets(packetColumnsOfRecords([accepted])), 1);
  await writer.close();
  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [tuple])), [accepted]);
  assert.equal(await count(`SELECT count() FROM nettrail.packet_chunks WHERE sport = 47000 AND first_ts = last_ts AND toUnixTimestamp64Nano(first_ts) = ${T0 + 5n}`), 1);
  await assert.rejects(collectPackets(packetRowsForTuples(store, 'tcp', [{ ...tuple, dst: '10.7.0.300' }])), { code: 'INVALID_VALUE' });
});

/**
 * Header bytes of packet i of a long run: runs of 1 500 packets of 66 or 70 bytes, two bytes that change
 * with every packet (like a checksum), one that changes once and stays (like a TTL) and, for i % 7 == 0,
 * a length of its own.
 */
function runHeaders(i: number): Uint8Array {
  const bytes = ALL_BYTES.slice(0, i % 7 === 0 ? 3 + (i % 11) : 66 + 4 * (Math.floor(i / 1500) % 2));
  if (bytes.length > 51) [bytes[50], bytes[51]] = [i & 0xff, (i >> 8) & 0xff];
  if (i >= 3000 && bytes.length > 10) bytes[10] = 0xaa;
  return bytes;
}

test('random header bytes and lengths round-trip through the writer and the reader (two chunks: the cap is 4 096 packets)', async () => {
  const next = random(0xc0ffee);
  const tuple = { src: '10.5.5.1', sport: 45500, dst: '10.5.5.2', dport: 443 };
  const fields = { seq: 1, ack: 2, flags: 0x18, win: 502, len: 100, ipId: 3, options: { ts_val: 4, ts_ecr: 5 } };
  let base = packetHeaders({ ...tuple, ...fields }, 6, { offloaded: true, optionBytes: [1, 1, 8, 10, 0, 0, 0, 4, 0, 0, 0, 5] });
  const packets = Array.from({ length: 6000 }, (_, i) => {
    const kind = next() % 16;
    let headers: Uint8Array;
    if (kind === 0) {
      headers = Uint8Array.from({ length: next() % 120 }, () => next() & 0xff);
    } else {
      headers = base.slice(0, kind === 1 ? next() % (base.length + 1) : base.length);
      for (let flips = next() % 3; flips > 0 && headers.length > 0; flips--) headers[next() % headers.length] ^= 1 << (next() % 8);
      if (kind === 2) base = headers; // a change that stays, for the packets after
    }
    return packet(tuple, { ts: T0 + BigInt(i) * 1000n, packetId: 20_000n + BigInt(i), ...fields, seq: i, headers });
  });
  const writer = new FlowLogWriter(store);
  writer.addPackets(packetColumnsOfRecords(packets));
  await writer.close();
  assert.equal(await count(`SELECT count() FROM nettrail.packet_chunks WHERE sport = 45500`), 2);
  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [tuple])), packets);
});

test('headers of every kind round-trip through the native encoder and the reader, agreeing with their columns or not', async () => {
  // The encoder (native/chunk_encoder.cc) XORs the bytes the columns determine; the reader undoes it in
  // TypeScript (residual.ts): any difference between the two transforms shows as a packet not read back.
  const next = random(0x5eed);
  const SYN = [2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0];
  const SACK = [1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 4];
  const TWICE = [2, 4, 0x05, 0xb4, 2, 4, 0x02, 0x18, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1];
  const TS = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 8];
  const addresses = [['10.6.0.1', '10.6.0.2'], ['fd00::6:1', 'fd00::6:2']] as const;
  const packets: PacketRecord[] = [];
  for (let i = 0; i < 3000; i++) {
    const [src, dst] = addresses[i % 2];
    const proto = next() % 3 === 0 ? 17 : 6;
    const optionBytes = proto === 17 ? [] : [[], SYN, SACK, TWICE, TS][next() % 5];
    const parsed = parseTcpOptions(Uint8Array.from(optionBytes), 0, optionBytes.length);
    const fields = {
      src, dst, sport: 46000, dport: 53 + proto, ipId: next() & 0xffff, seq: next() >>> 0, ack: next() >>> 0, flags: next() & 0xff,
      win: next() & 0xffff, len: next() % 70_000, options: parsed,
    };
    let headers = packetHeaders(fields, proto, { vlans: next() % 3, offloaded: next() % 2 === 0, optionBytes });
    const kind = next() % 8;
    if (kind === 0) headers = headers.slice(0, next() % (headers.length + 1)); // cut short anywhere
    else if (kind === 1) headers[next() % headers.length] ^= 1 << (next() % 8); // a byte the columns disagree with
    else if (kind === 2 && src.includes('.')) headers[headers.length - (proto === 6 ? 20 + optionBytes.length : 8) - 14] |= 0x01; // a later fragment
    // Columns that disagree with the options the bytes hold: none, or other values.
    const options = kind === 3 ? {} : kind === 4 ? { ...parsed, mss: 1, wscale: 2, ts_val: 3, ...(parsed.sack && { sack: parsed.sack.slice(0, 1) }) } : parsed;
    packets.push(packet({ src, sport: fields.sport, dst, dport: fields.dport }, {
      ts: T0 + BigInt(i) * 1000n, packetId: 30_000n + BigInt(i), proto: proto === 6 ? 'tcp' : 'udp', ...fields, options, headers, wireLen: headers.length,
    }));
  }
  // IP packets without a link-layer header, in a call of their own (a call's packets share a link type).
  const raw = packets.slice(0, 200).map((p, i) => ({ ...p, packetId: 40_000n + BigInt(i), ts: p.ts + 1n, linkType: 101, headers: p.headers.slice(14) }));
  const writer = new FlowLogWriter(store);
  writer.addPackets(packetColumnsOfRecords(packets));
  writer.addPackets(packetColumnsOfRecords(raw));
  await writer.close();
  for (const proto of ['tcp', 'udp'] as const) {
    for (const [src, dst] of addresses) {
      const tuple = { src, sport: 46000, dst, dport: proto === 'tcp' ? 59 : 70 };
      const expected = [...packets, ...raw].filter((p) => p.proto === proto && p.src === src).sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
      assert.ok(expected.length > 100);
      assert.deepEqual(await collectPackets(packetRowsForTuples(store, proto, [tuple])), expected, `${proto} ${src}`);
    }
  }
});

test('100 000 packets written in one bulk are all stored, also in batches that reuse the buffers of batches written', async () => {
  const rows = 100_000;
  for (const [sport, batchRows] of [[48000, undefined], [48001, 7_000]] as const) {
    const tuple = { src: '10.8.0.1', sport, dst: '10.8.0.2', dport: 80 };
    const packets = Array.from({ length: rows }, (_, i) => packet(tuple, { ts: T0 + BigInt(i) * 1000n, packetId: BigInt(i), seq: i, headers: runHeaders(i) }));
    const writer = new FlowLogWriter(store, { batchRows });
    for (let i = 0; i < rows; i += 1000) {
      writer.addPackets(packetColumnsOfRecords(packets.slice(i, i + 1000)));
      await writer.belowHighWater();
    }
    await writer.close();
    assert.equal(writer.stats().packets.written, rows);
    // Every row intact: in time order, its own seq and the header bytes that went in.
    const stored = await collectPackets(packetRowsForTuples(store, 'tcp', [tuple]));
    assert.equal(stored.length, rows);
    const wrong = stored.findIndex((p, i) => p.seq !== i || Buffer.compare(p.headers, packets[i].headers) !== 0);
    assert.equal(wrong, -1, `row ${wrong}`);
  }
});

test('data is kept after closing and re-opening the same path', async () => {
  const tuple = { src: '10.1.0.1', sport: 40000, dst: '10.1.0.2', dport: 80 };
  const before = await collectPackets(packetRowsForTuples(store, 'tcp', [tuple]));
  await store.close();
  store = await openStore({ path: storePath });
  assert.equal(await count('SELECT count() FROM nettrail.schema_version'), SCHEMA_VERSION);
  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [tuple])), before);
  assert.equal(before.length, 4);
  assert.equal((await flowsForTuples(store, 'tcp', [{ src: '10.3.0.1', sport: 42000, dst: '10.3.0.2', dport: 443 }])).length, 2);
  assert.equal((await natForTuple(store, 'tcp', { src: '10.2.0.1', sport: 41000, dst: '10.96.0.10', dport: 80 })).length, 1);
});

test('inserted parts are compact (one file) below 64 MiB', async () => {
  const result = await store.client.query({ query: `SELECT DISTINCT part_type FROM system.parts WHERE database = 'nettrail' AND table = 'packet_chunks' AND active`, format: 'JSONCompactEachRow' });
  assert.deepEqual(await result.json(), [['Compact']]);
  for (const name of TABLE_NAMES) assert.equal(await wideBytes(TABLES[name].name), 64 * 1024 * 1024, name);
});

const wideBytes = (table: string) =>
  count(`SELECT toUInt64OrZero(extract(create_table_query, 'min_bytes_for_wide_part = (\\d+)')) FROM system.tables WHERE database = 'nettrail' AND name = '${table}'`);

/** Inserts `records` into the packets table of schema versions 1 to 4, a row per packet, as they stored them. */
async function insertPacketRowsV1(records: readonly PacketRecord[]): Promise<void> {
  for (const p of records) {
    const residual = Buffer.from(p.headers);
    xorColumnBytes(residual, residual.length, headerLayout(residual, 0, residual.length, p.linkType), p, addressBytes(p.src, 'src'), addressBytes(p.dst, 'dst'));
    const o = p.options;
    const present = Object.entries(OPTION_BIT).reduce((bits, [name, bit]) => (o[name as keyof TcpOptions] === undefined ? bits : bits | bit), 0);
    await store.client.command({
      query: `INSERT INTO nettrail.packets (ts, node, netns, netns_ino, iface, ifindex, hook, direction, proto, src, sport, dst, dport, ip_id, seq, ack,
          flags, win, len, wire_len, opt_present, opt_mss, opt_wscale, opt_sack_perm, opt_ts_val, opt_ts_ecr, opt_sack, link_type, packet_id, headers_residual)
        SELECT fromUnixTimestamp64Nano({ts:Int64}, 'UTC'), {node:String}, {netns:String}, {netnsIno:UInt32}, {iface:String}, {ifindex:UInt32},
          {hook:String}, {direction:String}, {proto:String}, toIPv6({src:String}), {sport:UInt16}, toIPv6({dst:String}), {dport:UInt16},
          {ipId:UInt16}, {seq:UInt32}, {ack:UInt32}, {flags:UInt8}, {win:UInt16}, {len:UInt32}, {wireLen:UInt32}, {present:UInt8}, {mss:UInt16},
          {wscale:UInt8}, {sackPerm:Bool}, {tsVal:UInt32}, {tsEcr:UInt32}, arrayZip({sackLeft:Array(UInt32)}, {sackRight:Array(UInt32)}),
          {linkType:UInt16}, {packetId:UInt64}, unhex({residual:String})`,
      query_params: {
        ...p, src: storedAddress(p.src, 'src'), dst: storedAddress(p.dst, 'dst'), present, mss: o.mss ?? 0, wscale: o.wscale ?? 0,
        sackPerm: o.sack_perm === true, tsVal: o.ts_val ?? 0, tsEcr: o.ts_ecr ?? 0, sackLeft: (o.sack ?? []).map(([left]) => left),
        sackRight: (o.sack ?? []).map(([, right]) => right), residual: residual.toString('hex'),
      },
    });
  }
}

test('a version-3 store, a row per packet, is brought up to date when opened: compact parts; its packets in chunks, read back exactly', async () => {
  const tuple = { src: '10.9.0.1', sport: 45000, dst: '10.9.0.2', dport: 443 };
  const dataFields = { seq: 1000, ack: 2000, flags: 0x18, win: 502, len: 100, ipId: 9, options: { ts_val: 5, ts_ecr: 4 } };
  const packets = [
    packet(tuple, { ts: T0, packetId: 901n, headers: ALL_BYTES, wireLen: 256, options: { mss: 1460, wscale: 7, sack_perm: true, ts_val: 0xffffffff, ts_ecr: 0 } }),
    packet(reverse(tuple), { ts: T0 + 1n, packetId: 902n, direction: 'ingress', hook: 'xdp', seq: 7, ack: 0xfffffff1, options: { sack_perm: false, sack: [] }, headers: new Uint8Array(0), linkType: 101 }),
    packet(tuple, { ts: T0 + 2n, packetId: 903n, seq: 0xfffffff1, ack: 8, options: { sack: [[1, 2], [0xffffffff, 0]] }, iface: 'veth-ü', netns: 'pid:4242' }),
    packet(tuple, { ts: T0 + 3n, packetId: 904n, wireLen: 166, ...dataFields, headers: packetHeaders({ ...tuple, ...dataFields }, 6, { offloaded: true }) }),
    // The same second, point and direction as the first and the fourth: one chunk of three.
    packet(tuple, { ts: T0 + 4n, packetId: 905n, seq: 4, ipId: 3 }), // seq and IP id below the previous packet's: deltas wrap
    // A burst at another point: one chunk of 2 500 packets, read 1 024 at a time (real checksums on every third).
    ...Array.from({ length: 2500 }, (_, i) => {
      const fields = { seq: i, ack: 8, flags: 0x10, win: 502, len: 0, ipId: i & 0xffff, options: {} };
      const headers = packetHeaders({ ...tuple, ...fields }, 6, { offloaded: i % 3 !== 0 });
      return packet(tuple, { ts: T0 + 5n + BigInt(i), packetId: 1000n + BigInt(i), iface: 'eth1', ...fields, headers });
    }),
  ];
  // Back to how version 3 left the store: a packets table with a row per packet, no part-format setting.
  const v3 = { database: 'nettrail', cluster: null };
  for (const statement of createTableStatements(v3, PACKET_ROWS_V1)) await store.client.command({ query: statement });
  for (const table of ['packets', 'flows', 'nat_translations', 'drops']) {
    await store.client.command({ query: `ALTER TABLE nettrail.${table} RESET SETTING min_bytes_for_wide_part` });
  }
  await store.client.command({ query: 'DROP TABLE nettrail.packet_chunks SYNC' });
  await store.client.command({ query: 'DELETE FROM nettrail.schema_version WHERE version >= 4' });
  await insertPacketRowsV1(packets);
  await store.close();
  store = await openStore({ path: storePath });
  assert.equal(await count('SELECT max(version) FROM nettrail.schema_version'), SCHEMA_VERSION);
  for (const name of TABLE_NAMES) assert.equal(await wideBytes(TABLES[name].name), 64 * 1024 * 1024, name);
  assert.equal(await count(`SELECT count() FROM system.tables WHERE database = 'nettrail' AND name = 'packets'`), 0, 'the table with a row per packet is gone');
  assert.equal(await count('SELECT count() FROM nettrail.packet_chunks'), 4, 'a chunk per capture point, direction and second');
  assert.equal(await count(`SELECT countIf(residuals = 'whole') FROM nettrail.packet_chunks`), 4, 'packed in SQL: whole residuals');
  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [tuple])), packets);
  // Opened again: nothing is copied twice.
  await store.close();
  store = await openStore({ path: storePath });
  assert.deepEqual(await collectPackets(packetRowsForTuples(store, 'tcp', [tuple])), packets);
});

test('migrations are numbered 1, 2, 3, ... and the schema version is the last', () => {
  assert.deepEqual(MIGRATIONS.map((m) => m.version), MIGRATIONS.map((_, i) => i + 1));
  assert.equal(SCHEMA_VERSION, MIGRATIONS.length);
});

/** A migration's statements, conditional ones included (their condition is a query, not a statement). */
const statementsOf = (m: Migration, t: SchemaTarget): string[] => m.statements(t).flatMap((s) => (typeof s === 'string' ? [s] : s.statements));

test('cluster DDL: replicated tables and Distributed tables over them, ON CLUSTER; ClickHouse parses every statement', async () => {
  const cluster = { database: 'nettrail', cluster: 'prod_2x2' };
  const statements = [
    createDatabaseStatement(cluster),
    schemaVersionTableStatement(cluster),
    ...MIGRATIONS.flatMap((m) => statementsOf(m, cluster)),
    retentionStatement(cluster, PACKET_CHUNKS, 86_400),
    retentionStatement(cluster, PACKET_CHUNKS, null),
  ];
  for (const statement of statements) {
    // Every statement but the copy of version 5 (an INSERT into the Distributed table) is DDL run on every node.
    const ddl = !statement.startsWith('INSERT INTO nettrail.packet_chunks ');
    if (ddl) assert.match(statement, / ON CLUSTER prod_2x2\b/, statement);
    // formatQuery() parses the statement (without running it: no cluster or ZooKeeper here) and prints it back.
    const result = await store.client.query({ query: 'SELECT formatQuery({statement:String})', query_params: { statement }, format: 'JSONCompactEachRow' });
    const [[formatted]] = await result.json<[string]>();
    if (ddl) assert.match(formatted, /ON CLUSTER prod_2x2/);
  }
  for (const name of TABLE_NAMES.map((t) => TABLES[t].name)) {
    const local = statements.find((s) => s.startsWith(`CREATE TABLE IF NOT EXISTS nettrail.${name}_local ON CLUSTER prod_2x2 (`));
    const distributed = statements.find((s) => s.startsWith(`CREATE TABLE IF NOT EXISTS nettrail.${name} ON CLUSTER prod_2x2 AS nettrail.${name}_local`));
    assert.ok(local, `${name}_local`);
    assert.match(local, /ENGINE = Replicated(Replacing)?MergeTree\('\/clickhouse\/tables\/\{shard\}\/\{database\}\/\{table\}', '\{replica\}'/);
    assert.ok(distributed, `${name} (Distributed)`);
    assert.match(distributed, new RegExp(`ENGINE = Distributed\\(prod_2x2, nettrail, ${name}_local, cityHash64\\(`));
  }
  assert.match(statements[1], /ReplicatedMergeTree\('\/clickhouse\/tables\/\{database\}\/\{table\}', '\{replica\}'\)/);
  assert.equal(statements.at(-2), 'ALTER TABLE nettrail.packet_chunks_local ON CLUSTER prod_2x2 MODIFY TTL toDateTime(last_ts) + toIntervalSecond(86400)');
  // Version 5 drops the tables with a row per packet on every node.
  assert.ok(statements.includes('DROP TABLE IF EXISTS nettrail.packets_local ON CLUSTER prod_2x2 SYNC'));
  // One server: plain tables, no ON CLUSTER.
  const single = MIGRATIONS.flatMap((m) => statementsOf(m, { database: 'nettrail', cluster: null }));
  assert.ok(single.every((s) => !s.includes('ON CLUSTER') && !s.includes('Replicated') && !s.includes('Distributed')));
});

test('names that go into SQL text must be plain identifiers', async () => {
  for (const opts of [
    { url: 'http://127.0.0.1:9/', database: 'nettrail; DROP TABLE x' },
    { url: 'http://127.0.0.1:9/nettrail%60x' },
    { url: 'http://127.0.0.1:9/', cluster: "c' OR 1" },
  ]) {
    await assert.rejects(openStore(opts), { code: 'STORE_CONFIG' }, JSON.stringify(opts));
  }
  await assert.rejects(openStore({ url: 'ftp://127.0.0.1/' }), { code: 'STORE_CONFIG' });
});

test('--retention values: DURATION for every table, TABLE=DURATION for one, forever', () => {
  const everything = (seconds: number | null) => Object.fromEntries(TABLE_NAMES.map((name) => [name, seconds]));
  assert.deepEqual(parseRetention(['7d']), everything(604_800));
  assert.deepEqual(parseRetention(['30d', 'packets=12h']), { ...everything(2_592_000), packets: 43_200 });
  assert.deepEqual(parseRetention(['flows=forever', 'drops=2w']), { flows: null, drops: 1_209_600 });
  assert.deepEqual(parseRetention([]), {});
  for (const bad of ['7', '0d', 'packets=0h', 'nope=1d', '1y', 'packets=', '=1d', '1d,2d']) {
    assert.throws(() => parseRetention([bad]), { code: 'STORE_CONFIG' }, bad);
  }
});

test('the writer says when it is over its high-water mark, and when it is below again', { timeout: 20_000 }, async () => {
  const tuple = { src: '10.9.0.1', sport: 49000, dst: '10.9.0.2', dport: 80 };
  // Batches larger than the high-water mark: the rows over it are written at once, not after the minute's interval.
  const writer = new FlowLogWriter(store, { maxBufferedRows: 100, highWaterRows: 10, batchRows: 1000, flushIntervalMs: 60_000 });
  assert.equal(writer.overHighWater, false);
  await writer.belowHighWater();
  writer.addPackets(packetColumnsOfRecords(Array.from({ length: 5 }, (_, i) => packet(tuple, { packetId: BigInt(300 + i) }))));
  assert.equal(writer.overHighWater, false);
  writer.addPackets(packetColumnsOfRecords(Array.from({ length: 6 }, (_, i) => packet(tuple, { packetId: BigInt(305 + i) }))));
  assert.equal(writer.overHighWater, true);
  await writer.belowHighWater();
  assert.equal(writer.overHighWater, false);
  assert.equal(writer.stats().packets.written, 11);
  await writer.close();
});

/** Polls `check` (re-running OPTIMIZE, which applies TTLs) until it holds; fails with `what` if it never does. */
async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    for (const name of TABLE_NAMES) await store.client.command({ query: `OPTIMIZE TABLE ${store.table(name)} FINAL` });
    if (await check()) return;
    await sleep(100);
  }
  assert.fail(`never happened: ${what}`);
}

// Last: it removes the other tests' rows.
test('retention: a TTL per table deletes old rows (whole partitions) and keeps recent ones; forever removes it', async () => {
  const old = 1_577_836_800_000_000_000n; // 2020-01-01
  const now = BigInt(Date.now()) * 1_000_000n;
  const tuple = { src: '10.10.0.1', sport: 50000, dst: '10.10.0.2', dport: 80 };
  const writer = new FlowLogWriter(store);
  writer.addPackets(packetColumnsOfRecords([packet(tuple, { ts: old, packetId: 401n }), packet(tuple, { ts: now, packetId: 402n })]));
  writer.addFlows([
    flow({ id: 'old', start: old, end: old + SECOND, client: { ip: '10.10.0.1', port: 1 }, server: { ip: '10.10.0.2', port: 2 } }),
    flow({ id: 'new', start: now - SECOND, end: now, client: { ip: '10.10.0.1', port: 3 }, server: { ip: '10.10.0.2', port: 4 } }),
  ]);
  await writer.close();
  const packets = () => count(`SELECT count() FROM nettrail.packet_chunks ARRAY JOIN packet_ids AS packet_id WHERE packet_id IN (401, 402) AND sport = 50000`);
  const flows = (id: string) => count(`SELECT count() FROM nettrail.flows WHERE id = '${id}'`);
  const mutations = () => count(`SELECT count() FROM system.mutations WHERE database = 'nettrail'`);
  assert.equal(await packets(), 2);

  await store.close();
  store = await openStore({ path: storePath, retention: parseRetention(['30d', 'packets=1d']) });
  const ttl = await store.client.query({
    query: `SELECT name, engine_full LIKE '%TTL toDateTime(%) + toIntervalSecond(%)%' FROM system.tables WHERE database = 'nettrail' AND name IN {names:Array(String)} ORDER BY name`,
    query_params: { names: TABLE_NAMES.map((name) => TABLES[name].name) },
    format: 'JSONCompactEachRow',
  });
  assert.deepEqual(await ttl.json(), TABLE_NAMES.map((name) => TABLES[name].name).sort().map((name) => [name, 1]));
  await eventually('old packets and flows deleted', async () => (await packets()) === 1 && (await flows('old')) === 0);
  assert.equal(await count(`SELECT count() FROM nettrail.packet_chunks ARRAY JOIN packet_ids AS packet_id WHERE packet_id = 402 AND sport = 50000`), 1);
  assert.equal(await flows('new'), 1);
  assert.equal(await count(`SELECT count() FROM nettrail.packet_chunks WHERE toYear(last_ts) = 2025`), 0, 'the other tests\' rows are older than a day');

  // The same retention again changes nothing (no new TTL mutation); forever removes the TTL.
  const before = await mutations();
  await store.close();
  store = await openStore({ path: storePath, retention: parseRetention(['30d', 'packets=1d']) });
  assert.equal(await mutations(), before);
  await store.close();
  store = await openStore({ path: storePath, retention: parseRetention(['packets=forever']) });
  assert.equal(await count(`SELECT count() FROM system.tables WHERE database = 'nettrail' AND name = 'packet_chunks' AND engine_full LIKE '% TTL %'`), 0);
  assert.equal(await count(`SELECT count() FROM system.tables WHERE database = 'nettrail' AND name = 'flows' AND engine_full LIKE '% TTL %'`), 1);
});

test('serve refuses malformed store options with exit code 2, before opening anything', async () => {
  const cli = fileURLToPath(new URL('../../service/cli.js', import.meta.url));
  for (const [args, message] of [
    [['--retention', '1y'], /retention "1y"/],
    [['--retention', 'packets=0d'], /longer than 0/],
    [['--clickhouse-cluster', 'c1'], /--clickhouse-cluster goes with --clickhouse-url/],
    [['--clickhouse-url', 'http://127.0.0.1:9', '--clickhouse-database', 'a;b'], /not a plain identifier/],
    [['--store', 'x', '--clickhouse-url', 'http://127.0.0.1:9'], /not both/],
  ] as const) {
    const run = spawnSync(process.execPath, [cli, 'serve', ...args], { encoding: 'utf8' });
    assert.equal(run.status, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, message);
  }
});

test('the connection key a query computes from a tuple is the one the engine materialized (v4, v6, either direction, ports that sort differently as text)', async () => {
  const tuples: FourTuple[] = [
    { src: '10.0.0.1', sport: 9, dst: '10.0.0.1', dport: 10 },
    { src: '192.168.7.200', sport: 65535, dst: '10.1.2.3', dport: 80 },
    { src: 'fd00::1', sport: 50000, dst: '2001:db8:0:1::2', dport: 443 },
  ];
  for (const proto of ['tcp', 'udp'] as const) {
    for (const t of [...tuples, ...tuples.map(reverse)]) {
      const params: Record<string, unknown> = {};
      const key = connKeyList(proto, [t], params);
      const engine = connKeySql(`${proto === 'tcp' ? 6 : 17}`, `'${storedAddress(t.src, 'src')}'`, `${t.sport}`, `'${storedAddress(t.dst, 'dst')}'`, `${t.dport}`);
      const result = await store.client.query({ query: `SELECT toString(${key}), toString(${engine})`, query_params: params, format: 'JSONCompactEachRow' });
      const [[ours, theirs]] = await result.json<[string, string]>();
      assert.equal(ours, theirs, `${proto} ${JSON.stringify(t)}`);
    }
  }
});
