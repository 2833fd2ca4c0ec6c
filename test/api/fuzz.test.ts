// 10 000 random and hostile requests against the API over a real store: SQL
// injection, huge and odd numbers, unicode, control characters, repeated and
// unknown parameters, bad cursors. None may get a 5xx, every error must be
// {"error": {"code", "message"}} without internals, and the store must be
// intact afterwards. The PRNG seed is printed; NETTRAIL_FUZZ_SEED repeats a run.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../api/server.js';
import type { FlowsResponseJson } from '../../api/schemas/flows.js';
import type { FlowRecord } from '../../model/records.js';
import { FLOW_ORDERS } from '../../flowlog/flow-search.js';
import { makeFlows, pick, writeFlows } from '../support/api-fixture.js';
import { prng } from '../../bench/support/prng.js';
import { storeAppOptions } from '../../bench/support/store-app.js';
import { openTempStore, type TempStore } from '../support/store-fixture.js';

const REQUESTS = 10_000;
const SEED = Number(process.env.NETTRAIL_FUZZ_SEED ?? 0x5eed2026);

let temp: TempStore;
let server: FastifyInstance;
let flows: FlowRecord[];

before(async () => {
  temp = await openTempStore('api-fuzz');
  const written = makeFlows(SEED, 400);
  await writeFlows(temp.writer, written);
  flows = written.final;
  server = await buildServer(storeAppOptions(temp.store, temp.writer));
});

after(async () => {
  await server?.close();
  await temp?.close();
});

const PARAMETERS = ['ip', 'src', 'dst', 'port', 'sport', 'dport', 'proto', 'from', 'to', 'state', 'has', 'node', 'netns', 'iface', 'limit', 'cursor', 'order', 'tuple', 'at', 'format', 'reason', 'points'];
const ODD_NAMES = ['__proto__', 'constructor', 'prototype', 'ip[]', 'src[0]', 'a[b][c]', '', ' ', 'LIMIT', 'Ip', 'ｉｐ', '😀', 'src%00', 'has.0', 'toString'];

const SQL = [
  "' OR '1'='1", "'; DROP TABLE nettrail.flows; --", "1; DROP TABLE nettrail.flows", "10.0.0.1' --", "\\'", "\\", "''", '"',
  "{ip:String}", "{limit:UInt32}", "1) UNION ALL SELECT * FROM system.users --", "x' FORMAT TabSeparated", "SF') OR 1=1 --",
  "$1", "?", "%s", "${7*7}", "`id`", "0 OR 1", "1/0", "sleep(10)", "toString(version())", "-- ", "/*", "*/",
];
const NUMBERS = [
  '0', '-0', '-1', '1', '65535', '65536', '1000', '1001', '4294967296', '9223372036854775807', '9223372036854775808',
  '18446744073709551616', '99999999999999999999999999', '1e309', '1e3', '0x10', '0b1', '0o7', '1.5', '.5', '5.', 'NaN',
  'Infinity', '-Infinity', '+1', ' 1', '1 ', '١٢٣', '１２３', '9'.repeat(400),
];
const TIMES = [
  '2026-11-20T12:00:00Z', '2026-11-20T12:00:00.123456789Z', '2026-11-20T12:00:00.1234567891Z', '2026-11-20T12:00:00+05:30',
  '2026-02-30T00:00:00Z', '0000-01-01T00:00:00Z', '9999-12-31T23:59:59Z', '1969-12-31T23:59:59Z', '2262-04-11T23:47:16.854775807Z',
  '2262-04-11T23:47:16.854775808Z', '1795046400000', '9223372036854', '9223372036855', '9999999999999999', '17950464000000000',
  'now', 'yesterday', '2026-11-20', '2026-11-20 12:00:00',
];
const ADDRESSES = [
  '10.0.0.10', '10.1.0.0/16', '10.2.0.0/22', '0.0.0.0/0', '::/0', '::ffff:0:0/96', '::ffff:10.0.0.10', 'fd00:1::/64', 'fd00:53::53',
  '2001:db8::/32', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/', '/8', '10.0.0.0/8/8', '256.0.0.1', '10.0.0', '10.0.0.1.2',
  'fe80::1%eth0', 'fe80::1%25', '[fd00::1]', '::ffff:999.0.0.1', '1::2::3', 'fd00::/129', '010.0.0.1', '10.0.0.1:80',
  'localhost', '*', '%', 'ff'.repeat(40),
];
const WORDS = [
  'tcp', 'udp', 'TCP', 'icmp', 'SF', 'S0', 'REJ', 'sf', 'retrans', 'zero_window', 'drop', 'rst', 'RST', 'node-a', 'node-b',
  'root', 'ns-client', 'eth0', 'ens3', 'pcap', 'pcapng', 'json', ...FLOW_ORDERS, '--start', '+start', 'start,end', 'ts', '-ts',
  'NETFILTER_DROP', 'node-a/root/eth0',
];
const UNICODE = [
  'é', 'ñ', '日本語', '😀', '👨‍👩‍👧', '\u202e', '\u200b', '\ufeff', 'ǅ', 'İ', 'ﬁ', 'Ω', '\u0301', 'x\u0000y', '\u0007', '\r\nX-Injected: 1',
  '\t', ' ', '\u2028', '\ud800', '\udfff',
];
/** Already percent-encoded text, some of it invalid: sent as is. */
const RAW = ['%', '%zz', '%%', '%00', '%C0%AF', '%ED%A0%80', '%FF%FE', '%E2%80%AE', '%0d%0a', '%2F%2E%2E', '%5B%5D', '+', '++', '%2B', '&', '=', '==', ';'];

function randomText(random: () => number, length: number): string {
  let text = '';
  for (let i = 0; i < length; i++) text += String.fromCodePoint(Math.floor(random() * (random() < 0.8 ? 0x80 : 0x30000)));
  return text;
}

function fuzzCursor(random: () => number, real: string[]): string {
  const json = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const order = pick(random, FLOW_ORDERS);
  switch (Math.floor(random() * 8)) {
    case 0:
      return pick(random, real);
    case 1: {
      const cursor = pick(random, real);
      const at = Math.floor(random() * cursor.length);
      return cursor.slice(0, at) + String.fromCharCode(33 + Math.floor(random() * 94)) + cursor.slice(at + 1);
    }
    case 2:
      return pick(random, real).slice(0, Math.floor(random() * 40));
    case 3:
      return json([order, pick(random, NUMBERS), pick(random, [...SQL, 'abc', ''])]);
    case 4:
      return json(pick(random, [null, {}, [], [order], [order, 1, 'x'], [order, '1', 2], [order, '1', 'x'.repeat(300)], [1, 2, 3, 4], 'x']));
    case 5:
      return json([order, pick(random, ['9223372036854775807', '-9223372036854775808', '18446744073709551615', '0', '-1']), pick(random, flows).id]);
    case 6:
      return Buffer.from(randomText(random, 1 + Math.floor(random() * 60))).toString('base64');
    default:
      return randomText(random, Math.floor(random() * 100));
  }
}

function fuzzValue(random: () => number, real: string[]): string {
  const flow = pick(random, flows);
  switch (Math.floor(random() * 13)) {
    case 0:
      return pick(random, SQL);
    case 1:
      return pick(random, NUMBERS);
    case 2:
      return pick(random, TIMES);
    case 3:
      return pick(random, ADDRESSES);
    case 4:
      return pick(random, WORDS);
    case 5:
      return pick(random, UNICODE).repeat(1 + Math.floor(random() * 3));
    case 6:
      return fuzzCursor(random, real);
    case 7:
      return pick(random, [flow.client.ip, flow.server.ip, String(flow.client.port), String(flow.server.port), flow.node, flow.iface, flow.id]);
    case 8:
      return `${flow.client.ip}:${flow.client.port} -> ${flow.server.ip}:${flow.server.port}`;
    case 9:
      return randomText(random, Math.floor(random() * 30));
    case 10:
      return pick(random, ['a', '0', "'", '%', '\u0000']).repeat(pick(random, [256, 1000, 5000, 20_000]));
    case 11:
      return pick(random, SQL) + pick(random, UNICODE) + pick(random, NUMBERS);
    default:
      return '';
  }
}

/** Percent-encoded text; a lone surrogate (no UTF-8 for it) becomes escape()'s %uXXXX, itself hostile. */
function encode(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    return escape(text);
  }
}

/** A name=value pair; most are encoded properly, some go raw or half-encoded. */
function fuzzPair(random: () => number, real: string[]): string {
  const name = random() < 0.85 ? pick(random, PARAMETERS) : pick(random, ODD_NAMES);
  const value = fuzzValue(random, real);
  const r = random();
  if (r < 0.75) return `${encode(name)}=${encode(value)}`;
  if (r < 0.85) return `${encode(name)}=${pick(random, RAW)}${encode(value)}`;
  if (r < 0.9) return encode(name);
  if (r < 0.95) return `${encode(name)}=${value.replace(/[^\x21-\x7e]/g, (c) => encode(c))}`;
  return `${pick(random, RAW)}=${pick(random, RAW)}`;
}

const ROUTES = [
  ...Array(10).fill('/api/v1/flows'),
  '/api/v1/connections', '/api/v1/connections', '/api/v1/connections/timeline', '/api/v1/pcap', '/api/v1/nat', '/api/v1/drops', '/api/v1/drops',
  '/api/v1/capture/status', '/healthz', '/metrics', '/openapi.json',
];

function fuzzUrl(random: () => number, real: string[]): string {
  if (random() < 0.1) {
    const id = random() < 0.5 ? fuzzValue(random, real) : pick(random, flows).id;
    return `/api/v1/flows/${encode(id).slice(0, 600)}${random() < 0.3 ? `?${fuzzPair(random, real)}` : ''}`;
  }
  if (random() < 0.02) return `/api/v1/${pick(random, RAW)}${encode(randomText(random, 10))}`;
  const pairs = Array.from({ length: Math.floor(random() * 7) }, () => fuzzPair(random, real));
  // Repeat some parameters.
  if (pairs.length > 0 && random() < 0.15) pairs.push(...Array(1 + Math.floor(random() * 3)).fill(pick(random, pairs)));
  return `${pick(random, ROUTES)}${pairs.length > 0 || random() < 0.5 ? '?' : ''}${pairs.join(random() < 0.95 ? '&' : pick(random, ['&&', ';', '&amp;']))}`;
}

test(`${REQUESTS} random and hostile requests: no 5xx, errors as {error: {code, message}}, store intact`, async (t) => {
  t.diagnostic(`seed ${SEED} (repeat with NETTRAIL_FUZZ_SEED=${SEED})`);
  const random = prng(SEED);
  // Real cursors to mutate: a few pages in every order.
  const real: string[] = [];
  for (const order of FLOW_ORDERS) {
    const page = (await server.inject(`/api/v1/flows?limit=7&order=${order}`)).json() as FlowsResponseJson;
    real.push(page.next_cursor!);
  }
  const statuses = new Map<number, number>();
  for (let i = 0; i < REQUESTS; i++) {
    const url = fuzzUrl(random, real);
    const method = random() < 0.95 ? 'GET' : 'HEAD';
    const response = await server.inject({ method, url });
    const where = `request ${i} (seed ${SEED}): ${method} ${url.slice(0, 300)}${url.length > 300 ? '...' : ''} -> ${response.statusCode} ${response.body.slice(0, 300)}`;
    statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
    assert.ok(response.statusCode < 500, where);
    assert.doesNotMatch(response.body, /\n\s+at \S|\.[jt]s:\d+:\d+|DB::Exception|Code: \d+\./, where);
    if (response.statusCode >= 400 && method === 'GET') {
      const body = response.json() as { error?: { code?: unknown; message?: unknown } };
      assert.equal(typeof body.error?.code, 'string', where);
      assert.equal(typeof body.error?.message, 'string', where);
    }
    if (response.statusCode === 200 && String(response.headers['content-type']).startsWith('application/json') && method === 'GET') {
      response.json();
    }
  }
  t.diagnostic(`statuses: ${[...statuses].sort(([a], [b]) => a - b).map(([status, n]) => `${status} ×${n}`).join(', ')}`);
  // The requests found data too: not everything was refused.
  assert.ok((statuses.get(200) ?? 0) > REQUESTS / 10, 'fewer than a tenth of the requests succeeded');
  assert.ok((statuses.get(400) ?? 0) > REQUESTS / 10, 'fewer than a tenth of the requests were refused');

  // Nothing was changed or dropped.
  const { store } = temp;
  const result = await store.client.query({ query: `SELECT count() FROM ${store.table('flows')} FINAL`, format: 'JSONCompactEachRow' });
  assert.deepEqual(await result.json(), [[flows.length]]);
  const all = (await server.inject('/api/v1/flows?limit=1000')).json() as FlowsResponseJson;
  assert.equal(all.flows.length, flows.length);
});
