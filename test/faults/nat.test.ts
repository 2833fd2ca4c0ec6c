// Hostile NAT-device output: conntrack XML, /proc/net/ip_vs_conn and
// /proc/net/ip_vs text, and `ovs-appctl dpctl/dump-conntrack` lines, cut short
// and mutated at random (seeded: NETTRAIL_FUZZ_SEED repeats a run). Each parser
// must return entries or throw its own coded error, never anything else; every
// translation it returns must be one the flow-log writer takes (a refused record
// thrown inside a source's callback would end `nettrail serve`). Then the real
// conntrack source is fed a corrupt dump and corrupt events through a stand-in
// `conntrack` in a test namespace: it reports CONNTRACK_PARSE, keeps the good
// entries, and nothing escapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodeNat } from '../../flowlog/codec.js';
import type { NatTranslation, Proto } from '../../model/records.js';
import { RowBinaryWriter } from '../../flowlog/rowbinary.js';
import type { FlowLogStore } from '../../flowlog/store.js';
import { FlowLogWriter } from '../../flowlog/writer.js';
import { classifyNat } from '../../nat-tracker/classify.js';
import { ConntrackError, ConntrackSource, FlowSplitter, parseConntrackFlow } from '../../nat-tracker/sources/conntrack.js';
import { ipvsTranslation, parseIpvsConnections, parseIpvsServices } from '../../nat-tracker/sources/ipvs.js';
import { parseOvsConntrack } from '../../nat-tracker/sources/ovs.js';
import { NatSourceError } from '../../nat-tracker/sources/polled.js';
import { prng } from '../../bench/support/prng.js';

const SEED = Number(process.env.NETTRAIL_FUZZ_SEED ?? 0x0badc0de);
const MUTANTS = Number(process.env.NETTRAIL_FUZZ_NAT ?? 3000);
const NOW = 1_795_300_000_000_000_000n;

// ---- valid inputs, in the programs' formats ----------------------------------

const ctTuple = (family: 'ipv4' | 'ipv6', proto: string, src: string, dst: string, sport: number | null, dport: number | null) =>
  `<layer3 protonum="${family === 'ipv4' ? 2 : 10}" protoname="${family}"><src>${src}</src><dst>${dst}</dst></layer3>` +
  `<layer4 protonum="${proto === 'tcp' ? 6 : proto === 'udp' ? 17 : 1}" protoname="${proto}">` +
  `${sport === null ? '' : `<sport>${sport}</sport><dport>${dport}</dport>`}</layer4>`;
const ctFlow = (type: string | null, orig: string, reply: string, independent: string) =>
  `<flow${type ? ` type="${type}"` : ''}><meta direction="original">${orig}</meta><meta direction="reply">${reply}</meta>` +
  `<meta direction="independent">${independent}</meta></flow>`;

const CONNTRACK_FLOWS = [
  ctFlow('new', ctTuple('ipv4', 'tcp', '10.1.0.2', '10.96.0.10', 41000, 80), ctTuple('ipv4', 'tcp', '10.2.0.5', '10.1.0.2', 8080, 41000),
    '<state>SYN_SENT</state><timeout>120</timeout><id>3735928559</id><unreplied/>'),
  ctFlow('destroy', ctTuple('ipv4', 'udp', '10.1.0.3', '10.96.0.53', 5353, 53), ctTuple('ipv4', 'udp', '10.2.0.53', '192.168.0.1', 53, 61000),
    '<timeout>29</timeout><zone>7</zone><id>17</id><timestamp><start>1795291690811407494</start><stop>1795291690911452110</stop></timestamp><deltatime>0</deltatime>'),
  ctFlow(null, ctTuple('ipv6', 'tcp', 'fd00:1::2', 'fd00:96::a', 50000, 443), ctTuple('ipv6', 'tcp', 'fd00:2::5', 'fd00:1::2', 8443, 50000),
    '<state>ESTABLISHED</state><timeout>431999</timeout><mark>0</mark><use>1</use><id>305300384</id><assured/><deltatime>12</deltatime>'),
  ctFlow('update', ctTuple('ipv4', 'icmp', '10.1.0.4', '10.96.0.10', null, null), ctTuple('ipv4', 'icmp', '10.2.0.5', '10.1.0.4', null, null),
    '<timeout>30</timeout><id>99</id>'),
  ctFlow(null, ctTuple('ipv4', 'tcp', '127.0.0.1', '127.0.0.5', 32848, 81), ctTuple('ipv4', 'tcp', '127.0.0.1', '127.0.0.1', 80, 32848),
    '<state>TIME_WAIT</state><timeout>119</timeout><id>1</id><timestamp><start>1795291699560086031</start></timestamp><deltatime>1</deltatime>'),
];

const connLine = (proto: string, ...fields: string[]) => `${proto.padEnd(3)} ${fields.slice(0, -2).join(' ')} ${fields.at(-2)!.padEnd(11)} ${fields.at(-1)!.padStart(7)}\n`;
const IP_VS_CONN =
  'Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n' +
  connLine('TCP', '0A010002', '9C40', '0A60000A', '0050', '0A020005', '1F90', 'ESTABLISHED', '899') +
  connLine('UDP', '0A010002', 'A000', '0A60000A', '0035', '0A020006', '0035', 'UDP', '287') +
  connLine('TCP', '0A010005', '0000', '0A60000A', '0050', '0A020005', '1F90', 'NONE', '359') +
  connLine('TCP', 'fd00:0000:0000:0000:0000:0000:0000:0002', '9C43', 'fd00:0000:0000:0000:0000:0000:0060:000a', '01BB',
    'fd00:0000:0000:0000:0000:0000:0002:0005', '20FB', 'ESTABLISHED', '900') +
  connLine('TCP', '0A010003', '9C41', '0A60000A', '0050', '0A020007', '0050', 'SYN_RECV', '59');
const IP_VS_CONN_FULLNAT =
  'Pro FromIP   FPrt ToIP     TPrt LocalIP  LPrt DestIP   DPrt State       Expires\n' +
  connLine('TCP', '0A010002', '9C40', '0A60000A', '0050', '0A630001', 'C350', '0A020005', '1F90', 'ESTABLISHED', '899') +
  connLine('UDP', '0A010009', '9C49', '0A60000A', '0035', '00000000', '0000', '0A020006', '0035', 'UDP', '12');
const IP_VS =
  'IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n' +
  'TCP  0A60000A:0050 rr \n  -> 0A020005:1F90      Masq    1      1          0         \n  -> 0A020007:0050      Route   1      1          0         \n' +
  'UDP  0A60000A:0035 rr persistent 360 FFFFFFFF\n  -> 0A020006:0035      Masq    1      0          1         \n' +
  'TCP  [fd00:0000:0000:0000:0000:0000:0060:000a]:01BB wlc \n  -> [fd00:0000:0000:0000:0000:0000:0002:0005]:20FB      Masq    1      1          0         \n' +
  'FWM  00000001 rr \n  -> 0A020008:0050      Tunnel  1      0          0         \n';
const OVS_DUMP =
  'tcp,orig=(src=10.240.1.2,dst=10.240.1.100,sport=45678,dport=8080),reply=(src=10.240.1.3,dst=10.240.1.2,sport=80,dport=45678),zone=7,protoinfo=(state=ESTABLISHED)\n' +
  'udp,orig=(src=fd00:240::2,dst=fd00:240::64,sport=5353,dport=53),reply=(src=fd00:240::3,dst=fd00:240::2,sport=53,dport=5353)\n' +
  'tcp,orig=(src=10.240.1.2,dst=10.240.1.100,sport=45679,dport=8080),reply=(src=10.240.1.3,dst=10.240.9.9,sport=80,dport=1024),id=0,zone=0,status=0,timeout=29,protoinfo=(state_orig=FIN_WAIT_2,state_reply=FIN_WAIT_2,wscale_orig=10,wscale_reply=10)\n' +
  'icmp,orig=(src=10.240.1.2,dst=10.240.1.100,id=1,type=8,code=0),reply=(src=10.240.1.3,dst=10.240.1.2,id=1,type=0,code=0)\n';

// ---- mutations -----------------------------------------------------------------

const TOKENS = [
  '<', '>', '/', '"', '=', '&', '&amp;', '&#x41;', '&bogus;', '<flow>', '</flow>', '</meta>', '<meta direction="original">', '<src>', '</src>',
  '<sport>', '<zone>', '<id>', '<timestamp><start>', ']]>', '<!--', '(', ')', ',', '=(', 'orig=(', 'reply=(', 'zone=', 'src=', 'sport=',
  '  -> ', 'TCP', 'UDP', 'FWM', 'Pro ', 'LocalIP', '[', ']', ':', '::', '.', '-', '+', ' ', '\t', '\n', '\r\n', '\u0000', 'é', '😀', '\u202e',
  '0', '-1', '65535', '65536', '99999', '4294967295', '4294967296', '18446744073709551615', '99999999999999999999', '1e3', '0x10', 'NaN',
  'Infinity', '1.5', '00000000', 'FFFFFFFF', 'ZZZZZZZZ', 'ffff', '0A0100', '0A01000200', '256.1.1.1', '10.0.0.1.2', 'fd00::1::2', '::ffff:1.2.3.4',
  'fe80::1%eth0', 'x'.repeat(300),
];

function mutateText(random: () => number, text: string): string {
  let out = text;
  const count = 1 + Math.floor(random() * 4);
  for (let m = 0; m < count; m++) {
    const at = Math.floor(random() * (out.length + 1));
    const span = 1 + Math.floor(random() * 12);
    switch (Math.floor(random() * 9)) {
      case 0:
        out = out.slice(0, at);
        break;
      case 1:
        out = out.slice(0, at) + out.slice(at + span);
        break;
      case 2:
        out = out.slice(0, at) + out.slice(at, at + span * 4) + out.slice(at);
        break;
      case 3:
      case 4:
        out = out.slice(0, at) + TOKENS[Math.floor(random() * TOKENS.length)] + out.slice(at + (random() < 0.5 ? span : 0));
        break;
      case 5: {
        // A number replaced by a boundary or hostile value.
        const numbers = [...out.matchAll(/\d+/g)];
        if (numbers.length === 0) break;
        const n = numbers[Math.floor(random() * numbers.length)];
        const value = TOKENS.slice(TOKENS.indexOf('0'), TOKENS.indexOf('x'.repeat(300)))[Math.floor(random() * 30)];
        out = out.slice(0, n.index) + value + out.slice(n.index! + n[0].length);
        break;
      }
      case 6: {
        const lines = out.split('\n');
        const [i, j] = [Math.floor(random() * lines.length), Math.floor(random() * lines.length)];
        [lines[i], lines[j]] = [lines[j], lines[i]];
        out = lines.join('\n');
        break;
      }
      case 7:
        out = out.slice(0, at) + String.fromCharCode(Math.floor(random() * 128)) + out.slice(at + 1);
        break;
      default:
        out = out.slice(0, at) + out.charAt(at).toUpperCase() + out.slice(at + 1);
    }
  }
  return out;
}

/** A translation as the sources store it must be one the writer takes. */
function assertWritable(record: NatTranslation, where: string): void {
  try {
    encodeNat(record, new RowBinaryWriter(512));
  } catch (err) {
    assert.fail(`${where}: the parser returned a translation the flow-log writer refuses: ${(err as Error).message}\n${JSON.stringify(record, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`);
  }
}

/** Runs `parse`; returns its result, or null when it threw an error of the expected class and code. */
function guarded<T>(parse: () => T, expected: (err: unknown) => boolean, where: string): T | null {
  try {
    return parse();
  } catch (err) {
    assert.ok(expected(err), `${where}: threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message ?? String(err)}`);
    return null;
  }
}

const record = (via: NatTranslation['via'], proto: Proto, e: { orig: NatTranslation['orig']; reply: NatTranslation['reply']; zone: number }, extra: Partial<NatTranslation> = {}): NatTranslation => ({
  via, node: 'fuzz', netns: 'fuzz', zone: e.zone, proto, orig: e.orig, reply: e.reply, firstSeen: NOW, lastSeen: NOW, entryId: 0, ...extra,
});

/** What the conntrack source makes of one entry (ConntrackSource.observe). */
function conntrackRecord(xml: string, where: string): 'parsed' | 'refused' | 'skipped' {
  const entry = guarded(() => parseConntrackFlow(xml), (err) => err instanceof ConntrackError && err.code === 'CONNTRACK_PARSE', where);
  if (entry === null) return 'refused';
  if ((entry.proto !== 'tcp' && entry.proto !== 'udp') || classifyNat(entry.orig, entry.reply) === null) return 'skipped';
  const age = entry.deltaSec === null ? 0n : BigInt(entry.deltaSec) * 1_000_000_000n;
  const firstSeen = entry.startNs ?? (age <= NOW ? NOW - age : NOW);
  assertWritable(record('iptables', entry.proto, entry, { firstSeen, lastSeen: entry.stopNs ?? NOW, entryId: entry.id }), where);
  return 'parsed';
}

function tally(counts: Map<string, number>, outcome: string): void {
  counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
}

const summary = (counts: Map<string, number>) => [...counts].map(([k, n]) => `${k} ${n}`).join(', ');

test(`conntrack XML: ${MUTANTS} mutated flows and cut streams: entries or CONNTRACK_PARSE, every entry writable`, (t) => {
  const random = prng(SEED);
  t.diagnostic(`seed ${SEED} (repeat with NETTRAIL_FUZZ_SEED=${SEED})`);
  const counts = new Map<string, number>();
  for (const flow of CONNTRACK_FLOWS) assert.notEqual(conntrackRecord(flow, 'valid flow'), 'refused');
  const stream = `<?xml version="1.0" encoding="utf-8"?>\n<conntrack>\n${CONNTRACK_FLOWS.join('\n')}\n</conntrack>\n`;
  for (let i = 0; i < MUTANTS; i++) {
    const where = `mutant ${i} (seed ${SEED})`;
    if (i % 4 === 3) {
      // A whole mutated stream, cut into random chunks as a pipe delivers it.
      const text = mutateText(random, stream);
      const splitter = new FlowSplitter();
      for (let at = 0; at < text.length; ) {
        const next = at + 1 + Math.floor(random() * 200);
        for (const xml of splitter.push(text.slice(at, next))) tally(counts, conntrackRecord(xml, `${where}: ${JSON.stringify(xml.slice(0, 400))}`));
        at = next;
      }
      continue;
    }
    const xml = mutateText(random, CONNTRACK_FLOWS[Math.floor(random() * CONNTRACK_FLOWS.length)]);
    tally(counts, conntrackRecord(xml, `${where}: ${JSON.stringify(xml.slice(0, 600))}`));
  }
  t.diagnostic(`flows: ${summary(counts)}`);
  assert.ok((counts.get('parsed') ?? 0) > 0 && (counts.get('refused') ?? 0) > 0, 'the mutations reached both outcomes');
});

test(`/proc/net/ip_vs_conn and /proc/net/ip_vs: ${MUTANTS} mutated tables: entries or IPVS_PARSE, every translation writable`, (t) => {
  const random = prng(SEED + 1);
  const counts = new Map<string, number>();
  const isParseError = (err: unknown) => err instanceof NatSourceError && err.code === 'IPVS_PARSE';
  const services = parseIpvsServices(IP_VS);
  for (let i = 0; i < MUTANTS; i++) {
    const where = `mutant ${i} (seed ${SEED + 1})`;
    const which = i % 3;
    const text = mutateText(random, which === 0 ? IP_VS_CONN : which === 1 ? IP_VS_CONN_FULLNAT : IP_VS);
    const conns = which === 2 ? parseIpvsConnections(IP_VS_CONN) : guarded(() => parseIpvsConnections(text), isParseError, `${where}: ${JSON.stringify(text)}`);
    const servs = which === 2 ? guarded(() => parseIpvsServices(text), isParseError, `${where}: ${JSON.stringify(text)}`) : services;
    if (conns === null || servs === null) {
      tally(counts, 'refused');
      continue;
    }
    for (const conn of conns) {
      const translation = guarded(() => ipvsTranslation(conn, servs), () => false, `${where}: ${JSON.stringify(text)}`);
      if (translation) assertWritable(record('ipvs', translation.proto, { ...translation, zone: 0 }), `${where}: ${JSON.stringify(text)}`);
      tally(counts, translation ? 'translated' : 'no hop');
    }
  }
  t.diagnostic(`tables and entries: ${summary(counts)}`);
  assert.ok((counts.get('translated') ?? 0) > 0 && (counts.get('refused') ?? 0) > 0, 'the mutations reached both outcomes');
});

test(`ovs-appctl dpctl/dump-conntrack: ${MUTANTS} mutated dumps: entries or OVS_PARSE, every translation writable`, (t) => {
  const random = prng(SEED + 2);
  const counts = new Map<string, number>();
  for (let i = 0; i < MUTANTS; i++) {
    const text = mutateText(random, OVS_DUMP);
    const where = `mutant ${i} (seed ${SEED + 2}): ${JSON.stringify(text)}`;
    const entries = guarded(() => parseOvsConntrack(text), (err) => err instanceof NatSourceError && err.code === 'OVS_PARSE', where);
    if (entries === null) {
      tally(counts, 'refused');
      continue;
    }
    for (const e of entries) {
      // As OvsSource.poll: TCP and UDP entries that translate.
      if ((e.proto !== 'tcp' && e.proto !== 'udp') || classifyNat(e.orig, e.reply) === null) {
        tally(counts, 'skipped');
        continue;
      }
      assertWritable(record('ovs', e.proto, e), where);
      tally(counts, 'translated');
    }
  }
  t.diagnostic(`dumps and entries: ${summary(counts)}`);
  assert.ok((counts.get('translated') ?? 0) > 0 && (counts.get('refused') ?? 0) > 0, 'the mutations reached both outcomes');
});

test('the conntrack source on corrupt output: CONNTRACK_PARSE reported, good entries written, nothing escapes', async (t) => {
  const random = prng(SEED + 3);
  const netns = `ntfz${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', netns]);
  const remove = () => spawnSync('ip', ['netns', 'del', netns]);
  t.after(remove);
  process.once('exit', remove);
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-faults-nat-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A stand-in for conntrack: dumps print a file; the event stream prints one and then is the real
  // `conntrack -E`, so that the source sees its netlink subscription.
  const flows = Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? CONNTRACK_FLOWS[i % 3] : mutateText(random, CONNTRACK_FLOWS[i % CONNTRACK_FLOWS.length])));
  writeFileSync(path.join(dir, 'dump.xml'), `<?xml version="1.0" encoding="utf-8"?>\n<conntrack>\n${flows.join('\n')}\n</conntrack>\n`);
  writeFileSync(path.join(dir, 'events.xml'), flows.map((f) => `${f} [USERSPACE] portid=1\n`).join(''));
  const fake = path.join(dir, 'conntrack');
  writeFileSync(fake, `#!/bin/sh\nif [ "$1" = -E ]; then cat ${dir}/events.xml; exec conntrack "$@"; fi\n[ "$3" = ipv4 ] && cat ${dir}/dump.xml\nexit 0\n`);
  chmodSync(fake, 0o755);

  const stored: NatTranslation[] = [];
  const store = { insertRowBinary: async () => {} } as unknown as FlowLogStore;
  const writer = new FlowLogWriter(store);
  t.after(() => writer.close());
  const errors: ConntrackError[] = [];
  const source = new ConntrackSource({
    node: 'fuzz',
    netns: { name: netns, path: `/run/netns/${netns}`, ino: statSync(`/run/netns/${netns}`).ino },
    conntrackBin: fake,
    // As serve wires it: straight into the writer, which throws on a record it refuses.
    onTranslations: (records) => {
      writer.addNat(records);
      stored.push(...records);
    },
    onError: (err) => errors.push(err),
  });
  await source.start();
  await new Promise((resolve) => setImmediate(resolve));
  await source.stop();
  const codes = new Set(errors.map((e) => e.code));
  t.diagnostic(`${stored.length} translations written, ${errors.length} errors: ${[...codes].join(', ')}`);
  assert.ok(errors.length > 0 && errors.every((e) => e instanceof ConntrackError), 'corrupt flows reported, as ConntrackErrors');
  assert.ok(codes.has('CONNTRACK_PARSE'));
  assert.ok(stored.some((r) => r.orig.src === '10.1.0.2' && r.orig.sport === 41000), 'the intact flows are recorded');
  assert.equal(writer.stats().nat_translations.accepted, stored.length, 'the writer took every translation');
});
