// Connection identity on real traffic: a client port reused for many connections
// through the port-reuse lab (DNAT to the server's port 80 and 8081 in turn) gives
// one connection per incarnation, at all four capture points, each looked up by
// time or by id with exactly its own packets (tcpdump at the same points, split at
// each new SYN, is the ground truth), its own NAT hop and its own ISN.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ConnectionJson, PacketJson } from '../../api/schemas/connections.js';
import { ALT_SERVER_PORT } from '../../lab/lab.js';
import { sleep } from '../../bench/support/wait.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { getJson, labWithService, pathPoints, serviceTuple, settledConnection, tupleText } from '../support/service-fixture.js';
import { startTcpdump, type PcapPacket } from '../support/tcpdump.js';

const CLI_JS = fileURLToPath(new URL('../../service/cli.js', import.meta.url));
const CONNECTIONS = 10;
const SYN = 0x02;
const ACK = 0x10;

interface TcpSegment {
  sport: number;
  dport: number;
  seq: number;
  flags: number;
}

/** The TCP header of an Ethernet + IPv4 frame, or null for anything else. */
function tcpSegment(p: PcapPacket): TcpSegment | null {
  const b = p.bytes;
  if (b.length < 34 || b.readUInt16BE(12) !== 0x0800 || b[23] !== 6) return null;
  const l4 = 14 + (b[14] & 0x0f) * 4;
  return { sport: b.readUInt16BE(l4), dport: b.readUInt16BE(l4 + 2), seq: b.readUInt32BE(l4 + 4), flags: b[l4 + 13] };
}

/**
 * tcpdump's packets with the client `port` (on either side) split into connections: a new one at
 * each SYN (without ACK) with another sequence number than the current one's. Keyed by that ISN.
 */
function splitBySyn(packets: PcapPacket[], port: number): Map<number, number> {
  const counts = new Map<number, number>();
  let isn: number | null = null;
  for (const p of packets) {
    const s = tcpSegment(p);
    if (!s || (s.sport !== port && s.dport !== port)) continue;
    if ((s.flags & (SYN | ACK)) === SYN && s.seq !== isn) isn = s.seq;
    if (isn !== null) counts.set(isn, (counts.get(isn) ?? 0) + 1);
  }
  return counts;
}

test(`port reuse: ${CONNECTIONS} connections on one client port through DNAT are ${CONNECTIONS} connections, each with only its packets at all four points`, async (t) => {
  const { lab, service, dir } = await labWithService(t, { scenario: 'port-reuse' });
  const points = pathPoints(lab);
  const dumps = await Promise.all(points.map((p, i) => startTcpdump(t, p.netns, p.iface, path.join(dir, `tcpdump-${i}.pcap`))));
  const port = randomClientPort();
  // A time inside each connection: the request's own span, as the client saw it.
  const during: bigint[] = [];
  for (let i = 0; i < CONNECTIONS; i++) {
    const before = BigInt(Date.now());
    assert.equal((await lab.request({ localPort: port })).status, 200);
    during.push((before + BigInt(Date.now())) / 2n);
    await sleep(150);
  }
  await sleep(1500);
  await service.flush();
  const captured = await Promise.all(dumps.map((d) => d.stop()));
  const truth = captured.map((packets) => splitBySyn(packets, port));
  const isns = [...truth[0].keys()];
  assert.equal(isns.length, CONNECTIONS, 'tcpdump at the client saw a SYN per connection');

  const clientTuple = tupleText(serviceTuple(lab, port));
  // The newest, once the last connection's NAT entry is in: the list of the tuple's connections has them all.
  const newest = await settledConnection(service, clientTuple, 'every connection of the tuple', (c) => c.others.length === CONNECTIONS - 1 && c.hops.length === 1);
  const all = [...newest.others, { id: newest.id!, first_seen: newest.first_seen }].sort((a, b) => (a.first_seen < b.first_seen ? -1 : 1));
  assert.equal(new Set(all.map((c) => c.id)).size, CONNECTIONS, 'one id each');

  for (let i = 0; i < CONNECTIONS; i++) {
    const byTime = await getJson<{ connection: ConnectionJson }>(service, `/api/v1/connections?tuple=${encodeURIComponent(clientTuple)}&at=${during[i]}`);
    const c = byTime.connection;
    assert.equal(c.id, all[i].id, `connection ${i}: at= inside it picks it`);
    const byId = (await getJson<{ connection: ConnectionJson }>(service, `/api/v1/connections?id=${c.id}`)).connection;
    assert.deepEqual(byId, c, `connection ${i}: the same by its id`);

    // Its own ISN at every point, and its own DNAT target (the router alternates 80 and 8081).
    const isn = isns[i];
    assert.deepEqual([...new Set(c.flows.map((f) => f.syn_seq))], [isn], `connection ${i}: one ISN, the ${i}th SYN's`);
    assert.equal(c.flows.length, points.length, `connection ${i}: a flow at each point`);
    assert.equal(c.hops.length, 1);
    const serverPort = c.hops[0].after.dport;
    assert.ok([lab.server.port, ALT_SERVER_PORT].includes(serverPort));
    for (const f of c.flows.filter((f) => f.netns === lab.nodes.server.netns.name)) assert.equal(f.server.port, serverPort, `connection ${i}: the server's flow is to the hop's port`);

    // Exactly its packets at each point: tcpdump's split at the SYN.
    const { packets } = await getJson<{ packets: PacketJson[] }>(service, `/api/v1/connections/timeline?id=${c.id}`);
    for (const [p, point] of points.entries()) {
      const here = packets.filter((x) => x.netns === point.netns && x.iface === point.iface);
      assert.equal(here.length, truth[p].get(isn) ?? 0, `connection ${i} at ${point.netns}/${point.iface}: tcpdump's count for ISN ${isn}`);
      const synSeqs = here.filter((x) => x.flags.includes('SYN') && !x.flags.includes('ACK')).map((x) => x.seq);
      assert.ok(synSeqs.every((seq) => seq === isn), `connection ${i} at ${point.iface}: only its own SYN`);
    }
    const pointCounts = c.points.map((p) => p.packets);
    assert.ok(pointCounts.every((n) => n === pointCounts[0]), `connection ${i}: every point saw each packet once: ${pointCounts}`);
  }

  // The CLI lists them, oldest first, the newest marked as the one `trace` shows.
  const listed = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [CLI_JS, 'trace', clientTuple, '--list', '--server', service.url], { encoding: 'utf8' }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout),
    ),
  );
  const lines = listed.replace(/\n$/, '').split('\n');
  assert.equal(lines.length, CONNECTIONS, listed);
  assert.deepEqual(lines.map((l) => l.slice(2, 18).trim()), all.map((c) => c.id));
  assert.ok(lines.at(-1)!.startsWith('*'), 'the newest is the one shown');
});

test('a tuple reused after a RST and after a FIN/TIME_WAIT: two connections each', async (t) => {
  const { lab, service } = await labWithService(t, { scenario: 'dnat' });
  const clientNs = lab.nodes.client.netns.name;
  const server = lab.service;
  // The client closes first (its end goes to TIME_WAIT; SO_REUSEADDR lets it bind the port again), or aborts with a RST (SO_LINGER 0).
  const connect = (port: number, close: 'fin' | 'rst') =>
    new Promise<void>((resolve, reject) =>
      execFile('ip', ['netns', 'exec', clientNs, 'python3', '-c', `
import socket, struct, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', ${port}))
s.connect(('${server.ip}', ${server.port}))
s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
s.recv(100)
if '${close}' == 'rst':
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
s.close()
`], (err, _stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve())),
    );
  for (const close of ['rst', 'fin'] as const) {
    const port = randomClientPort();
    await connect(port, close);
    await sleep(200);
    await connect(port, close);
    await sleep(1500);
    const tuple = tupleText(serviceTuple(lab, port));
    const c = await settledConnection(service, tuple, 'two connections', (c) => c.others.length === 1 && c.hops.length === 1);
    assert.notEqual(c.others[0].id, c.id, close);
    const isns = new Set(c.flows.map((f) => f.syn_seq));
    assert.equal(isns.size, 1, `${close}: the newest has one ISN`);
    assert.notEqual(c.others[0].isn, [...isns][0], `${close}: the other has another`);
    assert.ok(c.flows.every((f) => f.history.startsWith('S')), `${close}: each flow of the newest begins at its SYN: ${c.flows.map((f) => f.history)}`);
  }
});
