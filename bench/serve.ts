// Benchmark of `nettrail serve` as deployed (not a test): the real CLI as a child
// process, with its defaults and the embedded store (in a temp dir), capturing both
// namespaces of a veth pair (`--netns A --netns B`: eth0 and lo in each). Serve is
// started fresh for every timed run that captures, so no run inherits another's
// flows, store parts or warmed-up state; it is timed once it is capturing and has
// settled. Three parts, each selectable with --only:
//   bulk   iperf3 TCP from A to B with no capture, with serve, and with
//          `tcpdump -w -s 96` on eth0 at both ends, the modes alternated in each round
//          (order rotated round by round); Gbit/s per mode, and serve's CPU per thread
//          group per decoded event
//   small  iperf3 UDP, 64-byte datagrams as fast as one sender goes, with no capture
//          (the sender's rate) and with serve: events decoded per second, lost (counted
//          by the kernel), CPU per event per thread group
//   idle   serve with no traffic: CPU, RSS, threads, child processes, processes created
//          per second machine-wide (next to the same window without serve)
// Prints Markdown tables on stdout (progress on stderr); --json FILE writes every figure.
//   node dist/bench/serve.js [--rounds 3] [--seconds 20] [--idle-seconds 30] [--only bulk,small,idle]
//                            [--serve-arg=ARG]... [--json FILE]     (as root; ~9 minutes with the defaults)
// 20 s runs measure serve as it runs for good: in 4 s ones, V8 compiling the hot path and the first
// parts the engine writes take most of the window (docs/capture.md).
// --serve-arg passes one argument to serve, e.g. --serve-arg=--snaplen=128 --serve-arg=--xdp=generic.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { iperfServer, iperfUdpFlood, rssMiB, startServe } from './support/serve-process.js';
import { sleep, printed } from './support/wait.js';
import { atExit, sh, tempDir, vethPair } from './support/harness.js';

const PARTS = ['bulk', 'small', 'idle'] as const;
type Part = (typeof PARTS)[number];

const { values: options } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '20' },
    'idle-seconds': { type: 'string', default: '30' },
    only: { type: 'string', default: PARTS.join(',') },
    'serve-arg': { type: 'string', multiple: true, default: [] },
    json: { type: 'string' },
  },
});
const ROUNDS = Number(options.rounds);
const SECONDS = Number(options.seconds);
const IDLE_SECONDS = Number(options['idle-seconds']);
if (!(Number.isInteger(ROUNDS) && ROUNDS >= 1)) throw new Error(`--rounds ${options.rounds}: a whole number ≥ 1`);
if (!(Number.isInteger(SECONDS) && SECONDS >= 1)) throw new Error(`--seconds ${options.seconds}: whole seconds ≥ 1 (iperf3 -t)`);
if (!(IDLE_SECONDS > 0)) throw new Error(`--idle-seconds ${options['idle-seconds']}: not a number of seconds`);
const ONLY = new Set(options.only.split(',').map((p) => p.trim()).filter(Boolean));
for (const part of ONLY) if (!PARTS.includes(part as Part)) throw new Error(`--only ${options.only}: parts are ${PARTS.join(', ')}`);
const SERVE_ARGS = options['serve-arg'];
// A store given through --serve-arg replaces the temp one (serve refuses both --store and --clickhouse-url).
const STORE_GIVEN = SERVE_ARGS.some((arg) => /^--(store|clickhouse-url)(=|$)/.test(arg));

/**
 * nettrail keeps each packet's L2–L4 headers by default (--snaplen 0). Ethernet (14) +
 * IPv4 (20) + TCP with its longest options (60) is 94 bytes: 96 keeps every header byte
 * of this IPv4 traffic, and of a packet with shorter headers a little payload besides.
 */
const TCPDUMP_SNAPLEN = 96;
const IPERF_PORT = 5311;
/** After serve is capturing: its start-up (schema, first conntrack dump, JIT) out of the timed window. */
const SETTLE_MS = 2000;
/** Before the idle window, longer: start-up work that trails on (store merges, the first conntrack dump) stays out of it. */
const IDLE_SETTLE_MS = 5000;
/** Longest wait after a run for user space to decode what the kernel wrote and the writer to flush. */
const DRAIN_MS = 5000;
/** Threads are re-read this often within a window, so that one ending counts up to its last sample. */
const THREAD_SAMPLE_MS = 500;
const CLOCK_TICKS = Number(sh('getconf', 'CLK_TCK').trim());

const dir = tempDir('bench-serve');
const { a: A, b: B, bIp: SERVER } = vethPair('ntserve', '10.83.0');

// ---------------------------------------------------------------------------------------------
// /proc: CPU per thread and per child, children, the machine's process counter

interface ProcStat {
  comm: string;
  /** Fields after the command name: [0] is field 3 (state), so field N is [N - 3]. */
  fields: string[];
}

/** /proc/.../stat parsed; undefined when the process or thread is gone. The name may hold spaces and parentheses. */
function readStat(file: string): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const close = text.lastIndexOf(')');
  return { comm: text.slice(text.indexOf('(') + 1, close), fields: text.slice(close + 2).trim().split(' ') };
}

const field = (stat: ProcStat, n: number) => Number(stat.fields[n - 3]);
/** utime + stime, in clock ticks. */
const ownTicks = (stat: ProcStat) => field(stat, 14) + field(stat, 15);
/** cutime + cstime: children that ended and were waited for. */
const reapedChildTicks = (stat: ProcStat) => field(stat, 16) + field(stat, 17);

/** Live children of `pid`: pid and name. */
function childrenOf(pid: number): Array<{ pid: number; comm: string }> {
  const children: Array<{ pid: number; comm: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(`/proc/${entry}/stat`);
    if (stat && field(stat, 4) === pid) children.push({ pid: Number(entry), comm: stat.comm });
  }
  return children;
}

/** CPU ticks of `pid`'s children: those running now and those already waited for. */
function childrenTicks(pid: number): number {
  const own = readStat(`/proc/${pid}/stat`);
  let ticks = own ? reapedChildTicks(own) : 0;
  for (const child of childrenOf(pid)) {
    const stat = readStat(`/proc/${child.pid}/stat`);
    if (stat) ticks += ownTicks(stat);
  }
  return ticks;
}

/** Processes created since boot, machine-wide (/proc/stat `processes`). */
function processesCreated(): number {
  return Number(/^processes (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))![1]);
}

const threadCount = (pid: number) => readdirSync(`/proc/${pid}/task`).length;

/**
 * Serve's threads by what runs on them, from their names: the addon names its
 * threads `nettrail…`; V8's platform workers (GC, compiler) and libuv's pool are
 * `node`, `V8 Worker`, `libuv-worker` (by Node version), and so is any thread
 * nobody named, the addon's ring thread included until it gets a name; chDB's
 * ClickHouse engine names its threads (QueryPipelineEx, BgSchPool, MergeMutate, ...).
 * chDB's binding runs each query on libuv's pool, so the share of a query's work
 * the engine does on the calling thread counts among the node helpers: names do
 * not tell the two apart.
 */
const THREAD_GROUPS = ['main', 'native', 'node', 'engine'] as const;
type ThreadGroup = (typeof THREAD_GROUPS)[number];
const THREAD_GROUP_LABELS: Record<ThreadGroup, string> = {
  main: 'main (JS, event loop)',
  native: 'native (nettrail*)',
  node: 'node helpers (V8, libuv pool running chDB queries, unnamed)',
  engine: 'engine (chDB threads)',
};
const NODE_HELPER_NAMES = /^(node$|V8 ?Worker|V8 DefaultWork|libuv-worker|DelayedTaskSch|SignalInspecto|inspector)/;

function threadGroup(pid: number, tid: number, comm: string): ThreadGroup {
  if (tid === pid) return 'main';
  if (comm.startsWith('nettrail')) return 'native';
  if (NODE_HELPER_NAMES.test(comm)) return 'node';
  return 'engine';
}

interface ThreadCpu {
  tid: number;
  comm: string;
  group: ThreadGroup;
  cpuSeconds: number;
}

interface CpuWindow {
  wallSeconds: number;
  /** CPU seconds and threads that ran (or lived) in the window, per group. */
  groups: Record<ThreadGroup, { threads: number; cpuSeconds: number }>;
  /** Used by threads that ended between two samples, after the last one: the process's total says how much, not whose. */
  unattributedCpuSeconds: number;
  /** The whole process, ended threads included (/proc/PID/stat). */
  totalCpuSeconds: number;
  /** Serve's child processes (conntrack -E, ...), not in the total. */
  childrenCpuSeconds: number;
  /** Every thread that used CPU, busiest first. */
  threads: ThreadCpu[];
}

/** CPU of every thread of `pid` from now until end(). */
class ThreadCpuMeter {
  readonly #pid: number;
  readonly #seen = new Map<number, { comm: string; first: number; last: number }>();
  readonly #startedAt = performance.now();
  readonly #processTicks: number;
  readonly #childrenTicks: number;
  readonly #timer: NodeJS.Timeout;

  constructor(pid: number) {
    this.#pid = pid;
    this.#childrenTicks = childrenTicks(pid);
    this.#processTicks = ownTicks(readStat(`/proc/${pid}/stat`)!);
    this.#sample(true);
    this.#timer = setInterval(() => this.#sample(false), THREAD_SAMPLE_MS);
  }

  #sample(initial: boolean): void {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${this.#pid}/task`);
    } catch {
      return; // the process is gone; end() says so
    }
    for (const entry of tids) {
      const stat = readStat(`/proc/${this.#pid}/task/${entry}/stat`);
      if (!stat) continue; // ended just now
      const tid = Number(entry);
      const seen = this.#seen.get(tid);
      // A thread first seen after the start began within the window: all its CPU is the window's.
      if (!seen) this.#seen.set(tid, { comm: stat.comm, first: initial ? ownTicks(stat) : 0, last: ownTicks(stat) });
      else Object.assign(seen, { comm: stat.comm, last: ownTicks(stat) });
    }
  }

  end(): CpuWindow {
    clearInterval(this.#timer);
    this.#sample(false);
    const processStat = readStat(`/proc/${this.#pid}/stat`);
    if (!processStat) throw new Error(`serve (pid ${this.#pid}) ended within the measured window`);
    const seconds = (ticks: number) => ticks / CLOCK_TICKS;
    const groups = Object.fromEntries(THREAD_GROUPS.map((g) => [g, { threads: 0, cpuSeconds: 0 }])) as CpuWindow['groups'];
    const threads: ThreadCpu[] = [];
    let attributed = 0;
    for (const [tid, { comm, first, last }] of this.#seen) {
      const group = threadGroup(this.#pid, tid, comm);
      groups[group].threads++;
      groups[group].cpuSeconds += seconds(last - first);
      attributed += last - first;
      if (last > first) threads.push({ tid, comm, group, cpuSeconds: seconds(last - first) });
    }
    const total = ownTicks(processStat) - this.#processTicks;
    for (const g of THREAD_GROUPS) groups[g].cpuSeconds = Number(groups[g].cpuSeconds.toFixed(3)); // sums of ticks / CLK_TCK, without float dust
    return {
      wallSeconds: (performance.now() - this.#startedAt) / 1000,
      groups,
      unattributedCpuSeconds: seconds(Math.max(0, total - attributed)),
      totalCpuSeconds: seconds(total),
      childrenCpuSeconds: seconds(childrenTicks(this.#pid) - this.#childrenTicks),
      threads: threads.sort((x, y) => y.cpuSeconds - x.cpuSeconds),
    };
  }
}

// ---------------------------------------------------------------------------------------------
// serve, its capture status, tcpdump, iperf3

/** The fields of GET /api/v1/capture/status read here. */
interface CaptureStatusJson {
  points: Array<{ netns: string; iface: string }>;
  /** Decoded in user space. */
  packets: number;
  /** Written to the ring by the kernel. */
  events?: number;
  /** Ring full, counted by the kernel. */
  lost: number;
  store?: { tables: Record<string, { buffered_rows: number }> };
}

async function captureStatus(url: string): Promise<CaptureStatusJson> {
  const response = await fetch(new URL('/api/v1/capture/status', url), { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`GET /api/v1/capture/status: ${response.status} ${await response.text()}`);
  return (await response.json()) as CaptureStatusJson;
}

interface RunningServe {
  pid: number;
  url: string;
  /** From spawning it to capturing on eth0 in both namespaces. */
  startSeconds: number;
  stop(): Promise<void>;
}

let servesStarted = 0;

/** A fresh `nettrail serve` capturing A and B, with its own store, settled; stop() ends it (SIGTERM) and removes its store. */
async function startNettrail(): Promise<RunningServe> {
  const store = path.join(dir, `store-${++servesStarted}`);
  const spawnedAt = performance.now();
  const serve = await startServe(['--netns', A, '--netns', B, ...(STORE_GIVEN ? [] : ['--store', store]), ...SERVE_ARGS]);
  const { child } = serve;
  const pid = child.pid!;
  atExit(() => {
    if (!running(child)) return;
    for (const c of childrenOf(pid)) killQuietly(c.pid);
    killQuietly(pid);
  });
  const bothAttached = async () => {
    const status = await captureStatus(serve.url);
    return [A, B].every((ns) => status.points.some((p) => p.netns === ns && p.iface === 'eth0'));
  };
  for (const deadline = Date.now() + 20_000; !(await bothAttached()); await sleep(200)) {
    if (Date.now() > deadline) throw new Error('serve did not attach to eth0 in both namespaces within 20 s');
  }
  const startSeconds = (performance.now() - spawnedAt) / 1000;
  return {
    pid,
    url: serve.url,
    startSeconds,
    async stop() {
      // Its helpers (conntrack -E) end with it; any that does not is ended here.
      const children = childrenOf(pid);
      child.kill('SIGTERM');
      const exited = await Promise.race([once(child, 'exit').then(() => true), sleep(15_000).then(() => false)]);
      if (!exited) {
        console.error(`  serve did not stop within 15 s of SIGTERM; killing it`);
        await serve.kill();
      }
      for (const c of children) if (readStat(`/proc/${c.pid}/stat`)) killQuietly(c.pid);
      rmSync(store, { recursive: true, force: true });
    },
  };
}

const running = (proc: ChildProcess) => proc.exitCode === null && proc.signalCode === null;

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/**
 * Waits (up to DRAIN_MS) until user space has decoded what the kernel wrote — all of
 * it, or nothing more for a while — and the writer holds no rows: the window's CPU then
 * covers handling all of its traffic.
 */
async function drain(url: string): Promise<{ status: CaptureStatusJson; drained: boolean }> {
  const deadline = performance.now() + DRAIN_MS;
  let previous: CaptureStatusJson | undefined;
  let unchangedPolls = 0;
  for (;;) {
    const status = await captureStatus(url);
    const unchanged = previous !== undefined && status.packets === previous.packets && status.events === previous.events;
    unchangedPolls = unchanged ? unchangedPolls + 1 : 0;
    previous = status;
    // Several batch intervals without a decoded event: nothing more is on its way.
    const decoded = status.packets >= (status.events ?? 0) || unchangedPolls >= 3;
    const written = Object.values(status.store?.tables ?? {}).every((t) => t.buffered_rows === 0);
    if (decoded && written) return { status, drained: true };
    if (performance.now() > deadline) return { status, drained: false };
    await sleep(200);
  }
}

interface ServeWindow {
  startSeconds: number;
  /** Packets decoded in user space within the window: the events CPU is divided by. */
  decoded: number;
  /** Events the kernel wrote to the ring within the window. */
  events: number;
  /** Events the kernel could not write (ring full) within the window. */
  lost: number;
  /** Events written to the ring but never decoded (should be 0). */
  undecoded: number;
  /** Whether decoding and the writer caught up within DRAIN_MS after the traffic. */
  drained: boolean;
  cpu: CpuWindow;
  /** At the end of the window. */
  rssMiB: number;
  threads: number;
  childProcesses: string[];
}

/** Runs `traffic` with a fresh serve capturing, measuring serve from just before it until its capture has drained. */
async function withServe<T>(traffic: () => Promise<T>): Promise<{ result: T; serve: ServeWindow }> {
  const serve = await startNettrail();
  try {
    await sleep(SETTLE_MS);
    const before = await captureStatus(serve.url);
    const meter = new ThreadCpuMeter(serve.pid);
    const result = await traffic();
    const { status: after, drained } = await drain(serve.url);
    const cpu = meter.end();
    return {
      result,
      serve: {
        startSeconds: serve.startSeconds,
        decoded: after.packets - before.packets,
        events: (after.events ?? 0) - (before.events ?? 0),
        lost: after.lost - before.lost,
        undecoded: (after.events ?? 0) - (before.events ?? 0) - (after.packets - before.packets),
        drained,
        cpu,
        rssMiB: rssMiB(serve.pid),
        threads: threadCount(serve.pid),
        childProcesses: childrenOf(serve.pid).map((c) => c.comm),
      },
    };
  } finally {
    await serve.stop();
  }
}

interface TcpdumpRun {
  /** As tcpdump reports them at exit, summed over both ends. */
  captured: number;
  droppedByKernel: number;
  bytesWritten: number;
  cpuSeconds: number;
}

/** Runs `traffic` with `tcpdump -w -s TCPDUMP_SNAPLEN` on eth0 in both namespaces. */
async function withTcpdump<T>(traffic: () => Promise<T>): Promise<{ result: T; tcpdump: TcpdumpRun }> {
  const dumps = [A, B].map((ns) => {
    const file = path.join(dir, `${ns}.pcap`);
    const proc = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', 'eth0', '-nn', '-s', String(TCPDUMP_SNAPLEN), '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    atExit(() => {
      if (running(proc)) proc.kill('SIGKILL');
    });
    let stderr = '';
    proc.stderr!.on('data', (chunk: string | Buffer) => (stderr += chunk));
    return { proc, file, ns, stderr: () => stderr };
  });
  try {
    await Promise.all(dumps.map(({ proc, ns }) => printed(proc, 'stderr', 'listening on', `tcpdump in ${ns}`)));
    const result = await traffic();
    // `ip netns exec` execs tcpdump: the child's pid is tcpdump's, its CPU readable until it exits.
    const cpuTicks = dumps.reduce((sum, { proc }) => sum + ownTicks(readStat(`/proc/${proc.pid}/stat`)!), 0);
    for (const { proc } of dumps) proc.kill('SIGINT');
    await Promise.all(dumps.map(({ proc }) => (running(proc) ? once(proc, 'exit') : undefined)));
    const counted = (what: string) => dumps.reduce((sum, { stderr }) => sum + Number(new RegExp(`(\\d+) packets? ${what}`).exec(stderr())?.[1] ?? NaN), 0);
    return {
      result,
      tcpdump: {
        captured: counted('captured'),
        droppedByKernel: counted('dropped by kernel'),
        bytesWritten: dumps.reduce((sum, { file }) => sum + statSync(file).size, 0),
        cpuSeconds: cpuTicks / CLOCK_TICKS,
      },
    };
  } finally {
    for (const { proc, file } of dumps) {
      if (running(proc)) {
        proc.kill('SIGKILL');
        await once(proc, 'exit');
      }
      rmSync(file, { force: true });
    }
  }
}

/** iperf3 TCP from A to B for SECONDS: the receiver's bits per second. */
async function iperfTcp(): Promise<number> {
  const proc = spawn('ip', ['netns', 'exec', A, 'iperf3', '-c', SERVER, '-p', String(IPERF_PORT), '-t', String(SECONDS), '-J'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (chunk: Buffer) => (out += chunk));
  proc.stderr!.on('data', (chunk: Buffer) => (err += chunk));
  await once(proc, 'exit');
  const result = JSON.parse(out || '{}') as { end?: { sum_received?: { bits_per_second: number } }; error?: string };
  if (result.error || !result.end?.sum_received) throw new Error(`iperf3: ${result.error ?? err}`);
  return result.end.sum_received.bits_per_second;
}

// ---------------------------------------------------------------------------------------------
// the parts

/** The modes in round `round` (from 1): the list rotated by one each round, so that each mode runs in each place. */
function rotated<T>(modes: readonly T[], round: number): T[] {
  const shift = (round - 1) % modes.length;
  return [...modes.slice(shift), ...modes.slice(0, shift)];
}

const BULK_MODES = ['none', 'nettrail', 'tcpdump'] as const;
type BulkMode = (typeof BULK_MODES)[number];

interface BulkRun {
  round: number;
  mode: BulkMode;
  gbps: number;
  serve?: ServeWindow;
  tcpdump?: TcpdumpRun;
}

async function bulk(): Promise<BulkRun[]> {
  const runs: BulkRun[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const mode of rotated(BULK_MODES, round)) {
      let run: BulkRun;
      if (mode === 'none') run = { round, mode, gbps: (await iperfTcp()) / 1e9 };
      else if (mode === 'nettrail') {
        const { result, serve } = await withServe(iperfTcp);
        run = { round, mode, gbps: result / 1e9, serve };
      } else {
        const { result, tcpdump } = await withTcpdump(iperfTcp);
        run = { round, mode, gbps: result / 1e9, tcpdump };
      }
      runs.push(run);
      console.error(`bulk round ${round} ${mode}: ${f(run.gbps, 2)} Gbit/s${run.serve ? ` ${serveNote(run.serve)}` : ''}${run.tcpdump ? ` ${run.tcpdump.captured} captured, ${run.tcpdump.droppedByKernel} dropped` : ''}`);
    }
  }
  return runs;
}

const SMALL_MODES = ['none', 'nettrail'] as const;
type SmallMode = (typeof SMALL_MODES)[number];
const DATAGRAM_BYTES = 64;

interface SmallRun {
  round: number;
  mode: SmallMode;
  /** Datagrams iperf3 sent per second. */
  sentPerS: number;
  senderSeconds: number;
  serve?: ServeWindow & { decodedPerS: number; eventsPerS: number; lostPerS: number };
}

async function small(): Promise<SmallRun[]> {
  const flood = () => iperfUdpFlood(A, SERVER, IPERF_PORT, SECONDS, DATAGRAM_BYTES);
  const runs: SmallRun[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const mode of rotated(SMALL_MODES, round)) {
      let run: SmallRun;
      if (mode === 'none') {
        const sent = await flood();
        run = { round, mode, sentPerS: sent.packets / sent.seconds, senderSeconds: sent.seconds };
      } else {
        const { result: sent, serve } = await withServe(flood);
        // Per second of sending: decoding may run on a little after the sender stops.
        const perS = (n: number) => n / sent.seconds;
        run = { round, mode, sentPerS: sent.packets / sent.seconds, senderSeconds: sent.seconds, serve: { ...serve, decodedPerS: perS(serve.decoded), eventsPerS: perS(serve.events), lostPerS: perS(serve.lost) } };
      }
      runs.push(run);
      console.error(`small round ${round} ${mode}: ${f(run.sentPerS)} datagrams/s sent${run.serve ? ` ${serveNote(run.serve)}` : ''}`);
    }
  }
  return runs;
}

interface IdleResult {
  seconds: number;
  startSeconds: number;
  cpu: CpuWindow;
  /** All of serve's threads, in % of one CPU. */
  cpuPercent: number;
  rssMiB: number;
  threads: number;
  childProcesses: string[];
  /** Machine-wide, from /proc/stat: with serve running, and over the same length just before without it. */
  processesPerS: number;
  processesPerSWithoutServe: number;
}

async function idle(): Promise<IdleResult> {
  console.error(`idle: ${IDLE_SECONDS} s without serve, then ${IDLE_SECONDS} s with it`);
  const createdBefore = processesCreated();
  await sleep(IDLE_SECONDS * 1000);
  const processesPerSWithoutServe = (processesCreated() - createdBefore) / IDLE_SECONDS;
  const serve = await startNettrail();
  try {
    await sleep(IDLE_SETTLE_MS);
    const created = processesCreated();
    const meter = new ThreadCpuMeter(serve.pid);
    await sleep(IDLE_SECONDS * 1000);
    const cpu = meter.end();
    const processesPerS = (processesCreated() - created) / cpu.wallSeconds;
    return {
      seconds: IDLE_SECONDS,
      startSeconds: serve.startSeconds,
      cpu,
      cpuPercent: (100 * cpu.totalCpuSeconds) / cpu.wallSeconds,
      rssMiB: rssMiB(serve.pid),
      threads: threadCount(serve.pid),
      childProcesses: childrenOf(serve.pid).map((c) => c.comm),
      processesPerS,
      processesPerSWithoutServe,
    };
  } finally {
    await serve.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// figures and tables

function f(n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '–';
}

function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

interface Spread {
  median: number;
  min: number;
  max: number;
}

function spread(values: number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

/** `median (min–max)`; the range left out when there is one value. */
function showSpread(s: Spread, digits = 0): string {
  if (!Number.isFinite(s.median)) return '–';
  return s.min === s.max ? f(s.median, digits) : `${f(s.median, digits)} (${f(s.min, digits)}–${f(s.max, digits)})`;
}

const usPerEvent = (cpuSeconds: number, events: number) => (events > 0 ? (cpuSeconds * 1e6) / events : NaN);

function serveNote(w: ServeWindow): string {
  return `${w.decoded} decoded, ${w.events} events (${w.undecoded} not decoded), ${w.lost} lost, CPU ${f(w.cpu.totalCpuSeconds, 2)} s (${f(usPerEvent(w.cpu.totalCpuSeconds, w.decoded), 1)} µs/event)${w.drained ? '' : ', NOT drained'}`;
}

/** Per thread group of serve over the windows: CPU seconds and µs per decoded event, each as median (min–max) over rounds. */
interface CpuSummary {
  groups: Record<string, { label: string; threads: Spread; cpuSeconds: Spread; usPerEvent: Spread }>;
  rssMiB: Spread;
  threads: Spread;
  startSeconds: Spread;
  notDrained: number;
  /** Runs in which user space decoded fewer events than the kernel wrote, and how many it missed. */
  undecoded: number[];
}

function summarizeCpu(windows: ServeWindow[]): CpuSummary {
  const rows: Array<{ key: string; label: string; threads: (w: ServeWindow) => number; cpu: (w: ServeWindow) => number }> = [
    ...THREAD_GROUPS.map((g) => ({ key: g, label: THREAD_GROUP_LABELS[g], threads: (w: ServeWindow) => w.cpu.groups[g].threads, cpu: (w: ServeWindow) => w.cpu.groups[g].cpuSeconds })),
    { key: 'unattributed', label: 'threads that ended (unattributed)', threads: () => NaN, cpu: (w) => w.cpu.unattributedCpuSeconds },
    { key: 'total', label: 'all of serve', threads: (w) => w.threads, cpu: (w) => w.cpu.totalCpuSeconds },
    { key: 'children', label: 'child processes (not in the total)', threads: (w) => w.childProcesses.length, cpu: (w) => w.cpu.childrenCpuSeconds },
  ];
  return {
    groups: Object.fromEntries(
      rows.map(({ key, label, threads, cpu }) => [
        key,
        { label, threads: spread(windows.map(threads)), cpuSeconds: spread(windows.map(cpu)), usPerEvent: spread(windows.map((w) => usPerEvent(cpu(w), w.decoded))) },
      ]),
    ),
    rssMiB: spread(windows.map((w) => w.rssMiB)),
    threads: spread(windows.map((w) => w.threads)),
    startSeconds: spread(windows.map((w) => w.startSeconds)),
    notDrained: windows.filter((w) => !w.drained).length,
    undecoded: windows.map((w) => w.undecoded).filter((n) => n !== 0),
  };
}

function printCpu(title: string, summary: CpuSummary): void {
  console.log(`\n${title}\n`);
  console.log('| serve thread group | threads | CPU s | µs per decoded event |');
  console.log('| --- | --- | --- | --- |');
  for (const { label, threads, cpuSeconds, usPerEvent: us } of Object.values(summary.groups)) {
    console.log(`| ${label} | ${showSpread(threads)} | ${showSpread(cpuSeconds, 2)} | ${showSpread(us, 2)} |`);
  }
  console.log(`\nserve: RSS ${showSpread(summary.rssMiB)} MiB and ${showSpread(summary.threads)} threads at the end; capturing ${showSpread(summary.startSeconds, 1)} s after spawn`);
  if (summary.notDrained) console.log(`WARNING: in ${summary.notDrained} run(s) decoding or the writer had not caught up ${DRAIN_MS / 1000} s after the traffic`);
  if (summary.undecoded.length) console.log(`WARNING: events written to the ring but not decoded (kernel events − decoded packets), by run: ${summary.undecoded.map((n) => f(n)).join(', ')}`);
}

function bulkSummary(runs: BulkRun[]) {
  const gbps = Object.fromEntries(BULK_MODES.map((m) => [m, spread(runs.filter((r) => r.mode === m).map((r) => r.gbps))])) as Record<BulkMode, Spread>;
  const serveRuns = runs.flatMap((r) => (r.serve ? [r.serve] : []));
  const tcpdumpRuns = runs.flatMap((r) => (r.tcpdump ? [r.tcpdump] : []));
  return {
    gbps,
    ratioToNone: { nettrail: gbps.nettrail.median / gbps.none.median, tcpdump: gbps.tcpdump.median / gbps.none.median },
    nettrail: {
      decodedPerS: spread(serveRuns.map((w) => w.decoded / SECONDS)),
      lost: spread(serveRuns.map((w) => w.lost)),
      cpu: summarizeCpu(serveRuns),
    },
    tcpdump: {
      captured: spread(tcpdumpRuns.map((t) => t.captured)),
      droppedByKernel: spread(tcpdumpRuns.map((t) => t.droppedByKernel)),
      cpuSeconds: spread(tcpdumpRuns.map((t) => t.cpuSeconds)),
      usPerPacket: spread(tcpdumpRuns.map((t) => usPerEvent(t.cpuSeconds, t.captured))),
    },
  };
}

function printBulk(summary: ReturnType<typeof bulkSummary>): void {
  const { gbps, ratioToNone, nettrail, tcpdump } = summary;
  console.log(`\nBulk TCP: iperf3 ${A} → ${B} over the veth, ${SECONDS} s per run, ${ROUNDS} round(s); median (min–max)\n`);
  console.log('| mode | Gbit/s | / none | notes |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| none (no capture) | ${showSpread(gbps.none, 2)} | 1.00 | |`);
  console.log(`| nettrail serve | ${showSpread(gbps.nettrail, 2)} | ${f(ratioToNone.nettrail, 2)} | ${showSpread(nettrail.decodedPerS)} events decoded/s, ${showSpread(nettrail.lost)} lost |`);
  console.log(`| tcpdump -w -s ${TCPDUMP_SNAPLEN} (both ends) | ${showSpread(gbps.tcpdump, 2)} | ${f(ratioToNone.tcpdump, 2)} | ${showSpread(tcpdump.captured)} captured, ${showSpread(tcpdump.droppedByKernel)} dropped by kernel, CPU ${showSpread(tcpdump.cpuSeconds, 2)} s = ${showSpread(tcpdump.usPerPacket, 2)} µs/packet |`);
  printCpu('nettrail serve during bulk (window: the iperf3 run until capture drained)', nettrail.cpu);
}

function smallSummary(runs: SmallRun[]) {
  const serveRuns = runs.flatMap((r) => (r.serve ? [r.serve] : []));
  return {
    sentPerS: Object.fromEntries(SMALL_MODES.map((m) => [m, spread(runs.filter((r) => r.mode === m).map((r) => r.sentPerS))])) as Record<SmallMode, Spread>,
    nettrail: {
      decodedPerS: spread(serveRuns.map((w) => w.decodedPerS)),
      eventsPerS: spread(serveRuns.map((w) => w.eventsPerS)),
      lostPerS: spread(serveRuns.map((w) => w.lostPerS)),
      lostShare: spread(serveRuns.map((w) => w.lost / Math.max(1, w.lost + w.events))),
      cpu: summarizeCpu(serveRuns),
    },
  };
}

function printSmall(summary: ReturnType<typeof smallSummary>): void {
  const { sentPerS, nettrail } = summary;
  console.log(`\nSmall packets: iperf3 -u -b 0 -l ${DATAGRAM_BYTES}, one stream ${A} → ${B}, ${SECONDS} s per run, ${ROUNDS} round(s); median (min–max)\n`);
  console.log('| mode | datagrams sent/s | events decoded/s | events in ring/s | lost/s (kernel) | lost share |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  console.log(`| none (no capture) | ${showSpread(sentPerS.none)} | | | | |`);
  console.log(`| nettrail serve | ${showSpread(sentPerS.nettrail)} | ${showSpread(nettrail.decodedPerS)} | ${showSpread(nettrail.eventsPerS)} | ${showSpread(nettrail.lostPerS)} | ${showSpread({ median: 100 * nettrail.lostShare.median, min: 100 * nettrail.lostShare.min, max: 100 * nettrail.lostShare.max }, 1)} % |`);
  console.log('\n(each datagram passes two capture points: A eth0 egress and B eth0 ingress)');
  printCpu('nettrail serve during small packets (window: the iperf3 run until capture drained)', nettrail.cpu);
}

function printIdle(r: IdleResult): void {
  const percent = (cpuSeconds: number) => `${f((100 * cpuSeconds) / r.cpu.wallSeconds, 2)} %`;
  const children = new Map<string, number>();
  for (const comm of r.childProcesses) children.set(comm, (children.get(comm) ?? 0) + 1);
  console.log(`\nIdle: serve capturing ${A} and ${B}, no traffic, ${f(r.cpu.wallSeconds, 1)} s (from ${IDLE_SETTLE_MS / 1000} s after it was capturing)\n`);
  console.log('| | |');
  console.log('| --- | --- |');
  console.log(`| CPU, all of serve (% of one CPU) | ${percent(r.cpu.totalCpuSeconds)} |`);
  for (const g of THREAD_GROUPS) console.log(`| … ${THREAD_GROUP_LABELS[g]}, thread(s): ${r.cpu.groups[g].threads} | ${percent(r.cpu.groups[g].cpuSeconds)} |`);
  console.log(`| … threads that ended (unattributed) | ${percent(r.cpu.unattributedCpuSeconds)} |`);
  console.log(`| child processes' CPU (not in the total) | ${percent(r.cpu.childrenCpuSeconds)} |`);
  console.log(`| RSS | ${f(r.rssMiB)} MiB |`);
  console.log(`| threads | ${r.threads} |`);
  console.log(`| child processes | ${r.childProcesses.length}${children.size ? ` (${[...children].map(([comm, n]) => `${comm} × ${n}`).join(', ')})` : ''} |`);
  console.log(`| processes created/s, machine-wide | ${f(r.processesPerS, 1)} with serve, ${f(r.processesPerSWithoutServe, 1)} in the ${IDLE_SECONDS} s before without it |`);
  const busiest = r.cpu.threads.slice(0, 5).map((t) => `${t.comm}/${t.tid} ${percent(t.cpuSeconds)}`);
  if (busiest.length) console.log(`\nbusiest threads: ${busiest.join(', ')}`);
}

// ---------------------------------------------------------------------------------------------

const iperfd = await iperfServer(B, IPERF_PORT);
console.log(
  `# nettrail serve benchmark: ${[...ONLY].join(', ')}; ${ROUNDS} round(s) of ${SECONDS} s; namespaces ${A} ${B}; ` +
    `\`nettrail serve --netns ${A} --netns ${B}${STORE_GIVEN ? '' : ' --store TEMP'}${SERVE_ARGS.length ? ` ${SERVE_ARGS.join(' ')}` : ''}\` ` +
    `started fresh for each run with capture and timed from ${SETTLE_MS / 1000} s after it captures; ${cpus().length} CPUs, Linux ${release()}, CLK_TCK ${CLOCK_TICKS}`,
);
const report: Record<string, unknown> = {
  config: {
    rounds: ROUNDS,
    seconds: SECONDS,
    idleSeconds: IDLE_SECONDS,
    parts: [...ONLY],
    serveArgs: SERVE_ARGS,
    serveStarted: 'fresh for every run with capture, timed after it is capturing and settled',
    settleSeconds: SETTLE_MS / 1000,
    tcpdumpSnaplen: TCPDUMP_SNAPLEN,
    clockTicks: CLOCK_TICKS,
    cpus: cpus().length,
    kernel: release(),
    node: process.version,
    namespaces: [A, B],
  },
};
try {
  if (ONLY.has('bulk')) {
    const runs = await bulk();
    const summary = bulkSummary(runs);
    printBulk(summary);
    report.bulk = { runs, summary };
  }
  if (ONLY.has('small')) {
    const runs = await small();
    const summary = smallSummary(runs);
    printSmall(summary);
    report.small = { runs, summary };
  }
  if (ONLY.has('idle')) {
    const result = await idle();
    printIdle(result);
    report.idle = result;
  }
  if (options.json) {
    writeFileSync(options.json, `${JSON.stringify(report, null, 2)}\n`);
    console.error(`figures written to ${options.json}`);
  }
  process.exitCode = 0;
} catch (err) {
  console.error(`bench/serve: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
}
// Waited for here, so that it is not left to init as a zombie; the exit steps end the rest.
await iperfd.stop();
process.exit();
