// Flow search latency under concurrent load: N flows (default 10 million,
// over 7 days = 7 partitions, 5 % of them also in an earlier version as a live
// flow is written) generated inside ClickHouse with INSERT ... SELECT FROM
// numbers(), a real server on 127.0.0.1, autocannon on each scenario with one
// connection, then with several; p50/p95/p99 from every response's time.
// Run alone: the figures are the machine's, not nettrail's, when something
// else competes for it.
//   node dist/bench/api.js [flows=10000000] [seconds-per-run=4] [connections=8]
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { buildServer } from '../api/server.js';
import type { FlowsResponseJson } from '../api/schemas/flows.js';
import { openStore, type FlowLogStore } from '../flowlog/store.js';
import { storeAppOptions } from './support/store-app.js';

const FLOWS = Number(process.argv[2] ?? 10_000_000);
const SECONDS = Number(process.argv[3] ?? 4);
const CONNECTIONS = Number(process.argv[4] ?? 8);

/** 2026-11-19T00:00:00Z; flows start evenly over the 7 days after it. */
const T0 = 1_795_046_400_000_000_000n;
const SPAN = 7n * 86_400n * 1_000_000_000n;

/** The flows table's columns the generator fills (all but MATERIALIZED ones); checked against the table. */
const COLUMNS = [
  'id', 'proto', 'client_ip', 'client_port', 'server_ip', 'server_port', 'node', 'netns', 'iface', 'start_ts', 'end_ts',
  'packets_c2s', 'packets_s2c', 'bytes_c2s', 'bytes_s2c', 'conn_state', 'history', 'rtt_ns', 'retrans_c2s', 'retrans_s2c',
  'zero_window_c2s', 'zero_window_s2c', 'close', 'syn_seq', 'syn_ack_seq', 'version',
];

/**
 * Flow `number` in `{version}` 1 (open) or 2 (finished), from a hash of its
 * number: 10.1-4.x.x and fd00:1::/64 clients, six servers (TCP and UDP,
 * IPv4 and IPv6), four capture points, Zeek states, 10 % retransmitting, 3 %
 * with zero windows.
 */
const FLOW_SELECT = `SELECT
  lower(hex(h)) AS id,
  if(s IN (3, 5), 'udp', 'tcp') AS proto,
  if(s >= 4, toIPv6(concat('fd00:1::', lower(hex(toUInt16(h % 65535 + 1))))), CAST(IPv4ToIPv6(toUInt32(167837696 + h % 262144)) AS IPv6)) AS client_ip,
  toUInt16(32768 + intDiv(h, 300000) % 28000) AS client_port,
  toIPv6(['::ffff:10.0.0.10', '::ffff:10.0.0.10', '::ffff:192.168.7.20', '::ffff:10.0.0.53', '2001:db8:0:1::443', 'fd00:53::53'][s + 1]) AS server_ip,
  toUInt16([80, 443, 5432, 53, 443, 53][s + 1]) AS server_port,
  ['node-a', 'node-b'][1 + intDiv(h, 7) % 2] AS node,
  ['root', 'ns-client', 'ns-router'][1 + intDiv(h, 11) % 3] AS netns,
  ['eth0', 'veth-c0', 'veth-r1', 'ens3'][1 + intDiv(h, 13) % 4] AS iface,
  fromUnixTimestamp64Nano(toInt64({t0:Int64} + number * {step:Int64} + h % 1000000), 'UTC') AS start_ts,
  start_ts + toIntervalMillisecond(if({version:UInt64} = 1, 1, 1 + intDiv(h, 17) % 120000)) AS end_ts,
  if({version:UInt64} = 1, 1, 1 + intDiv(h, 19) % 5000) AS packets_c2s,
  if({version:UInt64} = 1, 0, intDiv(h, 23) % 8000) AS packets_s2c,
  packets_c2s * (40 + intDiv(h, 29) % 1460) AS bytes_c2s,
  packets_s2c * (40 + intDiv(h, 31) % 1460) AS bytes_s2c,
  if({version:UInt64} = 1, 'S1', ['SF', 'SF', 'SF', 'S0', 'REJ', 'RSTO', 'RSTR', 'OTH'][1 + intDiv(h, 37) % 8]) AS conn_state,
  if({version:UInt64} = 1, 'Sh', ['ShADadFf', 'ShADadfF', 'Sr', 'ShADadR', 'S', 'ShAD'][1 + intDiv(h, 41) % 6]) AS history,
  if(proto = 'tcp', 20000 + intDiv(h, 43) % 80000000, NULL) AS rtt_ns,
  if(intDiv(h, 47) % 100 < 10, intDiv(h, 53) % 40, 0) AS retrans_c2s,
  if(intDiv(h, 47) % 100 < 10, 1 + intDiv(h, 59) % 40, 0) AS retrans_s2c,
  0 AS zero_window_c2s,
  if(intDiv(h, 61) % 100 < 3, 1 + intDiv(h, 67) % 12, 0) AS zero_window_s2c,
  if({version:UInt64} = 1, 'open', ['fin', 'fin', 'fin', 'rst', 'timeout'][1 + intDiv(h, 71) % 5]) AS close,
  if(proto = 'tcp', toUInt32(intDiv(h, 73) % 4294967296), NULL) AS syn_seq,
  if(proto = 'tcp', toUInt32(intDiv(h, 79) % 4294967296), NULL) AS syn_ack_seq,
  {version:UInt64} AS version
FROM (SELECT number, cityHash64(number) AS h, number % 6 AS s FROM numbers({flows:UInt64}) WHERE number % {every:UInt64} = 0)`;

async function rows<T>(store: FlowLogStore, query: string): Promise<T[]> {
  return (await store.client.query({ query, format: 'JSONCompactEachRow' })).json<T>();
}

async function generate(store: FlowLogStore): Promise<void> {
  const [table, database] = store.table('flows').split('.').reverse();
  const columns = (await rows<[string]>(store, `SELECT name FROM system.columns WHERE database = '${database}' AND table = '${table}' AND default_kind != 'MATERIALIZED' ORDER BY position`)).map(([name]) => name);
  if (columns.join() !== COLUMNS.join()) throw new Error(`the flows table has columns ${columns.join(', ')}; the generator fills ${COLUMNS.join(', ')}`);
  const insert = (version: number, every: number) =>
    store.client.command({
      query: `INSERT INTO ${store.table('flows')} (${COLUMNS.join(', ')}) ${FLOW_SELECT}`,
      query_params: { flows: FLOWS, t0: T0.toString(), step: (SPAN / BigInt(FLOWS)).toString(), version, every },
      clickhouse_settings: { max_insert_threads: String(cpus().length), optimize_on_insert: 0 },
    });
  // Every 20th flow was written first while open, then finished.
  await insert(1, 20);
  await insert(2, 1);
}

interface Scenario {
  name: string;
  path: string;
  /**
   * A whole-table scan: 5 requests on one connection instead of a timed run, and no concurrent run
   * (one at a time in the embedded engine: 8 clients would each wait for 7 others, seconds apiece).
   */
  scan?: true;
}

const SCAN_REQUESTS = 5;

interface Figures {
  name: string;
  connections: number;
  requests: number;
  perSecond: number;
  /** null when no request completed in the run. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
  non2xx: number;
  flows: number;
}

/** The p-th percentile of sorted response times, in ms to 0.1. */
const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? null : Math.round(10 * sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]) / 10;

function load(url: string, scenario: Scenario, connections: number, flows: number): Promise<Figures> {
  return new Promise((resolve, reject) => {
    const times: number[] = [];
    const length = scenario.scan ? { amount: SCAN_REQUESTS } : { duration: SECONDS };
    const instance = autocannon({ url: `${url}${scenario.path}`, connections, ...length }, (err, result) => {
      if (err) return reject(err);
      times.sort((a, b) => a - b);
      resolve({
        name: scenario.name,
        connections,
        requests: result.requests.total,
        perSecond: result.requests.average,
        p50: percentile(times, 50),
        p95: percentile(times, 95),
        p99: percentile(times, 99),
        non2xx: result.non2xx + result.errors + result.timeouts,
        flows,
      });
    });
    instance.on('response', (_client, _status, _bytes, responseTime) => times.push(responseTime));
  });
}

async function main() {
  const began = Date.now();
  const dir = await mkdtemp(path.join(tmpdir(), 'nettrail-bench-api-'));
  const store = await openStore({ path: path.join(dir, 'store') });
  try {
    await generate(store);
    const generated = Date.now();
    const [[count, parts, bytes]] = await rows<[string, string, string]>(
      store,
      `SELECT sum(rows), count(), sum(bytes_on_disk) FROM system.parts WHERE active AND database || '.' || table = '${store.table('flows')}'`,
    );
    console.error(`${FLOWS.toLocaleString('en')} flows in ${Number(count).toLocaleString('en')} rows (5 % in two versions), ${parts} parts, ${(Number(bytes) / 2 ** 20).toFixed(0)} MiB, generated in ${((generated - began) / 1000).toFixed(1)} s`);

    const server = await buildServer(storeAppOptions(store, null));
    const url = await server.listen({ host: '127.0.0.1', port: 0 });
    const get = async (route: string) => {
      const response = await fetch(`${url}${route}`);
      if (!response.ok) throw new Error(`${route}: ${response.status} ${await response.text()}`);
      return response.json();
    };
    // A cursor five pages in, a flow id, a one-hour window on the third day.
    let cursor = '';
    for (let page = 0; page < 5; page++) cursor = ((await get(`/api/v1/flows?limit=100${cursor && `&cursor=${cursor}`}`)) as FlowsResponseJson).next_cursor!;
    const [flow] = ((await get('/api/v1/flows?limit=1&order=bytes&dport=5432')) as FlowsResponseJson).flows;
    const hour = new Date(Number((T0 + 2n * 86_400n * 1_000_000_000n) / 1_000_000n)).toISOString();
    const scenarios: Scenario[] = [
      { name: 'recent flows (UI home)', path: '/api/v1/flows?limit=20' },
      { name: 'newest first, page 6', path: `/api/v1/flows?limit=100&cursor=${cursor}` },
      { name: 'src CIDR + has=retrans', path: '/api/v1/flows?src=10.1.0.0/16&has=retrans&limit=50' },
      { name: 'dport + 1 h window', path: `/api/v1/flows?dport=443&from=${hour}&to=${Date.parse(hour) + 3_600_000}&limit=100` },
      { name: 'udp by bytes, largest first', path: '/api/v1/flows?proto=udp&order=-bytes&limit=100', scan: true },
      { name: 'one flow by id', path: `/api/v1/flows/${flow.id}` },
    ];
    const results: Figures[] = [];
    for (const scenario of scenarios) {
      const { flows } = (await get(scenario.path)) as FlowsResponseJson;
      for (const connections of scenario.scan ? [1] : [1, CONNECTIONS]) {
        // The embedded engine runs parameterized queries one at a time, and those of requests autocannon
        // gave up on at the end of a run still run: wait for them, behind a query of our own.
        await get('/api/v1/flows?limit=1&node=drain');
        const r = await load(url, scenario, connections, flows?.length ?? 1);
        results.push(r);
        const ms = (value: number | null) => (value === null ? '-' : value.toFixed(1)).padStart(7);
        console.error(
          `${r.name.padEnd(30)} ${String(connections).padStart(2)} conn  p50 ${ms(r.p50)} ms  p95 ${ms(r.p95)} ms  p99 ${ms(r.p99)} ms  ` +
            `${r.perSecond.toFixed(1).padStart(6)} req/s  (${r.requests} requests, ${r.flows} flows each, ${r.non2xx} failed)`,
        );
      }
    }
    await server.close();
    const [[partsAfter]] = await rows<[string]>(store, `SELECT count() FROM system.parts WHERE active AND database || '.' || table = '${store.table('flows')}'`);
    const total = (Date.now() - began) / 1000;
    console.error(`${SECONDS} s per run, ${cpus().length} CPUs, load average ${loadavg()[0].toFixed(2)}, ${partsAfter} parts after; ${total.toFixed(0)} s in all`);
    console.log(JSON.stringify({ flows: FLOWS, rows: Number(count), secondsPerRun: SECONDS, cpus: cpus().length, generateSeconds: (generated - began) / 1000, totalSeconds: total, results }));
    if (results.some((r) => r.non2xx > 0)) process.exitCode = 1;
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
