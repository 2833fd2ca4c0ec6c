// GET /api/v1/connections/search against a real flow-log store (embedded
// chDB) through fastify inject: one row per connection (flows grouped by their
// newest connection_id), every filter against a reference search, cursor
// paging, the loopback filter (also of the flow search), and 400s.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../api/server.js';
import type { ConnectionRowJson, ConnectionSearchResponseJson } from '../../api/schemas/connection-search.js';
import type { FlowsResponseJson } from '../../api/schemas/flows.js';
import type { DropRecord, FlowRecord } from '../../model/records.js';
import { storeAppOptions } from '../../bench/support/store-app.js';
import { makeConnections, referenceMatch, SECOND, T0, type GeneratedConnection, type ReferenceQuery } from '../support/api-fixture.js';
import { openTempStore, type TempStore } from '../support/store-fixture.js';

const SEED = 20261122;
const CONNECTION_COUNT = 600;

let temp: TempStore;
let server: FastifyInstance;
let connections: GeneratedConnection[];
let flows: FlowRecord[];
/** Ids of the flows with a drop (of their tuple). */
let dropped: Set<string>;

const tupleKey = (f: FlowRecord) => [f.proto, ...[`${f.client.ip}:${f.client.port}`, `${f.server.ip}:${f.server.port}`].sort()].join(' ');

before(async () => {
  temp = await openTempStore('connection-search');
  const generated = makeConnections(SEED, CONNECTION_COUNT);
  ({ connections, final: flows } = generated);
  temp.writer.addFlows(generated.earlier);
  await temp.writer.flush();
  temp.writer.addFlows(flows);
  await temp.writer.flush();
  // A drop at the server-side point of a connection through a hop: its client-side flows have another tuple.
  const withHop = connections.find((c) => c.hop === 'FULLNAT' && c.flows[0].proto === 'tcp')!;
  const serverSide = withHop.flows[3];
  const drop: DropRecord = {
    ts: serverSide.start, node: serverSide.node, netns: serverSide.netns, netnsIno: 4026532000, iface: serverSide.iface, ifindex: 2, proto: 'tcp',
    src: serverSide.server.ip, sport: serverSide.server.port, dst: serverSide.client.ip, dport: serverSide.client.port,
    reason: 'NETFILTER_DROP', reasonCode: 6, location: 'nf_hook_slow+0x96', stack: ['nf_hook_slow+0x96'],
    cause: 'a netfilter rule dropped it', packetId: 77n, wireLen: 74, linkType: 1, headers: new Uint8Array(54),
    fate: { fate: 'lost', proof: 'no capture point saw it after the drop', seenAt: null, seenDeltaNs: null },
  };
  temp.writer.addDrops([drop]);
  await temp.writer.flush();
  dropped = new Set(flows.filter((f) => tupleKey(f) === tupleKey(serverSide)).map((f) => f.id));
  server = await buildServer(storeAppOptions(temp.store, temp.writer));
});

after(async () => {
  await server?.close();
  await temp?.close();
});

async function get<T = unknown>(url: string): Promise<{ status: number; body: T }> {
  const response = await server.inject(url);
  return { status: response.statusCode, body: response.json() as T };
}

const iso = (ns: bigint) => `${new Date(Number(ns / 1_000_000n)).toISOString().slice(0, 19)}.${(ns % SECOND).toString().padStart(9, '0')}Z`;
const tupleOf = (f: FlowRecord) => ({ src: f.client.ip, sport: f.client.port, dst: f.server.ip, dport: f.server.port });

/** The row the API owes for `c`, from the generator's own account of it (its hop kind, its points in path order). */
function expectedRow(c: GeneratedConnection): ConnectionRowJson {
  const [first] = c.flows;
  const last = c.flows[c.flows.length - 1];
  const tuples = c.hop === null ? [tupleOf(first)] : [tupleOf(first), tupleOf(last)];
  return {
    id: c.id,
    proto: first.proto,
    first_seen: iso(first.start),
    last_seen: iso(c.flows.reduce((end, f) => (f.end > end ? f.end : end), 0n)),
    client_tuple: tupleOf(first),
    server_tuple: tupleOf(last),
    conn_state: first.connState,
    marks: {
      retrans: c.flows.some((f) => f.retrans.c2s + f.retrans.s2c > 0),
      zero_window: c.flows.some((f) => f.zeroWindow.c2s + f.zeroWindow.s2c > 0),
      drop: c.flows.some((f) => dropped.has(f.id)),
      rst: c.flows.some((f) => f.close === 'rst'),
    },
    points: c.flows.map((f) => ({
      node: f.node, netns: f.netns, iface: f.iface, flow_id: f.id, start: iso(f.start), tuple: tupleOf(f),
      packets: f.packets, bytes: f.bytes, conn_state: f.connState,
    })),
    tuples,
    hops: c.hop === null ? [] : [{ kind: c.hop, before: tuples[0], after: tuples[1] }],
  };
}

/** Newest first: by start, then id, both descending. */
const newestFirst = (a: GeneratedConnection, b: GeneratedConnection) => {
  const [x, y] = [a.flows[0].start, b.flows[0].start];
  if (x !== y) return x > y ? -1 : 1;
  return a.id === b.id ? 0 : a.id > b.id ? -1 : 1;
};

/** The connections any of whose flows matches `q`, newest first. */
const referenceConnections = (q: ReferenceQuery): GeneratedConnection[] =>
  connections.filter((c) => c.flows.some((f) => referenceMatch(f, q, dropped))).sort(newestFirst);

/** Every page of a search of `route`, following next_cursor; checks each page's size. */
async function allPages<T>(route: string, params: URLSearchParams, limit: number, rows: (body: T & { next_cursor: string | null }) => Array<{ id: string }>): Promise<Array<{ id: string }>> {
  const seen: Array<{ id: string }> = [];
  let cursor: string | null = null;
  for (let page = 0; ; page++) {
    assert.ok(page <= flows.length / limit + 1, 'more pages than rows');
    const query = new URLSearchParams(params);
    query.set('limit', String(limit));
    if (cursor !== null) query.set('cursor', cursor);
    const { status, body } = await get<T & { next_cursor: string | null }>(`${route}?${query}`);
    assert.equal(status, 200, `${query}: ${JSON.stringify(body)}`);
    const list = rows(body);
    assert.ok(list.length <= limit);
    seen.push(...list);
    if (body.next_cursor === null) return seen;
    assert.equal(list.length, limit, 'a page before the last is full');
    cursor = body.next_cursor;
  }
}

const searchAll = (params: URLSearchParams, limit: number) =>
  allPages<ConnectionSearchResponseJson>('/api/v1/connections/search', params, limit, (body) => body.connections) as Promise<ConnectionRowJson[]>;

function queryOf(reference: ReferenceQuery, text: Record<string, string> = {}): URLSearchParams {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries({ ...reference, ...text })) for (const one of [value].flat()) params.append(name, String(one));
  return params;
}

test(`one row per connection: ${CONNECTION_COUNT} connections, their flows grouped by their newest connection_id, each row complete`, async () => {
  assert.ok(flows.length > CONNECTION_COUNT * 2, `${flows.length} flows`);
  const rows = await searchAll(new URLSearchParams(), 1000);
  const expected = [...connections].sort(newestFirst);
  assert.equal(rows.length, CONNECTION_COUNT);
  assert.deepEqual(rows.map((r) => r.id), expected.map((c) => c.id));
  for (const [i, row] of rows.entries()) assert.deepEqual(row, expectedRow(expected[i]), `connection ${row.id}`);
  // What the data covers: every hop kind, 4-point connections, connections joined only in their newest flows, the drop.
  const kinds = new Set(rows.flatMap((r) => r.hops.map((h) => h.kind)));
  assert.deepEqual([...kinds].sort(), ['DNAT', 'FULLNAT', 'SNAT']);
  assert.ok(rows.filter((r) => r.points.length === 4).length > 100);
  assert.ok(rows.some((r) => r.marks.drop && r.points.length === 4));
});

test('every filter: the connections with a flow that matches, as a reference search finds them', async (t) => {
  const sample = connections.find((c) => c.hop === 'FULLNAT')!;
  const middle = T0 + 36n * 3600n * SECOND;
  const cases: Array<{ reference: ReferenceQuery; text?: Record<string, string> }> = [
    { reference: { ip: '10.1.0.0/16' } },
    { reference: { ip: '10.98.0.2' } },
    { reference: { ip: 'fd00:1::/64' } },
    { reference: { src: sample.flows[0].client.ip } },
    { reference: { src: '10.99.0.1' } },
    { reference: { dst: '192.168.0.0/16' } },
    { reference: { port: 53 } },
    { reference: { sport: sample.flows[3].client.port } },
    { reference: { dport: 443 } },
    { reference: { proto: 'udp' } },
    { reference: { from: middle }, text: { from: iso(middle) } },
    { reference: { to: middle }, text: { to: String(middle / 1_000_000n) } },
    { reference: { from: middle, to: middle + 3600n * SECOND }, text: { from: iso(middle), to: iso(middle + 3600n * SECOND) } },
    { reference: { state: ['SF'] } },
    { reference: { state: ['REJ', 'S0'] } },
    { reference: { has: ['retrans'] } },
    { reference: { has: ['zero_window'] } },
    { reference: { has: ['rst'] } },
    { reference: { has: ['drop'] } },
    { reference: { has: ['retrans', 'rst'] } },
    { reference: { node: 'node-b' } },
    { reference: { netns: 'ns-router' } },
    { reference: { iface: 'out0', proto: 'tcp' } },
    { reference: { loopback: 'exclude' } },
    { reference: { loopback: 'only' } },
    { reference: { loopback: 'only', proto: 'udp' } },
    { reference: { loopback: 'exclude', has: ['retrans'], dport: 443 } },
    { reference: { node: 'no-such-node' } },
  ];
  for (const { reference, text } of cases) {
    const params = queryOf(reference, text);
    const expected = referenceConnections(reference);
    const rows = await searchAll(params, 1000);
    assert.deepEqual(rows.map((r) => r.id), expected.map((c) => c.id), `?${params}`);
    // A matching connection comes with all its points, not only the matching flows.
    assert.deepEqual(rows, expected.map(expectedRow), `?${params}: rows`);
    assert.ok(expected.length < connections.length, `?${params} filters nothing out`);
    if (reference.node !== 'no-such-node') assert.ok(expected.length > 0, `?${params} matches no connection: the case tests nothing`);
    t.diagnostic(`?${params}: ${rows.length} connections`);
  }
  // loopback=include is the default: everything.
  assert.equal((await searchAll(new URLSearchParams({ loopback: 'include' }), 1000)).length, CONNECTION_COUNT);
});

test('cursor paging: every page size, no duplicates, no gaps, newest first; a cursor gives the same page every time', async () => {
  const expected = [...connections].sort(newestFirst).map((c) => c.id);
  for (const limit of [3, 97, 600]) {
    const ids = (await searchAll(new URLSearchParams(), limit)).map((r) => r.id);
    assert.equal(new Set(ids).size, ids.length, `limit ${limit}: duplicates`);
    assert.deepEqual(ids, expected, `limit ${limit}`);
  }
  const filtered = referenceConnections({ loopback: 'exclude', proto: 'tcp' }).map((c) => c.id);
  assert.deepEqual((await searchAll(new URLSearchParams({ loopback: 'exclude', proto: 'tcp' }), 13)).map((r) => r.id), filtered);
  const first = await get<ConnectionSearchResponseJson>('/api/v1/connections/search?limit=10');
  const cursor = first.body.next_cursor!;
  assert.match(cursor, /^[A-Za-z0-9_-]+$/);
  const again = await get<ConnectionSearchResponseJson>(`/api/v1/connections/search?limit=10&cursor=${cursor}`);
  const twice = await get<ConnectionSearchResponseJson>(`/api/v1/connections/search?limit=10&cursor=${cursor}`);
  assert.deepEqual(again.body, twice.body);
  assert.deepEqual(again.body.connections.map((r) => r.id), expected.slice(10, 20));
  // The default page is 100 connections.
  assert.equal((await get<ConnectionSearchResponseJson>('/api/v1/connections/search')).body.connections.length, 100);
});

test('the flow search takes loopback= too: exclude and only split the flows, include is the default', async () => {
  const flowIds = async (params: URLSearchParams) =>
    (await allPages<FlowsResponseJson>('/api/v1/flows', params, 1000, (body) => body.flows)).map((f) => f.id).sort();
  const ids = (q: ReferenceQuery) => flows.filter((f) => referenceMatch(f, q, dropped)).map((f) => f.id).sort();
  const only = await flowIds(new URLSearchParams({ loopback: 'only' }));
  const excluded = await flowIds(new URLSearchParams({ loopback: 'exclude' }));
  assert.deepEqual(only, ids({ loopback: 'only' }));
  assert.deepEqual(excluded, ids({ loopback: 'exclude' }));
  assert.ok(only.length > 50 && excluded.length > only.length);
  assert.deepEqual(await flowIds(new URLSearchParams({ loopback: 'include' })), flows.map((f) => f.id).sort());
  assert.deepEqual(await flowIds(new URLSearchParams()), flows.map((f) => f.id).sort());
  assert.deepEqual(await flowIds(new URLSearchParams({ loopback: 'only', iface: 'eth0' })), []);
});

test('bad parameters: 400 naming each, never a 500', async () => {
  const bytesCursor = (await get<FlowsResponseJson>('/api/v1/flows?limit=1&order=-bytes')).body.next_cursor!;
  const cases: Array<[string, string]> = [
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['limit=ten', 'limit'],
    ['limit=1&limit=2', 'limit'],
    ['limit=1e309', 'limit'],
    ['port=Infinity', 'port'],
    ['src=999.1.1.1', 'src'],
    ['dst=10.0.0.1/', 'dst'],
    ['ip=fd00::/129', 'ip'],
    ['port=70000', 'port'],
    ['sport=-1', 'sport'],
    ['dport=http', 'dport'],
    ['proto=icmp', 'proto'],
    ['from=yesterday', 'from'],
    ['to=99999999999999', 'to'],
    ['from=2026-11-21T10:00:00Z&to=2026-11-21T09:00:00Z', 'to'],
    ['state=XX', 'state'],
    ['has=retransmits', 'has'],
    ['node=', 'node'],
    ['netns=', 'netns'],
    ['iface=', 'iface'],
    ['loopback=hide', 'loopback'],
    ['loopback=only&loopback=exclude', 'loopback'],
    ['order=-start', 'order'],
    ['cursor=not-a-cursor', 'cursor'],
    [`cursor=${Buffer.from('["-start","-5","abc"]').toString('base64url')}`, 'cursor'],
    [`cursor=${bytesCursor}`, 'cursor'],
    ['scr=10.0.0.1', 'scr'],
  ];
  for (const [query, parameter] of cases) {
    const response = await server.inject(`/api/v1/connections/search?${query}`);
    assert.equal(response.statusCode, 400, `${query}: ${response.body}`);
    const body = response.json() as { error: Record<string, unknown>; errors: Array<Record<string, unknown>> };
    assert.deepEqual(Object.keys(body), ['error', 'errors'], query);
    assert.equal(body.error.parameter, parameter, `${query}: ${JSON.stringify(body)}`);
    assert.deepEqual(body.errors.map((e) => e.parameter), [parameter], `${query}: every bad parameter, this one alone`);
    assert.ok((body.error.message as string).includes(parameter), `${query}: ${body.error.message}`);
  }
  const flowSearch = await server.inject('/api/v1/flows?loopback=hide');
  assert.equal(flowSearch.statusCode, 400);
  assert.equal((flowSearch.json() as { error: { parameter: string } }).error.parameter, 'loopback');
});

test('/openapi.json describes the route, its parameters and rows', async () => {
  const { body } = await get<{ paths: Record<string, { get: { parameters: Array<{ name: string }> } }> }>('/openapi.json');
  const route = body.paths['/api/v1/connections/search'];
  assert.ok(route, Object.keys(body.paths).join(', '));
  const names = route.get.parameters.map((p) => p.name).sort();
  assert.deepEqual(names, ['cursor', 'dport', 'dst', 'from', 'has', 'iface', 'ip', 'limit', 'loopback', 'netns', 'node', 'port', 'proto', 'sport', 'src', 'state', 'to']);
  assert.ok(body.paths['/api/v1/flows'].get.parameters.some((p) => p.name === 'loopback'));
});
