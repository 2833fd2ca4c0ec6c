// Benchmark (not a test): what following many namespaces costs. For each N of --counts, N network
// namespaces in pairs, each pair joined by a veth pair (eth0 at both ends), and `nettrail serve` (a
// child process) capturing in them. Per N:
//   - start: spawn → healthy (/healthz answers: the API listens before capture attaches), → serving (its
//     "capturing on ..." line, once capture has started), and → every interface of the N namespaces attached;
//   - a new namespace: two more namespaces (named to serve from the start) and a veth pair between them
//     created while serve runs: time from the pair's creation until both ends are points of
//     /api/v1/capture/status (polled every 10 ms);
//   - idle, then with one TCP connection a second across every veth pair (bash's /dev/tcp to an iperf3
//     server; neither forks per connection), each over --idle-seconds: CPU of serve and of its helper
//     processes (its children, live or reaped) in % of one CPU, RSS, processes serve created (perf stat
//     counting sched:sched_process_fork in serve, when perf is installed), processes created per second on
//     the whole machine (/proc/stat `processes`, next to the same figure before serve started: the machine
//     may be shared), serve's children running at the end.
// --scope names (default) names every namespace to serve with --netns; --scope all runs serve with its
// default, every namespace of the host (root and other people's included: not on a shared machine).
// Then a conntrack load: --conntrack-rate (default 1000) new connections a second over all pairs together;
// the conntrack event messages serve received per second, the overflows it counted (ENOBUFS, each followed
// by a dump), and its CPU.
//   node dist/bench/namespaces.js [--counts 10,100,250] [--idle-seconds 30] [--scope names|all] [--conntrack-rate 1000]   (as root)
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { rssMiB, startServe, type ServeChild } from './support/serve-process.js';
import { atExit, deleteNetns, netns, sh, tempDir } from './support/harness.js';
import { sleep, waitFor } from './support/wait.js';

const { values } = parseArgs({
  options: {
    counts: { type: 'string', default: '10,100,250' },
    'idle-seconds': { type: 'string', default: '30' },
    scope: { type: 'string', default: 'names' },
    'conntrack-rate': { type: 'string', default: '1000' },
  },
});
const COUNTS = (values.counts as string).split(',').map(Number);
if (!COUNTS.every((n) => Number.isInteger(n) && n >= 2 && n % 2 === 0 && n <= 500)) throw new Error(`--counts ${values.counts}: even numbers of namespaces, 2 to 500`);
const SECONDS = Number(values['idle-seconds']);
if (!(SECONDS >= 1)) throw new Error(`--idle-seconds ${values['idle-seconds']}: at least 1`);
const SCOPE = values.scope as string;
const CONNTRACK_RATE = Number(values['conntrack-rate']);
if (!(CONNTRACK_RATE > 0)) throw new Error(`--conntrack-rate ${values['conntrack-rate']}: new connections a second, more than 0`);
if (SCOPE !== 'names' && SCOPE !== 'all') throw new Error(`--scope ${SCOPE}: names or all`);

const CLOCK_TICKS = Number(sh('getconf', 'CLK_TCK'));
const IPERF_PORT = 5201;
const NAT_PORT = 5202;
const dir = tempDir('bench-namespaces');
// bash waits on it between connections (read -t 1 on a FIFO no one writes: no process per wait).
const FIFO = path.join(dir, 'wait');
sh('mkfifo', FIFO);
const id = process.pid.toString(16);

/** The fields of /proc/PID/stat after "PID (COMM) ", from STATE on; null when the process is gone. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}
const pids = () => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number);
const childrenOf = (parent: number) => pids().filter((pid) => Number(statFields(pid)?.[1]) === parent);
/** CPU ticks of a process and of its reaped children (utime, stime, cutime, cstime). */
const ticks = (pid: number) => (statFields(pid)?.slice(11, 15) ?? []).reduce((sum, t) => sum + Number(t), 0);
/** CPU ticks of serve and its helpers: its own, its reaped children's, and its running children's. */
const treeTicks = (pid: number) => ticks(pid) + childrenOf(pid).reduce((sum, child) => sum + ticks(child), 0);
const forks = () => Number(/^processes (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))![1]);
const comm = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
};

/** Processes `pid` creates over `seconds`: perf stat counting sched:sched_process_fork in its threads; null without perf. */
function forksBy(pid: number, seconds: number): Promise<number | null> {
  const perf = spawn('perf', ['stat', '-x,', '-e', 'sched:sched_process_fork', '-p', String(pid), '--', 'sleep', String(seconds)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let out = '';
  perf.stderr!.on('data', (chunk: Buffer) => (out += chunk));
  return new Promise((resolve) => {
    perf.on('error', () => resolve(null));
    perf.on('close', () => {
      const count = /^(\d+),,sched:sched_process_fork/m.exec(out);
      resolve(count ? Number(count[1]) : null);
    });
  });
}

interface Window {
  cpuPercent: number;
  forksPerSecond: number;
  /** Processes serve created; null without perf. */
  serveForks: number | null;
  rss: number;
  helpersRss: number;
  children: string[];
}

/** Over `seconds`: CPU of serve's process tree, processes created by serve and on the whole machine, serve's children at the end. */
async function measure(pid: number | null, seconds: number): Promise<Window> {
  const t0 = performance.now();
  const [ticks0, forks0] = [pid === null ? 0 : treeTicks(pid), forks()];
  const serveForks = pid === null ? null : await forksBy(pid, seconds);
  if (pid === null) await sleep(seconds * 1000);
  const wall = (performance.now() - t0) / 1000;
  const [ticks1, forks1] = [pid === null ? 0 : treeTicks(pid), forks()];
  const children = pid === null ? [] : childrenOf(pid);
  return {
    cpuPercent: ((ticks1 - ticks0) / CLOCK_TICKS / wall) * 100,
    forksPerSecond: (forks1 - forks0) / wall,
    serveForks,
    rss: pid === null ? 0 : rssMiB(pid),
    helpersRss: children.reduce((sum, child) => sum + (rssMiB(child) || 0), 0),
    children: children.map(comm),
  };
}

/** Namespaces `<prefix>0..count-1`, pairs (2k, 2k+1) joined by a veth pair, 10.<subnet>.k.1 and .2 on eth0, lo up. */
function createPairs(prefix: string, count: number, subnet: number): string[] {
  const names = Array.from({ length: count }, (_, i) => netns(`${prefix}${i}`));
  const batch = (lines: string[], ...args: string[]) => execFileSync('ip', [...args, '-batch', '-'], { input: lines.join('\n'), stdio: ['pipe', 'ignore', 'pipe'] });
  batch(Array.from({ length: count / 2 }, (_, k) => `link add eth0 netns ${names[2 * k]} type veth peer name eth0 netns ${names[2 * k + 1]}`));
  names.forEach((name, i) => batch(['link set lo up', `addr add 10.${subnet}.${i >> 1}.${(i & 1) + 1}/24 dev eth0`, 'link set eth0 up'], '-n', name));
  return names;
}

/**
 * A TCP connection every `intervalS` seconds from each pair's first namespace to an iperf3 server in its second,
 * to `port`: IPERF_PORT, or NAT_PORT, which the second namespace redirects to it (natToServers).
 */
function connectEvery(names: string[], subnet: number, intervalS: number, port = IPERF_PORT): ChildProcess[] {
  const procs: ChildProcess[] = [];
  for (let k = 0; k < names.length / 2; k++) {
    procs.push(spawn('ip', ['netns', 'exec', names[2 * k + 1], 'iperf3', '-s', '-p', String(IPERF_PORT)], { stdio: 'ignore' }));
    const script = `exec 9<>${FIFO}; while :; do exec 3<>/dev/tcp/10.${subnet}.${k}.2/${port} && exec 3>&-; read -t ${intervalS} -u 9; done`;
    procs.push(spawn('ip', ['netns', 'exec', names[2 * k], 'bash', '-c', script], { stdio: 'ignore' }));
  }
  atExit(() => procs.forEach((p) => p.kill('SIGKILL')));
  return procs;
}

/** In each pair's second namespace, NAT_PORT redirected to IPERF_PORT: conntrack (which the kernel turns on in a namespace only for a rule that needs it) and a DNAT entry per connection. */
function natToServers(names: string[]): void {
  for (let k = 0; k < names.length / 2; k++) {
    sh('ip', 'netns', 'exec', names[2 * k + 1], 'iptables', '-t', 'nat', '-A', 'PREROUTING', '-p', 'tcp', '--dport', String(NAT_PORT), '-j', 'REDIRECT', '--to-ports', String(IPERF_PORT));
  }
}

/** A TCP port nothing listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Status {
  points: Array<{ netns: string; iface: string }>;
  /** Kernel-counted capture events since start. */
  events: number;
  nat?: { conntrack: { namespaces: number; events: number; dumps: number; overflows: number } };
  store?: { tables: Record<string, { accepted: number }> };
}
const status = async (serve: ServeChild) => (await (await fetch(`${serve.url}/api/v1/capture/status`)).json()) as Status;
const attached = (s: Status, names: string[]) => {
  const points = new Set(s.points.map((p) => `${p.netns}/${p.iface}`));
  return names.every((name) => points.has(`${name}/eth0`) && points.has(`${name}/lo`));
};

interface Row {
  n: number;
  /** Spawn → /healthz answers 200 (the API listens before capture attaches). */
  healthyS: number;
  startS: number;
  attachedS: number;
  newNamespaceMs: number;
  baseline: Window;
  idle: Window;
  traffic: Window;
  eventsPerSecond: number;
  conntrack: ConntrackLoad;
}

/** The conntrack load phase: --conntrack-rate new connections a second over all pairs. */
interface ConntrackLoad {
  window: Window;
  /** Namespaces whose table serve reads, event messages received per second, overflows and dumps in the window. */
  namespaces: number;
  eventsPerSecond: number;
  overflows: number;
  dumps: number;
  /** NAT translations (the redirects) taken into the flow log per second. */
  translationsPerSecond: number;
}

async function run(n: number, round: number): Promise<Row> {
  const prefix = `ntnb${id}-${round}-`;
  const subnet = 100 + round;
  console.error(`N=${n}: creating ${n} namespaces`);
  const names = createPairs(prefix, n, subnet);
  const later = [`${prefix}new-a`, `${prefix}new-b`];
  console.error(`N=${n}: machine baseline, no serve (${SECONDS} s)`);
  const baseline = await measure(null, SECONDS);

  // A port of our choosing (the later --listen wins): /healthz is asked from the spawn on, while capture attaches.
  const port = await freePort();
  const spawned = performance.now();
  let healthyS: number | null = null;
  const healthy = (async () => {
    while (healthyS === null && performance.now() - spawned < 600_000) {
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
      if (ok) healthyS = (performance.now() - spawned) / 1000;
      else await sleep(20);
    }
  })();
  const serve = await startServe(['--store', path.join(dir, `store-${round}`), '--listen', `127.0.0.1:${port}`, ...(SCOPE === 'all' ? [] : [...names, ...later].flatMap((name) => ['--netns', name]))], {
    timeoutMs: 600_000,
  });
  await healthy;
  atExit(() => serve.child.kill('SIGKILL'));
  const startS = (performance.now() - spawned) / 1000;
  await waitFor('every namespace attached', async () => (attached(await status(serve), names) ? true : undefined), { timeoutMs: 600_000, everyMs: 50 });
  const attachedS = (performance.now() - spawned) / 1000;
  const pid = serve.child.pid!;

  console.error(`N=${n}: idle (${SECONDS} s)`);
  const idle = await measure(pid, SECONDS);

  for (const name of later) netns(name);
  sh('ip', 'link', 'add', 'eth0', 'netns', later[0], 'type', 'veth', 'peer', 'name', 'eth0', 'netns', later[1]);
  const created = performance.now();
  await waitFor('the new namespaces attached', async () => {
    const points = new Set((await status(serve)).points.map((p) => `${p.netns}/${p.iface}`));
    return later.every((name) => points.has(`${name}/eth0`)) ? true : undefined;
  }, { timeoutMs: 60_000, everyMs: 10 });
  const newNamespaceMs = performance.now() - created;

  console.error(`N=${n}: a connection a second across each of ${n / 2} veth pairs (${SECONDS} s)`);
  const traffic = connectEvery(names, subnet, 1);
  await sleep(2000);
  const eventsBefore = (await status(serve)).events;
  const loadedFrom = performance.now();
  const loaded = await measure(pid, SECONDS);
  const eventsPerSecond = ((await status(serve)).events - eventsBefore) / ((performance.now() - loadedFrom) / 1000);
  traffic.forEach((p) => p.kill('SIGKILL'));

  console.error(`N=${n}: ${CONNTRACK_RATE} new connections a second over the ${n / 2} veth pairs (${SECONDS} s)`);
  natToServers(names);
  const burst = connectEvery(names, subnet, Number((n / 2 / CONNTRACK_RATE).toFixed(4)), NAT_PORT);
  await sleep(2000);
  const first = await status(serve);
  const before = first.nat?.conntrack;
  const burstWindow = await measure(pid, SECONDS);
  const last = await status(serve);
  const after = last.nat?.conntrack;
  const translations = (s: Status) => s.store?.tables.nat_translations?.accepted ?? 0;
  burst.forEach((p) => p.kill('SIGKILL'));
  const conntrack: ConntrackLoad = {
    window: burstWindow,
    namespaces: after?.namespaces ?? 0,
    eventsPerSecond: ((after?.events ?? 0) - (before?.events ?? 0)) / SECONDS,
    overflows: (after?.overflows ?? 0) - (before?.overflows ?? 0),
    dumps: (after?.dumps ?? 0) - (before?.dumps ?? 0),
    translationsPerSecond: (translations(last) - translations(first)) / SECONDS,
  };

  serve.child.kill('SIGTERM');
  await new Promise((resolve) => serve.child.once('exit', resolve));
  [...names, ...later].forEach(deleteNetns);
  return { n, healthyS: healthyS ?? NaN, startS, attachedS, newNamespaceMs, baseline, idle, traffic: loaded, eventsPerSecond, conntrack };
}

const rows: Row[] = [];
for (const [round, n] of COUNTS.entries()) rows.push(await run(n, round));

const f = (x: number, digits = 1) => x.toFixed(digits);
const created = (w: Window) => (w.serveForks === null ? 'n/a (no perf)' : `${w.serveForks} (${f(w.serveForks / SECONDS, 2)}/s)`);
const kinds = (names: string[]) => [...new Set(names)].map((name) => `${name} ×${names.filter((x) => x === name).length}`).join(', ') || 'none';
console.log(`\nnettrail serve following N namespaces (--scope ${SCOPE}; ${SECONDS} s windows; CPU in % of one CPU, serve and its helpers together)\n`);
console.log('| N | spawn → healthy | spawn → serving | → all attached | new namespace captured | idle CPU | idle RSS serve / helpers | idle: processes serve created | forks/s machine-wide (no serve) | with traffic: CPU | processes serve created | forks/s machine-wide | capture events/s |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  console.log(
    `| ${r.n} | ${f(r.healthyS)} s | ${f(r.startS)} s | ${f(r.attachedS)} s | ${f(r.newNamespaceMs, 0)} ms | ${f(r.idle.cpuPercent)} % | ${f(r.idle.rss, 0)} / ${f(r.idle.helpersRss, 0)} MiB | ` +
      `${created(r.idle)} | ${f(r.idle.forksPerSecond)} (${f(r.baseline.forksPerSecond)}) | ${f(r.traffic.cpuPercent)} % | ${created(r.traffic)} | ${f(r.traffic.forksPerSecond)} | ${f(r.eventsPerSecond, 0)} |`,
  );
}
console.log(`\nconntrack load: ${CONNTRACK_RATE} new TCP connections a second over all pairs, redirected (DNAT) in the server's namespace (a NEW, UPDATEs and a DESTROY each)\n`);
console.log('| N | namespaces read | conntrack events received/s | overflows (ENOBUFS, each re-dumped) | dumps | NAT translations written/s | CPU |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  const c = r.conntrack;
  console.log(`| ${r.n} | ${c.namespaces} | ${f(c.eventsPerSecond, 0)} | ${c.overflows} | ${c.dumps} | ${f(c.translationsPerSecond, 0)} | ${f(c.window.cpuPercent)} % |`);
}
console.log('\nserve\'s children running at the end of each window:');
for (const r of rows) console.log(`  N=${r.n}: idle: ${kinds(r.idle.children)}; with traffic: ${kinds(r.traffic.children)}`);
process.exit(0);
