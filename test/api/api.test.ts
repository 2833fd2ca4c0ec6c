// The HTTP API against a real flow-log store (embedded chDB) through fastify
// inject: every flow filter against a reference search, cursor pagination in
// every order, single flows, the connection routes, errors, 503 when the
// store is gone, OpenAPI and docs, metrics, read-only and no CORS.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClickHouseLogLevel, createClient } from '@clickhouse/client';
import type { FastifyInstance } from 'fastify';
import { isStoreFailure } from '../../flowlog/errors.js';
import { buildServer } from '../../api/server.js';
import type { FlowJson, FlowsResponseJson } from '../../api/schemas/flows.js';
import type { DropFate, DropRecord, FlowRecord, NatTranslation, PacketRecord } from '../../model/records.js';
import { FLOW_ORDERS } from '../../flowlog/flow-search.js';
import { makeFlows, referenceMatch, referenceSort, SECOND, T0, writeFlows, type ReferenceQuery } from '../support/api-fixture.js';
import { storeAppOptions } from '../../bench/support/store-app.js';
import { openTempStore, type TempStore } from '../support/store-fixture.js';
import { packetColumnsOfRecords } from '../../flowlog/packets/record-columns.js';

const SEED = 20261121;
const FLOW_COUNT = 2500;

let temp: TempStore;
let server: FastifyInstance;
let flows: FlowRecord[];
let earlier: FlowRecord[];
/** Ids of the flows with a drop. */
let dropped: Set<string>;

function drop(tuple: { src: string; sport: number; dst: string; dport: number }, ts: bigint, packetId: bigint, fate: DropFate['fate']): DropRecord {
  const seenAt = fate === 'copy' || fate === 'consumed' ? 'node-b/ns-server/eth0' : null;
  return {
    fate: { fate, proof: `${fate} in this fixture`, seenAt, seenDeltaNs: seenAt === null ? null : 38_000n },
    ts, node: 'node-b', netns: 'ns-router', netnsIno: 4026532000, iface: 'in0', ifindex: 2, proto: 'tcp', ...tuple,
    reason: 'NETFILTER_DROP', reasonCode: 6, location: 'nf_hook_slow+0x96', stack: ['nf_hook_slow+0x96', 'ip_forward+0x1a4'],
    cause: 'a netfilter rule dropped it', packetId, wireLen: 74, linkType: 1, headers: new Uint8Array(54),
  };
}

/** A connection through a DNAT at node-b/ns-router: client 10.77.0.2:40001 -> 10.77.0.1:80 becomes 10.78.0.1:40001 -> 10.78.0.2:8080. */
const NAT_CLIENT = { src: '10.77.0.2', sport: 40001, dst: '10.77.0.1', dport: 80 };
const NAT_SERVER = { src: '10.78.0.1', sport: 40001, dst: '10.78.0.2', dport: 8080 };
const NAT_START = T0 + 5n * SECOND;

function natConnection(): { flows: FlowRecord[]; nat: NatTranslation[]; packets: PacketRecord[] } {
  const flow = (id: string, t: typeof NAT_CLIENT, netns: string, iface: string): FlowRecord => ({
    id, connectionId: 'nat-connection', proto: 'tcp', client: { ip: t.src, port: t.sport }, server: { ip: t.dst, port: t.dport },
    node: 'node-b', netns, iface, start: NAT_START, end: NAT_START + SECOND / 10n,
    packets: { c2s: 2, s2c: 1 }, bytes: { c2s: 120, s2c: 60 }, connState: 'S1', history: 'ShA',
    rttNs: 1_000_000n, retrans: { c2s: 0, s2c: 0 }, zeroWindow: { c2s: 0, s2c: 0 }, outOfOrder: { c2s: 0, s2c: 0 }, close: 'open', synSeq: 1000, synAckSeq: 9000,
  });
  const packet = (t: typeof NAT_CLIENT, iface: string, ts: bigint, flags: number, seq: number, ack: number): PacketRecord => ({
    ts, node: 'node-b', netns: 'ns-router', netnsIno: 4026532000, iface, ifindex: iface === 'in0' ? 2 : 3, hook: 'tc',
    direction: 'ingress', proto: 'tcp', ...t, ipId: 1, seq, ack, flags, win: 64240, len: 0, wireLen: 54, options: {},
    packetId: BigInt(seq), linkType: 1, headers: new Uint8Array(54),
  });
  const reverse = (t: typeof NAT_CLIENT) => ({ src: t.dst, sport: t.dport, dst: t.src, dport: t.sport });
  return {
    flows: [flow('nat-client-side', NAT_CLIENT, 'ns-router', 'in0'), flow('nat-server-side', NAT_SERVER, 'ns-router', 'out0')],
    nat: [{
      via: 'iptables', node: 'node-b', netns: 'ns-router', zone: 0, proto: 'tcp',
      orig: NAT_CLIENT, reply: reverse(NAT_SERVER), firstSeen: NAT_START, lastSeen: NAT_START + SECOND, entryId: 7,
    }],
    packets: [
      packet(NAT_CLIENT, 'in0', NAT_START, 0b10, 1000, 0),
      packet(NAT_SERVER, 'out0', NAT_START + 1000n, 0b10, 1000, 0),
      packet(reverse(NAT_SERVER), 'out0', NAT_START + 50_000n, 0b10010, 9000, 1001),
      packet(reverse(NAT_CLIENT), 'in0', NAT_START + 51_000n, 0b10010, 9000, 1001),
    ],
  };
}

before(async () => {
  temp = await openTempStore('api');
  const { store, writer } = temp;
  ({ final: flows, earlier } = makeFlows(SEED, FLOW_COUNT));
  await writeFlows(writer, { earlier, final: flows });
  const connection = natConnection();
  writer.addFlows(connection.flows);
  writer.addNat(connection.nat);
  writer.addPackets(packetColumnsOfRecords(connection.packets));
  await writer.flush();
  flows = [...flows, ...connection.flows];
  // Losses: one with a flow's tuple (reply direction; fate unknown, as rows stored before fates read),
  // one of the NAT connection's SYN (its packet id) with another tuple. No loss: a copy and a consumed
  // segment with two other flows' tuples, which has=drop must not find.
  const [withDrop, withCopy, withConsumed] = flows.filter((f) => f.proto === 'tcp' && f.connState === 'S0');
  const reply = (f: FlowRecord) => ({ src: f.server.ip, sport: f.server.port, dst: f.client.ip, dport: f.client.port });
  writer.addDrops([
    drop(reply(withDrop), withDrop.start, 77n, 'unknown'),
    drop({ src: '10.99.0.1', sport: 1, dst: '10.99.0.2', dport: 2 }, NAT_START + 10n, connection.packets[0].packetId, 'lost'),
    drop(reply(withCopy), withCopy.start, 78n, 'copy'),
    drop(reply(withConsumed), withConsumed.start, 79n, 'consumed'),
  ]);
  await writer.flush();
  dropped = new Set([withDrop.id, 'nat-client-side', 'nat-server-side']);
  server = await buildServer(storeAppOptions(store, writer));
});

after(async () => {
  await server?.close();
  await temp?.close();
});

async function get<T = unknown>(url: string): Promise<{ status: number; body: T }> {
  const response = await server.inject(url);
  return { status: response.statusCode, body: response.json() as T };
}

/** Every page of a search, following next_cursor; checks each page's size. */
async function allPages(params: URLSearchParams, limit: number): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; ; page++) {
    assert.ok(page <= flows.length / limit + 1, 'more pages than flows');
    const query = new URLSearchParams(params);
    query.set('limit', String(limit));
    if (cursor !== null) query.set('cursor', cursor);
    const { status, body } = await get<FlowsResponseJson>(`/api/v1/flows?${query}`);
    assert.equal(status, 200, `${query}: ${JSON.stringify(body)}`);
    assert.ok(body.flows.length <= limit);
    ids.push(...body.flows.map((f) => f.id));
    if (body.next_cursor === null) return ids;
    assert.equal(body.flows.length, limit, 'a page before the last is full');
    cursor = body.next_cursor;
  }
}

/** The query string of a reference query; `text` gives parameters as sent where they differ (times, address spellings). */
function queryOf(reference: ReferenceQuery, text: Record<string, string | string[]> = {}): URLSearchParams {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries({ ...reference, ...text })) {
    for (const one of [value].flat()) params.append(name, String(one));
  }
  return params;
}

const iso = (ns: bigint) => `${new Date(Number(ns / 1_000_000n)).toISOString().slice(0, 19)}.${(ns % SECOND).toString().padStart(9, '0')}Z`;

test('every filter returns exactly the flows a reference search finds', async (t) => {
  const sample = flows[1234];
  const v6 = flows.find((f) => f.client.ip.startsWith('fd00:1::'))!;
  const retransmitting = flows.find((f) => f.retrans.c2s + f.retrans.s2c > 0 && f.client.ip.startsWith('10.1.'))!;
  const middle = T0 + 36n * 3600n * SECOND;
  const cases: Array<{ reference: ReferenceQuery; text?: Record<string, string | string[]> }> = [
    { reference: {} },
    { reference: { ip: '10.1.0.0/16' } },
    { reference: { ip: sample.client.ip } },
    { reference: { ip: '10.0.0.10' } },
    { reference: { ip: 'fd00:1::/64' } },
    { reference: { ip: v6.client.ip }, text: { ip: v6.client.ip.replace('fd00:1::', 'FD00:0001:0:0:0:0:0:') } },
    { reference: { src: '10.2.0.0/22' } },
    { reference: { src: '192.168.1.0/24', dst: '10.0.0.10' } },
    { reference: { src: '2001:db8::/32' } },
    { reference: { dst: '2001:db8:0:1::443/128' } },
    { reference: { dst: '192.168.0.0/16' } },
    { reference: { port: 53 } },
    { reference: { port: sample.client.port } },
    { reference: { sport: sample.client.port } },
    { reference: { dport: 443 } },
    { reference: { proto: 'udp' } },
    { reference: { proto: 'tcp', dport: 5432 } },
    { reference: { from: middle }, text: { from: iso(middle) } },
    { reference: { to: middle }, text: { to: String(middle / 1_000_000n) } },
    { reference: { from: middle, to: middle + 3600n * SECOND }, text: { from: String(middle / 1_000_000n), to: iso(middle + 3600n * SECOND) } },
    { reference: { from: sample.end, to: sample.end }, text: { from: iso(sample.end), to: iso(sample.end) } },
    { reference: { state: ['SF'] } },
    { reference: { state: ['REJ', 'S0'] } },
    { reference: { state: ['S1'] } },
    { reference: { has: ['retrans'] } },
    { reference: { has: ['zero_window'] } },
    { reference: { has: ['rst'] } },
    { reference: { has: ['retrans', 'rst'] } },
    { reference: { has: ['drop'] } },
    { reference: { has: ['drop'], iface: 'in0' } },
    { reference: { node: 'node-b' } },
    { reference: { netns: 'ns-client' } },
    { reference: { iface: 'ens3' } },
    { reference: { node: 'node-a', netns: 'root', iface: 'eth0', proto: 'tcp', has: ['retrans'] } },
    { reference: { ip: '10.1.0.0/16', has: ['retrans'], sport: retransmitting.client.port } },
    { reference: { node: 'no-such-node' } },
  ];
  for (const { reference, text } of cases) {
    assert.ok((reference.from === undefined || text?.from) && (reference.to === undefined || text?.to), 'times need their text form');
    const params = queryOf(reference, text);
    const expected = referenceSort(flows.filter((f) => referenceMatch(f, reference, dropped)), '-start').map((f) => f.id);
    const ids = await allPages(params, 1000);
    assert.deepEqual(ids, expected, `?${params}`);
    const selective = Object.keys(reference).length > 0;
    if (selective) assert.ok(expected.length < flows.length, `?${params} filters nothing out`);
    const empty = reference.node === 'no-such-node';
    if (!empty) assert.ok(expected.length > 0, `?${params} matches no flow: the case tests nothing`);
    t.diagnostic(`?${params}: ${ids.length} flows`);
  }
});

test('a filter on a flow\'s earlier state does not find it once it has changed', async () => {
  // Earlier states are open (S1/S0, no retransmissions); their flows ended otherwise.
  const changed = earlier.filter((e) => flows.find((f) => f.id === e.id)!.connState !== e.connState);
  assert.ok(changed.length > 50);
  const ids = new Set(await allPages(new URLSearchParams({ state: 'S1' }), 1000));
  for (const flow of changed) if (flow.connState === 'S1') assert.ok(!ids.has(flow.id), `${flow.id} found by its earlier state`);
});

test(`pagination in every order: ${FLOW_COUNT} flows, 97 a page, no duplicates, no gaps, in order`, async () => {
  for (const order of FLOW_ORDERS) {
    const ids = await allPages(new URLSearchParams({ order }), 97);
    assert.equal(new Set(ids).size, ids.length, `order=${order}: duplicates`);
    assert.deepEqual(ids, referenceSort(flows, order).map((f) => f.id), `order=${order}`);
  }
  // Earlier versions (60 bytes) come first in order=bytes: small pages find only those among their first candidates.
  for (const limit of [1, 5, 30]) {
    const ids: string[] = [];
    let cursor = '';
    for (let page = 0; page < 3; page++) {
      const { body } = await get<FlowsResponseJson>(`/api/v1/flows?order=bytes&limit=${limit}${cursor && `&cursor=${cursor}`}`);
      ids.push(...body.flows.map((f) => f.id));
      cursor = body.next_cursor!;
    }
    assert.deepEqual(ids, referenceSort(flows, 'bytes').slice(0, 3 * limit).map((f) => f.id), `limit ${limit}`);
  }
  // Matches a multiple of the page size: the last full page says there is no more.
  const ipv4 = referenceSort(flows.filter((f) => !f.client.ip.includes(':')), 'bytes').map((f) => f.id);
  const size = [...Array(1000).keys()].reverse().find((n) => n > 1 && ipv4.length % n === 0)!;
  assert.deepEqual(await allPages(new URLSearchParams({ order: 'bytes', src: '0.0.0.0/0' }), size), ipv4, `limit ${size}`);
});

test('a cursor is opaque and stable: the same page every time, and only for its order', async () => {
  const first = await get<FlowsResponseJson>('/api/v1/flows?limit=10&order=-bytes');
  const cursor = first.body.next_cursor!;
  assert.match(cursor, /^[A-Za-z0-9_-]+$/);
  const again = await get<FlowsResponseJson>(`/api/v1/flows?limit=10&order=-bytes&cursor=${cursor}`);
  const twice = await get<FlowsResponseJson>(`/api/v1/flows?limit=10&order=-bytes&cursor=${cursor}`);
  assert.deepEqual(again.body, twice.body);
  assert.deepEqual(again.body.flows.map((f) => f.id), referenceSort(flows, '-bytes').slice(10, 20).map((f) => f.id));
  const otherOrder = await get<{ error: { code: string; parameter: string } }>(`/api/v1/flows?limit=10&order=bytes&cursor=${cursor}`);
  assert.equal(otherOrder.status, 400);
  assert.equal(otherOrder.body.error.code, 'BAD_CURSOR');
  assert.equal(otherOrder.body.error.parameter, 'cursor');
  // The default order is -start, newest first.
  const newest = await get<FlowsResponseJson>('/api/v1/flows?limit=20');
  assert.deepEqual(newest.body.flows.map((f) => f.id), referenceSort(flows, '-start').slice(0, 20).map((f) => f.id));
});

const expectedJson = (f: FlowRecord): FlowJson => ({
  id: f.id, connection_id: f.connectionId, proto: f.proto, client: f.client, server: f.server, node: f.node, netns: f.netns, iface: f.iface,
  start: iso(f.start), end: iso(f.end), duration_ns: String(f.end - f.start),
  packets: f.packets, bytes: f.bytes, conn_state: f.connState, history: f.history,
  rtt_ns: f.rttNs === null ? null : Number(f.rttNs), retrans: f.retrans, zero_window: f.zeroWindow, out_of_order: f.outOfOrder,
  close: f.close, syn_seq: f.synSeq, syn_ack_seq: f.synAckSeq,
});

test('GET /api/v1/flows/{id}: the flow in its newest state; 404 when unknown', async () => {
  for (const flow of [...earlier.slice(0, 20).map((e) => flows.find((f) => f.id === e.id)!), flows[0], flows[2222]]) {
    const { status, body } = await get<FlowJson>(`/api/v1/flows/${flow.id}`);
    assert.equal(status, 200);
    assert.deepEqual(body, expectedJson(flow));
  }
  const search = await get<FlowsResponseJson>(`/api/v1/flows?sport=${flows[7].client.port}&src=${flows[7].client.ip}`);
  assert.deepEqual(search.body.flows.find((f) => f.id === flows[7].id), expectedJson(flows[7]));
  for (const id of ['0000000000000000', 'no such flow', "x' OR '1'='1", 'a'.repeat(256)]) {
    const { status, body } = await get<{ error: { code: string; message: string } }>(`/api/v1/flows/${encodeURIComponent(id)}`);
    assert.equal(status, 404, id);
    assert.equal(body.error.code, 'NOT_FOUND');
  }
});

test('bad parameters: 400 naming the parameter, {error: {code, message}, errors: [...]}', async () => {
  const cases: Array<[string, string]> = [
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['limit=ten', 'limit'],
    ['limit=1&limit=2', 'limit'],
    ['limit=1e309', 'limit'],
    ['port=Infinity', 'port'],
    ['dport=-1e400', 'dport'],
    ['src=999.1.1.1', 'src'],
    ['src=10.0.0.0/33', 'src'],
    ['dst=10.0.0.1/', 'dst'],
    ['ip=fd00::/129', 'ip'],
    ['ip=fe80::1%25eth0', 'ip'],
    ['ip=10.0.0.1&ip=10.0.0.2', 'ip'],
    ['port=70000', 'port'],
    ['sport=-1', 'sport'],
    ['dport=http', 'dport'],
    ['proto=icmp', 'proto'],
    ['from=yesterday', 'from'],
    ['to=99999999999999', 'to'],
    ['from=2026-11-21T10:00:00Z&to=2026-11-21T09:00:00Z', 'to'],
    ['state=XX', 'state'],
    ['has=retransmits', 'has'],
    ['order=size', 'order'],
    ['cursor=not-a-cursor', 'cursor'],
    [`cursor=${Buffer.from('["-start","1","")').toString('base64url')}`, 'cursor'],
    [`cursor=${Buffer.from('["-start","-5","abc"]').toString('base64url')}`, 'cursor'],
    [`cursor=${Buffer.from('["bytes","99999999999999999999","abc"]').toString('base64url')}`, 'cursor'],
    ['node=', 'node'],
    ['scr=10.0.0.1', 'scr'],
  ];
  for (const [query, parameter] of cases) {
    const response = await server.inject(`/api/v1/flows?${query}`);
    assert.equal(response.statusCode, 400, query);
    const body = response.json() as { error: Record<string, unknown>; errors: Array<Record<string, unknown>> };
    assert.deepEqual(Object.keys(body), ['error', 'errors'], query);
    assert.deepEqual(body.errors, [body.error], query);
    assert.equal(typeof body.error.code, 'string', query);
    assert.equal(body.error.parameter, parameter, `${query}: ${JSON.stringify(body)}`);
    assert.ok((body.error.message as string).includes(parameter), `${query}: ${body.error.message}`);
  }
});

test('every bad parameter in one 400: ajv\'s checks and the formats of addresses, times and tuples together', async () => {
  const cases: Array<[string, Array<[string, string]>]> = [
    ['/api/v1/flows?ip=not-an-ip&port=70000', [['ip', 'BAD_PARAMETER'], ['port', 'BAD_REQUEST']]],
    ['/api/v1/flows?src=10.0.0.0/33&dst=x&from=noon&to=later&limit=0&proto=icmp', [
      ['src', 'BAD_PARAMETER'], ['dst', 'BAD_PARAMETER'], ['proto', 'BAD_REQUEST'], ['from', 'BAD_TIME'], ['to', 'BAD_TIME'], ['limit', 'BAD_REQUEST'],
    ]],
    ['/api/v1/drops?ip=1.2.3&sport=http', [['ip', 'BAD_PARAMETER'], ['sport', 'BAD_REQUEST']]],
    ['/api/v1/nat?ip=10.0.0.0/8&limit=5000', [['ip', 'BAD_PARAMETER'], ['limit', 'BAD_REQUEST']]],
    [`/api/v1/connections?tuple=${encodeURIComponent('10.0.0.1:1 -> 10.0.0.2')}&at=noon`, [['tuple', 'BAD_TUPLE'], ['at', 'BAD_TIME']]],
    [`/api/v1/pcap?tuple=${encodeURIComponent('10.0.0.1:1 → 10.0.0.2:2')}&from=x&format=gif`, [['from', 'BAD_TIME'], ['format', 'BAD_REQUEST']]],
  ];
  for (const [url, expected] of cases) {
    const response = await server.inject(url);
    assert.equal(response.statusCode, 400, url);
    const body = response.json() as { error: { code: string; parameter: string; message: string }; errors: Array<{ code: string; parameter: string; message: string }> };
    assert.deepEqual(body.errors.map((e) => [e.parameter, e.code]).sort(), [...expected].sort(), `${url}: ${JSON.stringify(body)}`);
    for (const e of body.errors) if (e.code !== 'BAD_TUPLE') assert.ok(e.message.includes(e.parameter), `${url}: ${e.message}`);
    // error, as before errors existed: one of them.
    assert.deepEqual(body.error, body.errors[0], url);
  }
  const one = (await server.inject('/api/v1/flows?ip=not-an-ip&port=70000')).json() as { errors: Array<{ message: string }> };
  assert.deepEqual(one.errors.map((e) => e.message), [
    'ip: "not-an-ip" is not an IPv4 or IPv6 address or CIDR range (10.0.0.0/8, fd00::/16)',
    'port: must be <= 65535',
  ]);
});

test('connections, timeline, pcap and NAT of a connection through a DNAT', async () => {
  const client = `${NAT_CLIENT.src}:${NAT_CLIENT.sport} -> ${NAT_CLIENT.dst}:${NAT_CLIENT.dport}`;
  const serverSide = `${NAT_SERVER.dst}:${NAT_SERVER.dport},${NAT_SERVER.src}:${NAT_SERVER.sport}`;
  for (const tuple of [client, serverSide]) {
    const { status, body } = await get<{ connection: { tuples: unknown[]; hops: Array<{ kind: string }>; flows: FlowJson[] } }>(
      `/api/v1/connections?tuple=${encodeURIComponent(tuple)}`,
    );
    assert.equal(status, 200, JSON.stringify(body));
    assert.deepEqual(body.connection.tuples, [NAT_CLIENT, NAT_SERVER], tuple);
    assert.equal(body.connection.hops.length, 1);
    assert.deepEqual(body.connection.flows.map((f) => f.id).sort(), ['nat-client-side', 'nat-server-side']);
  }
  const timeline = await get<{ packets: Array<{ iface: string; flags: string[] }> }>(
    `/api/v1/connections/timeline?src=${NAT_CLIENT.src}&sport=${NAT_CLIENT.sport}&dst=${NAT_CLIENT.dst}&dport=${NAT_CLIENT.dport}`,
  );
  assert.equal(timeline.status, 200);
  assert.deepEqual(timeline.body.packets.map((p) => `${p.iface} ${p.flags.join('|')}`), ['in0 SYN', 'out0 SYN', 'out0 SYN|ACK', 'in0 SYN|ACK']);
  for (const format of ['pcapng', 'pcap']) {
    const pcap = await server.inject(`/api/v1/pcap?format=${format}&tuple=${encodeURIComponent(client)}`);
    assert.equal(pcap.statusCode, 200);
    assert.match(String(pcap.headers['content-disposition']), /^attachment; filename="nettrail-tcp-10\.77\.0\.2-40001\.pcap(ng)?"$/);
    assert.ok(pcap.rawPayload.length > 4 * 54);
  }
  const nat = await get<{ translations: Array<{ orig: unknown }> }>('/api/v1/nat?limit=10');
  assert.equal(nat.status, 200);
  assert.deepEqual(nat.body.translations.map((t) => t.orig), [NAT_CLIENT]);

  const unknown = await get<{ error: { code: string } }>(`/api/v1/connections?tuple=${encodeURIComponent('10.9.9.9:1 -> 10.9.9.8:2')}`);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.error.code, 'NOT_FOUND');
  const malformed = await get<{ error: { code: string; message: string } }>(`/api/v1/connections?tuple=${encodeURIComponent('10.0.0.1:1 -> 10.0.0.2')}`);
  assert.equal(malformed.status, 400);
  assert.equal(malformed.body.error.code, 'BAD_TUPLE');
  const badTime = await get<{ error: { parameter: string } }>(`/api/v1/connections?tuple=${encodeURIComponent(client)}&at=noon`);
  assert.equal(badTime.status, 400);
  assert.equal(badTime.body.error.parameter, 'at');
});

test('healthz and capture status', async () => {
  assert.deepEqual(await get('/healthz'), { status: 200, body: { status: 'ok' } });
  assert.deepEqual(await get('/api/v1/capture/status'), {
    status: 200,
    body: { capturing: false, points: [], packets: 0, lost: 0, malformed: 0, skipped: [] },
  });
});

test('/openapi.json describes every route with its parameters; /docs serves the UI from the package', async () => {
  const { status, body: spec } = await get<{
    openapi: string;
    paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string }>; responses: Record<string, unknown> }>>;
  }>('/openapi.json');
  assert.equal(status, 200);
  assert.match(spec.openapi, /^3\./);
  for (const route of ['/healthz', '/metrics', '/api/v1/connections', '/api/v1/connections/search', '/api/v1/connections/timeline', '/api/v1/pcap', '/api/v1/flows', '/api/v1/flows/{id}', '/api/v1/nat', '/api/v1/capture/status']) {
    assert.ok(spec.paths[route]?.get, `${route} is not described`);
  }
  const flowParameters = spec.paths['/api/v1/flows'].get.parameters!.map((p) => p.name).sort();
  assert.deepEqual(flowParameters, ['cursor', 'dport', 'dst', 'from', 'has', 'iface', 'ip', 'limit', 'loopback', 'netns', 'node', 'order', 'port', 'proto', 'sport', 'src', 'state', 'to'].sort());
  for (const code of ['200', '400', '503']) assert.ok(spec.paths['/api/v1/flows'].get.responses[code], `flows: ${code} not described`);
  assert.deepEqual(spec.paths['/api/v1/flows/{id}'].get.parameters!.map((p) => [p.name, p.in]), [['id', 'path']]);

  const docs = await server.inject('/docs');
  assert.equal(docs.statusCode, 200);
  assert.match(String(docs.headers['content-type']), /text\/html/);
  assert.match(String(docs.headers['content-security-policy']), /default-src 'self'/);
  const assets = [...docs.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
  assert.ok(assets.length >= 4, docs.body);
  for (const asset of assets) {
    assert.match(asset, /^\.?\/docs\/|^\.\//, `${asset} is not served by this server`);
    const url = asset.startsWith('.') ? `/docs/${asset.replace(/^\.\//, '')}` : asset;
    assert.equal((await server.inject(url)).statusCode, 200, url);
  }
});

test('/metrics: request latency per route, store writer counters', async () => {
  await server.inject('/api/v1/flows?limit=1');
  await server.inject('/api/v1/flows/nope');
  const response = await server.inject('/metrics');
  assert.equal(response.statusCode, 200);
  assert.match(String(response.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const text = response.body;
  assert.match(text, /^nettrail_http_request_duration_seconds_count\{method="GET",route="\/api\/v1\/flows",status_code="200"\} [1-9]\d*$/m);
  assert.match(text, /^nettrail_http_request_duration_seconds_count\{method="GET",route="\/api\/v1\/flows\/:id",status_code="404"\} [1-9]\d*$/m);
  const stats = temp.writer.stats();
  for (const table of ['flows', 'packets', 'nat_translations'] as const) {
    const written = new RegExp(`^nettrail_store_rows_written_total\\{table="${table}"\\} (\\d+)$`, 'm').exec(text);
    assert.equal(Number(written?.[1]), stats[table].written, table);
  }
  assert.match(text, /^nettrail_store_buffered_rows\{table="flows"\} 0$/m);
  assert.match(text, /^nettrail_store_insert_failures_total\{table="flows"\} 0$/m);
  assert.match(text, /^process_resident_memory_bytes \d+/m);
});

test('read-only, no CORS', async () => {
  for (const url of ['/api/v1/flows', '/api/v1/flows/abc', '/api/v1/connections', '/api/v1/nat', '/api/v1/pcap', '/metrics', '/healthz']) {
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE'] as const) {
      const response = await server.inject({ method, url, payload: { flows: [] } });
      assert.equal(response.statusCode, 404, `${method} ${url}`);
    }
    const preflight = await server.inject({
      method: 'OPTIONS', url, headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' },
    });
    assert.ok(preflight.statusCode >= 400, `OPTIONS ${url}: ${preflight.statusCode}`);
    assert.equal(preflight.headers['access-control-allow-origin'], undefined);
    const cross = await server.inject({ url, headers: { origin: 'https://evil.example' } });
    assert.equal(cross.headers['access-control-allow-origin'], undefined, url);
  }
});

// Last: it closes the store.
test('503 STORE_UNAVAILABLE once the store is gone, without internals', async () => {
  await temp.writer.flush();
  await temp.store.close();
  for (const url of ['/api/v1/flows?src=10.0.0.0/8', '/api/v1/flows/abc', `/api/v1/connections?tuple=${encodeURIComponent('10.0.0.1:1 10.0.0.2:2')}`, '/api/v1/nat', '/healthz']) {
    const response = await server.inject(url);
    assert.equal(response.statusCode, 503, url);
    const body = response.json() as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'STORE_UNAVAILABLE', url);
    assert.doesNotMatch(body.error.message, /SELECT|\bat\s|\.js:\d/, url);
  }
  // A ClickHouse server that does not answer is a store failure too (the client's own log of the
  // expected ECONNREFUSED, a stack trace in the test output, is off).
  const refused = createClient({ url: 'http://127.0.0.1:9', request_timeout: 2000, log: { level: ClickHouseLogLevel.OFF } });
  const err = await refused.query({ query: 'SELECT 1' }).then(() => null, (e: unknown) => e);
  await refused.close();
  assert.ok(err instanceof Error);
  assert.ok(isStoreFailure(err), `${(err as Error).name} ${(err as { code?: string }).code} ${(err as Error).message}`);
});
