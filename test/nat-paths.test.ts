// The NAT path of real connections through each lab scenario, resolved by the
// real service (capture, conntrack / OVS tracking, store, API): whichever tuple
// of the connection is entered (client side, server side, between the hops;
// either direction), /api/v1/connections answers the same chain, with the exact
// tuples before and after each hop and what each hop rests on.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ConnectionJson, FourTupleJson, NatHopJson, NatTranslationJson } from '../api/schemas.js';
import { startService, type Service } from '../api/service.js';
import { useLab } from './lab/fixture.js';
import { ALT_SERVER_PORT, DNAT_ZONE, OVS_ZONE, type Lab, type LabScenario } from './lab/lab.js';

const CLI_JS = fileURLToPath(new URL('../api/cli.js', import.meta.url));
const NODE = 'lab-node';

const text = (t: FourTupleJson) => `${t.src}:${t.sport} -> ${t.dst}:${t.dport}`;
const reverse = (t: FourTupleJson): FourTupleJson => ({ src: t.dst, sport: t.dport, dst: t.src, dport: t.sport });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const randomPort = () => 20000 + Math.floor(Math.random() * 20000);

interface ServiceChoices {
  /** The namespaces to capture in (default: all of the lab's). */
  only?: (lab: Lab) => string[];
  /** Default: the lab's OVS, if any. */
  ovsRundirs?: string[];
}

/** A lab of `scenario` and a service capturing in its namespaces, both gone after the test, the service first; and what the service logged. */
async function labAndService(t: TestContext, scenario: LabScenario, { only, ovsRundirs }: ServiceChoices = {}): Promise<{ lab: Lab; service: Service; logs: string[] }> {
  let close = async () => {};
  t.after(() => close());
  const lab = await useLab(t, { scenario });
  const dir = mkdtempSync(path.join(tmpdir(), `nettrail-nat-${scenario}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logs: string[] = [];
  const service = await startService({
    store: { path: path.join(dir, 'store') },
    netns: only ? only(lab) : lab.namespaces.map((n) => n.name),
    ifaces: null,
    listen: { host: '127.0.0.1', port: 0 },
    node: NODE,
    flowFlushMs: 200,
    log: (message) => {
      logs.push(message);
      t.diagnostic(message);
    },
    ovsRundirs: ovsRundirs ?? (lab.ovsRundir ? [lab.ovsRundir] : []),
  });
  close = () => service.close();
  return { lab, service, logs };
}

async function connection(service: Service, tuple: string, at?: bigint): Promise<ConnectionJson | null> {
  const url = new URL('/api/v1/connections', service.url);
  url.searchParams.set('tuple', tuple);
  if (at !== undefined) url.searchParams.set('at', String(at / 1_000_000n));
  const res = await fetch(url);
  if (res.status === 404) return null;
  assert.equal(res.status, 200, `${tuple}: ${await res.clone().text()}`);
  return ((await res.json()) as { connection: ConnectionJson }).connection;
}

/**
 * The connection once the evidence expected is in: translations and flows
 * arrive a little after the packets (OVS and IPVS are polled), and until a
 * translation is recorded, the same hop may show as `tcp-seq`.
 */
async function settled(service: Service, tuple: string, vias: string[], at?: bigint): Promise<ConnectionJson> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    await service.flush();
    const found = await connection(service, tuple, at);
    const got = found?.hops.map((h) => h.via) ?? [];
    if (found && found.points.length > 0 && got.join() === vias.join()) return found;
    if (Date.now() > deadline) throw new Error(`${tuple}: hops via ${JSON.stringify(got)}, expected ${JSON.stringify(vias)}: ${JSON.stringify(found?.hops)}`);
    await sleep(200);
  }
}

type ExpectedHop = Omit<NatHopJson, 'node'>;

/** Every tuple of the chain, both ways, gives the same chain. */
async function assertChain(service: Service, expected: ExpectedHop[], at?: bigint): Promise<ConnectionJson> {
  const tuples = [expected[0]!.before, ...expected.map((h) => h.after)];
  const first = await settled(service, text(tuples[0]!), expected.map((h) => h.via), at);
  for (const tuple of tuples.flatMap((x) => [x, reverse(x)])) {
    const found = tuple === tuples[0] ? first : await connection(service, text(tuple), at);
    assert.ok(found, `${text(tuple)}: not found`);
    assert.deepEqual(found.hops, expected.map((h) => ({ ...h, node: NODE })), `hops from ${text(tuple)}`);
    assert.deepEqual(found.tuples, tuples, `tuples from ${text(tuple)}`);
  }
  return first;
}

const clientIp = (lab: Lab) => lab.nodes.client.ifaces[0]!.ip;

test('fullnat: one router DNATs and masquerades: one FULLNAT hop; missing sources are logged once', async (t) => {
  const noOvs = mkdtempSync(path.join(tmpdir(), 'nettrail-no-ovs-'));
  t.after(() => rmSync(noOvs, { recursive: true, force: true }));
  const { lab, service, logs } = await labAndService(t, 'fullnat', { ovsRundirs: [noOvs] });
  const port = randomPort();
  await lab.request({ localPort: port });
  await assertChain(service, [{
    kind: 'FULLNAT', via: 'iptables', netns: lab.nodes.router.netns.name, zone: 0,
    before: { src: clientIp(lab), sport: port, dst: lab.service.ip, dport: lab.service.port },
    after: { src: lab.masqueradeIp!, sport: port, dst: lab.server.ip, dport: lab.server.port },
  }]);
  const ipvs = existsSync('/sys/module/ip_vs') ? /^IPVS: the kernel has IPVS/ : /^IPVS_UNAVAILABLE: the kernel has no IPVS/;
  assert.equal(logs.filter((l) => ipvs.test(l)).length, 1, logs.join('\n'));
  assert.equal(logs.filter((l) => l.startsWith(`OVS_NOT_RUNNING: Open vSwitch: no ovs-vswitchd (no ${noOvs}/ovs-vswitchd.pid)`)).length, 1, logs.join('\n'));
});

test('dnat: one DNAT hop, in the router\'s conntrack zone', async (t) => {
  const { lab, service } = await labAndService(t, 'dnat');
  const port = randomPort();
  await lab.request({ localPort: port });
  await assertChain(service, [{
    kind: 'DNAT', via: 'iptables', netns: lab.nodes.router.netns.name, zone: DNAT_ZONE,
    before: { src: clientIp(lab), sport: port, dst: lab.service.ip, dport: lab.service.port },
    after: { src: clientIp(lab), sport: port, dst: lab.server.ip, dport: lab.server.port },
  }]);
});

test('snat: one SNAT hop; the client connects to the server\'s own address', async (t) => {
  const { lab, service } = await labAndService(t, 'snat');
  const port = randomPort();
  await lab.request({ localPort: port });
  await assertChain(service, [{
    kind: 'SNAT', via: 'iptables', netns: lab.nodes.router.netns.name, zone: 0,
    before: { src: clientIp(lab), sport: port, dst: lab.server.ip, dport: lab.server.port },
    after: { src: lab.masqueradeIp!, sport: port, dst: lab.server.ip, dport: lab.server.port },
  }]);
});

test('two routers: SNAT at the edge, then DNAT; the trace CLI and /api/v1/nat agree', async (t) => {
  const { lab, service } = await labAndService(t, 'two-routers');
  const port = randomPort();
  await lab.request({ localPort: port });
  const client = { src: clientIp(lab), sport: port, dst: lab.service.ip, dport: lab.service.port };
  const middle = { src: lab.masqueradeIp!, sport: port, dst: lab.service.ip, dport: lab.service.port };
  const server = { src: lab.masqueradeIp!, sport: port, dst: lab.server.ip, dport: lab.server.port };
  const connection = await assertChain(service, [
    { kind: 'SNAT', via: 'iptables', netns: lab.nodes.edge!.netns.name, zone: 0, before: client, after: middle },
    { kind: 'DNAT', via: 'iptables', netns: lab.nodes.router.netns.name, zone: 0, before: middle, after: server },
  ]);

  const cli = (...args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [CLI_JS, 'trace', ...args, '--server', service.url], { encoding: 'utf8' }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout),
      ),
    );
  const traced = JSON.parse(await cli(text(middle), '--json')) as ConnectionJson;
  assert.deepEqual(traced.hops, connection.hops);
  const printed = await cli(text(reverse(server)));
  assert.match(printed, new RegExp(`SNAT +via iptables at ${NODE}/${lab.nodes.edge!.netns.name}`));
  assert.match(printed, new RegExp(`${text(middle).replace(/\./g, '\\.')}  =>  ${text(server).replace(/\./g, '\\.')}`));

  const nat = async (query: string) => {
    const res = await fetch(`${service.url}/api/v1/nat?${query}`);
    return { status: res.status, body: (await res.json()) as { translations: NatTranslationJson[] } };
  };
  const netnsOf = async (query: string) => (await nat(query)).body.translations.map((x) => x.netns).sort();
  assert.deepEqual(await netnsOf(`ip=${clientIp(lab)}&port=${port}`), [lab.nodes.edge!.netns.name]);
  assert.deepEqual(await netnsOf(`ip=${lab.masqueradeIp}&port=${port}`), [lab.nodes.edge!.netns.name, lab.nodes.router.netns.name].sort());
  assert.deepEqual(await netnsOf(`port=${port}&netns=${lab.nodes.router.netns.name}&proto=tcp&node=${NODE}`), [lab.nodes.router.netns.name]);
  assert.deepEqual(await netnsOf(`port=${port}&proto=udp`), []);
  assert.deepEqual(await netnsOf(`port=${port}&to=${Date.now() - 3_600_000}`), [], 'nothing seen an hour ago');
  assert.equal((await nat('ip=10.1.2')).status, 400);
  assert.equal((await nat(`from=${Date.now()}&to=${Date.now() - 1000}`)).status, 400);
});

test('ovs: the bridge\'s ct(nat) DNAT, recorded from the userspace datapath', async (t) => {
  const { lab, service } = await labAndService(t, 'ovs');
  const port = randomPort();
  await lab.request({ localPort: port });
  await assertChain(service, [{
    kind: 'DNAT', via: 'ovs', netns: lab.nodes.router.netns.name, zone: OVS_ZONE,
    before: { src: clientIp(lab), sport: port, dst: lab.service.ip, dport: lab.service.port },
    after: { src: clientIp(lab), sport: port, dst: lab.server.ip, dport: lab.server.port },
  }]);
});

test('port reuse: one client port, two connections to different backends, each resolved to its own chain with `at`', async (t) => {
  const { lab, service } = await labAndService(t, 'port-reuse');
  const port = randomPort();
  const client = { src: clientIp(lab), sport: port, dst: lab.service.ip, dport: lab.service.port };
  const hop = (dport: number): ExpectedHop => ({
    kind: 'DNAT', via: 'iptables', netns: lab.nodes.router.netns.name, zone: 0,
    before: client, after: { src: clientIp(lab), sport: port, dst: lab.server.ip, dport },
  });
  const nowNs = () => BigInt(Date.now()) * 1_000_000n;
  // Each `at` lies in its connection's life (the entry lasts in TIME_WAIT until the reuse replaces it). The
  // reuse comes after capture's flow-assembly linger (2 s), within which a new SYN would join the closed flow.
  await lab.request({ localPort: port });
  await sleep(500);
  const first = nowNs();
  await sleep(2500);
  await lab.request({ localPort: port });
  await sleep(500);
  const second = nowNs();

  const earlier = await assertChain(service, [hop(lab.server.port)], first);
  const later = await assertChain(service, [hop(ALT_SERVER_PORT)], second);
  const synSeqs = (c: ConnectionJson) => new Set(c.flows.map((f) => f.syn_seq));
  assert.equal(synSeqs(earlier).size, 1, 'the flows of one connection');
  assert.equal(synSeqs(later).size, 1);
  assert.notDeepEqual(synSeqs(earlier), synSeqs(later));
  // Without `at`: the newest; a server side tuple belongs to one connection only.
  assert.deepEqual((await connection(service, text(client)))!.hops, later.hops);
  assert.deepEqual((await connection(service, text(hop(lab.server.port).after)))!.hops, earlier.hops);
});

test('no NAT device observed (the router is not tracked): a tcp-seq hop from the SYN and SYN-ACK seen at both ends', async (t) => {
  const { lab, service } = await labAndService(t, 'fullnat', { only: (l) => [l.nodes.client.netns.name, l.nodes.server.netns.name] });
  const port = randomPort();
  await lab.request({ localPort: port });
  const connection = await assertChain(service, [{
    kind: 'FULLNAT', via: 'tcp-seq', netns: lab.nodes.server.netns.name, zone: 0,
    before: { src: clientIp(lab), sport: port, dst: lab.service.ip, dport: lab.service.port },
    after: { src: lab.masqueradeIp!, sport: port, dst: lab.server.ip, dport: lab.server.port },
  }]);
  assert.deepEqual(connection.points.map((p) => p.netns).sort(), [lab.nodes.client.netns.name, lab.nodes.server.netns.name].sort());
});
