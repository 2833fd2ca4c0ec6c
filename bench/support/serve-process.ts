// Shared by the fault tests (test/faults/*.test.ts), the soaks and the benchmarks (bench/):
// `nettrail serve` as a child process, iperf3 between test namespaces, reading
// /metrics, the bpf_links a process holds, and polling the API while something
// else goes on.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../model/package-root.js';
import { printed, sleep } from './wait.js';

export const CLI = path.join(packageRoot, 'dist', 'service', 'cli.js');

export interface ServeChild {
  child: ChildProcess;
  url: string;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** SIGKILL (if still running) and wait for the exit. */
  kill(): Promise<void>;
}

/** Starts `nettrail serve ARGS --listen 127.0.0.1:0` and waits until it serves. */
export async function startServe(args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ServeChild> {
  const child = spawn(process.execPath, [CLI, 'serve', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: options.env ?? process.env,
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'exit');
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nettrail serve did not start: ${stderr}`)), options.timeoutMs ?? 60_000);
    const check = () => {
      const match = /capturing on .*; serving (http:\/\/\S+)/.exec(stderr);
      if (!match) return;
      clearTimeout(timer);
      child.stderr!.off('data', check);
      resolve(match[1]);
    };
    child.stderr!.on('data', check);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`nettrail serve exited with ${child.exitCode ?? child.signalCode}: ${stderr}`));
    });
  }).catch(async (err) => {
    await kill();
    throw err;
  });
  return { child, url, stderr: () => stderr, kill };
}

/** The value of one sample of a Prometheus text exposition, or undefined. Labels must match exactly those given (others may exist). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const match = /^([^{ ]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = new Map([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(match[3]);
  }
  return undefined;
}

/** Sum of every sample of a metric whose labels include `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([^{ ]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = new Map([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(match[3]);
  }
  return sum;
}

export interface HeldLink {
  link: number;
  prog: number;
  /** tcx, xdp, tracing, ... */
  type: string;
  ifindex?: number;
  /** e.g. `46 (ingress)` */
  attach?: string;
}

/** The bpf_links process `pid` holds open (from /proc/PID/fdinfo). */
export function linksHeldBy(pid: number): HeldLink[] {
  const links: HeldLink[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile
    }
    const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(info)?.[1].trim();
    const link = field('link_id');
    const prog = field('prog_id');
    if (link === undefined || prog === undefined) continue;
    const ifindex = field('ifindex');
    links.push({ link: Number(link), prog: Number(prog), type: field('link_type') ?? '?', ifindex: ifindex === undefined ? undefined : Number(ifindex), attach: field('attach_type') });
  }
  return links;
}

/** Every BPF program loaded in the system, by id. */
export function allPrograms(): Set<number> {
  const shown = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' })) as Array<{ id: number }>;
  return new Set(shown.map((p) => p.id));
}

/** Every bpf_link in the system: link id → prog id. */
export function allLinks(): Map<number, number> {
  const shown = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ id: number; prog_id: number }>;
  return new Map(shown.map((l) => [l.id, l.prog_id]));
}

export interface IperfUdpResult {
  /** Datagrams the client sent. */
  packets: number;
  seconds: number;
}

/** An iperf3 server in `netns`, for one test at a time; stop() ends it. */
export async function iperfServer(netns: string, port: number): Promise<{ stop(): Promise<void> }> {
  const proc = spawn('ip', ['netns', 'exec', netns, 'iperf3', '-s', '-p', String(port), '--forceflush'], { stdio: ['ignore', 'pipe', 'ignore'] });
  await printed(proc, 'stdout', 'Server listening', `iperf3 -s in ${netns}`).catch((err) => {
    proc.kill('SIGKILL');
    throw err;
  });
  return {
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await once(proc, 'exit');
      }
    },
  };
}

/** `iperf3 -u -b 0 -l LEN` from `netns` to host:port for `seconds`: as many datagrams as it can send. */
export async function iperfUdpFlood(netns: string, host: string, port: number, seconds: number, length = 64): Promise<IperfUdpResult> {
  const proc = spawn('ip', ['netns', 'exec', netns, 'iperf3', '-c', host, '-p', String(port), '-u', '-b', '0', '-l', String(length), '-t', String(seconds), '-J'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (chunk: Buffer) => (out += chunk));
  proc.stderr!.on('data', (chunk: Buffer) => (err += chunk));
  await once(proc, 'exit');
  const result = JSON.parse(out) as { end?: { sum?: { packets: number; seconds: number } }; error?: string };
  if (result.error || !result.end?.sum) throw new Error(`iperf3: ${result.error ?? err}`);
  return { packets: result.end.sum.packets, seconds: result.end.sum.seconds };
}

export interface ApiPoll {
  /** Requests answered, by path and status. */
  answered: Map<string, number>;
  /** Requests that failed (connection error, timeout), with why. */
  failed: string[];
  /** Latencies in ms of every answered request. */
  latencies: number[];
}

/** Requests `paths` of `base` one after another, `pauseMs` apart, until stop() is called. */
export function pollApi(base: string, paths: string[], pauseMs = 100, headers: Record<string, string> = {}): { stop(): Promise<ApiPoll> } {
  const poll: ApiPoll = { answered: new Map(), failed: [], latencies: [] };
  let stopped = false;
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      const p = paths[i % paths.length];
      const started = performance.now();
      try {
        const response = await fetch(new URL(p, base), { headers, signal: AbortSignal.timeout(30_000) });
        await response.arrayBuffer();
        poll.latencies.push(performance.now() - started);
        const key = `${p} ${response.status}`;
        poll.answered.set(key, (poll.answered.get(key) ?? 0) + 1);
      } catch (err) {
        poll.failed.push(`${p}: ${(err as Error).message}`);
      }
      await sleep(pauseMs);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return poll;
    },
  };
}

/** The p-th percentile (0..100) of `values`. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Resident set size of a process in MiB (VmRSS). */
export function rssMiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}

/** Entries in the map named `name` that program `prog` uses (bpftool map dump). */
export function mapEntries(prog: number, name: string): number {
  const shown = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(prog)], { encoding: 'utf8' })) as { map_ids?: number[] } | Array<{ map_ids?: number[] }>;
  const info = Array.isArray(shown) ? shown[0] : shown;
  for (const id of info?.map_ids ?? []) {
    const map = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show', 'id', String(id)], { encoding: 'utf8' })) as { name?: string };
    if (map.name !== name) continue;
    return (JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'id', String(id)], { encoding: 'utf8', maxBuffer: 256 << 20 })) as unknown[]).length;
  }
  throw new Error(`program ${prog} has no map ${name}`);
}
