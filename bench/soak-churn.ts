// Soak (not a test): namespaces and interfaces churning under `nettrail serve` for
// longer than the test does, to see whether anything grows. A seeded loop creates
// and deletes network namespaces (each joined to a persistent one by a veth pair,
// with UDP traffic across) and veth pairs in the persistent one, about 8
// operations a second, while serve (a child process, following them by name)
// captures; every 5 s: serve's RSS, the links it holds, its kernel per-point
// counter table (point_stats entries), attached points, API latency. At the end
// everything is deleted and serve must come back to its baseline links and table.
//   node dist/bench/soak-churn.js [--seconds 90]     (as root; stops by itself, under 2 minutes)
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { prng } from './support/prng.js';
import { linksHeldBy, mapEntries, metricValue, percentile, pollApi, rssMiB, startServe } from './support/serve-process.js';
import { atExit, deleteNetns, hardStop, netns, secondsOption, tempDir } from './support/harness.js';

const SECONDS = secondsOption(90, { min: 10, max: 100 });
hardStop(118_000);

const SLOTS = 6;
const id = process.pid.toString(16);
const slot = (i: number) => `ntsc${id}-${i}`;
const dir = tempDir('soak-churn');
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

const base = netns(`ntsc${id}-p`);
// The slots come and go during the churn: whichever are left go at exit.
atExit(() => {
  for (let i = 0; i < SLOTS; i++) deleteNetns(slot(i));
});
ip('-n', base, 'link', 'set', 'lo', 'up');
const serve = await startServe(['--store', path.join(dir, 'store'), '--netns', base, ...Array.from({ length: SLOTS }, (_, i) => ['--netns', slot(i)]).flat()]);
atExit(() => serve.child.kill('SIGKILL'));
const pid = serve.child.pid!;
const baseline = linksHeldBy(pid);
const tcxProg = baseline.find((l) => l.type === 'tcx')!.prog;
const interfaces = () => (JSON.parse(execFileSync('ip', ['-n', base, '-j', 'link', 'show'], { encoding: 'utf8' })) as unknown[]).length;

interface Sample {
  t: number;
  rss: number;
  links: number;
  pointStats: number;
  points: number;
  ifacesInBase: number;
}
const samples: Sample[] = [];
const sample = async (t: number) => {
  const text = await (await fetch(`${serve.url}/metrics`)).text();
  samples.push({
    t,
    rss: rssMiB(pid),
    links: linksHeldBy(pid).length,
    pointStats: mapEntries(tcxProg, 'point_stats'),
    points: metricValue(text, 'nettrail_capture_points') ?? 0,
    ifacesInBase: interfaces(),
  });
};
await sample(0);

const poll = pollApi(serve.url, ['/healthz', '/api/v1/capture/status', '/metrics'], 200);
const random = prng(0x50a4c);
const live = new Map<number, string>();
const extras: string[] = [];
let serial = 0;
let operations = 0;
const started = performance.now();
let nextSample = 5;
while ((performance.now() - started) / 1000 < SECONDS) {
  const i = Math.floor(random() * SLOTS);
  const op = Math.floor(random() * 5);
  if (op <= 1) {
    if (live.has(i)) {
      ip('netns', 'del', slot(i));
      live.delete(i);
    } else {
      const veth = `v${serial++}`;
      const subnet = `10.${120 + (serial % 100)}.${(serial >> 8) % 250}`;
      ip('netns', 'add', slot(i));
      ip('-n', base, 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', slot(i));
      ip('-n', slot(i), 'addr', 'add', `${subnet}.2/24`, 'dev', 'eth0');
      ip('-n', slot(i), 'link', 'set', 'eth0', 'up');
      ip('-n', base, 'addr', 'add', `${subnet}.1/24`, 'dev', veth);
      ip('-n', base, 'link', 'set', veth, 'up');
      live.set(i, subnet);
    }
  } else if (op === 2) {
    const name = `x${serial++}`;
    ip('-n', base, 'link', 'add', `${name}a`, 'type', 'veth', 'peer', 'name', `${name}b`);
    ip('-n', base, 'link', 'set', `${name}a`, 'up');
    extras.push(name);
  } else if (op === 3 && extras.length > 0) {
    ip('-n', base, 'link', 'del', `${extras.splice(Math.floor(random() * extras.length), 1)[0]}a`);
  } else if (live.has(i)) {
    execFileSync('ip', ['netns', 'exec', base, 'bash', '-c', `for n in $(seq 20); do echo soak > /dev/udp/${live.get(i)}.2/9; done`], { stdio: 'ignore' });
  }
  operations++;
  const elapsed = (performance.now() - started) / 1000;
  if (elapsed >= nextSample) {
    await sample(Math.round(elapsed));
    nextSample += 5;
  }
  await new Promise((resolve) => setTimeout(resolve, 60 + random() * 120));
  if (serve.child.exitCode !== null) throw new Error(`serve exited: ${serve.stderr()}`);
}
const api = await poll.stop();
for (const i of live.keys()) ip('netns', 'del', slot(i));
for (const name of extras) ip('-n', base, 'link', 'del', `${name}a`);
const cleared = performance.now();
let back: number | undefined;
while ((performance.now() - cleared) / 1000 < 15) {
  const links = linksHeldBy(pid);
  if (links.length === baseline.length && mapEntries(tcxProg, 'point_stats') <= 2 && interfaces() === 1) {
    back = (performance.now() - cleared) / 1000;
    break;
  }
  await new Promise((resolve) => setTimeout(resolve, 250));
}
await sample(Math.round((performance.now() - started) / 1000));
const messages = serve.stderr().split('\n').filter(Boolean);
serve.child.kill('SIGTERM');
const code = await new Promise((resolve) => serve.child.once('exit', resolve));

const f = (n: number, digits = 0) => n.toFixed(digits);
console.log(`\nsoak: ${SECONDS} s of churn, ${operations} operations (${f(operations / SECONDS, 1)}/s), ${SLOTS} namespace slots\n`);
console.log('| t (s) | RSS MiB | links held | point_stats entries | points attached | interfaces in the persistent namespace |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const s of samples) console.log(`| ${s.t} | ${f(s.rss)} | ${s.links} | ${s.pointStats} | ${s.points} | ${s.ifacesInBase} |`);
console.log(`\nback to the baseline (${baseline.length} links, point_stats ≤ 2, the persistent namespace's lo only) ${back === undefined ? 'NOT within 15 s' : `${f(back, 1)} s after the churn stopped`}`);
console.log(`API during the churn: ${api.latencies.length} answers, ${api.failed.length} failed, latency p50 ${f(percentile(api.latencies, 50))} ms, p99 ${f(percentile(api.latencies, 99))} ms, max ${f(Math.max(...api.latencies))} ms`);
console.log(`serve: ${messages.length} log lines, ${messages.filter((m) => /error|exception/i.test(m)).length} with "error"; exit code after SIGTERM ${code}`);
process.exit(0);
