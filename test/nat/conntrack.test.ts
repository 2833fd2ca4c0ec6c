import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test, type TestContext } from 'node:test';
import type { NatTranslation } from '../../model/records.js';
import { afterTuple, classifyNat, reverseTuple, sameTuple } from '../../nat-tracker/classify.js';
import { ConntrackSource, type ConntrackError, type ConntrackSourceOptions } from '../../nat-tracker/sources/conntrack.js';
import { randomClientPort, useLab } from '../support/lab-fixture.js';
import type { Lab } from '../../lab/lab.js';
import { sleep, waitFor } from '../../bench/support/wait.js';

describe('classifyNat', () => {
  const orig = { src: '10.0.0.2', sport: 40000, dst: '10.0.0.1', dport: 8080 };
  test('no translation', () => assert.equal(classifyNat(orig, reverseTuple(orig)), null));
  test('DNAT: the reply comes from elsewhere', () =>
    assert.equal(classifyNat(orig, { src: '10.1.0.2', sport: 80, dst: '10.0.0.2', dport: 40000 }), 'DNAT'));
  test('DNAT of the port alone', () => assert.equal(classifyNat(orig, { src: '10.0.0.1', sport: 80, dst: '10.0.0.2', dport: 40000 }), 'DNAT'));
  test('SNAT: the reply goes elsewhere', () =>
    assert.equal(classifyNat(orig, { src: '10.0.0.1', sport: 8080, dst: '10.1.0.1', dport: 40000 }), 'SNAT'));
  test('SNAT of the port alone', () => assert.equal(classifyNat(orig, { src: '10.0.0.1', sport: 8080, dst: '10.0.0.2', dport: 1024 }), 'SNAT'));
  test('FULLNAT: both', () => assert.equal(classifyNat(orig, { src: '10.1.0.2', sport: 80, dst: '10.1.0.1', dport: 40000 }), 'FULLNAT'));
  test('afterTuple is the translated original direction', () => {
    const reply = { src: '10.1.0.2', sport: 80, dst: '10.1.0.1', dport: 40001 };
    assert.deepEqual(afterTuple(reply), { src: '10.1.0.1', sport: 40001, dst: '10.1.0.2', dport: 80 });
    assert.ok(sameTuple(reverseTuple(afterTuple(reply)), reply));
  });
});

type SourceChoices = Omit<ConntrackSourceOptions, 'node' | 'netns' | 'onTranslations' | 'onError'>;

/** A ConntrackSource in the lab's router, started, stopped after the test; with what it reported so far. */
async function routerSource(t: TestContext, lab: Lab, choices: SourceChoices = {}) {
  const records: NatTranslation[] = [];
  const errors: ConntrackError[] = [];
  const source = new ConntrackSource({
    node: 'test-node',
    netns: lab.nodes.router.netns,
    onTranslations: (batch) => records.push(...batch),
    onError: (err) => errors.push(err),
    ...choices,
  });
  t.after(() => source.stop());
  await source.start();
  return { records, errors, source };
}

function assertLabTranslation(lab: Lab, rec: NatTranslation, localPort: number): void {
  const clientIp = lab.nodes.client.ifaces[0]!.ip;
  assert.equal(rec.via, 'iptables');
  assert.equal(rec.node, 'test-node');
  assert.equal(rec.netns, lab.nodes.router.netns.name);
  assert.equal(rec.zone, 0);
  assert.equal(rec.proto, 'tcp');
  assert.deepEqual(rec.orig, { src: clientIp, sport: localPort, dst: lab.service.ip, dport: lab.service.port });
  // MASQUERADE keeps the client's port when it is free on the router, as it is here.
  assert.deepEqual(rec.reply, { src: lab.server.ip, sport: lab.server.port, dst: lab.masqueradeIp, dport: localPort });
  assert.equal(classifyNat(rec.orig, rec.reply), 'FULLNAT');
  assert.deepEqual(afterTuple(rec.reply), { src: lab.masqueradeIp, sport: localPort, dst: lab.server.ip, dport: lab.server.port });
  assert.ok(rec.entryId > 0);
  assert.ok(rec.firstSeen <= rec.lastSeen);
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  assert.ok(rec.firstSeen > nowNs - 60_000_000_000n && rec.lastSeen <= nowNs);
}

describe('ConntrackSource in a lab router', () => {
  test('reports a live connection from events, and its end on DESTROY', async (t) => {
    const lab = await useLab(t);
    const out = await routerSource(t, lab);
    assert.deepEqual(out.records, [], 'the fresh lab has no NAT entries yet');

    const localPort = randomClientPort();
    assert.equal((await lab.request({ localPort })).status, 200);
    const mine = (): NatTranslation[] => out.records.filter((r) => r.orig.sport === localPort);
    const first = await waitFor('the translation', () => mine()[0]);
    assertLabTranslation(lab, first, localPort);

    // Deleting the entry (as expiry would) produces a DESTROY event: a later lastSeen for the same entry.
    const before = mine().length;
    await sleep(5);
    execFileSync('ip', ['netns', 'exec', lab.nodes.router.netns.name, 'conntrack', '-D', '-p', 'tcp', '--orig-port-src', String(localPort)], { stdio: 'ignore' });
    const last = await waitFor('the DESTROY', () => (mine().length > before ? mine().at(-1) : undefined));
    assert.equal(last.entryId, first.entryId);
    assert.equal(last.firstSeen, first.firstSeen);
    assert.ok(last.lastSeen > first.firstSeen);
    assert.deepEqual(out.errors, []);
  });

  test('finds a connection that closed before it started, by dumping the table', async (t) => {
    const lab = await useLab(t);
    const localPort = randomClientPort();
    assert.equal((await lab.request({ localPort })).status, 200); // closed; the entry stays in TIME_WAIT

    const out = await routerSource(t, lab);
    const rec = out.records.find((r) => r.orig.sport === localPort);
    assert.ok(rec, 'start() resolves after the dump was reported');
    assertLabTranslation(lab, rec, localPort);
    assert.deepEqual(out.errors, []);
  });

  test('a periodic re-dump refreshes lastSeen', async (t) => {
    const lab = await useLab(t);
    const localPort = randomClientPort();
    await lab.request({ localPort });
    const out = await routerSource(t, lab, { resyncMs: 200 });
    const first = out.records.find((r) => r.orig.sport === localPort)!;
    const later = await waitFor('a re-dump', () => out.records.find((r) => r.orig.sport === localPort && r.lastSeen > first.lastSeen));
    assert.equal(later.firstSeen, first.firstSeen);
    assert.equal(later.entryId, first.entryId);
  });

  test('with events on, entries still alive get their last seen refreshed without a dump', async (t) => {
    const lab = await useLab(t);
    const localPort = randomClientPort();
    await lab.request({ localPort });
    const out = await routerSource(t, lab, { refreshMs: 200 });
    const first = out.records.find((r) => r.orig.sport === localPort)!;
    const dumps = out.source.status()!.dumps;
    const later = await waitFor('a refresh', () => out.records.find((r) => r.orig.sport === localPort && r.lastSeen > first.lastSeen));
    assert.equal(later.entryId, first.entryId);
    assert.equal(out.source.status()!.dumps, dumps, 'no dump for it: a dump walks the host\'s whole conntrack table');
  });

  const sysctl = (lab: Lab, name: string): string =>
    execFileSync('ip', ['netns', 'exec', lab.nodes.router.netns.name, 'sysctl', '-n', `net.netfilter.${name}`], { encoding: 'utf8' }).trim();

  test('with sysctls allowed, timestamps are turned on and times are the kernel\'s', async (t) => {
    const lab = await useLab(t);
    assert.equal(sysctl(lab, 'nf_conntrack_timestamp'), '0', 'a new namespace starts without timestamps');
    const allowed = await routerSource(t, lab, { sysctls: true });
    assert.equal(sysctl(lab, 'nf_conntrack_timestamp'), '1');

    const localPort = randomClientPort();
    const before = BigInt(Date.now()) * 1_000_000n;
    await lab.request({ localPort });
    const after = BigInt(Date.now()) * 1_000_000n;
    // A later source finds it in the dump, with the kernel's creation time; a deletion gives its end.
    const dumped = await routerSource(t, lab);
    const rec = dumped.records.find((r) => r.orig.sport === localPort);
    assert.ok(rec, 'the dump has the entry');
    assert.ok(rec.firstSeen >= before - 1_000_000n && rec.firstSeen <= after, `kernel start ${rec.firstSeen} within the request ${before}..${after}`);
    execFileSync('ip', ['netns', 'exec', lab.nodes.router.netns.name, 'conntrack', '-D', '-p', 'tcp', '--orig-port-src', String(localPort)], { stdio: 'ignore' });
    const destroyed = await waitFor('the DESTROY', () => allowed.records.find((r) => r.orig.sport === localPort && r.lastSeen > after));
    assert.ok(destroyed.lastSeen <= BigInt(Date.now()) * 1_000_000n);
    assert.deepEqual([...allowed.errors, ...dumped.errors], []);
  });

  test('events turned off: reported without sysctls allowed, turned back on with', async (t) => {
    const lab = await useLab(t);
    execFileSync('ip', ['netns', 'exec', lab.nodes.router.netns.name, 'sysctl', '-qw', 'net.netfilter.nf_conntrack_events=0']);
    const readOnly = await routerSource(t, lab);
    assert.deepEqual(readOnly.errors.map((e) => e.code), ['CONNTRACK_EVENTS_OFF']);
    assert.match(readOnly.errors[0]!.message, /--conntrack-sysctls/);
    assert.equal(sysctl(lab, 'nf_conntrack_events'), '0', 'left as it was');

    const allowed = await routerSource(t, lab, { sysctls: true });
    assert.equal(sysctl(lab, 'nf_conntrack_events'), '1');
    assert.deepEqual(allowed.errors, []);
    const localPort = randomClientPort();
    await lab.request({ localPort });
    assertLabTranslation(lab, await waitFor('the translation from an event', () => allowed.records.find((r) => r.orig.sport === localPort)), localPort);
  });

  test('a vanished namespace is a CONNTRACK_NETNS_GONE error', async () => {
    const errors: ConntrackError[] = [];
    const source = new ConntrackSource({
      node: 'test-node',
      netns: { name: 'gone', path: '/run/netns/nettrail-no-such-netns', ino: 0 },
      onTranslations: () => {},
      onError: (err) => errors.push(err),
    });
    await source.start();
    await source.stop();
    assert.equal(errors[0]?.code, 'CONNTRACK_NETNS_GONE');
  });
});
