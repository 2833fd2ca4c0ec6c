// The connection search on real traffic: N requests through the lab's DNAT +
// MASQUERADE router, captured at its 4 interfaces, are N rows of 4 points
// each, with the FULLNAT hop; filters on either side's tuple, cursor paging,
// and a refused connection on the client's lo, left out by loopback=exclude.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { ConnectionRowJson, ConnectionSearchResponseJson } from '../../api/schemas/connection-search.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { TRAFFIC_JS } from '../support/netns-pair.js';
import { getJson, labWithService, pathPoints, serviceTuple } from '../support/service-fixture.js';
import { sleep } from '../../bench/support/wait.js';

const N = 5;

test(`${N} connections through the lab's router: ${N} rows of 4 capture points, filters, paging, loopback`, { timeout: 120_000 }, async (t) => {
  const { lab, service } = await labWithService(t);
  const { client } = lab.nodes;
  const firstPort = randomClientPort();
  const ports = Array.from({ length: N }, (_, i) => firstPort + i);
  for (const localPort of ports) assert.equal((await lab.request({ localPort })).status, 200);
  // A connection nettrail should not crowd the list with: refused on the client's loopback interface.
  execFileSync('ip', ['netns', 'exec', client.netns.name, process.execPath, TRAFFIC_JS, 'refused', '127.0.0.1', '9']);
  await sleep(1500);
  await service.flush();

  const search = (query: Record<string, string>) =>
    getJson<ConnectionSearchResponseJson>(service, `/api/v1/connections/search?${new URLSearchParams(query)}`);
  const ours = (rows: ConnectionRowJson[]) => rows.filter((r) => r.client_tuple.src === client.ifaces[0].ip && ports.includes(r.client_tuple.sport));
  const points = pathPoints(lab);

  const { connections, next_cursor } = await search({ src: client.ifaces[0].ip, loopback: 'exclude' });
  assert.equal(next_cursor, null);
  assert.equal(connections.length, N, JSON.stringify(connections.map((c) => c.client_tuple)));
  // Newest first: the last request's connection leads.
  assert.deepEqual(connections.map((c) => c.client_tuple.sport), [...ports].reverse());
  for (const row of connections) {
    const before = serviceTuple(lab, row.client_tuple.sport);
    assert.deepEqual(row.points.map(({ node, netns, iface }) => ({ node, netns, iface })), points, `${row.id}: its 4 points in path order`);
    assert.deepEqual(row.client_tuple, before);
    assert.deepEqual(row.points.slice(0, 2).map((p) => p.tuple), [before, before]);
    assert.equal(row.server_tuple.src, lab.masqueradeIp);
    assert.deepEqual({ dst: row.server_tuple.dst, dport: row.server_tuple.dport }, { dst: lab.server.ip, dport: lab.server.port });
    assert.deepEqual(row.points.slice(2).map((p) => p.tuple), [row.server_tuple, row.server_tuple]);
    assert.deepEqual(row.tuples, [before, row.server_tuple]);
    assert.deepEqual(row.hops, [{ kind: 'FULLNAT', before, after: row.server_tuple }]);
    assert.equal(row.proto, 'tcp');
    assert.equal(row.conn_state, 'SF');
    assert.deepEqual(row.marks, { retrans: false, zero_window: false, drop: false, rst: false });
    assert.ok(row.points.every((p) => p.packets.c2s >= 4 && p.packets.s2c >= 4), JSON.stringify(row.points));
    assert.ok(row.first_seen <= row.points[3].start && row.points[3].start <= row.last_seen);
  }

  // Filters match through any of a connection's flows: the server side's tuple finds it as well as the client side's.
  const [newest] = connections;
  assert.deepEqual((await search({ sport: String(newest.client_tuple.sport), src: client.ifaces[0].ip })).connections, [newest]);
  assert.deepEqual((await search({ sport: String(newest.server_tuple.sport), src: lab.masqueradeIp! })).connections, [newest]);
  assert.deepEqual(ours((await search({ dport: String(lab.server.port), dst: lab.server.ip })).connections), connections);
  assert.deepEqual(ours((await search({ netns: points[3].netns, iface: points[3].iface, proto: 'tcp', state: 'SF' })).connections), connections);
  assert.deepEqual((await search({ src: client.ifaces[0].ip, has: 'retrans' })).connections, []);
  assert.deepEqual((await search({ src: client.ifaces[0].ip, proto: 'udp' })).connections, []);
  const from = new Date(Date.parse(connections[1].first_seen)).toISOString();
  assert.ok(ours((await search({ from, src: client.ifaces[0].ip })).connections).length >= 2);

  // Pages of 2: the same rows, none twice.
  const paged: ConnectionRowJson[] = [];
  let cursor: string | null = null;
  do {
    const page: ConnectionSearchResponseJson = await search({ src: client.ifaces[0].ip, limit: '2', ...(cursor ? { cursor } : {}) });
    assert.ok(page.connections.length <= 2);
    paged.push(...page.connections);
    cursor = page.next_cursor;
  } while (cursor !== null);
  assert.deepEqual(paged, connections);

  // The refused loopback connection: in the list by default and with loopback=only, not with exclude.
  const loopback = (rows: ConnectionRowJson[]) => rows.filter((r) => r.points.some((p) => p.netns === client.netns.name && p.iface === 'lo'));
  const only = await search({ loopback: 'only', node: points[0].node, netns: client.netns.name });
  assert.ok(only.connections.length >= 1, JSON.stringify(only));
  assert.deepEqual(loopback(only.connections), only.connections);
  assert.ok(only.connections.some((r) => r.client_tuple.dst === '127.0.0.1' && r.client_tuple.dport === 9 && r.conn_state === 'REJ'), JSON.stringify(only.connections));
  assert.deepEqual(loopback((await search({ loopback: 'exclude', netns: client.netns.name })).connections), []);
  assert.equal(loopback((await search({ netns: client.netns.name })).connections).length, only.connections.length);
});
