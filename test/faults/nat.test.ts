// Hostile NAT-device output: ctnetlink messages (decoded by the addon, in C++),
// /proc/net/ip_vs_conn and /proc/net/ip_vs text, and `dpctl/dump-conntrack` lines,
// cut short and mutated at random (seeded: NETTRAIL_FUZZ_SEED repeats a run). Each
// parser must return entries or throw its own coded error (the addon: leave out what
// it cannot read), never anything else nor crash; every translation it returns must be
// one the flow-log writer takes (a refused record thrown inside a source's callback
// would end `nettrail serve`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeNat } from '../../flowlog/codec.js';
import type { NatTranslation, Proto } from '../../model/records.js';
import { RowBinaryWriter } from '../../flowlog/rowbinary.js';
import { classifyNat } from '../../nat-tracker/classify.js';
import { ctRecordLayout } from '../../nat-tracker/sources/conntrack-layout.js';
import { decodeConntrackRecords } from '../../nat-tracker/sources/conntrack.js';
import { decodeConntrackMessages } from '../../native/conntrack.js';
import { ipvsTranslation, parseIpvsConnections, parseIpvsServices } from '../../nat-tracker/sources/ipvs.js';
import { parseOvsConntrack } from '../../nat-tracker/sources/ovs.js';
import { NatSourceError } from '../../nat-tracker/sources/polled.js';
import { prng } from '../../bench/support/prng.js';
import { ctnetlinkEntry } from '../support/ctnetlink.js';

const SEED = Number(process.env.NETTRAIL_FUZZ_SEED ?? 0x0badc0de);
const MUTANTS = Number(process.env.NETTRAIL_FUZZ_NAT ?? 3000);
const NOW = 1_795_300_000_000_000_000n;

// ---- valid inputs, in the programs' formats ----------------------------------

const CTNETLINK_MESSAGES = [
  ctnetlinkEntry({ event: 'new', family: 'ipv4', proto: 6, orig: { src: '10.1.0.2', sport: 41000, dst: '10.96.0.10', dport: 80 },
    reply: { src: '10.2.0.5', sport: 8080, dst: '10.1.0.2', dport: 41000 }, id: 3735928559, status: 0x28 }),
  ctnetlinkEntry({ event: 'destroy', family: 'ipv4', proto: 17, orig: { src: '10.1.0.3', sport: 5353, dst: '10.96.0.53', dport: 53 },
    reply: { src: '10.2.0.53', sport: 53, dst: '192.168.0.1', dport: 61000 }, id: 17, status: 0x38, zone: 7,
    startNs: 1795291690811407494n, stopNs: 1795291690911452110n }),
  ctnetlinkEntry({ event: null, family: 'ipv6', proto: 6, orig: { src: 'fd00:1::2', sport: 50000, dst: 'fd00:96::a', dport: 443 },
    reply: { src: 'fd00:2::5', sport: 8443, dst: 'fd00:1::2', dport: 50000 }, id: 305300384, status: 0x3a, startNs: 1795291699560086031n }),
  ctnetlinkEntry({ event: 'update', family: 'ipv4', proto: 1, orig: { src: '10.1.0.4', sport: 7, dst: '10.96.0.10', dport: 0 },
    reply: { src: '10.2.0.5', sport: 7, dst: '10.1.0.4', dport: 0 }, id: 99, status: 0x20 }),
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

/** Bytes changed, cut, repeated, or 16-bit fields (lengths, types) set to boundary values. */
function mutateBytes(random: () => number, bytes: Buffer): Buffer {
  let out = Buffer.from(bytes);
  const count = 1 + Math.floor(random() * 4);
  for (let m = 0; m < count; m++) {
    const at = Math.floor(random() * (out.length + 1));
    switch (Math.floor(random() * 6)) {
      case 0:
        out = out.subarray(0, at);
        break;
      case 1:
        out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + Math.floor(random() * 8))]);
        break;
      case 2:
        out = Buffer.concat([out.subarray(0, at), out.subarray(at, at + 4 + Math.floor(random() * 32)), out.subarray(at)]);
        break;
      case 3:
        if (at < out.length) out[at] = Math.floor(random() * 256);
        break;
      default: {
        const field = at & ~1;
        if (field + 2 <= out.length) out.writeUInt16LE([0, 1, 3, 4, 5, 0x7fff, 0x8000, 0xffff][Math.floor(random() * 8)]!, field);
      }
    }
  }
  return out;
}

/** What the conntrack source makes of the entries the addon decoded (ConntrackSource.observe). */
function conntrackRecords(records: Buffer, where: string): Array<'parsed' | 'skipped'> {
  assert.equal(records.length % ctRecordLayout.size, 0, `${where}: whole records`);
  return decodeConntrackRecords(records, records.length / ctRecordLayout.size).map((decoded) => {
    const entry = decoded.kind === 'entry' ? decoded.entry : assert.fail(`${where}: a ${decoded.kind} marker from messages`);
    const proto: Proto | null = entry.proto === 6 ? 'tcp' : entry.proto === 17 ? 'udp' : null;
    if (proto === null || classifyNat(entry.orig, entry.reply) === null) return 'skipped';
    assertWritable(record('iptables', proto, entry, { firstSeen: entry.startNs ?? NOW, lastSeen: entry.stopNs ?? NOW, entryId: entry.id }), where);
    return 'parsed';
  });
}

function tally(counts: Map<string, number>, outcome: string): void {
  counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
}

const summary = (counts: Map<string, number>) => [...counts].map(([k, n]) => `${k} ${n}`).join(', ');

test(`ctnetlink: ${MUTANTS} mutated messages and datagrams: the addon decodes entries or leaves them out, every entry writable`, (t) => {
  const random = prng(SEED);
  t.diagnostic(`seed ${SEED} (repeat with NETTRAIL_FUZZ_SEED=${SEED})`);
  const counts = new Map<string, number>();
  const datagram = Buffer.concat(CTNETLINK_MESSAGES);
  assert.deepEqual(conntrackRecords(decodeConntrackMessages(datagram), 'valid datagram'), ['parsed', 'parsed', 'parsed', 'skipped']);
  for (let i = 0; i < MUTANTS; i++) {
    // Every fourth a whole datagram of several messages, else one message.
    const input = mutateBytes(random, i % 4 === 3 ? datagram : CTNETLINK_MESSAGES[Math.floor(random() * CTNETLINK_MESSAGES.length)]!);
    const where = `mutant ${i} (seed ${SEED}): ${input.toString('hex')}`;
    const outcomes = conntrackRecords(decodeConntrackMessages(input), where);
    if (outcomes.length === 0) tally(counts, 'left out');
    for (const outcome of outcomes) tally(counts, outcome);
  }
  t.diagnostic(`messages: ${summary(counts)}`);
  assert.ok((counts.get('parsed') ?? 0) > 0 && (counts.get('left out') ?? 0) > 0, 'the mutations reached both outcomes');
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
