// NAT path resolver latency on an embedded store (chDB) holding many
// translations: N rows generated inside ClickHouse (INSERT ... SELECT from
// numbers(), in the nat_translations table's schema) as chains of 1, 2 and 3
// hops; then p50/p95 of resolving chains of each length from a random tuple
// of theirs (client side, between hops or server side; either direction),
// each answer checked. Bounded by the number of samples.
//   node dist/bench/resolver.js [translations=1000000] [samples per length=200]
import { mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { flowsBySynSeq, flowsForTuples, natForTuple } from '../flowlog/queries.js';
import type { FourTuple } from '../model/records.js';
import { openStore } from '../flowlog/store.js';
import { reverseTuple, sameTuple } from '../nat-tracker/classify.js';
import { resolveNatPath, type NatEvidenceReader } from '../nat-tracker/resolver.js';

const total = Number(process.argv[2] ?? 1_000_000);
const samples = Number(process.argv[3] ?? 200);
/** Every 6 rows: a chain of 1 hop, one of 2, one of 3 (chain c = group * 3 + length - 1). */
const ROWS_PER_GROUP = 6;
const T0_SECONDS = 1_795_046_400; // 2026-11-19T00:00:00Z

// Tuple k (0 = client side) of chain c, as SQL over `c` and `k` and as TypeScript. Addresses are unique per
// chain: 10.0.0.0 + c (client), 100.64.0.0 + c (after the SNAT), 172.16.0.0 + c (after the DNAT), 11/12.0.0.0 + c (after the FULLNAT).
const SQL = {
  src: (k: string) => `multiIf(${k} = 0, 167772160 + c, ${k} <= 2, 1681915904 + c, 184549376 + c)`,
  sport: () => `1024 + c % 60000`,
  dst: (k: string) => `multiIf(${k} <= 1, 3323068416 + c % 65536, ${k} = 2, 2886729728 + c, 201326592 + c)`,
  dport: (k: string) => `multiIf(${k} <= 1, 443, ${k} = 2, 8443, 80)`,
};
const ipv4 = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join('.');
function tupleOf(c: number, k: number): FourTuple {
  return {
    src: ipv4(k === 0 ? 167772160 + c : k <= 2 ? 1681915904 + c : 184549376 + c),
    sport: 1024 + (c % 60000),
    dst: ipv4(k <= 1 ? 3323068416 + (c % 65536) : k === 2 ? 2886729728 + c : 201326592 + c),
    dport: k <= 1 ? 443 : k === 2 ? 8443 : 80,
  };
}

const ip6 = (expr: string) => `toIPv6(IPv4NumToString(toUInt32(${expr})))`;
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function main() {
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-bench-resolver-'));
  try {
    const store = await openStore({ path: path.join(dir, 'store') });
    const table = store.table('nat_translations');
    const started = Date.now();
    // Row n: hop h of chain c; orig = tuple h, reply = tuple h+1 reversed.
    const origK = 'h';
    const nextK = '(h + 1)';
    await store.client.command({
      query: `INSERT INTO ${table} (via, node, netns, zone, proto, orig_src, orig_sport, orig_dst, orig_dport,
          reply_src, reply_sport, reply_dst, reply_dport, first_seen, last_seen, entry_id)
        SELECT 'iptables', concat('node-', toString(h)), concat('ns-', toString(c % 50)), 0, 'tcp',
          ${ip6(SQL.src(origK))}, ${SQL.sport()}, ${ip6(SQL.dst(origK))}, ${SQL.dport(origK)},
          ${ip6(SQL.dst(nextK))}, ${SQL.dport(nextK)}, ${ip6(SQL.src(nextK))}, ${SQL.sport()},
          toDateTime64(${T0_SECONDS} + c % 86400, 9, 'UTC'), toDateTime64(${T0_SECONDS} + c % 86400 + 60, 9, 'UTC'), toUInt32(number)
        FROM (
          SELECT number, intDiv(number, ${ROWS_PER_GROUP}) AS g, number % ${ROWS_PER_GROUP} AS r,
            multiIf(r = 0, 1, r <= 2, 2, 3) AS len, multiIf(r = 0, 0, r <= 2, r - 1, r - 3) AS h, g * 3 + len - 1 AS c
          FROM numbers({total:UInt64})
        )`,
      query_params: { total },
    });
    await store.client.command({ query: `OPTIMIZE TABLE ${table} FINAL` });
    const rows = await (await store.client.query({ query: `SELECT count() FROM ${table}`, format: 'JSONEachRow' })).json<{ 'count()': string }>();
    console.log(`${Number(rows[0]!['count()']).toLocaleString('en')} translations generated in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const reader: NatEvidenceReader = {
      natForTuple: (proto, tuple) => natForTuple(store, proto, tuple),
      flowsForTuples: (proto, tuples, range) => flowsForTuples(store, proto, tuples, range),
      flowsBySynSeq: (proto, synSeq, synAckSeq, range) => flowsBySynSeq(store, proto, synSeq, synAckSeq, range),
    };
    const groups = Math.floor(total / ROWS_PER_GROUP);
    // Warm up: first queries load marks and indexes.
    for (let i = 0; i < 10; i++) await resolveNatPath(reader, 'tcp', tupleOf(i * 3, 0));

    // Latency depends on what else runs: say how loaded the machine was.
    const load = () => os.loadavg()[0]!.toFixed(1);
    console.log(`${os.cpus().length} CPUs, load average ${load()} before`);
    console.log('hops  samples   p50 ms   p95 ms   max ms');
    for (const length of [1, 2, 3]) {
      const times: number[] = [];
      for (let i = 0; i < samples; i++) {
        const c = Math.floor(Math.random() * groups) * 3 + length - 1;
        const k = Math.floor(Math.random() * (length + 1));
        const entered = Math.random() < 0.5 ? tupleOf(c, k) : reverseTuple(tupleOf(c, k));
        const t0 = process.hrtime.bigint();
        const path = await resolveNatPath(reader, 'tcp', entered);
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
        const expected = Array.from({ length: length + 1 }, (_, j) => tupleOf(c, j));
        if (path.hops.length !== length || !path.tuples.every((u, j) => sameTuple(u, expected[j]!))) {
          throw new Error(`chain ${c} from tuple ${k}: got ${JSON.stringify(path.tuples)}, expected ${JSON.stringify(expected)}`);
        }
      }
      times.sort((a, b) => a - b);
      const ms = (x: number) => x.toFixed(1).padStart(8);
      console.log(`${String(length).padStart(4)}  ${String(samples).padStart(7)} ${ms(percentile(times, 50))} ${ms(percentile(times, 95))} ${ms(times.at(-1)!)}`);
    }
    console.log(`load average ${load()} after`);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
