// A lab of network namespaces with a NAT router, for tests and `nettrail lab`:
//
//   <prefix>-client  eth0 10.231.N.2 ──── to-client 10.231.N.1  <prefix>-router  to-server 10.232.N.1 ──── eth0 10.232.N.2  <prefix>-server
//
// The router DNATs the service 10.231.N.1:8080 to the server's 10.232.N.2:80 and
// masquerades out of to-server; the server runs a small HTTP server on port 80.
// N derives from the prefix (or is given), so labs with different prefixes use
// different subnets; labs are isolated in their namespaces either way.
// Everything is found again by namespace name, so another process can destroy a lab.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { NetnsRef } from '../../flowlog/records.js';

export type LabErrorCode = 'LAB_BAD_OPTIONS' | 'LAB_EXISTS' | 'LAB_SETUP_FAILED' | 'LAB_SERVER_FAILED' | 'LAB_REQUEST_FAILED' | 'LAB_DESTROYED';

export class LabError extends Error {
  constructor(
    readonly code: LabErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'LabError';
  }
}

export type LabRole = 'client' | 'router' | 'server';
export const LAB_ROLES: readonly LabRole[] = ['client', 'router', 'server'];

export interface LabIface {
  name: string;
  ip: string;
  prefixLen: number;
}

export interface LabNode {
  netns: NetnsRef;
  ifaces: LabIface[];
}

export interface Endpoint {
  ip: string;
  port: number;
}

export interface LabOptions {
  /** Namespace name prefix; default `nt`. */
  prefix?: string;
  /** Third octet N of the lab subnets 10.231.N.0/24 and 10.232.N.0/24 (1-254); default derived from the prefix. */
  subnet?: number;
  /** Keep the lab when this process exits (for `nettrail lab up`); default false: exit and SIGINT/SIGTERM/SIGHUP destroy it. */
  persist?: boolean;
}

export interface LabResponse {
  status: number;
  localPort: number;
  bytes: number;
}

export interface LabStatus {
  prefix: string;
  /** All three namespaces exist and the HTTP server runs. */
  up: boolean;
  namespaces: Array<{
    name: string;
    path: string;
    exists: boolean;
    ino: number | null;
    interfaces: Array<{ name: string; addresses: string[] }>;
    processes: Array<{ pid: number; cmd: string }>;
  }>;
}

export const SERVICE_PORT = 8080;
export const SERVER_PORT = 80;
const ROUTER_CLIENT_IFACE = 'to-client';
const ROUTER_SERVER_IFACE = 'to-server';
const HOST_IFACE = 'eth0';
const START_TIMEOUT_MS = 5000;
const REQUEST_TIMEOUT_MS = 10_000;
const KILL_GRACE_MS = 2000;
const DEFAULT_TRAFFIC_MS = 60 * 60 * 1000;

const HTTP_SERVER_JS = fileURLToPath(new URL('./http-server.js', import.meta.url));
const HTTP_CLIENT_JS = fileURLToPath(new URL('./http-client.js', import.meta.url));

export function labNetnsName(prefix: string, role: LabRole): string {
  return `${prefix}-${role}`;
}

/** FNV-1a of the prefix onto 1..254. */
export function labSubnetFor(prefix: string): number {
  let h = 0x811c9dc5;
  for (const c of Buffer.from(prefix)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  return 1 + (h % 254);
}

function validatePrefix(prefix: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/.test(prefix)) {
    throw new LabError('LAB_BAD_OPTIONS', `lab prefix must be 1-32 of [A-Za-z0-9_.-], got "${prefix}"`);
  }
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: START_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (err) reject(new LabError('LAB_SETUP_FAILED', `${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

function inNetns(netns: string, cmd: string, ...args: string[]): Promise<string> {
  return run('ip', ['netns', 'exec', netns, cmd, ...args]);
}

function netnsRef(name: string): NetnsRef {
  const path = `/run/netns/${name}`;
  return { name, path, ino: statSync(path).ino };
}

// ---- teardown, also from other processes and from exit/signal handlers --------

// Non-persistent labs of this process, destroyed on exit and on fatal signals.
const liveLabs = new Set<string>();
const FATAL_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function netnsPids(name: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter((l) => /^\d+$/.test(l.trim()))
      .map(Number);
  } catch {
    return [];
  }
}

function killAll(pids: number[]): void {
  const signalAll = (sig: NodeJS.Signals): void => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
  };
  signalAll('SIGTERM');
  const deadline = Date.now() + KILL_GRACE_MS;
  while (pids.some(alive) && Date.now() < deadline) sleepSync(20);
  signalAll('SIGKILL');
}

/**
 * Kills every process in the lab's namespaces and deletes them (which removes
 * their veths). Synchronous so that exit and signal handlers can use it; a no-op
 * for a lab that does not exist.
 */
export function destroyLabSync(prefix = 'nt'): void {
  validatePrefix(prefix);
  const names = LAB_ROLES.map((r) => labNetnsName(prefix, r)).filter((n) => existsSync(`/run/netns/${n}`));
  killAll(names.flatMap(netnsPids));
  const failures: string[] = [];
  for (const name of names) {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      failures.push(`${name}: ${(err as Error).message}`);
    }
  }
  if (liveLabs.delete(prefix) && liveLabs.size === 0) unwatchProcess();
  if (failures.length > 0) throw new LabError('LAB_SETUP_FAILED', `could not delete namespaces: ${failures.join('; ')}`);
}

export async function destroyLab(prefix = 'nt'): Promise<void> {
  destroyLabSync(prefix);
}

function destroyLiveLabs(): void {
  for (const prefix of [...liveLabs]) {
    try {
      destroyLabSync(prefix);
    } catch {
      // best effort while exiting
    }
  }
}

/** Cleans up, then dies of the signal as if nobody had listened. */
function onFatalSignal(sig: NodeJS.Signals): void {
  destroyLiveLabs();
  unwatchProcess();
  process.kill(process.pid, sig);
}

let watching = false;

function watchProcess(): void {
  if (watching) return;
  watching = true;
  process.on('exit', destroyLiveLabs);
  for (const sig of FATAL_SIGNALS) process.on(sig, onFatalSignal);
}

function unwatchProcess(): void {
  watching = false;
  process.off('exit', destroyLiveLabs);
  for (const sig of FATAL_SIGNALS) process.off(sig, onFatalSignal);
}

// ---- the lab -----------------------------------------------------------------

export class Lab {
  readonly namespaces: NetnsRef[];
  /** The router's server-side address: the source of masqueraded connections. */
  readonly masqueradeIp: string;
  private trafficPid: number | null = null;
  private destroyed = false;

  constructor(
    readonly prefix: string,
    readonly nodes: Record<LabRole, LabNode>,
    /** Where clients connect: the router's client-side address, DNATed to `server`. */
    readonly service: Endpoint,
    readonly server: Endpoint,
  ) {
    this.namespaces = LAB_ROLES.map((r) => nodes[r].netns);
    this.masqueradeIp = nodes.router.ifaces.find((i) => i.name === ROUTER_SERVER_IFACE)!.ip;
  }

  /** One HTTP GET from the client namespace to the service. */
  async request(opts: { localPort?: number; path?: string } = {}): Promise<LabResponse> {
    this.assertUp();
    const args = JSON.stringify({ host: this.service.ip, port: this.service.port, path: opts.path ?? '/', localPort: opts.localPort });
    return new Promise((resolve, reject) => {
      execFile(
        'ip',
        ['netns', 'exec', this.nodes.client.netns.name, process.execPath, HTTP_CLIENT_JS, args],
        { encoding: 'utf8', timeout: REQUEST_TIMEOUT_MS },
        (err, stdout, stderr) => {
          if (err) return reject(new LabError('LAB_REQUEST_FAILED', `request to ${this.service.ip}:${this.service.port} failed: ${stderr.trim() || err.message}`));
          resolve(JSON.parse(stdout) as LabResponse);
        },
      );
    });
  }

  /** Starts a process in the client namespace that requests the service every intervalMs (for durationMs, default 1 h). */
  async startTraffic(intervalMs: number, opts: { durationMs?: number } = {}): Promise<void> {
    this.assertUp();
    if (!(intervalMs > 0)) throw new LabError('LAB_BAD_OPTIONS', `traffic interval must be > 0 ms, got ${intervalMs}`);
    await this.stopTraffic();
    const args = JSON.stringify({ host: this.service.ip, port: this.service.port, path: '/', everyMs: intervalMs, forMs: opts.durationMs ?? DEFAULT_TRAFFIC_MS });
    const proc = spawn('ip', ['netns', 'exec', this.nodes.client.netns.name, process.execPath, HTTP_CLIENT_JS, args], { detached: true, stdio: 'ignore' });
    this.trafficPid = await new Promise<number>((resolve, reject) => {
      proc.once('spawn', () => resolve(proc.pid!));
      proc.once('error', (err) => reject(new LabError('LAB_SETUP_FAILED', `cannot start traffic: ${err.message}`)));
    });
    proc.unref();
  }

  async stopTraffic(): Promise<void> {
    const pid = this.trafficPid;
    this.trafficPid = null;
    if (pid === null || !alive(pid)) return;
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + KILL_GRACE_MS;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }

  status(): Promise<LabStatus> {
    return labStatus(this.prefix);
  }

  /** Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.trafficPid = null;
    destroyLabSync(this.prefix);
  }

  private assertUp(): void {
    if (this.destroyed) throw new LabError('LAB_DESTROYED', `lab ${this.prefix} was destroyed`);
  }
}

async function startHttpServer(netns: string): Promise<void> {
  const proc = spawn('ip', ['netns', 'exec', netns, process.execPath, HTTP_SERVER_JS, String(SERVER_PORT)], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      proc.stdout!.setEncoding('utf8').on('data', (c: string) => {
        if (c.includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('error', reject);
      proc.once('exit', (code) => reject(new Error(`exited with code ${code}: ${stderr.trim()}`)));
    });
  } catch (err) {
    throw new LabError('LAB_SERVER_FAILED', `HTTP server in ${netns}: ${(err as Error).message}`);
  } finally {
    // The server outlives this process for a persistent lab: let go of it.
    proc.stdout!.destroy();
    proc.stderr!.destroy();
    proc.unref();
  }
}

export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  const prefix = opts.prefix ?? 'nt';
  validatePrefix(prefix);
  const n = opts.subnet ?? labSubnetFor(prefix);
  if (!Number.isInteger(n) || n < 1 || n > 254) throw new LabError('LAB_BAD_OPTIONS', `lab subnet must be 1-254, got ${n}`);
  const [client, router, server] = LAB_ROLES.map((r) => labNetnsName(prefix, r)) as [string, string, string];
  const existing = [client, router, server].filter((ns) => existsSync(`/run/netns/${ns}`));
  if (existing.length > 0) throw new LabError('LAB_EXISTS', `namespaces already exist: ${existing.join(', ')} (nettrail lab down, or destroyLab("${prefix}"))`);

  const clientNet = `10.231.${n}`;
  const serverNet = `10.232.${n}`;
  const ifaces: Record<LabRole, LabIface[]> = {
    client: [{ name: HOST_IFACE, ip: `${clientNet}.2`, prefixLen: 24 }],
    router: [
      { name: ROUTER_CLIENT_IFACE, ip: `${clientNet}.1`, prefixLen: 24 },
      { name: ROUTER_SERVER_IFACE, ip: `${serverNet}.1`, prefixLen: 24 },
    ],
    server: [{ name: HOST_IFACE, ip: `${serverNet}.2`, prefixLen: 24 }],
  };
  const service = { ip: `${clientNet}.1`, port: SERVICE_PORT };
  const serverEp = { ip: `${serverNet}.2`, port: SERVER_PORT };

  if (!opts.persist) {
    watchProcess();
    liveLabs.add(prefix);
  }
  try {
    for (const ns of [client, router, server]) {
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    // Created directly inside the namespaces: nothing touches the root namespace.
    await run('ip', ['-n', client, 'link', 'add', HOST_IFACE, 'type', 'veth', 'peer', 'name', ROUTER_CLIENT_IFACE, 'netns', router]);
    await run('ip', ['-n', server, 'link', 'add', HOST_IFACE, 'type', 'veth', 'peer', 'name', ROUTER_SERVER_IFACE, 'netns', router]);
    for (const [ns, role] of [[client, 'client'], [router, 'router'], [server, 'server']] as const) {
      for (const i of ifaces[role]) {
        await run('ip', ['-n', ns, 'addr', 'add', `${i.ip}/${i.prefixLen}`, 'dev', i.name]);
        await run('ip', ['-n', ns, 'link', 'set', i.name, 'up']);
        await inNetns(ns, 'ethtool', '-K', i.name, 'tx', 'off');
      }
    }
    await run('ip', ['-n', client, 'route', 'add', 'default', 'via', `${clientNet}.1`]);
    await run('ip', ['-n', server, 'route', 'add', 'default', 'via', `${serverNet}.1`]);
    await inNetns(router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    await inNetns(router, 'iptables', '-t', 'nat', '-A', 'PREROUTING', '-p', 'tcp', '-d', service.ip, '--dport', String(service.port),
      '-j', 'DNAT', '--to-destination', `${serverEp.ip}:${serverEp.port}`);
    await inNetns(router, 'iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', ROUTER_SERVER_IFACE, '-j', 'MASQUERADE');
    await startHttpServer(server);
    const nodes = {
      client: { netns: netnsRef(client), ifaces: ifaces.client },
      router: { netns: netnsRef(router), ifaces: ifaces.router },
      server: { netns: netnsRef(server), ifaces: ifaces.server },
    };
    return new Lab(prefix, nodes, service, serverEp);
  } catch (err) {
    destroyLabSync(prefix);
    throw err;
  }
}

/** The lab's state as found on the system (works for a lab made by another process). */
export async function labStatus(prefix = 'nt'): Promise<LabStatus> {
  validatePrefix(prefix);
  const namespaces = await Promise.all(
    LAB_ROLES.map(async (role) => {
      const name = labNetnsName(prefix, role);
      const path = `/run/netns/${name}`;
      if (!existsSync(path)) return { name, path, exists: false, ino: null, interfaces: [], processes: [] };
      const links = JSON.parse(await run('ip', ['-n', name, '-j', 'addr', 'show'])) as Array<{ ifname: string; addr_info?: Array<{ local: string; prefixlen: number }> }>;
      const processes = netnsPids(name).map((pid) => {
        let cmd = '';
        try {
          cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
        } catch {
          // exited meanwhile
        }
        return { pid, cmd };
      });
      return {
        name,
        path,
        exists: true,
        ino: statSync(path).ino,
        interfaces: links.map((l) => ({ name: l.ifname, addresses: (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`) })),
        processes,
      };
    }),
  );
  const serverNs = namespaces[2]!;
  const up = namespaces.every((ns) => ns.exists) && serverNs.processes.some((p) => p.cmd.includes(HTTP_SERVER_JS));
  return { prefix, up, namespaces };
}
