// The diagnosis on real traffic (docs/diagnosis.md): each diagnosis scenario of the lab
// makes connections that went wrong in one way, captured by the whole service at the
// lab's four points; each gets exactly the finding it was engineered to show, at the
// right point, with the packets (and kernel drops) that prove it, and no other. The
// lab's healthy connections, a bulk iperf3 transfer and an idle keep-alive connection
// get none.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { ConnectionJson } from '../../api/schemas/connections.js';
import type { DiagnosisJson, FindingJson } from '../../api/schemas/diagnosis.js';
import { runTraffic, scenarioTraffic, type TrafficArgs } from '../../lab/diagnosis-scenarios.js';
import { dropForwarded } from '../../lab/drop-scenarios.js';
import { CLOSED_PORT, REJECTED_PORT, type Lab } from '../../lab/lab.js';
import type { Service } from '../../service/service.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { getJson, labWithService, pathPoints, settledConnection, tupleText } from '../support/service-fixture.js';

type Point = { node: string; netns: string; iface: string };
const pointText = (p: Point) => `${p.node}/${p.netns}/${p.iface}`;
const kinds = (d: DiagnosisJson) => d.findings.map((f) => f.kind);
const figure = (f: FindingJson, name: string) => f.evidence.figures.find((x) => x.name === name)?.value;

async function diagnosisOf(service: Service, connection: ConnectionJson): Promise<DiagnosisJson> {
  return getJson<DiagnosisJson>(service, `/api/v1/connections/diagnosis?id=${encodeURIComponent(connection.id!)}`);
}

/** The one finding of `d`, which must be of `kind`. */
function onlyFinding(t: TestContext, d: DiagnosisJson, kind: FindingJson['kind']): FindingJson {
  t.diagnostic(JSON.stringify(d.findings.map((f) => ({ kind: f.kind, summary: f.summary, where: f.where.text }))));
  assert.deepEqual(kinds(d), [kind], JSON.stringify(d.findings, null, 1).slice(0, 4000));
  return d.findings[0];
}

/** A connection of the client's `localPort` to `dst`, once it was seen at `points` points and `ready` holds (default: its flows closed). */
function settled(service: Service, lab: Lab, localPort: number, dst: { ip: string; port: number }, points: number, ready = (c: ConnectionJson) => c.flows.every((f) => f.close !== 'open')) {
  const tuple = tupleText({ src: lab.nodes.client.ifaces[0].ip, sport: localPort, dst: dst.ip, dport: dst.port });
  return settledConnection(service, tuple, `${points} points, ready`, (c) => c.points.length === points && ready(c));
}
const closedWithDrops = (c: ConnectionJson) => c.drops.length > 0 && c.flows.every((f) => f.close !== 'open');

const samePoint = (a: Point, b: Point) => pointText(a) === pointText(b);

test('lossy: segments the router drops are lost between its two interfaces, with the kernel drop and the retransmission', async (t) => {
  const { lab, service } = await labWithService(t, { scenario: 'lossy' });
  const [, routerIn, routerOut] = pathPoints(lab);
  const localPort = randomClientPort();
  const read = (await runTraffic(lab, { ...scenarioTraffic(lab, 'lossy')[0], localPort } as TrafficArgs)) as { bytes: number };
  assert.ok(read.bytes > 300_000, `the whole response came: ${read.bytes}`);
  const connection = await settled(service, lab, localPort, lab.service, 4, closedWithDrops);
  const d = await diagnosisOf(service, connection);
  const lost = onlyFinding(t, d, 'lost');
  assert.equal(lost.way, 's2c');
  // Server to client: the router's server side saw them, its client side never did.
  assert.ok(samePoint(lost.where.from, routerOut) && samePoint(lost.where.to!, routerIn), lost.where.text);
  const lostPackets = lost.evidence.packets.filter((p) => p.role === 'lost');
  assert.ok(lostPackets.length > 0 && lostPackets.every((p) => samePoint(p, routerOut)));
  assert.ok(lost.evidence.packets.some((p) => p.role === 'retransmission'));
  assert.ok(lost.evidence.drops.length > 0 && lost.evidence.drops.every((drop) => drop.reason === 'NETFILTER_DROP' && drop.netns === lab.nodes.router.netns.name));
  // Every drop the kernel recorded explains a lost segment (matched by its bytes: a large segment's drop has another packet id).
  assert.equal(lost.evidence.drops.length, connection.drops.length);
  assert.ok(figure(lost, 'lost')! >= 1 && figure(lost, 'lost')! === connection.drops.length, `lost ${figure(lost, 'lost')}, drops ${connection.drops.length}`);
});

test('reset: who reset it (the server stack, a REJECT on the router, the application) and a handshake nobody answered', async (t) => {
  const { lab, service } = await labWithService(t, { scenario: 'reset' });
  const [client, routerIn, , server] = pathPoints(lab);
  const serverAt = (port: number) => ({ ip: lab.server.ip, port });

  await t.test('a closed port: the server stack answers the SYN with a RST', async (t) => {
    const localPort = randomClientPort();
    assert.equal((await runTraffic<{ outcome: string }>(lab, { mode: 'connect', host: lab.server.ip, port: CLOSED_PORT, timeoutMs: 2000, localPort })).outcome, 'refused');
    const connection = await settled(service, lab, localPort, serverAt(CLOSED_PORT), 4, closedWithDrops);
    const reset = onlyFinding(t, await diagnosisOf(service, connection), 'reset');
    assert.ok(samePoint(reset.where.from, server), reset.where.text);
    assert.equal(reset.way, 's2c');
    assert.match(reset.summary, /during the handshake/);
    assert.ok(reset.evidence.drops.some((drop) => drop.reason === 'NO_SOCKET'), JSON.stringify(connection.drops.map((d) => d.reason)));
    assert.deepEqual(reset.evidence.packets.map((p) => pointText(p)), pathPoints(lab).reverse().map(pointText), 'the RST at every point, server first');
  });

  await t.test('a REJECT rule on the router: the RST first appears on the router, the server never saw the SYN', async (t) => {
    const localPort = randomClientPort();
    assert.equal((await runTraffic<{ outcome: string }>(lab, { mode: 'connect', host: lab.server.ip, port: REJECTED_PORT, timeoutMs: 2000, localPort })).outcome, 'refused');
    const connection = await settled(service, lab, localPort, serverAt(REJECTED_PORT), 2, closedWithDrops);
    const reset = onlyFinding(t, await diagnosisOf(service, connection), 'reset');
    assert.ok(samePoint(reset.where.from, routerIn), reset.where.text);
    assert.match(reset.summary, /netfilter rule/);
    assert.ok(reset.evidence.drops.some((drop) => drop.reason === 'NETFILTER_DROP' && drop.netns === lab.nodes.router.netns.name));
    assert.deepEqual(reset.evidence.packets.map((p) => pointText(p)), [pointText(routerIn), pointText(client)]);
  });

  await t.test('the server application aborts mid-response', async (t) => {
    const localPort = randomClientPort();
    await runTraffic(lab, { mode: 'read', host: lab.service.ip, port: lab.service.port, path: '/abort', localPort }).catch(() => undefined);
    const connection = await settled(service, lab, localPort, lab.service, 4);
    const reset = onlyFinding(t, await diagnosisOf(service, connection), 'reset');
    assert.ok(samePoint(reset.where.from, server), reset.where.text);
    assert.match(reset.summary, /mid-stream/);
    assert.match(reset.summary, /aborted/);
    assert.ok(figure(reset, 'bytes_before')! > 0);
  });

  await t.test('a SYN dropped on the router, retried and never answered', async (t) => {
    const port = REJECTED_PORT + 1;
    await dropForwarded(lab, 'tcp', port);
    const localPort = randomClientPort();
    assert.equal((await runTraffic<{ outcome: string }>(lab, { mode: 'connect', host: lab.server.ip, port, timeoutMs: 3500, localPort })).outcome, 'timeout');
    // The client's SYNs within the timeout, each dropped.
    const syns = (c: ConnectionJson) => c.flows[0].packets.c2s;
    const connection = await settled(service, lab, localPort, serverAt(port), 2, (c) => c.drops.length === syns(c) && syns(c) >= 3);
    const handshake = onlyFinding(t, await diagnosisOf(service, connection), 'handshake');
    assert.equal(figure(handshake, 'syns'), syns(connection));
    // Last seen on the router's client side: it never left towards the server.
    assert.ok(samePoint(handshake.where.from, routerIn) && handshake.where.to === null, handshake.where.text);
    assert.ok(handshake.evidence.drops.length === syns(connection) && handshake.evidence.drops.every((drop) => drop.reason === 'NETFILTER_DROP'));
  });
});
