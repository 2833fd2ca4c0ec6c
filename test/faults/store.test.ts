// The embedded store fails and comes back, twice, while `nettrail serve`
// (startService, in this process) captures a steady UDP stream between two test
// namespaces. The store is a small tmpfs of the test's own:
//   1. the disk fills up (a filler file takes every free block: ENOSPC), then is freed;
//   2. the tables' data directories become immutable (chattr +i: ClickHouse's own
//      inserts fail with EPERM, root or not), then mutable again.
// While it fails: inserts fail and are retried, the buffer stays within its bound,
// and once it is past its high-water mark capture stops reading its ring buffer
// (backpressure), so that what does not fit is lost in the kernel, counted per
// point (rows the writer refuses outright are counted too); all of it shows in
// /metrics and in /api/v1/capture/status (`store`); the API keeps answering.
// After: writing resumes by itself, everything accepted is written, no batch file
// is left behind, and every packet captured is in the store or counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startService } from '../../service/service.js';
import { createPair } from '../support/netns-pair.js';
import { iperfServer, metricSum, metricValue } from '../../bench/support/serve-process.js';
import { storedRows } from '../support/store-fixture.js';
import { until } from '../../bench/support/wait.js';

const IPERF_PORT = 5701 + Math.floor(Math.random() * 500);
const BOUND = 6000;

interface StoreStatus {
  failing: boolean;
  tables: Record<string, { accepted: number; written: number; dropped: number; failures: number; consecutive_failures: number; buffered_rows: number }>;
}

test('the store fills up and turns immutable, then recovers: bounded, visible, resumed, every packet stored or counted', async (t) => {
  const pair = await createPair(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-faults-store-'));
  const storeDir = path.join(dir, 'store');
  mkdirSync(storeDir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'nettrail-faults', storeDir]);
  // Unmounted after the test, or at exit if the test never gets there.
  const unmount = () => execFileSync('umount', ['-l', storeDir], { stdio: 'ignore' });
  process.once('exit', () => {
    try {
      unmount();
    } catch {
      // unmounted already
    }
  });
  const cleanups: Array<() => unknown> = [];
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    unmount();
    rmSync(dir, { recursive: true, force: true });
  });
  const log: string[] = [];
  const service = await startService({
    store: { path: storeDir },
    netns: [pair.client.name, pair.server.name],
    ifaces: ['eth0'],
    filter: { nets: [], ports: [], protos: ['udp'] },
    writer: { maxBufferedRows: BOUND, batchRows: 2000, flushIntervalMs: 200, retryInitialMs: 100, retryMaxMs: 800 },
    // A small ring (64 KiB per CPU), so that while capture holds off reading it, it overflows within a second.
    ringBytesPerCpu: 65536,
    listen: { host: '127.0.0.1', port: 0 },
    node: 'faults',
    log: (message) => log.push(message),
  });
  let closed = false;
  cleanups.push(() => (closed ? undefined : service.close().catch(() => undefined)));
  const server = await iperfServer(pair.server.name, IPERF_PORT);
  cleanups.push(() => server.stop());
  // ~2000 datagrams/s for the whole test, seen at two points.
  const iperf = spawn('ip', ['netns', 'exec', pair.client.name, 'iperf3', '-c', pair.v4, '-p', String(IPERF_PORT), '-u', '-b', '1M', '-l', '64', '-t', '60'], { stdio: 'ignore' });
  cleanups.push(async () => {
    if (iperf.exitCode === null && iperf.signalCode === null) {
      iperf.kill('SIGINT');
      await once(iperf, 'exit');
    }
  });

  const get = async (p: string) => fetch(new URL(p, service.url));
  const storeStatus = async () => ((await (await get('/api/v1/capture/status')).json()) as { store: StoreStatus }).store;
  const metrics = async () => (await get('/metrics')).text();
  const packets = () => service.writer.stats().packets;
  /** Packets not stored, counted: lost in the kernel (ring full) or refused by the writer (buffer full). */
  const refused = () => service.capture.status().lost + packets().dropped;

  await until('rows written before the fault', () => packets().written > 0);

  const fault = async (name: string, breakIt: () => void, repair: () => void) => {
    const before = packets();
    const refusedBefore = refused();
    breakIt();
    // Failing: retried inserts, a buffer past its high-water mark, overload counted.
    await until(`${name}: inserts fail, the buffer fills, overload is counted`, () =>
      packets().consecutiveFailures > 0 && packets().bufferedRows > BOUND / 2 && refused() > refusedBefore + 1000);
    const shown = await storeStatus();
    const text = await metrics();
    t.diagnostic(`${name}: writer ${JSON.stringify(shown.tables.packets)}, lost in the kernel ${service.capture.status().lost}`);
    assert.equal(shown.failing, true, `${name}: the status API says the store is failing`);
    assert.ok(shown.tables.packets.consecutive_failures > 0);
    assert.ok(shown.tables.packets.buffered_rows <= BOUND, `${name}: the buffer holds its bound`);
    assert.equal(metricValue(text, 'nettrail_store_failing', { table: 'packets' }), 1, `${name}: /metrics says so`);
    assert.ok(metricValue(text, 'nettrail_store_insert_failures_total', { table: 'packets' })! > before.failures);
    assert.ok(metricValue(text, 'nettrail_store_buffered_rows', { table: 'packets' })! <= BOUND);
    const lostShown = metricSum(text, 'nettrail_capture_lost_events_total') + metricValue(text, 'nettrail_store_rows_dropped_total', { table: 'packets' })!;
    assert.ok(lostShown > refusedBefore, `${name}: /metrics counts the overload (lost per point, or refused by the writer)`);
    // The API answers meanwhile: reads work on a store that cannot write.
    for (const p of ['/healthz', '/api/v1/flows?limit=5', '/api/v1/capture/status']) {
      const response = await get(p);
      assert.equal(response.status, 200, `${name}: ${p} answers`);
    }
    const writtenWhileFailing = packets().written;
    repair();
    await until(`${name}: writing resumes`, () => packets().consecutiveFailures === 0 && packets().written > writtenWhileFailing);
    await until(`${name}: the buffer drains`, () => packets().bufferedRows < 2000);
    await until(`${name}: the status API says the store writes again`, async () => !(await storeStatus()).failing);
    assert.equal(metricValue(await metrics(), 'nettrail_store_failing', { table: 'packets' }), 0);
    assert.ok(log.some((l) => l.includes('writing packets again')), `${name}: the recovery is logged`);
  };

  // 1. Disk full.
  const filler = path.join(storeDir, 'filler');
  await fault(
    'disk full',
    () => {
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M'], { stdio: 'ignore' });
      } catch {
        // dd ends with ENOSPC: that is the point
      }
    },
    () => rmSync(filler),
  );
  assert.ok(log.some((l) => /insert into packets failed/.test(l)), 'the failure is logged');

  // 2. The tables' data directories immutable: ClickHouse cannot create its parts.
  const result = await service.store.client.query({ query: "SELECT arrayJoin(data_paths) FROM system.tables WHERE database = 'nettrail'", format: 'JSONCompactEachRow' });
  const dataPaths = (await result.json<[string]>()).map(([p]) => p);
  assert.ok(dataPaths.length >= 4);
  const chattr = (flag: string) => () => dataPaths.forEach((p) => execFileSync('chattr', [flag, p]));
  cleanups.push(chattr('-i'));
  await fault('immutable', chattr('+i'), chattr('-i'));

  iperf.kill('SIGINT');
  await once(iperf, 'exit');
  await server.stop();
  await service.close();
  closed = true;

  // Every packet captured is in the store or counted refused; nothing else.
  const capture = service.capture.status();
  const stats = service.writer.stats().packets;
  t.diagnostic(`capture: ${capture.events} events, ${capture.lost} lost, ${capture.packets} decoded; writer: ${JSON.stringify(stats)}`);
  assert.equal(capture.packets, capture.events, 'every event decoded');
  assert.equal(stats.accepted + stats.dropped, capture.packets, 'every decoded packet accepted or counted dropped');
  assert.ok(capture.lost > 0, 'overload was held off in the kernel (backpressure), counted lost per point');
  assert.equal(stats.written, stats.accepted, 'everything accepted was written after recovery');
  assert.deepEqual(readdirSync(path.join(storeDir, 'nettrail-inserts')), [], 'no batch file left behind');
  assert.equal(await storedRows(storeDir, 'packets'), stats.written, 'the store holds exactly the rows written');
});
