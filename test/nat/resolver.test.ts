// The resolver's chain building over evidence held in memory, with the store's
// lookup semantics; test/nat/paths.test.ts runs it on real labs through the API.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FlowRecord, FourTuple, NatTranslation } from '../../model/records.js';
import { reverseTuple, sameTuple } from '../../nat-tracker/classify.js';
import { flowTuple, resolveNatPath, type NatEvidenceReader } from '../../nat-tracker/resolver.js';

const t = (src: string, sport: number, dst: string, dport: number): FourTuple => ({ src, sport, dst, dport });
const S = 1_000_000_000n;

function translation(netns: string, orig: FourTuple, reply: FourTuple, firstSeen = 1000n * S, lastSeen = 2000n * S, entryId = 1): NatTranslation {
  return { via: 'iptables', node: 'n1', netns, zone: 0, proto: 'tcp', orig, reply, firstSeen, lastSeen, entryId };
}

let flowIds = 0;
function flow(netns: string, tuple: FourTuple, start: bigint, synSeq: number | null, synAckSeq: number | null): FlowRecord {
  const id = `f${++flowIds}`;
  return {
    id, connectionId: id, node: 'n1', netns, iface: 'eth0', proto: 'tcp',
    client: { ip: tuple.src, port: tuple.sport }, server: { ip: tuple.dst, port: tuple.dport },
    start, end: start + S, packets: { c2s: 5, s2c: 5 }, bytes: { c2s: 500, s2c: 500 },
    connState: 'SF', history: 'ShADadFf', rttNs: 1000n, retrans: { c2s: 0, s2c: 0 }, zeroWindow: { c2s: 0, s2c: 0 }, outOfOrder: { c2s: 0, s2c: 0 },
    close: 'fin', synSeq, synAckSeq,
  };
}

/** The store's semantics: orig or reply tuple equal to the tuple (either direction); flows by tuple either way; flows by SYN sequence numbers in a start range. */
function readerOf(entries: NatTranslation[], flows: FlowRecord[] = []): NatEvidenceReader {
  const either = (a: FourTuple, b: FourTuple) => sameTuple(a, b) || sameTuple(a, reverseTuple(b));
  return {
    natForTuple: async (_proto, tuple) => entries.filter((e) => [e.orig, e.reply].some((side) => either(side, tuple))),
    flowsForTuples: async (_proto, tuples) => flows.filter((f) => tuples.some((u) => either(flowTuple(f), u))),
    flowsBySynSeq: async (_proto, synSeq, synAckSeq, range) =>
      flows.filter((f) => f.synSeq === synSeq && f.synAckSeq === synAckSeq && f.start >= range.from! && f.start <= range.to!),
  };
}

// client 10.1.0.2:5000 → SNAT at edge (to 192.0.2.1:6000) → DNAT at lb (198.51.100.1:443 → 10.9.0.5:8443)
const client = t('10.1.0.2', 5000, '198.51.100.1', 443);
const middle = t('192.0.2.1', 6000, '198.51.100.1', 443);
const server = t('192.0.2.1', 6000, '10.9.0.5', 8443);
const snat = translation('edge', client, reverseTuple(middle));
const dnat = translation('lb', middle, reverseTuple(server));
const everyWay = [client, middle, server].flatMap((x) => [x, reverseTuple(x)]);

test('two routers, SNAT then DNAT: the same chain from every tuple, either direction', async () => {
  const reader = readerOf([dnat, snat]);
  for (const entered of everyWay) {
    const path = await resolveNatPath(reader, 'tcp', entered);
    assert.deepEqual(path.hops.map((h) => [h.kind, h.via, h.netns]), [['SNAT', 'iptables', 'edge'], ['DNAT', 'iptables', 'lb']], JSON.stringify(entered));
    assert.deepEqual(path.tuples, [client, middle, server]);
    assert.deepEqual([path.hops[0].before, path.hops[0].after, path.hops[1].after], [client, middle, server]);
  }
});

test('no evidence: the tuple alone, as given', async () => {
  const path = await resolveNatPath(readerOf([snat]), 'tcp', t('10.0.0.1', 1, '10.0.0.2', 2));
  assert.deepEqual(path, { tuples: [t('10.0.0.1', 1, '10.0.0.2', 2)], hops: [] });
});

test('a reused client port: the translation alive at `at` wins, else the newest', async () => {
  const laterMiddle = t('192.0.2.1', 7000, '198.51.100.1', 443);
  const early = translation('edge', client, reverseTuple(middle), 1000n * S, 2000n * S, 1);
  const late = translation('edge', client, reverseTuple(laterMiddle), 5000n * S, 6000n * S, 2);
  const reader = readerOf([early, late]);
  assert.deepEqual((await resolveNatPath(reader, 'tcp', client)).tuples[1], laterMiddle);
  assert.deepEqual((await resolveNatPath(reader, 'tcp', client, 1500n * S)).tuples[1], middle);
  assert.deepEqual((await resolveNatPath(reader, 'tcp', client, 4000n * S)).tuples[1], laterMiddle, 'nearer to the later one');
  // The old entry lasts until the reuse replaces it: of two alive at `at`, the one that began last.
  const replaced = translation('edge', client, reverseTuple(middle), 1000n * S, 5000n * S + S / 2n, 1);
  assert.deepEqual((await resolveNatPath(readerOf([replaced, late]), 'tcp', client, 5000n * S + S / 4n)).tuples[1], laterMiddle);
});

test('each hop of a chain is the one of the same connection, not of a later reuse', async () => {
  const laterServer = t('192.0.2.1', 6000, '10.9.0.6', 8443);
  const laterDnat = translation('lb', middle, reverseTuple(laterServer), 5000n * S, 6000n * S, 3);
  const path = await resolveNatPath(readerOf([snat, dnat, laterDnat]), 'tcp', client, 1500n * S);
  assert.deepEqual(path.tuples, [client, middle, server]);
  const later = await resolveNatPath(readerOf([snat, dnat, laterDnat]), 'tcp', laterServer);
  assert.deepEqual(later.tuples, [client, middle, laterServer]);
});

test('a translation loop ends instead of spinning', async () => {
  // A → B at r1 and B → A at r2: each hop's after is the other's before.
  const a = t('10.0.0.1', 1, '10.0.0.2', 2);
  const b = t('10.0.0.3', 3, '10.0.0.2', 2);
  const path = await resolveNatPath(readerOf([translation('r1', a, reverseTuple(b)), translation('r2', b, reverseTuple(a))]), 'tcp', a);
  assert.ok(path.hops.length <= 2, `${path.hops.length} hops`);
});

test('no NAT device observed: a tcp-seq hop between points that saw the same SYN and SYN-ACK under different tuples', async () => {
  const flows = [flow('client', client, 1000n * S, 111, 222), flow('server', server, 1000n * S + 1000n, 111, 222)];
  for (const entered of [client, server, reverseTuple(server)]) {
    const path = await resolveNatPath(readerOf([], flows), 'tcp', entered);
    assert.deepEqual(path.tuples, [client, server], JSON.stringify(entered));
    assert.equal(path.hops.length, 1);
    const [hop] = path.hops;
    assert.equal(hop.via, 'tcp-seq');
    assert.equal(hop.kind, 'FULLNAT');
    assert.deepEqual([hop.before, hop.after, hop.netns], [client, server, 'server']);
  }
});

test('observed and unobserved hops join into one chain in path order', async () => {
  // The SNAT at edge is recorded; the DNAT at lb is not, but its two sides were captured.
  const flows = [flow('client', client, 1000n * S, 7, 9), flow('middle', middle, 1000n * S + 10n, 7, 9), flow('server', server, 1000n * S + 20n, 7, 9)];
  for (const entered of everyWay) {
    const path = await resolveNatPath(readerOf([snat], flows), 'tcp', entered);
    assert.deepEqual(path.hops.map((h) => [h.kind, h.via]), [['SNAT', 'iptables'], ['DNAT', 'tcp-seq']], JSON.stringify(entered));
    assert.deepEqual(path.tuples, [client, middle, server]);
  }
});

test('flows of another handshake, or of UDP, make no tcp-seq hop', async () => {
  const flows = [flow('client', client, 1000n * S, 1, 2), flow('server', server, 1000n * S, 1, 3)];
  assert.deepEqual((await resolveNatPath(readerOf([], flows), 'tcp', client)).hops, []);
  assert.deepEqual((await resolveNatPath(readerOf([], flows), 'udp', client)).hops, []);
  const late = [flow('client', client, 1000n * S, 1, 2), flow('server', server, 5000n * S, 1, 2)];
  assert.deepEqual((await resolveNatPath(readerOf([], late), 'tcp', client)).hops, [], 'outside the SYN window');
});
