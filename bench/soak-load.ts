// Soak (not a test): `nettrail serve` under a UDP flood far above what it can
// record, measured. Two namespaces over a veth pair, iperf3 -u -b 0 -l 64 from
// one to the other for the whole of each phase, serve capturing at both ends of
// the veth (a child process, as in production), and meanwhile: the API polled
// (/healthz, /api/v1/capture/status, /metrics, a flow search; latency of each
// answer), serve's RSS sampled every second, its /metrics read every second.
//   1. default ring (4 MiB per CPU)
//   2. a tiny ring (--ring-bytes-per-cpu 4096): most events lost, each counted
//   3. default ring, and the store's disk (a tmpfs of 512 MiB) full for the middle
//      third of the phase: the writer's buffer fills to its high-water mark, capture
//      holds off reading the ring (backpressure), the kernel counts the overflow
//      lost; then inserts succeed again
// Prints a Markdown table per phase and a JSON summary; stops by itself.
//   node dist/bench/soak-load.js [--seconds 25]     (as root; ~2 minutes with the default)
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { iperfServer, metricSum, metricValue, percentile, pollApi, rssMiB, startServe } from './support/serve-process.js';
import { atExit, hardStop, quietly, secondsOption, sh, tempDir, vethPair } from './support/harness.js';

const SECONDS = secondsOption(25, { min: 5, max: 35, why: 'three phases, under 2 minutes in all' });
hardStop(115_000);

const PORT = 5299;
const dir = tempDir('soak');
const { a: A, b: B, bIp: SERVER } = vethPair('ntsoak', '10.79.0');
const tmpfs = path.join(dir, 'tmpfs');
mkdirSync(tmpfs);
sh('mount', '-t', 'tmpfs', '-o', 'size=512m', 'nettrail-soak', tmpfs);
atExit(() => quietly('umount', '-l', tmpfs));
const iperfd = await iperfServer(B, PORT);

interface Sample {
  at: number;
  rss: number;
  events: number;
  lost: number;
  written: number;
  buffered: number;
  dropped: number;
  failing: number;
}

interface PhaseResult {
  phase: string;
  sentPerS: number;
  eventsPerS: number;
  lost: number;
  lostShare: number;
  written: number;
  dropped: number;
  bufferedMax: number;
  rssStart: number;
  rssMax: number;
  rssEnd: number;
  api: { answered: number; failed: number; p50: number; p99: number; max: number };
  recoveredAfterS?: number;
}

async function phase(name: string, args: string[], fault?: { at: number; until: number; store: string }): Promise<PhaseResult> {
  console.error(`soak: ${name}`);
  const serve = await startServe(['--netns', A, '--netns', B, '--iface', 'eth0', ...args]);
  atExit(() => serve.child.kill('SIGKILL'));
  const pid = serve.child.pid!;
  const samples: Sample[] = [];
  const sample = async () => {
    const text = await (await fetch(`${serve.url}/metrics`)).text();
    samples.push({
      at: performance.now(),
      rss: rssMiB(pid),
      events: metricSum(text, 'nettrail_capture_events_total'),
      lost: metricSum(text, 'nettrail_capture_lost_events_total'),
      written: metricValue(text, 'nettrail_store_rows_written_total', { table: 'packets' }) ?? 0,
      buffered: metricValue(text, 'nettrail_store_buffered_rows', { table: 'packets' }) ?? 0,
      dropped: metricValue(text, 'nettrail_store_rows_dropped_total', { table: 'packets' }) ?? 0,
      failing: metricValue(text, 'nettrail_store_failing', { table: 'packets' }) ?? 0,
    });
  };
  await sample();
  const poll = pollApi(serve.url, ['/healthz', '/api/v1/capture/status', '/metrics', '/api/v1/flows?limit=20'], 100);
  const flood = spawn('ip', ['netns', 'exec', A, 'iperf3', '-c', SERVER, '-p', String(PORT), '-u', '-b', '0', '-l', '64', '-t', String(SECONDS), '-J'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  flood.stdout!.on('data', (chunk: Buffer) => (out += chunk));
  const finished = new Promise<void>((resolve) => flood.once('exit', () => resolve()));
  const started = performance.now();
  let filled = false;
  let freed = false;
  let freedAt = 0;
  let writtenWhenFreed = 0;
  let recoveredAfterS: number | undefined;
  for (;;) {
    const done = await Promise.race([finished.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000))]);
    await sample();
    const elapsed = (performance.now() - started) / 1000;
    if (fault && !filled && elapsed >= fault.at) {
      filled = true;
      try {
        sh('dd', 'if=/dev/zero', `of=${path.join(fault.store, 'filler')}`, 'bs=1M');
      } catch {
        // ENOSPC ends it
      }
      console.error(`soak:   disk full at ${elapsed.toFixed(0)} s`);
    }
    if (fault && filled && !freed && elapsed >= fault.until) {
      freed = true;
      freedAt = performance.now();
      writtenWhenFreed = samples.at(-1)!.written;
      rmSync(path.join(fault.store, 'filler'));
      console.error(`soak:   disk freed at ${elapsed.toFixed(0)} s`);
    }
    const last = samples.at(-1)!;
    if (freed && recoveredAfterS === undefined && last.failing === 0 && last.written > writtenWhenFreed) recoveredAfterS = (performance.now() - freedAt) / 1000;
    if (done) break;
  }
  const api = await poll.stop();
  // Let the writer catch up, then stop serve (SIGTERM: it writes out what it holds).
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await sample();
  serve.child.kill('SIGTERM');
  await new Promise((resolve) => serve.child.once('exit', resolve));
  const result = JSON.parse(out) as { end: { sum: { packets: number; seconds: number } } };
  const first = samples[0];
  const last = samples.at(-1)!;
  const seconds = result.end.sum.seconds;
  return {
    phase: name,
    sentPerS: Math.round(result.end.sum.packets / seconds),
    eventsPerS: Math.round((last.events - first.events) / seconds),
    lost: last.lost,
    lostShare: last.lost / Math.max(1, last.lost + last.events),
    written: last.written,
    dropped: last.dropped,
    bufferedMax: Math.max(...samples.map((s) => s.buffered)),
    rssStart: first.rss,
    rssMax: Math.max(...samples.map((s) => s.rss)),
    rssEnd: last.rss,
    api: {
      answered: api.latencies.length,
      failed: api.failed.length,
      p50: percentile(api.latencies, 50),
      p99: percentile(api.latencies, 99),
      max: Math.max(...api.latencies),
    },
    recoveredAfterS,
  };
}

const results: PhaseResult[] = [];
results.push(await phase('default ring (4 MiB/CPU)', ['--store', path.join(dir, 'store-1')]));
results.push(await phase('tiny ring (4 KiB/CPU)', ['--store', path.join(dir, 'store-2'), '--ring-bytes-per-cpu', '4096']));
const faulty = path.join(tmpfs, 'store-3');
results.push(await phase('default ring, store disk full for the middle third', ['--store', faulty], { at: SECONDS / 3, until: (2 * SECONDS) / 3, store: tmpfs }));
await iperfd.stop();

const f = (n: number, digits = 0) => n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });
console.log(`\nsoak: ${SECONDS} s of iperf3 -u -b 0 -l 64 per phase, serve capturing TC in+out at both ends of the veth\n`);
console.log('| phase | sent pkt/s | events/s | lost (counted) | packet rows written | refused (counted) | max buffered rows | RSS start / max / end MiB | API answers (failed) | API latency p50 / p99 / max ms |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of results) {
  console.log(`| ${r.phase} | ${f(r.sentPerS)} | ${f(r.eventsPerS)} | ${f(r.lost)} (${f(100 * r.lostShare, 1)} %) | ${f(r.written)} | ${f(r.dropped)} | ${f(r.bufferedMax)} | ${f(r.rssStart)} / ${f(r.rssMax)} / ${f(r.rssEnd)} | ${r.api.answered} (${r.api.failed}) | ${f(r.api.p50)} / ${f(r.api.p99)} / ${f(r.api.max)} |`);
}
const recovery = results[2].recoveredAfterS;
console.log(`\nstore disk full: inserts succeeded again ${recovery === undefined ? 'NOT within the phase' : `within ${f(recovery, 1)} s of the disk being freed (sampled every second)`}`);
console.log(`\n${JSON.stringify(results)}`);
process.exit(0);
