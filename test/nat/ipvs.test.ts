// IPVS as a NAT source. This kernel has no IPVS, so the tables are text in the
// kernel's exact format (the seq_show functions of net/netfilter/ipvs/
// ip_vs_conn.c and ip_vs_ctl.c, and the FULLNAT patch's ip_vs_conn), read by the
// real source inside a real namespace; and the real /proc shows how the source
// degrades without IPVS. Then the translations go through a real store to the resolver.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { flowsBySynSeq, flowsForTuples, natForTuple } from '../../flowlog/queries.js';
import type { NatTranslation } from '../../model/records.js';
import { openStore } from '../../flowlog/store.js';
import { FlowLogWriter } from '../../flowlog/writer.js';
import { reverseTuple } from '../../nat-tracker/classify.js';
import { forwardingOf, IpvsSource, ipvsTranslation, parseIpvsConnections, parseIpvsServices } from '../../nat-tracker/sources/ipvs.js';
import { NatSourceError, PolledTable, Poller } from '../../nat-tracker/sources/polled.js';
import { resolveNatPath } from '../../nat-tracker/resolver.js';
import { useNetns } from '../support/netns.js';

// ---- the kernel's formats ------------------------------------------------------

/** ip_vs_conn_seq_show: "%-3s %08X %04X %08X %04X %s %04X %-11s %7u%s\n" (IPv6: %pI6 for the addresses). */
const connLine = (proto: string, c: string, cp: string, v: string, vp: string, d: string, dp: string, state: string, expires: number, pe = '') =>
  `${proto.padEnd(3)} ${c} ${cp} ${v} ${vp} ${d} ${dp} ${state.padEnd(11)} ${String(expires).padStart(7)}${pe}\n`;
/** The FULLNAT patch: "%-3s %08X %04X %08X %04X %08X %04X %08X %04X %-11s %7lu\n". */
const fullnatLine = (c: string, cp: string, v: string, vp: string, l: string, lp: string, d: string, dp: string, state: string, expires: number) =>
  `TCP ${c} ${cp} ${v} ${vp} ${l} ${lp} ${d} ${dp} ${state.padEnd(11)} ${String(expires).padStart(7)}\n`;
/** ip_vs_info_seq_show: "%s  %08X:%04X %s %s " then "persistent %d %08X\n" or "\n"; real servers "  -> %08X:%04X      %-7s %-6d %-10d %-10d\n". */
const serviceLine = (proto: string, vip: string, sched: string, persistent = '') => `${proto}  ${vip} ${sched}  ${persistent}\n`;
const destLine = (dest: string, forward: string, weight: number, active: number, inactive: number) =>
  `  -> ${dest}      ${forward.padEnd(7)} ${String(weight).padEnd(6)} ${String(active).padEnd(10)} ${String(inactive).padEnd(10)}\n`;

const V6 = (last: string) => `fd00:0000:0000:0000:0000:0000:${last}`;

// Clients 10.1.0.x, virtual services 10.96.0.x, real servers 10.2.0.x.
const IP_VS_CONN =
  'Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n' +
  'TCP 0A010002 9C40 0A60000A 0050 0A020005 1F90 ESTABLISHED     899\n' + // Masq: 10.1.0.2:40000 -> 10.96.0.10:80 -> 10.2.0.5:8080
  connLine('TCP', '0A010003', '9C41', '0A60000A', '0050', '0A020007', '0050', 'ESTABLISHED', 898) + // Route (DR)
  connLine('TCP', '0A010004', '9C42', '0A60000B', '0050', '0A020008', '0050', 'SYN_RECV', 59) + // Tunnel
  connLine('UDP', '0A010002', 'A000', '0A60000A', '0035', '0A020006', '0035', 'UDP', 287) + // Masq, same port
  connLine('TCP', '0A010005', '0000', '0A60000A', '0050', '0A020005', '1F90', 'NONE', 359) + // persistence template
  connLine('UDP', '0A010006', '13C4', '0A60000C', '13C4', '0A020009', '13C5', 'UDP', 179, ' sip 1234@host') + // SIP persistence engine data
  connLine('TCP', V6('0000:0002'), '9C43', V6('0060:000a'), '01BB', V6('0002:0005'), '20FB', 'ESTABLISHED', 900) +
  connLine('TCP', '0A010007', '9C44', '0A60000D', '0050', '0A02000A', '1F90', 'ESTABLISHED', 897) + // firewall-mark service
  connLine('TCP', '0A010008', '9C45', '0A60000E', '0050', '0A02000B', '0050', 'CLOSE', 9); // a server of no service (deleted meanwhile)

const IP_VS =
  'IP Virtual Server version 1.2.1 (size=4096)\n' +
  'Prot LocalAddress:Port Scheduler Flags\n' +
  '  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n' +
  serviceLine('TCP', '0A60000A:0050', 'rr') +
  destLine('0A020005:1F90', 'Masq', 1, 1, 0) +
  destLine('0A020007:0050', 'Route', 1, 1, 0) +
  serviceLine('TCP', '0A60000B:0050', 'wlc') +
  destLine('0A020008:0050', 'Tunnel', 1, 0, 1) +
  serviceLine('UDP', '0A60000A:0035', 'rr') +
  destLine('0A020006:0035', 'Masq', 1, 0, 1) +
  serviceLine('UDP', '0A60000C:13C4', 'rr', 'persistent 360 FFFFFFFF') +
  destLine('0A020009:13C5', 'Masq', 1, 0, 1) +
  `TCP  [${V6('0060:000a')}]:01BB rr \n` +
  `  -> [${V6('0002:0005')}]:20FB      Masq    1      1          0         \n` +
  'FWM  00000001 rr  \n' +
  destLine('0A02000A:1F90', 'Masq', 1, 1, 0);

const IP_VS_CONN_FULLNAT =
  'Pro FromIP   FPrt ToIP     TPrt LocalIP  LPrt DestIP   DPrt State       Expires\n' +
  fullnatLine('0A010002', '9C40', '0A60000A', '0050', '0A000101', '1389', '0A020005', '1F90', 'ESTABLISHED', 899) + // local 10.0.1.1:5001
  fullnatLine('0A010003', '9C41', '0A60000A', '0050', '00000000', '0000', '0A020007', '0050', 'ESTABLISHED', 898); // no local address: not FULLNAT

const tup = (src: string, sport: number, dst: string, dport: number) => ({ src, sport, dst, dport });

describe('IPVS tables', () => {
  test('ip_vs_conn: addresses, ports, state and expiry of every line, the persistence engine data ignored', () => {
    const conns = parseIpvsConnections(IP_VS_CONN);
    assert.equal(conns.length, 9);
    assert.deepEqual(conns[0], {
      proto: 'TCP', client: { ip: '10.1.0.2', port: 40000 }, virtual: { ip: '10.96.0.10', port: 80 }, local: null,
      dest: { ip: '10.2.0.5', port: 8080 }, state: 'ESTABLISHED', expiresSec: 899,
    });
    assert.deepEqual([conns[2]!.state, conns[2]!.expiresSec], ['SYN_RECV', 59]);
    assert.deepEqual(conns[5]!.dest, { ip: '10.2.0.9', port: 5061 });
    assert.deepEqual([conns[6]!.client, conns[6]!.virtual, conns[6]!.dest], [
      { ip: 'fd00::2', port: 40003 }, { ip: 'fd00::60:a', port: 443 }, { ip: 'fd00::2:5', port: 8443 },
    ]);
    assert.deepEqual(parseIpvsConnections('Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n'), []);
  });

  test('ip_vs: services with their real servers and forwarding methods', () => {
    const services = parseIpvsServices(IP_VS);
    assert.deepEqual(services.map((s) => [s.proto, s.virtual, s.fwmark, s.dests.map((d) => d.forwarding)]), [
      ['TCP', { ip: '10.96.0.10', port: 80 }, null, ['Masq', 'Route']],
      ['TCP', { ip: '10.96.0.11', port: 80 }, null, ['Tunnel']],
      ['UDP', { ip: '10.96.0.10', port: 53 }, null, ['Masq']],
      ['UDP', { ip: '10.96.0.12', port: 5060 }, null, ['Masq']],
      ['TCP', { ip: 'fd00::60:a', port: 443 }, null, ['Masq']],
      ['FWM', null, 1, ['Masq']],
    ]);
  });

  test('Masq is a DNAT hop; DR, Tunnel, templates and servers of no service are none', () => {
    const conns = parseIpvsConnections(IP_VS_CONN);
    const services = parseIpvsServices(IP_VS);
    assert.deepEqual(conns.map((c) => forwardingOf(c, services)), ['Masq', 'Route', 'Tunnel', 'Masq', 'Masq', 'Masq', 'Masq', 'Masq', null]);
    const translations = conns.map((c) => ipvsTranslation(c, services));
    assert.deepEqual(translations[0], {
      proto: 'tcp', orig: tup('10.1.0.2', 40000, '10.96.0.10', 80), reply: tup('10.2.0.5', 8080, '10.1.0.2', 40000),
    });
    assert.deepEqual(translations.map((x) => x?.orig.sport ?? null), [40000, null, null, 40960, null, 5060, 40003, 40004, null]);
    assert.deepEqual(translations[6]!.reply, tup('fd00::2:5', 8443, 'fd00::2', 40003));
  });

  test('the FULLNAT variant: the local address is the source the real server sees', () => {
    const conns = parseIpvsConnections(IP_VS_CONN_FULLNAT);
    assert.deepEqual(conns[0]!.local, { ip: '10.0.1.1', port: 5001 });
    assert.deepEqual(ipvsTranslation(conns[0]!, []), {
      proto: 'tcp', orig: tup('10.1.0.2', 40000, '10.96.0.10', 80), reply: tup('10.2.0.5', 8080, '10.0.1.1', 5001),
    });
    assert.equal(ipvsTranslation(conns[1]!, []), null, 'no local address and no service table: not known to be translated');
  });

  test('malformed tables are IPVS_PARSE errors', () => {
    const isParse = (e: unknown) => e instanceof NatSourceError && e.code === 'IPVS_PARSE';
    assert.throws(() => parseIpvsConnections('TCP 0A010002 9C40\n'), isParse);
    assert.throws(() => parseIpvsConnections(IP_VS_CONN.replace('0A010002 9C40', '0A01000 9C40')), isParse);
    assert.throws(() => parseIpvsConnections(IP_VS_CONN.replace('    899', '   soon')), isParse);
    assert.throws(() => parseIpvsServices(IP_VS.replace('Masq    1      1', 'Bounce  1      1')), isParse);
  });
});

describe('polled tables', () => {
  const e = (sport: number) => ({ zone: 0, proto: 'tcp' as const, orig: tup('10.1.0.2', sport, '10.96.0.10', 80), reply: tup('10.2.0.5', 80, '10.1.0.2', sport) });
  const S = 1_000_000_000n;

  test('an entry is reported when it appears, every refresh while it lasts, and when it went', () => {
    const table = new PolledTable({ via: 'ipvs', node: 'n', refreshNs: 30n * S });
    const seen = (records: NatTranslation[]) => records.map((r) => [r.orig.sport, r.firstSeen / S, r.lastSeen / S]);
    assert.deepEqual(seen(table.update([e(1), e(2)], 'ns', 100n * S)), [[1, 100n, 100n], [2, 100n, 100n]]);
    assert.deepEqual(seen(table.update([e(1), e(2)], 'ns', 102n * S)), [], 'nothing new');
    assert.deepEqual(seen(table.update([e(1)], 'ns', 104n * S)), [[2, 100n, 102n]], 'gone: last seen by the poll before');
    assert.deepEqual(seen(table.update([e(1)], 'ns', 130n * S)), [[1, 100n, 130n]], 'refreshed');
    assert.deepEqual(seen(table.update([], 'ns', 132n * S)), [], 'gone, and already reported as last seen');
    assert.deepEqual(seen(table.update([e(2)], 'ns', 200n * S)), [[2, 200n, 200n]], 'a reused tuple is a new entry');
  });

  test('a failing poll is reported once until one succeeds', async () => {
    let polls = 0;
    let failing = true;
    const errors: NatSourceError[] = [];
    const poller = new Poller({
      pollMs: 5,
      failureCode: 'IPVS_READ_FAILED',
      onError: (err) => errors.push(err),
      poll: async () => {
        polls++;
        if (failing) throw new NatSourceError('IPVS_UNAVAILABLE', 'no IPVS');
      },
    });
    await poller.start();
    const waitPolls = async (n: number) => {
      const target = polls + n;
      while (polls < target) await new Promise((r) => setTimeout(r, 5));
    };
    await waitPolls(3);
    assert.equal(errors.length, 1);
    failing = false;
    await waitPolls(2);
    failing = true;
    await waitPolls(2);
    await poller.stop();
    assert.deepEqual(errors.map((x) => x.code), ['IPVS_UNAVAILABLE', 'IPVS_UNAVAILABLE']);
  });
});

async function firstRecords(source: IpvsSource, out: { records: NatTranslation[] }): Promise<NatTranslation[]> {
  await source.start();
  return out.records;
}

describe('IpvsSource in a namespace', () => {
  test('reads the tables in the namespace and reports the translated connections', async (t) => {
    const netns = useNetns(t, 'ipvs');
    const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-ipvs-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(path.join(dir, 'ip_vs_conn'), IP_VS_CONN);
    writeFileSync(path.join(dir, 'ip_vs'), IP_VS);
    const out = { records: [] as NatTranslation[], errors: [] as NatSourceError[] };
    const source = new IpvsSource({
      node: 'lb-node', netns, connFile: path.join(dir, 'ip_vs_conn'), servicesFile: path.join(dir, 'ip_vs'),
      onTranslations: (r) => out.records.push(...r), onError: (e) => out.errors.push(e),
    });
    t.after(() => source.stop());
    const records = await firstRecords(source, out);
    assert.deepEqual(out.errors, []);
    assert.deepEqual(records.map((r) => [r.via, r.node, r.netns, r.zone, r.proto, r.orig.sport, r.firstSeen === r.lastSeen]), [
      ['ipvs', 'lb-node', netns.name, 0, 'tcp', 40000, true],
      ['ipvs', 'lb-node', netns.name, 0, 'udp', 40960, true],
      ['ipvs', 'lb-node', netns.name, 0, 'udp', 5060, true],
      ['ipvs', 'lb-node', netns.name, 0, 'tcp', 40003, true],
      ['ipvs', 'lb-node', netns.name, 0, 'tcp', 40004, true],
    ]);
  });

  test('without IPVS in the kernel (as here): IPVS_UNAVAILABLE, saying so', async (t) => {
    const netns = useNetns(t, 'ipvs');
    const errors: NatSourceError[] = [];
    const source = new IpvsSource({ node: 'n', netns, onTranslations: () => assert.fail('no records without IPVS'), onError: (e) => errors.push(e) });
    t.after(() => source.stop());
    await source.start();
    assert.deepEqual(errors.map((e) => e.code), ['IPVS_UNAVAILABLE']);
    assert.match(errors[0]!.message, /no \/proc\/thread-self\/net\/ip_vs_conn: the kernel has no IPVS/);
  });

  test('a vanished namespace is IPVS_NETNS_GONE', async () => {
    const errors: NatSourceError[] = [];
    const source = new IpvsSource({ node: 'n', netns: { name: 'gone', path: '/run/netns/nettrail-no-such-netns', ino: 0 }, onTranslations: () => {}, onError: (e) => errors.push(e) });
    await source.start();
    await source.stop();
    assert.deepEqual(errors.map((e) => e.code), ['IPVS_NETNS_GONE']);
  });
});

test('an edge SNAT (conntrack) in front of an IPVS Masq service: one chain through a real store', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-ipvs-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openStore({ path: path.join(dir, 'store') });
  t.after(() => store.close());
  const writer = new FlowLogWriter(store);

  // The edge masquerades 192.168.1.10:51000 to 10.1.0.2:40000; IPVS sends 10.96.0.10:80 to 10.2.0.5:8080.
  const [conn] = parseIpvsConnections(IP_VS_CONN);
  const ipvs = ipvsTranslation(conn!, parseIpvsServices(IP_VS))!;
  const now = BigInt(Date.now()) * 1_000_000n;
  const client = tup('192.168.1.10', 51000, '10.96.0.10', 80);
  const snat: NatTranslation = {
    via: 'iptables', node: 'edge-node', netns: 'root', zone: 0, proto: 'tcp',
    orig: client, reply: reverseTuple(ipvs.orig), firstSeen: now, lastSeen: now, entryId: 7,
  };
  writer.addNat([snat, { via: 'ipvs', node: 'lb-node', netns: 'root', zone: 0, ...ipvs, firstSeen: now, lastSeen: now, entryId: 0 }]);
  await writer.close();

  const reader = {
    natForTuple: (proto: 'tcp' | 'udp', tuple: typeof client) => natForTuple(store, proto, tuple),
    flowsForTuples: (proto: 'tcp' | 'udp', tuples: (typeof client)[]) => flowsForTuples(store, proto, tuples),
    flowsBySynSeq: (proto: 'tcp' | 'udp', s: number, a: number, range: { from?: bigint; to?: bigint }) => flowsBySynSeq(store, proto, s, a, range),
  };
  const server = tup('10.1.0.2', 40000, '10.2.0.5', 8080);
  for (const entered of [client, ipvs.orig, server, reverseTuple(server)]) {
    const path = await resolveNatPath(reader, 'tcp', entered);
    assert.deepEqual(path.hops.map((h) => [h.kind, h.via, h.node]), [['SNAT', 'iptables', 'edge-node'], ['DNAT', 'ipvs', 'lb-node']], JSON.stringify(entered));
    assert.deepEqual(path.tuples, [client, ipvs.orig, server]);
  }
});
