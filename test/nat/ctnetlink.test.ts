// Conntrack through the addon's ctnetlink reader, in namespaces of the tests' own: a dump
// and events of real connections SNATed and DNATed by iptables, with their zone and the
// kernel's times, from the reader and from the source; a receive buffer overflowed on
// purpose, counted, and recovered by the dump that follows; no process of nettrail's while
// tracking; and `nettrail serve` killed with -9 leaves none behind.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { NatTranslation, NetnsRef } from '../../model/records.js';
import { ConntrackReader } from '../../native/conntrack.js';
import { classifyNat } from '../../nat-tracker/classify.js';
import { CT_STATUS } from '../../nat-tracker/sources/conntrack-layout.js';
import { ConntrackSource, decodeConntrackRecords, type ConntrackEntry, type ConntrackError, type ConntrackRecord } from '../../nat-tracker/sources/conntrack.js';
import { startServe } from '../../bench/support/serve-process.js';
import { sleep, until, waitFor } from '../../bench/support/wait.js';
import { createPair } from '../support/netns-pair.js';
import { inNetns, useNetns } from '../support/netns.js';

const ZONE = 5;
const SERVICE = { v4: '10.9.0.99', v6: 'fd09::99', port: 81 };
const CLIENT = { v4: '10.9.0.1', v6: 'fd09::1' };
const SERVER = { v4: '10.9.0.2', v6: 'fd09::2', port: 80 };
const SNAT_TO = { v4: '10.9.0.3', v6: 'fd09::3' };
const IPPROTO_TCP = 6;

/**
 * A namespace whose own connections to the service (SERVICE, port 81) are DNATed to the
 * server's port 80 and SNATed to SNAT_TO, in conntrack zone ZONE; every address on lo.
 */
function natNamespace(t: TestContext): NetnsRef {
  const netns = useNetns(t, 'ct');
  inNetns(netns, 'ip', 'link', 'set', 'lo', 'up');
  for (const family of ['v4', 'v6'] as const) {
    const [prefix, iptables] = family === 'v4' ? ['/24', 'iptables'] : ['/64', 'ip6tables'];
    for (const address of [CLIENT[family], SERVER[family], SNAT_TO[family]]) inNetns(netns, 'ip', 'addr', 'add', address + prefix, 'dev', 'lo', ...(family === 'v6' ? ['nodad'] : []));
    const server = family === 'v4' ? `${SERVER.v4}:${SERVER.port}` : `[${SERVER.v6}]:${SERVER.port}`;
    inNetns(netns, iptables, '-t', 'raw', '-A', 'OUTPUT', '-p', 'tcp', '-j', 'CT', '--zone', String(ZONE));
    inNetns(netns, iptables, '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', SERVICE[family], '--dport', String(SERVICE.port), '-j', 'DNAT', '--to-destination', server);
    inNetns(netns, iptables, '-t', 'nat', '-A', 'POSTROUTING', '-p', 'tcp', '-d', SERVER[family], '--dport', String(SERVER.port), '-j', 'SNAT', '--to-source', SNAT_TO[family]);
  }
  return netns;
}

/** One connection over each family from the client to the service, in the namespace (a server listens there meanwhile); the client ports. */
function connect(netns: NetnsRef): { v4: number; v6: number } {
  const script = `
    const net = require('node:net');
    const server = net.createServer((s) => s.end('ok')).listen(${SERVER.port}, '::', async () => {
      const ports = [];
      for (const [host, localAddress] of [['${SERVICE.v4}', '${CLIENT.v4}'], ['${SERVICE.v6}', '${CLIENT.v6}']]) {
        ports.push(await new Promise((resolve, reject) => {
          const c = net.connect({ host, port: ${SERVICE.port}, localAddress });
          c.on('data', () => {}).on('error', reject).on('end', () => (c.end(), resolve(c.localPort)));
        }));
      }
      console.log(ports.join(' '));
      server.close();
    });`;
  const [v4, v6] = inNetns(netns, process.execPath, '-e', script).trim().split(' ').map(Number);
  return { v4: v4!, v6: v6! };
}

const tuples = (family: 'v4' | 'v6', port: number) => ({
  orig: { src: CLIENT[family], sport: port, dst: SERVICE[family], dport: SERVICE.port },
  // The server answers the SNAT address; the client port is kept (free on SNAT_TO).
  reply: { src: SERVER[family], sport: SERVER.port, dst: SNAT_TO[family], dport: port },
});

const nowNs = () => BigInt(Date.now()) * 1_000_000n;

/** The processes whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid; // "pid (comm) state ppid ..."
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

const descendantsOf = (pid: number): number[] => childrenOf(pid).flatMap((child) => [child, ...descendantsOf(child)]);

describe('the ctnetlink reader', () => {
  test('a dump, then events, as records in the order they happened, with zone, status bits and the kernel\'s times', async (t) => {
    const netns = natNamespace(t);
    inNetns(netns, 'sysctl', '-qw', 'net.netfilter.nf_conntrack_timestamp=1');
    // 1, not the default 2 ("when someone listens"): an entry made before the reader listens gets no events
    // otherwise, and this one's DESTROY is awaited below.
    inNetns(netns, 'sysctl', '-qw', 'net.netfilter.nf_conntrack_events=1');
    const before = nowNs();
    const first = connect(netns);
    const after = nowNs();

    const records: ConntrackRecord[] = [];
    const reader = ConntrackReader.open(netns.path, (batch, count) => void records.push(...decodeConntrackRecords(batch, count)));
    t.after(() => reader.stop());
    const entry = (kind: ConntrackEntry['event'], port: number) =>
      records.flatMap((r) => (r.kind === 'entry' && r.entry.event === kind && r.entry.orig.sport === port ? [r.entry] : []));
    await until('the first dump', () => records.some((r) => r.kind === 'dump-done'));
    assert.deepEqual(records[0], { kind: 'dump-start' });
    assert.deepEqual(records.at(-1), { kind: 'dump-done', errno: 0 });
    for (const family of ['v4', 'v6'] as const) {
      const [dumped, ...more] = entry(null, first[family]);
      assert.equal(more.length, 0, `one ${family} entry`);
      assert.deepEqual({ proto: dumped!.proto, ...tuples(family, first[family]), zone: dumped!.zone }, { proto: IPPROTO_TCP, ...tuples(family, first[family]), zone: ZONE });
      assert.equal(dumped!.status & (CT_STATUS.srcNat | CT_STATUS.dstNat), CT_STATUS.srcNat | CT_STATUS.dstNat, 'SNAT and DNAT bits');
      assert.ok(dumped!.startNs! >= before - 1_000_000n && dumped!.startNs! <= after, `kernel start ${dumped!.startNs} within ${before}..${after}`);
      assert.equal(dumped!.stopNs, null);
      assert.ok(dumped!.id > 0);
    }

    // Deleted (as expiry would): DESTROY with the kernel's stop time. Then a new connection's events.
    inNetns(netns, 'conntrack', '-D', '-p', 'tcp', '--orig-port-src', String(first.v4));
    const [destroyed] = await waitFor('the DESTROY', () => entry('destroy', first.v4)[0] && entry('destroy', first.v4));
    assert.equal(destroyed!.id, entry(null, first.v4)[0]!.id);
    assert.ok(destroyed!.stopNs! > after && destroyed!.stopNs! <= nowNs());
    const second = connect(netns);
    const [created] = await waitFor('the NEW event', () => entry('new', second.v6)[0] && entry('new', second.v6));
    assert.deepEqual({ ...tuples('v6', second.v6), zone: ZONE }, { orig: created!.orig, reply: created!.reply, zone: created!.zone });
    await waitFor('UPDATE events (established, closing)', () => entry('update', second.v6)[0]);

    reader.dump();
    await until('the second dump', () => records.filter((r) => r.kind === 'dump-done').length === 2);
    const secondDump = records.slice(records.map((r) => r.kind).lastIndexOf('dump-start'));
    assert.deepEqual(
      secondDump.flatMap((r) => (r.kind === 'entry' ? [r.entry.orig.sport] : [])).sort(),
      [first.v6, second.v4, second.v6].sort(),
      'the deleted entry is not dumped',
    );
    const status = reader.status();
    assert.equal(status.dumps, 2);
    assert.equal(status.overflows, 0);
    assert.ok(status.events >= 3, `${status.events} events`);
    await reader.stop();
    await reader.stop(); // once is enough; again is harmless
  });
});

describe('ConntrackSource over ctnetlink', () => {
  test('SNAT and DNAT of connections in a namespace: their zone, the kernel\'s times, and no process', async (t) => {
    const netns = natNamespace(t);
    const sources: ConntrackSource[] = [];
    const track = async (sysctls: boolean) => {
      const out = { records: [] as NatTranslation[], errors: [] as ConntrackError[] };
      const source = new ConntrackSource({ node: 'test-node', netns, sysctls, onTranslations: (r) => out.records.push(...r), onError: (e) => out.errors.push(e) });
      sources.push(source);
      t.after(() => source.stop());
      await source.start();
      return out;
    };
    const allowed = await track(true); // turns nf_conntrack_timestamp on
    assert.equal(inNetns(netns, 'sysctl', '-n', 'net.netfilter.nf_conntrack_timestamp').trim(), '1');
    const before = nowNs();
    const ports = connect(netns);
    const after = nowNs();
    for (const family of ['v4', 'v6'] as const) {
      const rec = await waitFor(`the ${family} translation`, () => allowed.records.find((r) => r.orig.sport === ports[family]));
      assert.deepEqual(
        { via: rec.via, node: rec.node, netns: rec.netns, zone: rec.zone, proto: rec.proto, orig: rec.orig, reply: rec.reply },
        { via: 'iptables', node: 'test-node', netns: netns.name, zone: ZONE, proto: 'tcp', ...tuples(family, ports[family]) },
      );
      assert.equal(classifyNat(rec.orig, rec.reply), 'FULLNAT');
      assert.ok(rec.entryId > 0);
    }
    assert.deepEqual(childrenOf(process.pid), [], 'no process of its own while tracking');

    // A source started later finds the entries in its dump, with the kernel's creation time.
    const dumped = await track(false);
    const rec = dumped.records.find((r) => r.orig.sport === ports.v4);
    assert.ok(rec, 'the dump has the entry');
    assert.ok(rec.firstSeen >= before - 1_000_000n && rec.firstSeen <= after, `kernel start ${rec.firstSeen} within ${before}..${after}`);
    // Its end: the kernel's destruction time.
    inNetns(netns, 'conntrack', '-D', '-p', 'tcp', '--orig-port-src', String(ports.v4));
    const destroyed = await waitFor('the DESTROY', () => dumped.records.find((r) => r.orig.sport === ports.v4 && r.lastSeen > after));
    assert.equal(destroyed.firstSeen, rec.firstSeen);
    assert.ok(destroyed.lastSeen <= nowNs());
    assert.deepEqual([...allowed.errors, ...dumped.errors], []);
    assert.deepEqual(childrenOf(process.pid), []);
    assert.equal(sources[0]!.status()!.overflows, 0);
  });

  test('an overflowed receive buffer: counted, reported, and the dump that follows recovers every entry', async (t) => {
    const netns = useNetns(t, 'ovf');
    const records: NatTranslation[] = [];
    const errors: ConntrackError[] = [];
    // The smallest buffer the kernel grants holds a few events.
    const source = new ConntrackSource({ node: 'n', netns, receiveBufferBytes: 1, onTranslations: (r) => records.push(...r), onError: (e) => errors.push(e) });
    t.after(() => source.stop());
    await source.start();
    t.diagnostic(`receive buffer: ${source.status()!.receiveBufferBytes} bytes`);

    // A burst of entries (each one translated: its reply tuple differs) while JavaScript is busy:
    // the reader hands over one batch, waits for its acknowledgement, and the socket overflows.
    const ENTRIES = 2000;
    const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-ct-burst-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'entries');
    const sport = (i: number) => 20000 + i;
    writeFileSync(file, Array.from({ length: ENTRIES }, (_, i) =>
      `-I -p udp -s 10.8.0.1 -d 10.8.0.2 --sport ${sport(i)} --dport 53 -r 10.8.0.3 -q 10.8.0.1 --reply-port-src 53 --reply-port-dst ${sport(i)} -t 600\n`).join(''));
    const burst = spawn('ip', ['netns', 'exec', netns.name, 'conntrack', '-R', file], { stdio: 'ignore' });
    const exited = once(burst, 'exit');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
    const [code] = (await exited) as [number];
    assert.equal(code, 0, 'conntrack -R inserted the entries');

    await until('the overflow counted', () => source.status()!.overflows > 0);
    const seen = new Set<number>();
    await until(
      () => `every entry recovered (${seen.size} of ${ENTRIES})`,
      () => {
        for (const r of records) if (r.orig.src === '10.8.0.1') seen.add(r.orig.sport);
        return seen.size === ENTRIES;
      },
    );
    const status = source.status()!;
    t.diagnostic(`status: ${JSON.stringify(status)}; ${errors.length} errors`);
    assert.ok(status.events < ENTRIES, `only ${status.events} of ${ENTRIES} events arrived`);
    assert.ok(status.dumps >= 2, 'a dump followed the overflow');
    assert.ok(errors.length > 0 && errors.every((e) => e.code === 'CONNTRACK_EVENTS_LOST'), errors.map((e) => e.message).join('; '));
    assert.match(errors[0]!.message, /ENOBUFS.*re-dumping/);
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
    assert.deepEqual(errors.map((e) => e.code), ['CONNTRACK_NETNS_GONE']);
  });
});

test('kill -9 of `nettrail serve` while it tracks a namespace: it ran no process there, and none is left', async (t) => {
  const pair = await createPair(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-ct-kill-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A DNAT in the client's namespace, so that tracking is seen to work there.
  const service = pair.v4.replace(/\.\d+$/, '.99');
  inNetns(pair.client, 'iptables', '-t', 'nat', '-A', 'OUTPUT', '-d', service, '-j', 'DNAT', '--to-destination', pair.v4);
  const serve = await startServe(['--netns', pair.client.name, '--iface', 'eth0', '--store', path.join(dir, 'store')]);
  t.after(() => serve.kill());
  const port = await pair.traffic('talk', service, '1');
  await until('the translation is recorded', async () => {
    const { translations } = (await (await fetch(`${serve.url}/api/v1/nat?ip=${service}`)).json()) as { translations: Array<{ orig: { sport: number } }> };
    return translations.some((tr) => tr.orig.sport === port);
  });

  // Capture lists a namespace's interfaces with a short-lived `ip` every refresh; nothing may last.
  const pid = serve.child.pid!;
  const running = descendantsOf(pid);
  await sleep(1000);
  assert.deepEqual(descendantsOf(pid).filter((p) => running.includes(p)), [], 'serve keeps no process running while it tracks');
  await serve.kill();
  // What serve would have started in the namespace (conntrack -E through nsenter, once) would still be there.
  await sleep(500);
  assert.equal(inNetnsPids(pair.client), '', 'no process is left in the tracked namespace');
});

const inNetnsPids = (netns: NetnsRef) => execFileSync('ip', ['netns', 'pids', netns.name], { encoding: 'utf8' }).trim();
