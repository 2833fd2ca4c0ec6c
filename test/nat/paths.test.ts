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
import type { FourTupleJson } from '../../api/schemas/common.js';
import type { ConnectionJson } from '../../api/schemas/connections.js';
import type { NatHopJson, NatTranslationJson } from '../../api/schemas/nat.js';
import type { Service } from '../../service/service.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { ALT_SERVER_PORT, DNAT_ZONE, OVS_ZONE, type Lab, type LabScenario } from '../../lab/lab.js';
import {
  connectionOf, labWithService, NODE, reversed, serviceTuple, settledConnection, tupleText, type LabServiceOptions,
} from '../support/service-fixture.js';
import { sleep } from '../../bench/support/wait.js';

const CLI_JS = fileURLToPath(new URL('../../service/cli.js', import.meta.url));

type ExpectedHop = Omit<NatHopJson, 'node'>;

/** Every tuple of the chain, both ways, gives the same chain. */
async function assertChain(service: Service, expected: ExpectedHop[], at?: bigint): Promise<ConnectionJson> {
  const tuples = [expected[0]!.before, ...expected.map((h) => h.after)];
  const vias = expected.map((h) => h.via);
  // Translations and flows arrive a little after the packets (OVS and IPVS are polled), and
  // until a translation is recorded, the same hop may show as `tcp-seq`.
  const first = await settledConnection(service, tupleText(tuples[0]!), `hops via ${JSON.stringify(vias)}`, (c) =>
    c.points.length > 0 && c.hops.map((h) => h.via).join() === vias.join(), at);
  for (const tuple of tuples.flatMap((x) => [x, reversed(x)])) {
    const found = tuple === tuples[0] ? first : await connectionOf(service, tupleText(tuple), at);
    assert.ok(found, `${tupleText(tuple)}: not found`);
    assert.deepEqual(found.hops, expected.map((h) => ({ ...h, node: NODE })), `hops from ${tupleText(tuple)}`);
    assert.deepEqual(found.tuples, tuples, `tuples from ${tupleText(tuple)}`);
  }
  return first;
}

const clientIp = (lab: Lab) => lab.nodes.client.ifaces[0]!.ip;

/** A tuple to the lab's server from `src`, with the client's `port`. */
const toServer = (lab: Lab, src: string, port: number): FourTupleJson => ({ src, sport: port, dst: lab.server.ip, dport: lab.server.port });

/**
 * A lab of `scenario`, the service capturing it, and one request through it from a client
 * port of the test's own: whichever of its tuples is entered, the service answers the chain
 * `expected(lab, port)`.
 */
async function requestAndAssertChain(
  t: TestContext,
  scenario: LabScenario,
  expected: (lab: Lab, port: number) => ExpectedHop[],
  options: Omit<LabServiceOptions, 'scenario'> = {},
) {
  const { lab, service, logs } = await labWithService(t, { scenario, ...options });
  const port = randomClientPort();
  await lab.request({ localPort: port });
  const connection = await assertChain(service, expected(lab, port));
  return { lab, service, logs, port, connection };
}

test('fullnat: one router DNATs and masquerades: one FULLNAT hop; missing sources are logged once', async (t) => {
  const noOvs = mkdtempSync(path.join(tmpdir(), 'nettrail-no-ovs-'));
  t.after(() => rmSync(noOvs, { recursive: true, force: true }));
  const { logs } = await requestAndAssertChain(t, 'fullnat', (lab, port) => [{
    kind: 'FULLNAT', via: 'iptables', netns: lab.nodes.router.netns.name, zone: 0,
    before: serviceTuple(lab, port), after: toServer(lab, lab.masqueradeIp!, port),
  }], { ovsRundirs: [noOvs] });
  const ipvs = existsSync('/sys/module/ip_vs') ? /^IPVS: the kernel has IPVS/ : /^IPVS_UNAVAILABLE: the kernel has no IPVS/;
  assert.equal(logs.filter((l) => ipvs.test(l)).length, 1, logs.join('\n'));
  assert.equal(logs.filter((l) => l.startsWith(`OVS_NOT_RUNNING: Open vSwitch: no ovs-vswitchd (no ${noOvs}/ovs-vswitchd.pid)`)).length, 1, logs.join('\n'));
});

test('dnat: one DNAT hop, in the router\'s conntrack zone', async (t) => {
  await requestAndAssertChain(t, 'dnat', (lab, port) => [{
    kind: 'DNAT', via: 'iptables', netns: lab.nodes.router.netns.name, zone: DNAT_ZONE,
    before: serviceTuple(lab, port), after: toServer(lab, clientIp(lab), port),
  }]);
});

test('snat: one SNAT hop; the client connects to the server\'s own address', async (t) => {
  await requestAndAssertChain(t, 'snat', (lab, port) => [{
    kind: 'SNAT', via: 'iptables', netns: lab.nodes.router.netns.name, zone: 0,
    before: toServer(lab, clientIp(lab), port), after: toServer(lab, lab.masqueradeIp!, port),
  }]);
});

test('two routers: SNAT at the edge, then DNAT; the trace CLI and /api/v1/nat agree', async (t) => {
  const { lab, service, port, connection } = await requestAndAssertChain(t, 'two-routers', (lab, port) => {
    const middle = { ...serviceTuple(lab, port), src: lab.masqueradeIp! };
    return [
      { kind: 'SNAT', via: 'iptables', netns: lab.nodes.edge!.netns.name, zone: 0, before: serviceTuple(lab, port), after: middle },
      { kind: 'DNAT', via: 'iptables', netns: lab.nodes.router.netns.name, zone: 0, before: middle, after: toServer(lab, lab.masqueradeIp!, port) },
    ];
  });
  const [, middle, server] = connection.tuples;

  const cli = (...args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [CLI_JS, 'trace', ...args, '--server', service.url], { encoding: 'utf8' }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout),
      ),
    );
  const traced = JSON.parse(await cli(tupleText(middle), '--json')) as ConnectionJson;
  assert.deepEqual(traced.hops, connection.hops);
  const printed = await cli(tupleText(reversed(server)));
  assert.match(printed, new RegExp(`SNAT +via iptables at ${NODE}/${lab.nodes.edge!.netns.name}`));
  assert.match(printed, new RegExp(`${tupleText(middle).replace(/\./g, '\\.')}  =>  ${tupleText(server).replace(/\./g, '\\.')}`));

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
  await requestAndAssertChain(t, 'ovs', (lab, port) => [{
    kind: 'DNAT', via: 'ovs', netns: lab.nodes.router.netns.name, zone: OVS_ZONE,
    before: serviceTuple(lab, port), after: toServer(lab, clientIp(lab), port),
  }]);
});

test('port reuse: one client port, two connections to different backends, each resolved to its own chain with `at`', async (t) => {
  const { lab, service } = await labWithService(t, { scenario: 'port-reuse' });
  const port = randomClientPort();
  const client = serviceTuple(lab, port);
  const hop = (dport: number): ExpectedHop => ({
    kind: 'DNAT', via: 'iptables', netns: lab.nodes.router.netns.name, zone: 0,
    before: client, after: { ...toServer(lab, clientIp(lab), port), dport },
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
  assert.deepEqual((await connectionOf(service, tupleText(client)))!.hops, later.hops);
  assert.deepEqual((await connectionOf(service, tupleText(hop(lab.server.port).after)))!.hops, earlier.hops);
});

test('no NAT device observed (the router is not tracked): a tcp-seq hop from the SYN and SYN-ACK seen at both ends', async (t) => {
  const { lab, connection } = await requestAndAssertChain(t, 'fullnat', (lab, port) => [{
    kind: 'FULLNAT', via: 'tcp-seq', netns: lab.nodes.server.netns.name, zone: 0,
    before: serviceTuple(lab, port), after: toServer(lab, lab.masqueradeIp!, port),
  }], { only: (l) => [l.nodes.client.netns.name, l.nodes.server.netns.name] });
  assert.deepEqual(connection.points.map((p) => p.netns).sort(), [lab.nodes.client.netns.name, lab.nodes.server.netns.name].sort());
});
