import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test, type TestContext } from 'node:test';
import type { NatTranslation } from '../../model/records.js';
import { afterTuple, classifyNat, reverseTuple, sameTuple } from '../../nat-tracker/classify.js';
import { ConntrackError, ConntrackSource, FlowSplitter, parseConntrackFlow, type ConntrackSourceOptions } from '../../nat-tracker/sources/conntrack.js';
import { randomClientPort, useLab } from '../support/lab-fixture.js';
import type { Lab } from '../../lab/lab.js';
import { sleep, until, waitFor } from '../../bench/support/wait.js';

// Captured from `conntrack -E -o xml,id` / `conntrack -L -o xml,id` (conntrack-tools 1.4.7) in a lab router.
const CAPTURED_EVENTS =
  '<?xml version="1.0" encoding="utf-8"?>\n<conntrack>\n' +
  '<flow type="new"><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.231.9.2</src><dst>10.231.9.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>40123</sport><dport>8080</dport></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.232.9.2</src><dst>10.232.9.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>80</sport><dport>40123</dport></layer4></meta><meta direction="independent"><state>SYN_SENT</state><timeout>120</timeout><id>2177776030</id><unreplied/></meta></flow>\n' +
  '<flow type="destroy"><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.231.9.2</src><dst>10.231.9.1</dst></layer3><layer4 protonum="17" protoname="udp"><sport>40999</sport><dport>5353</dport></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.232.9.2</src><dst>10.232.9.1</dst></layer3><layer4 protonum="17" protoname="udp"><sport>53</sport><dport>40999</dport></layer4></meta><meta direction="independent"><timeout>29</timeout><zone>5</zone><id>2128359942</id><unreplied/><deltatime>0</deltatime></meta><when><hour>19</hour><min>46</min><sec>13</sec><wday>7</wday><day>21</day><month>11</month><year>2026</year></when></flow> [USERSPACE] portid=2691013771\n';
const CAPTURED_DUMP_IPV6 =
  '<flow><meta direction="original"><layer3 protonum="10" protoname="ipv6"><src>fd00:231::2</src><dst>fd00:231::1</dst></layer3><layer4 protonum="17" protoname="udp"><sport>34747</sport><dport>5353</dport></layer4></meta><meta direction="reply"><layer3 protonum="10" protoname="ipv6"><src>fd00:231::1</src><dst>fd00:231::2</dst></layer3><layer4 protonum="17" protoname="udp"><sport>53</sport><dport>34747</dport></layer4></meta><meta direction="independent"><timeout>29</timeout><mark>0</mark><use>1</use><id>1830687774</id><unreplied/><deltatime>7</deltatime></meta></flow>';

// Captured from `conntrack -L -o xml,id,ktimestamp` and `-E` with net.netfilter.nf_conntrack_timestamp=1 (conntrack-tools 1.4.7, Linux 6.18).
const CAPTURED_TIMESTAMPED_DUMP =
  '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>127.0.0.1</src><dst>127.0.0.5</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>32848</sport><dport>81</dport></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>127.0.0.1</src><dst>127.0.0.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>80</sport><dport>32848</dport></layer4></meta><meta direction="independent"><state>ESTABLISHED</state><timeout>431999</timeout><mark>0</mark><use>1</use><id>305300384</id><assured/><timestamp><start>1795291699560086031</start></timestamp><deltatime>1</deltatime></meta></flow>';
const CAPTURED_TIMESTAMPED_DESTROY =
  '<flow type="destroy"><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>127.0.0.1</src><dst>127.0.0.5</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>58926</sport><dport>81</dport></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>127.0.0.1</src><dst>127.0.0.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>80</sport><dport>58926</dport></layer4></meta><meta direction="independent"><state>CLOSE</state><timeout>120</timeout><id>55224486</id><unreplied/><timestamp><start>1795291690811407494</start><stop>1795291690811452110</stop></timestamp><deltatime>0</deltatime></meta></flow>';

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

describe('conntrack XML parsing', () => {
  test('events, including a destroy with zone, timestamp and trailing text', () => {
    const flows = new FlowSplitter().push(CAPTURED_EVENTS);
    assert.equal(flows.length, 2);
    assert.deepEqual(parseConntrackFlow(flows[0]!), {
      event: 'new',
      proto: 'tcp',
      orig: { src: '10.231.9.2', sport: 40123, dst: '10.231.9.1', dport: 8080 },
      reply: { src: '10.232.9.2', sport: 80, dst: '10.232.9.1', dport: 40123 },
      zone: 0,
      id: 2177776030,
      deltaSec: null,
      startNs: null,
      stopNs: null,
    });
    assert.deepEqual(parseConntrackFlow(flows[1]!), {
      event: 'destroy',
      proto: 'udp',
      orig: { src: '10.231.9.2', sport: 40999, dst: '10.231.9.1', dport: 5353 },
      reply: { src: '10.232.9.2', sport: 53, dst: '10.232.9.1', dport: 40999 },
      zone: 5,
      id: 2128359942,
      deltaSec: 0,
      startNs: null,
      stopNs: null,
    });
  });

  test('a dump entry (IPv6)', () => {
    const e = parseConntrackFlow(CAPTURED_DUMP_IPV6);
    assert.equal(e.event, null);
    assert.deepEqual(e.orig, { src: 'fd00:231::2', sport: 34747, dst: 'fd00:231::1', dport: 5353 });
    assert.equal(e.deltaSec, 7);
    assert.equal(classifyNat(e.orig, e.reply), 'DNAT');
  });

  test('kernel timestamps (`-o ktimestamp` with nf_conntrack_timestamp on): start in dumps, start and stop on DESTROY', () => {
    const dumped = parseConntrackFlow(CAPTURED_TIMESTAMPED_DUMP);
    assert.equal(dumped.startNs, 1795291699560086031n);
    assert.equal(dumped.stopNs, null);
    assert.equal(dumped.deltaSec, 1);
    const destroyed = parseConntrackFlow(CAPTURED_TIMESTAMPED_DESTROY);
    assert.equal(destroyed.event, 'destroy');
    assert.deepEqual([destroyed.startNs, destroyed.stopNs], [1795291690811407494n, 1795291690811452110n]);
    assert.throws(
      () => parseConntrackFlow(CAPTURED_TIMESTAMPED_DUMP.replace('<start>1795291699560086031</start>', '<start>soon</start>')),
      (e: unknown) => e instanceof ConntrackError && e.code === 'CONNTRACK_PARSE',
    );
  });

  test('the splitter reassembles flows cut at any byte', () => {
    const whole = new FlowSplitter().push(CAPTURED_EVENTS);
    for (let cut = 1; cut < CAPTURED_EVENTS.length; cut += 7) {
      const s = new FlowSplitter();
      assert.deepEqual([...s.push(CAPTURED_EVENTS.slice(0, cut)), ...s.push(CAPTURED_EVENTS.slice(cut))], whole, `cut at ${cut}`);
    }
  });

  test('malformed input is a CONNTRACK_PARSE error', () => {
    const isParse = (e: unknown): boolean => e instanceof ConntrackError && e.code === 'CONNTRACK_PARSE';
    assert.throws(() => parseConntrackFlow('<flow><meta direction="original"></flow>'), isParse);
    assert.throws(() => parseConntrackFlow(CAPTURED_DUMP_IPV6.replace('<id>1830687774</id>', '')), isParse);
    assert.throws(() => parseConntrackFlow(CAPTURED_DUMP_IPV6.replace('<sport>34747</sport>', '<sport>x</sport>')), isParse);
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
  return { records, errors };
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

  test('a killed event stream is reported and restarted', async (t) => {
    const lab = await useLab(t);
    const out = await routerSource(t, lab, { restartMs: 100 });
    const routerPids = (): number[] =>
      execFileSync('ip', ['netns', 'pids', lab.nodes.router.netns.name], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
    const [conntrackPid] = routerPids();
    assert.ok(conntrackPid, 'conntrack -E runs in the router namespace');
    process.kill(conntrackPid, 'SIGKILL');
    const err = await waitFor('the error', () => out.errors[0]);
    assert.equal(err.code, 'CONNTRACK_EXITED');
    await until('the restart', () => routerPids().some((p) => p !== conntrackPid));

    const localPort = randomClientPort();
    await lab.request({ localPort });
    assertLabTranslation(lab, await waitFor('the translation', () => out.records.find((r) => r.orig.sport === localPort)), localPort);
  });

  test('a missing conntrack binary is a CONNTRACK_NOT_FOUND error', async (t) => {
    const lab = await useLab(t);
    const out = await routerSource(t, lab, { conntrackBin: 'conntrack-missing-for-test' });
    assert.equal(out.errors[0]?.code, 'CONNTRACK_NOT_FOUND');
    assert.match(out.errors[0]!.message, /conntrack-missing-for-test/);
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
