import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FourTuple, NatTranslation } from '../flowlog/records.js';
import { reverseTuple, sameTuple } from '../nat-tracker/classify.js';
import { resolveNatPath } from '../nat-tracker/resolver.js';

const t = (src: string, sport: number, dst: string, dport: number): FourTuple => ({ src, sport, dst, dport });

function translation(netns: string, orig: FourTuple, reply: FourTuple, firstSeen = 1000n, lastSeen = 2000n, entryId = 1): NatTranslation {
  return { via: 'iptables', node: 'n1', netns, zone: 0, proto: 'tcp', orig, reply, firstSeen, lastSeen, entryId };
}

/** The store's lookup semantics: orig or reply tuple equal to the tuple, in either direction. */
function lookupIn(entries: NatTranslation[]) {
  return async (tuple: FourTuple) =>
    entries.filter((e) => [e.orig, e.reply].some((side) => sameTuple(side, tuple) || sameTuple(side, reverseTuple(tuple))));
}

// client 10.1.0.2:5000 → SNAT at edge (to 192.0.2.1:6000) → DNAT at lb (198.51.100.1:443 → 10.9.0.5:8443)
const client = t('10.1.0.2', 5000, '198.51.100.1', 443);
const middle = t('192.0.2.1', 6000, '198.51.100.1', 443);
const server = t('192.0.2.1', 6000, '10.9.0.5', 8443);
const snat = translation('edge', client, reverseTuple(middle));
const dnat = translation('lb', middle, reverseTuple(server));

test('two routers, SNAT then DNAT: the same chain from every tuple, either direction', async () => {
  const lookup = lookupIn([dnat, snat]);
  for (const entered of [client, middle, server, reverseTuple(client), reverseTuple(middle), reverseTuple(server)]) {
    const path = await resolveNatPath(lookup, entered);
    assert.deepEqual(path.hops.map((h) => [h.kind, h.netns]), [['SNAT', 'edge'], ['DNAT', 'lb']], JSON.stringify(entered));
    assert.deepEqual(path.tuples, [client, middle, server]);
    assert.deepEqual(path.hops[0].before, client);
    assert.deepEqual(path.hops[1].after, server);
  }
});

test('no translation: the tuple alone', async () => {
  const path = await resolveNatPath(lookupIn([snat]), t('10.0.0.1', 1, '10.0.0.2', 2));
  assert.deepEqual(path, { tuples: [t('10.0.0.1', 1, '10.0.0.2', 2)], hops: [] });
});

test('a reused client port: the translation alive at `at` wins, else the newest', async () => {
  const early = translation('edge', client, reverseTuple(middle), 1000n, 2000n, 1);
  const laterMiddle = t('192.0.2.1', 7000, '198.51.100.1', 443);
  const late = translation('edge', client, reverseTuple(laterMiddle), 5000n, 6000n, 2);
  const lookup = lookupIn([early, late]);
  assert.deepEqual((await resolveNatPath(lookup, client)).tuples[1], laterMiddle);
  assert.deepEqual((await resolveNatPath(lookup, client, 1500n)).tuples[1], middle);
});

test('a translation loop ends instead of spinning', async () => {
  // A → B at r1 and B → A at r2: each hop's after is the other's before.
  const a = t('10.0.0.1', 1, '10.0.0.2', 2);
  const b = t('10.0.0.3', 3, '10.0.0.2', 2);
  const path = await resolveNatPath(lookupIn([translation('r1', a, reverseTuple(b)), translation('r2', b, reverseTuple(a))]), a);
  assert.ok(path.hops.length <= 2, `${path.hops.length} hops`);
});
