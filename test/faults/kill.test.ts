// `kill -9` of `nettrail serve` while it captures a UDP stream between two test
// namespaces and writes it to its store; then a restart on the same store.
// Nothing of the killed process stays in the kernel (its links and programs are
// gone), the new process attaches exactly once per hook, capture resumes, and
// the store is intact: every row written before the kill is still there, the
// parts pass CHECK TABLE, and the new process's rows come after them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openStore } from '../../flowlog/store.js';
import { createPair } from '../support/netns-pair.js';
import { allLinks, allPrograms, iperfServer, linksHeldBy, metricValue, startServe, type HeldLink } from '../../bench/support/serve-process.js';
import { until } from '../../bench/support/wait.js';

const IPERF_PORT = 6201 + Math.floor(Math.random() * 500);

const metrics = async (url: string) => (await fetch(`${url}/metrics`)).text();
const written = async (url: string) => metricValue(await metrics(url), 'nettrail_store_rows_written_total', { table: 'packets' }) ?? 0;

/** Two tcx links (ingress, egress) on each interface, and the drop tracer's tracepoint link; nothing else. */
function assertAttachedOnce(links: HeldLink[], interfaces: number, where: string): void {
  const tcx = links.filter((l) => l.type === 'tcx');
  assert.equal(tcx.length, 2 * interfaces, `${where}: two tcx links per interface (${JSON.stringify(links)})`);
  assert.deepEqual(tcx.map((l) => l.attach!.replace(/^\d+ /, '')).sort(), Array.from({ length: interfaces }, () => ['(egress)', '(ingress)']).flat().sort());
  assert.deepEqual(links.filter((l) => l.type !== 'tcx' && l.type !== 'raw_tracepoint').map((l) => l.type), [], `${where}: no other attachment`);
}

test('kill -9 during capture, then a restart on the same store: nothing stale, attached once, capture resumes, the store intact', async (t) => {
  const pair = await createPair(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-faults-kill-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const storeDir = path.join(dir, 'store');
  const args = ['--netns', pair.client.name, '--netns', pair.server.name, '--iface', 'eth0', '--store', storeDir, '--filter', 'proto=udp'];
  const server = await iperfServer(pair.server.name, IPERF_PORT);
  t.after(() => server.stop());
  const iperf = spawn('ip', ['netns', 'exec', pair.client.name, 'iperf3', '-c', pair.v4, '-p', String(IPERF_PORT), '-u', '-b', '1M', '-l', '64', '-t', '60'], { stdio: 'ignore' });
  t.after(() => (iperf.exitCode === null && iperf.signalCode === null ? iperf.kill('SIGKILL') : undefined));

  const first = await startServe(args);
  t.after(() => first.kill());
  const firstLinks = linksHeldBy(first.child.pid!);
  assertAttachedOnce(firstLinks, 2, 'first start');
  // Rows reach the store; kill while more are coming (an insert may be under way).
  await until('rows written', async () => (await written(first.url)) >= 3000);
  const writtenBeforeKill = await written(first.url);
  const killedAt = Date.now();
  await first.kill();
  t.diagnostic(`killed with ${writtenBeforeKill} packet rows written; it held ${firstLinks.length} links`);

  // The kernel dropped its links with its last file references, and with them its programs.
  await until('the killed process\'s links are gone', () => {
    const links = allLinks();
    return firstLinks.every((l) => !links.has(l.link));
  });
  await until('the killed process\'s programs are gone', () => {
    const programs = allPrograms();
    return firstLinks.every((l) => !programs.has(l.prog));
  });

  const restartedAt = Date.now();
  const second = await startServe(args);
  t.after(() => second.kill());
  const secondLinks = linksHeldBy(second.child.pid!);
  assertAttachedOnce(secondLinks, 2, 'restart');
  assert.ok(secondLinks.every((l) => !firstLinks.some((f) => f.link === l.link || f.prog === l.prog)), 'new links and programs');
  // Capture resumes: the kernel counts events at both points and rows are written again.
  await until('capture resumes', async () => {
    const text = await metrics(second.url);
    return [pair.client.name, pair.server.name].every((netns) => (metricValue(text, 'nettrail_capture_events_total', { netns, iface: 'eth0' }) ?? 0) > 100) &&
      (metricValue(text, 'nettrail_store_rows_written_total', { table: 'packets' }) ?? 0) > 0;
  });
  iperf.kill('SIGINT');
  await once(iperf, 'exit');
  const writtenAfterRestart = await written(second.url);
  second.child.kill('SIGTERM');
  const [code] = (await once(second.child, 'exit')) as [number];
  assert.equal(code, 0, `SIGTERM: a clean exit\n${second.stderr()}`);
  assert.doesNotMatch(second.stderr(), /error|exception/i, 'the restart logged no error');

  const store = await openStore({ path: storeDir });
  try {
    const one = async (query: string) => {
      const result = await store.client.query({ query, format: 'JSONCompactEachRow', query_params: { killed: killedAt, restarted: restartedAt } });
      return (await result.json<unknown[]>()).map((row) => row.map((v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v)));
    };
    const [[before, after]] = await one(`SELECT sumIf(count, last_ts < fromUnixTimestamp64Milli({killed:Int64})), sumIf(count, first_ts >= fromUnixTimestamp64Milli({restarted:Int64})) FROM ${store.table('packets')}`);
    t.diagnostic(`store after the restart: ${before} rows from before the kill (${writtenBeforeKill} were written by then), ${after} from after the restart (${writtenAfterRestart} written by then)`);
    assert.ok((before as number) >= writtenBeforeKill, 'every row written before the kill is still there');
    assert.ok((after as number) >= writtenAfterRestart && (after as number) > 0, 'the restarted process wrote to the same store');
    const checks = await one(`CHECK TABLE ${store.table('packets')} SETTINGS check_query_single_value_result = 1`);
    assert.deepEqual(checks, [[1]], 'CHECK TABLE passes');
  } finally {
    await store.close();
  }
});
