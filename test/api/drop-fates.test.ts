// Drop fates through the whole service: frees of copies of packets that were delivered
// (OTHERHOST on an Open vSwitch userspace-datapath port, on a flooding Linux bridge's third
// port) are `copy` with where the packet was seen; segments a TIME_WAIT socket processed
// and tcp_v4_rcv then freed without a reason are `consumed`; neither counts for has=drop.
// (A real FORWARD drop is `lost`: test/api/drops.test.ts.)
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DropJson } from '../../api/schemas/drops.js';
import type { FlowsResponseJson } from '../../api/schemas/flows.js';
import type { DropTracingJson } from '../../api/schemas/status.js';
import { decideFate } from '../../flowlog/drop-fate.js';
import type { NetnsRef } from '../../model/records.js';
import { startService, type Service } from '../../service/service.js';
import { printed } from '../../bench/support/wait.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { inNetns, useNetns } from '../support/netns.js';
import { getJson, labWithService, NODE, requestRecorded, serviceTuple, settledConnection, tupleText } from '../support/service-fixture.js';

const HTTP_SERVER_JS = fileURLToPath(new URL('../../lab/http-server.js', import.meta.url));

/**
 * Starts the service capturing in namespaces, once they are made: called first, so that after
 * the test the service closes before the namespaces (made after this) go, then its directory.
 */
function serviceFor(t: TestContext): (namespaces: NetnsRef[]) => Promise<Service> {
  let service: Service | null = null;
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-fates-'));
  t.after(async () => {
    await service?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return async (namespaces) => {
    service = await startService({
      store: { path: path.join(dir, 'store') },
      netns: namespaces.map((n) => n.name),
      ifaces: null,
      listen: { host: '127.0.0.1', port: 0 },
      node: NODE,
      flowFlushMs: 200,
      log: (message) => t.diagnostic(message),
      ovsRundirs: [],
    });
    return service;
  };
}

/** The lab's HTTP server on `port` in `netns` (killed with the namespace). */
async function httpServer(netns: NetnsRef, port: number): Promise<void> {
  const proc = spawn('ip', ['netns', 'exec', netns.name, process.execPath, HTTP_SERVER_JS, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await printed(proc, 'stdout', 'ready', 'the HTTP server');
}

/**
 * HTTP requests from `localPort`, `localPort + 1`, ...: each reads the answer to the server's FIN
 * and closes its side `holdMs` later (the server, which closed first, has turned its socket into
 * a TIME_WAIT socket by then).
 */
function requestsFrom(netns: NetnsRef, host: string, port: number, localPort: number, count: number, holdMs: number): void {
  const script = `const net = require('net');
let n = 0;
const one = () => {
  const s = net.connect({ host: ${JSON.stringify(host)}, port: ${port}, localPort: ${localPort} + n, allowHalfOpen: true }, () => s.write('GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'));
  let answer = '';
  s.on('data', (d) => { answer += d; });
  s.on('end', () => { if (!answer.startsWith('HTTP/1.1 200')) process.exit(1); setTimeout(() => s.end(), ${holdMs}); });
  s.on('error', (e) => { console.error(e.message); process.exit(1); });
  s.on('close', () => { if (++n < ${count}) one(); });
};
one();`;
  execFileSync('ip', ['netns', 'exec', netns.name, process.execPath, '-e', script], { stdio: 'inherit', timeout: 20_000 });
}

type DropsPage = { drops: DropJson[] };

/** Every drop is a copy, proven by a sighting at another point; none counts as a loss. */
function assertCopies(drops: DropJson[], where: string): void {
  for (const drop of drops) {
    assert.equal(drop.fate, 'copy', `${where}: ${JSON.stringify(drop)}`);
    assert.equal(drop.reason, 'OTHERHOST');
    assert.ok(drop.seen_at !== null && drop.seen_delta_us !== null);
    assert.match(drop.fate_proof, /^(went on|delivered to its addressee): seen at \S+ \((ingress|egress)\) [\d.]+ (µs|ms) (later|earlier)$/);
  }
}

async function flowsWithDrop(service: Service, port: number): Promise<FlowsResponseJson['flows']> {
  return (await getJson<FlowsResponseJson>(service, `/api/v1/flows?has=drop&port=${port}&limit=1000`)).flows;
}

test('OVS userspace datapath: the OTHERHOST frees on the bridge ports are copies of delivered packets', async (t) => {
  const { lab, service } = await labWithService(t, { scenario: 'ovs' });
  const localPort = randomClientPort();
  await requestRecorded(lab, service, localPort);
  const tuple = tupleText(serviceTuple(lab, localPort));
  const connection = await settledConnection(service, tuple, 'its drops', (c) => c.drops.length > 0);
  const switchNetns = lab.nodes.router.netns.name;
  assert.ok(connection.drops.every((d) => d.netns === switchNetns), JSON.stringify(connection.drops));
  assertCopies(connection.drops, 'ovs');
  // The handshake, the request and the answer (data in page fragments) and the close were all copied and delivered.
  assert.ok(connection.drops.length >= 6, `${connection.drops.length} drops`);
  assert.ok(connection.drops.some((d) => d.seen_at === `${NODE}/${lab.nodes.server.netns.name}/eth0`), 'delivered to the server');
  assert.ok(connection.drops.some((d) => d.seen_at === `${NODE}/${lab.nodes.client.netns.name}/eth0`), 'delivered to the client');
  assert.deepEqual(await flowsWithDrop(service, localPort), [], 'has=drop: no loss');
  assert.deepEqual((await getJson<DropsPage>(service, `/api/v1/drops?fate=lost&port=${localPort}`)).drops, []);
  // Totals stay honest: every free reported, and how many were losses.
  const status = await getJson<{ drops: DropTracingJson }>(service, '/api/v1/capture/status');
  assert.ok(status.drops.fates !== undefined && status.drops.fates.copy >= connection.drops.length, JSON.stringify(status.drops));
  assert.ok(status.drops.reported >= status.drops.fates.copy);
  const metrics = await (await fetch(`${service.url}/metrics`)).text();
  assert.match(metrics, /^nettrail_drop_fates_total\{fate="copy"\} [1-9]\d*$/m);
});

test('a Linux bridge that floods: the third port\'s OTHERHOST frees are copies, the connection has no loss', async (t) => {
  const startIn = serviceFor(t);
  const bridge = useNetns(t, 'br');
  const [client, server, third] = ['cl', 'sv', 'th'].map((tag) => useNetns(t, tag));
  const subnet = `10.241.${Math.floor(Math.random() * 250) + 1}`;
  inNetns(bridge, 'ip', 'link', 'add', 'br0', 'type', 'bridge');
  inNetns(bridge, 'ip', 'link', 'set', 'br0', 'up');
  [client, server, third].forEach((ns, i) => {
    const port = `p${i}`;
    inNetns(bridge, 'ip', 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name);
    // No learning: the FDB never knows a MAC, so every unicast frame is flooded to every port.
    inNetns(bridge, 'ip', 'link', 'set', port, 'master', 'br0');
    inNetns(bridge, 'ip', 'link', 'set', port, 'type', 'bridge_slave', 'learning', 'off');
    inNetns(bridge, 'ip', 'link', 'set', port, 'up');
    inNetns(ns, 'ip', 'addr', 'add', `${subnet}.${i + 1}/24`, 'dev', 'eth0');
    inNetns(ns, 'ip', 'link', 'set', 'eth0', 'up');
    inNetns(ns, 'ip', 'link', 'set', 'lo', 'up');
  });
  const service = await startIn([bridge, client, server, third]);
  await httpServer(server, 8080);
  const localPort = randomClientPort();
  requestsFrom(client, `${subnet}.2`, 8080, localPort, 1, 0);

  const tuple = `tcp ${subnet}.1:${localPort} -> ${subnet}.2:8080`;
  const connection = await settledConnection(service, tuple, 'the flooded copies dropped', (c) => c.drops.length >= 6);
  assert.ok(connection.drops.every((d) => d.netns === third.name && d.iface === 'eth0'), JSON.stringify(connection.drops));
  assertCopies(connection.drops, 'bridge flood');
  const deliveredAt = new Set(connection.drops.map((d) => d.seen_at!.split('/')[1]));
  assert.ok(!deliveredAt.has(third.name), 'proven by a sighting outside the namespace that dropped it');
  assert.deepEqual(await flowsWithDrop(service, localPort), [], 'has=drop: no loss');
});

test('loopback: the segments a TIME_WAIT socket processed are consumed, a healthy server has no loss', async (t) => {
  const startIn = serviceFor(t);
  const netns = useNetns(t, 'lo');
  inNetns(netns, 'ip', 'link', 'set', 'lo', 'up');
  const service = await startIn([netns]);
  await httpServer(netns, 8081);
  const localPort = randomClientPort();
  // The server closes first; each client closes 50 ms after the server's FIN, once that socket is TIME_WAIT.
  requestsFrom(netns, '127.0.0.1', 8081, localPort, 5, 50);

  const drops = await settledDrops(service, `/api/v1/drops?netns=${netns.name}&limit=1000`, 5);
  const ours = drops.filter((d) => d.sport >= localPort && d.sport < localPort + 5);
  assert.equal(ours.length, drops.length, 'nothing else runs in the namespace');
  for (const drop of drops) {
    assert.deepEqual([drop.reason, drop.location.split('+')[0], drop.dport, drop.fate], ['NOT_SPECIFIED', 'tcp_v4_rcv', 8081, 'consumed'], JSON.stringify(drop));
    assert.match(drop.fate_proof, /acknowledged by 127\.0\.0\.1:8081 \(ack \d+\) at \S+\/lo [\d.]+ µs later/);
  }
  assert.equal(new Set(drops.map((d) => d.sport)).size, 5, 'each connection\'s last FIN');
  assert.deepEqual(await flowsWithDrop(service, 8081), [], 'has=drop: no loss');
  assert.ok((await getJson<FlowsResponseJson>(service, '/api/v1/flows?port=8081&limit=1000')).flows.length >= 5, 'the flows are there');
});

/** The drops `route` lists, once at least `count` are there (the service writes out what it holds before each look). */
async function settledDrops(service: Service, route: string, count: number): Promise<DropJson[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    await service.flush();
    const { drops } = await getJson<DropsPage>(service, route);
    if (drops.length >= count || Date.now() > deadline) return drops;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test("TCP's duplicate frees (TCP_OLD_DATA, TCP_OLD_SEQUENCE, TCP_OLD_ACK) are copies, decided from the reason; other reasons are not", () => {
  const base = {
    ts: 1_000_000_000n, node: 'n', netns: 'ns', netnsIno: 1, iface: '', ifindex: 0, proto: 'tcp' as const,
    src: '10.0.0.1', sport: 40000, dst: '10.0.0.2', dport: 80, reasonCode: 0, location: 'tcp_data_queue+0x7a5', stack: [],
    cause: '', packetId: 7n, wireLen: 66, linkType: 1, headers: new Uint8Array(0),
  };
  for (const reason of ['TCP_OLD_DATA', 'TCP_OLD_SEQUENCE', 'TCP_OLD_ACK']) {
    const fate = decideFate({ ...base, reason }, [], [], null);
    assert.equal(fate.fate, 'copy', reason);
    assert.match(fate.proof, new RegExp(`^a duplicate the receiving socket discarded \\(${reason}\\)`));
  }
  assert.equal(decideFate({ ...base, reason: 'TCP_OFOMERGE' }, [], [], null).fate, 'lost', 'a reason that is not a duplicate, seen nowhere: lost');
  // A full receiving socket's free is a loss whatever was seen (it had arrived): no sightings are needed.
  const full = decideFate({ ...base, proto: 'udp', reason: 'SOCKET_RCVBUFF' }, [], [], null);
  assert.equal(full.fate, 'lost');
  assert.match(full.proof, /^its receiving socket had no room for it \(SOCKET_RCVBUFF\)/);
  assert.equal(decideFate({ ...base, proto: 'udp', reason: 'TCP_OLD_DATA' }, [], [], null).fate, 'lost', 'only TCP has these');
});

test('a PAWS reject (TCP_RFC7323_PAWS) is a copy when the receiver had acknowledged its data before, else a loss', () => {
  const drop = {
    ts: 1_000_000_000n, node: 'n', netns: 'ns', netnsIno: 1, iface: '', ifindex: 0, proto: 'tcp' as const,
    src: '10.0.0.1', sport: 40000, dst: '10.0.0.2', dport: 80, reasonCode: 0, location: 'tcp_validate_incoming+0x3c1', stack: [],
    cause: '', packetId: 7n, wireLen: 66, linkType: 1, headers: new Uint8Array(0), reason: 'TCP_RFC7323_PAWS',
  };
  const ack = { ts: 999_000_000n, point: 'n/ns/eth0', ack: 5000, from: '10.0.0.2:80' };
  const copy = decideFate(drop, [], [], ack);
  assert.equal(copy.fate, 'copy');
  assert.match(copy.proof, /^a late duplicate its receiving socket rejected for an older timestamp \(TCP_RFC7323_PAWS\): its data had been acknowledged already, by 10\.0\.0\.2:80 \(ack 5000\) at n\/ns\/eth0 1000 µs earlier/);
  assert.equal(copy.seenDeltaNs, -1_000_000n);
  assert.equal(decideFate(drop, [], [], null).fate, 'lost', 'new data PAWS rejected (timestamps gone backwards): a loss');
});
