// Labs of network namespaces with NAT hops, for tests and `nettrail lab`. One
// lab is one scenario; the default, `fullnat`, is
//
//   <prefix>-client  eth0 10.231.N.2 ──── to-client 10.231.N.1  <prefix>-router  to-server 10.232.N.1 ──── eth0 10.232.N.2  <prefix>-server
//
// where the router DNATs the service 10.231.N.1:8080 to the server's
// 10.232.N.2:80 and masquerades out of to-server. The other scenarios live in
// namespaces <prefix>-<scenario>-<role>:
//   dnat         the same three namespaces; the router only DNATs, in conntrack zone 7
//   snat         the same; the router only masquerades, the client connects to the server's address
//   port-reuse   the same; the router DNATs the service to the server's port 80 and 8081 in turn
//                (every other connection), so one client port makes different chains over time
//   two-routers  client ── edge (masquerades, 10.231.N.0/24 → 10.233.N.0/24) ── router (DNATs
//                10.233.N.2:8080 to the server's 10.232.N.2:80) ── server
//   ovs          client 10.234.N.2 and server 10.234.N.3 on one Open vSwitch bridge (userspace
//                datapath, in the namespace <prefix>-ovs-switch, with its own ovsdb-server and
//                ovs-vswitchd) whose flows DNAT 10.234.N.100:8080 to the server's port 80 with
//                ct(commit,zone=9,nat(dst=...)); the client reaches the service address through a
//                static neighbour entry.
// Diagnosis scenarios (docs/diagnosis.md), each fullnat's three namespaces with one thing wrong;
// their traffic is started by diagnosis-scenarios.ts:
//   lossy          the router drops every 20th large server-to-client segment (FORWARD, statistic nth)
//   reset          the router REJECTs TCP to the server's port 83 with a reset; nothing listens on 82;
//                  the server's /abort resets its connections mid-response
//   nagle          the server also runs a line server (TURNS_PORT); the client writes each request in two small writes
//   slow-reader    the client reads a large response with a pause
//   mtu-blackhole  the router's to-client link has MTU 1000 and its OUTPUT chain drops ICMP "fragmentation needed"
//   slow-server    the client asks the server's /slow/1500: the answer comes 1.5 s later
// The server runs a small HTTP server. N derives from the prefix (or is given)
// and the scenario, so labs use different subnets; they are isolated in their
// namespaces either way. Everything is found again by namespace name, so another
// process can destroy a lab.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NetnsRef } from '../model/records.js';

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

export type DiagnosisScenario = 'lossy' | 'reset' | 'nagle' | 'slow-reader' | 'mtu-blackhole' | 'slow-server';
export const DIAGNOSIS_SCENARIOS: readonly DiagnosisScenario[] = ['lossy', 'reset', 'nagle', 'slow-reader', 'mtu-blackhole', 'slow-server'];
export type LabScenario = 'fullnat' | 'dnat' | 'snat' | 'port-reuse' | 'two-routers' | 'ovs' | DiagnosisScenario;
export const LAB_SCENARIOS: readonly LabScenario[] = ['fullnat', 'dnat', 'snat', 'port-reuse', 'two-routers', 'ovs', ...DIAGNOSIS_SCENARIOS];
export const isDiagnosisScenario = (scenario: LabScenario): scenario is DiagnosisScenario => (DIAGNOSIS_SCENARIOS as readonly string[]).includes(scenario);

/** One line per scenario, for `nettrail lab`. */
export const LAB_SCENARIO_SUMMARY: Record<LabScenario, string> = {
  fullnat: 'one router DNATs the service and masquerades (FULLNAT)',
  dnat: 'one router DNATs the service (conntrack zone 7)',
  snat: 'one router masquerades; the client connects to the server directly',
  'port-reuse': 'one router DNATs the service to two server ports in turn; the traffic reuses one client port',
  'two-routers': 'an edge router masquerades, a second router DNATs the service',
  ovs: 'an Open vSwitch bridge (userspace datapath) DNATs the service with ct(nat) in zone 9',
  lossy: 'fullnat; the router drops every 20th large server-to-client segment',
  reset: 'fullnat; the router REJECTs port 83 with a reset, nothing listens on 82, the server aborts /abort mid-response',
  nagle: 'fullnat; requests written in two small writes with Nagle on meet delayed ACKs',
  'slow-reader': 'fullnat; the client stops reading a large response for a while (zero window)',
  'mtu-blackhole': 'fullnat; the router-client link has MTU 1000 and the router drops its ICMP "fragmentation needed"',
  'slow-server': 'fullnat; the server takes 1.5 s to answer',
};

/**
 * `router` is where the service is translated: an iptables router, or in the
 * ovs scenario the switch namespace running Open vSwitch. `edge` is the first
 * router of two-routers.
 */
export type LabRole = 'client' | 'edge' | 'router' | 'server';
const SCENARIO_ROLES: Record<LabScenario, readonly LabRole[]> = {
  fullnat: ['client', 'router', 'server'],
  dnat: ['client', 'router', 'server'],
  snat: ['client', 'router', 'server'],
  'port-reuse': ['client', 'router', 'server'],
  'two-routers': ['client', 'edge', 'router', 'server'],
  ovs: ['client', 'router', 'server'],
  lossy: ['client', 'router', 'server'],
  reset: ['client', 'router', 'server'],
  nagle: ['client', 'router', 'server'],
  'slow-reader': ['client', 'router', 'server'],
  'mtu-blackhole': ['client', 'router', 'server'],
  'slow-server': ['client', 'router', 'server'],
};

export interface LabIface {
  name: string;
  ip: string;
  prefixLen: number;
}

export interface LabNode {
  netns: NetnsRef;
  /** Interfaces with an address (an OVS switch's ports have none). */
  ifaces: LabIface[];
}

export interface Endpoint {
  ip: string;
  port: number;
}

export interface LabOptions {
  /** Namespace name prefix; default `nt`. */
  prefix?: string;
  /** Default fullnat. */
  scenario?: LabScenario;
  /** Third octet N of the lab subnets 10.231.N.0/24, ... (1-254); default derived from the prefix. Other scenarios than fullnat use the next ones. */
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
  scenario: LabScenario;
  /** All namespaces exist and the HTTP server runs. */
  up: boolean;
  /** The client namespace runs `nettrail lab up`'s traffic (a request every 2 s). */
  traffic: boolean;
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
/** The server's second port in the port-reuse scenario. */
export const ALT_SERVER_PORT = 8081;
/** The reset scenario: the router REJECTs TCP to this server port with a reset; nothing listens on CLOSED_PORT. */
export const REJECTED_PORT = 83;
export const CLOSED_PORT = 82;
/** The nagle scenario's line server (diagnosis-traffic.ts turns-server) on the server. */
export const TURNS_PORT = 7001;
/** The mtu-blackhole scenario's MTU of the router's link to the client. */
export const BLACKHOLE_MTU = 1000;
/** The lossy scenario drops every LOSSY_EVERY-th server-to-client segment of LOSSY_MIN_LENGTH bytes or more. */
export const LOSSY_EVERY = 20;
const LOSSY_MIN_LENGTH = 1000;
/** Conntrack zones of the service's translation in the dnat and ovs scenarios. */
export const DNAT_ZONE = 7;
export const OVS_ZONE = 9;
const HOST_IFACE = 'eth0';
const START_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 10_000;
const KILL_GRACE_MS = 2000;
const DEFAULT_TRAFFIC_MS = 60 * 60 * 1000;
/** Where the ovs scenario's ovsdb and ovs-vswitchd keep their database, sockets, pidfiles and logs. */
const OVS_RUN_ROOT = '/run/nettrail-lab';
const OVS_SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';
const OVS_BRIDGE = 'br0';

const HTTP_SERVER_JS = fileURLToPath(new URL('./http-server.js', import.meta.url));
const HTTP_CLIENT_JS = fileURLToPath(new URL('./http-client.js', import.meta.url));
const DIAGNOSIS_TRAFFIC_JS = fileURLToPath(new URL('./diagnosis-traffic.js', import.meta.url));

/** The namespace of `role` in a lab: `<prefix>-<role>` for fullnat, `<prefix>-<scenario>-<role>` otherwise (the ovs router is `-switch`). */
export function labNetnsName(prefix: string, role: LabRole, scenario: LabScenario = 'fullnat'): string {
  const base = scenario === 'fullnat' ? prefix : `${prefix}-${scenario}`;
  return `${base}-${scenario === 'ovs' && role === 'router' ? 'switch' : role}`;
}

/** The ovs scenario's OVS run directory (OVS_RUNDIR): what `nettrail serve --ovs-rundir` takes. */
export function labOvsRundir(prefix: string): string {
  return path.join(OVS_RUN_ROOT, labNetnsName(prefix, 'router', 'ovs'));
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

function validateScenario(scenario: string): asserts scenario is LabScenario {
  if (!(LAB_SCENARIOS as readonly string[]).includes(scenario)) {
    throw new LabError('LAB_BAD_OPTIONS', `lab scenario must be one of ${LAB_SCENARIOS.join(', ')}, got "${scenario}"`);
  }
}

function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'utf8', timeout: START_TIMEOUT_MS, env: opts.env }, (err, stdout, stderr) => {
      if (err) reject(new LabError('LAB_SETUP_FAILED', `${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
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

// Non-persistent labs of this process (prefix, scenario), destroyed on exit and on fatal signals.
const liveLabs = new Map<string, { prefix: string; scenario: LabScenario }>();
const FATAL_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const labKey = (prefix: string, scenario: LabScenario) => `${prefix}/${scenario}`;

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
 * Kills every process in the lab's namespaces (OVS daemons included) and
 * deletes them (which removes their veths); without `scenario`, every
 * scenario's under `prefix`. Synchronous so that exit and signal handlers can
 * use it; a no-op for a lab that does not exist.
 */
export function destroyLabSync(prefix = 'nt', scenario?: LabScenario): void {
  validatePrefix(prefix);
  const scenarios = scenario === undefined ? LAB_SCENARIOS : [scenario];
  const names = scenarios
    .flatMap((s) => SCENARIO_ROLES[s].map((r) => labNetnsName(prefix, r, s)))
    .filter((n) => existsSync(`/run/netns/${n}`));
  killAll(names.flatMap(netnsPids));
  const failures: string[] = [];
  for (const name of names) {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      failures.push(`${name}: ${(err as Error).message}`);
    }
  }
  if (scenarios.includes('ovs')) rmSync(labOvsRundir(prefix), { recursive: true, force: true });
  for (const s of scenarios) liveLabs.delete(labKey(prefix, s));
  if (liveLabs.size === 0) unwatchProcess();
  if (failures.length > 0) throw new LabError('LAB_SETUP_FAILED', `could not delete namespaces: ${failures.join('; ')}`);
}

export async function destroyLab(prefix = 'nt', scenario?: LabScenario): Promise<void> {
  destroyLabSync(prefix, scenario);
}

function destroyLiveLabs(): void {
  for (const { prefix, scenario } of [...liveLabs.values()]) {
    try {
      destroyLabSync(prefix, scenario);
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

export interface LabNodes {
  client: LabNode;
  /** Where the service is translated (an iptables router, or the OVS switch). */
  router: LabNode;
  server: LabNode;
  /** two-routers: the masquerading router next to the client. */
  edge?: LabNode;
}

export interface LabSetup {
  nodes: LabNodes;
  /** Where clients connect. */
  service: Endpoint;
  /** Where the service leads, in the order the router picks them (one but in port-reuse). */
  backends: Endpoint[];
  /** The address connections are masqueraded to, or null when the lab does not masquerade. */
  masqueradeIp: string | null;
  /** The conntrack zone of the service's translation. */
  zone: number;
  /** The ovs scenario's OVS run directory, else null. */
  ovsRundir: string | null;
}

export class Lab {
  readonly nodes: LabNodes;
  readonly service: Endpoint;
  /** The (first) backend the service leads to. */
  readonly server: Endpoint;
  readonly backends: Endpoint[];
  readonly masqueradeIp: string | null;
  readonly zone: number;
  readonly ovsRundir: string | null;
  /** In path order: client, edge, router, server. */
  readonly namespaces: NetnsRef[];
  private trafficPid: number | null = null;
  private destroyed = false;

  constructor(
    readonly prefix: string,
    readonly scenario: LabScenario,
    setup: LabSetup,
  ) {
    this.nodes = setup.nodes;
    this.service = setup.service;
    this.backends = setup.backends;
    this.server = setup.backends[0]!;
    this.masqueradeIp = setup.masqueradeIp;
    this.zone = setup.zone;
    this.ovsRundir = setup.ovsRundir;
    const { client, edge, router, server } = setup.nodes;
    this.namespaces = [client, ...(edge ? [edge] : []), router, server].map((n) => n.netns);
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

  /** Starts a process in the client namespace that requests the service every intervalMs (for durationMs, default 1 h), from `localPort` if given. */
  async startTraffic(intervalMs: number, opts: { durationMs?: number; localPort?: number } = {}): Promise<void> {
    this.assertUp();
    if (!(intervalMs > 0)) throw new LabError('LAB_BAD_OPTIONS', `traffic interval must be > 0 ms, got ${intervalMs}`);
    await this.stopTraffic();
    const args = JSON.stringify({
      host: this.service.ip,
      port: this.service.port,
      path: '/',
      localPort: opts.localPort,
      everyMs: intervalMs,
      forMs: opts.durationMs ?? DEFAULT_TRAFFIC_MS,
    });
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
    return labStatus(this.prefix, this.scenario);
  }

  /** Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.trafficPid = null;
    destroyLabSync(this.prefix, this.scenario);
  }

  private assertUp(): void {
    if (this.destroyed) throw new LabError('LAB_DESTROYED', `lab ${this.prefix} (${this.scenario}) was destroyed`);
  }
}

/** Starts the lab's HTTP server (or another server script that prints "ready" when listening) in `netns`. */
async function startHttpServer(netns: string, port: number, command: string[] = [HTTP_SERVER_JS, String(port)]): Promise<void> {
  const proc = spawn('ip', ['netns', 'exec', netns, process.execPath, ...command], {
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
    throw new LabError('LAB_SERVER_FAILED', `HTTP server on port ${port} in ${netns}: ${(err as Error).message}`);
  } finally {
    // The server outlives this process for a persistent lab: let go of it.
    proc.stdout!.destroy();
    proc.stderr!.destroy();
    proc.unref();
  }
}

// ---- building blocks -----------------------------------------------------------

interface Wire {
  netns: string;
  iface: string;
  /** Address/prefix length, or none (a switch port). */
  ip?: string;
}

/** A veth pair between two namespaces, created inside them (nothing touches the root namespace), up, with addresses, TX checksum offload off. */
async function wire(a: Wire, b: Wire): Promise<void> {
  await run('ip', ['-n', a.netns, 'link', 'add', a.iface, 'type', 'veth', 'peer', 'name', b.iface, 'netns', b.netns]);
  for (const end of [a, b]) {
    if (end.ip) await run('ip', ['-n', end.netns, 'addr', 'add', end.ip, 'dev', end.iface]);
    await run('ip', ['-n', end.netns, 'link', 'set', end.iface, 'up']);
    // Checksums are filled in, not left to a device that does not exist: OVS conntrack and tcpdump see valid packets.
    await inNetns(end.netns, 'ethtool', '-K', end.iface, 'tx', 'off');
  }
}

const iface = (name: string, cidr: string): LabIface => {
  const [ip, prefixLen] = cidr.split('/');
  return { name, ip: ip!, prefixLen: Number(prefixLen) };
};

async function defaultRoute(netns: string, via: string): Promise<void> {
  await run('ip', ['-n', netns, 'route', 'add', 'default', 'via', via]);
}

async function forwarding(netns: string): Promise<void> {
  await inNetns(netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
}

const iptables = (netns: string, ...args: string[]) => inNetns(netns, 'iptables', ...args);

/** client ── router ── server, routed; the scenario adds the router's NAT rules. */
async function routedLab(names: Record<LabRole, string>, n: number, scenario: LabScenario): Promise<LabSetup> {
  const clientNet = `10.231.${n}`;
  const serverNet = `10.232.${n}`;
  const ifaces = {
    client: [iface(HOST_IFACE, `${clientNet}.2/24`)],
    router: [iface('to-client', `${clientNet}.1/24`), iface('to-server', `${serverNet}.1/24`)],
    server: [iface(HOST_IFACE, `${serverNet}.2/24`)],
  };
  await wire({ netns: names.client, iface: HOST_IFACE, ip: `${clientNet}.2/24` }, { netns: names.router, iface: 'to-client', ip: `${clientNet}.1/24` });
  await wire({ netns: names.server, iface: HOST_IFACE, ip: `${serverNet}.2/24` }, { netns: names.router, iface: 'to-server', ip: `${serverNet}.1/24` });
  await defaultRoute(names.client, `${clientNet}.1`);
  await defaultRoute(names.server, `${serverNet}.1`);
  await forwarding(names.router);

  const vip = { ip: `${clientNet}.1`, port: SERVICE_PORT };
  const server = { ip: `${serverNet}.2`, port: SERVER_PORT };
  const toVip = ['-t', 'nat', '-A', 'PREROUTING', '-p', 'tcp', '-d', vip.ip, '--dport', String(vip.port)];
  const dnatTo = (ep: Endpoint) => ['-j', 'DNAT', '--to-destination', `${ep.ip}:${ep.port}`];
  const masquerade = ['-t', 'nat', '-A', 'POSTROUTING', '-o', 'to-server', '-j', 'MASQUERADE'];
  let setup: Pick<LabSetup, 'service' | 'backends' | 'masqueradeIp' | 'zone'>;
  if (scenario === 'fullnat' || isDiagnosisScenario(scenario)) {
    await iptables(names.router, ...toVip, ...dnatTo(server));
    await iptables(names.router, ...masquerade);
    setup = { service: vip, backends: [server], masqueradeIp: `${serverNet}.1`, zone: 0 };
  } else if (scenario === 'dnat') {
    await iptables(names.router, '-t', 'raw', '-A', 'PREROUTING', '-j', 'CT', '--zone', String(DNAT_ZONE));
    await iptables(names.router, ...toVip, ...dnatTo(server));
    setup = { service: vip, backends: [server], masqueradeIp: null, zone: DNAT_ZONE };
  } else if (scenario === 'snat') {
    await iptables(names.router, ...masquerade);
    setup = { service: server, backends: [server], masqueradeIp: `${serverNet}.1`, zone: 0 };
  } else {
    // port-reuse: the nat table sees each connection's first packet, so connections alternate.
    const alt = { ip: server.ip, port: ALT_SERVER_PORT };
    await iptables(names.router, ...toVip, '-m', 'statistic', '--mode', 'nth', '--every', '2', '--packet', '0', ...dnatTo(server));
    await iptables(names.router, ...toVip, ...dnatTo(alt));
    setup = { service: vip, backends: [server, alt], masqueradeIp: null, zone: 0 };
  }
  for (const backend of new Set(setup.backends.map((b) => b.port))) await startHttpServer(names.server, backend);
  if (isDiagnosisScenario(scenario)) await diagnosisSetup(scenario, names, server);
  return {
    ...setup,
    nodes: {
      client: { netns: netnsRef(names.client), ifaces: ifaces.client },
      router: { netns: netnsRef(names.router), ifaces: ifaces.router },
      server: { netns: netnsRef(names.server), ifaces: ifaces.server },
    },
    ovsRundir: null,
  };
}

/** What goes wrong in a diagnosis scenario's router or server (the traffic that shows it: diagnosis-scenarios.ts). */
async function diagnosisSetup(scenario: DiagnosisScenario, names: Record<LabRole, string>, server: Endpoint): Promise<void> {
  const fromServer = ['-p', 'tcp', '-s', server.ip, '--sport', String(server.port)];
  if (scenario === 'lossy') {
    await iptables(names.router, '-A', 'FORWARD', ...fromServer, '-m', 'length', '--length', `${LOSSY_MIN_LENGTH}:65535`,
      '-m', 'statistic', '--mode', 'nth', '--every', String(LOSSY_EVERY), '--packet', String(LOSSY_EVERY / 2), '-j', 'DROP');
  } else if (scenario === 'reset') {
    await iptables(names.router, '-A', 'FORWARD', '-p', 'tcp', '-d', server.ip, '--dport', String(REJECTED_PORT), '-j', 'REJECT', '--reject-with', 'tcp-reset');
  } else if (scenario === 'nagle') {
    await startHttpServer(names.server, TURNS_PORT, [DIAGNOSIS_TRAFFIC_JS, 'turns-server', String(TURNS_PORT)]);
  } else if (scenario === 'mtu-blackhole') {
    await run('ip', ['-n', names.router, 'link', 'set', 'to-client', 'mtu', String(BLACKHOLE_MTU)]);
    await iptables(names.router, '-A', 'OUTPUT', '-p', 'icmp', '--icmp-type', 'fragmentation-needed', '-j', 'DROP');
  }
}

/** client ── edge (masquerade) ── router (DNAT) ── server. */
async function twoRoutersLab(names: Record<LabRole, string>, n: number): Promise<LabSetup> {
  const [clientNet, coreNet, serverNet] = [`10.231.${n}`, `10.233.${n}`, `10.232.${n}`];
  await wire({ netns: names.client, iface: HOST_IFACE, ip: `${clientNet}.2/24` }, { netns: names.edge, iface: 'to-client', ip: `${clientNet}.1/24` });
  await wire({ netns: names.edge, iface: 'to-core', ip: `${coreNet}.1/24` }, { netns: names.router, iface: 'to-edge', ip: `${coreNet}.2/24` });
  await wire({ netns: names.server, iface: HOST_IFACE, ip: `${serverNet}.2/24` }, { netns: names.router, iface: 'to-server', ip: `${serverNet}.1/24` });
  await defaultRoute(names.client, `${clientNet}.1`);
  await defaultRoute(names.edge, `${coreNet}.2`);
  await defaultRoute(names.server, `${serverNet}.1`);
  await forwarding(names.edge);
  await forwarding(names.router);
  const vip = { ip: `${coreNet}.2`, port: SERVICE_PORT };
  const server = { ip: `${serverNet}.2`, port: SERVER_PORT };
  await iptables(names.edge, '-t', 'nat', '-A', 'POSTROUTING', '-o', 'to-core', '-j', 'MASQUERADE');
  await iptables(names.router, '-t', 'nat', '-A', 'PREROUTING', '-p', 'tcp', '-d', vip.ip, '--dport', String(vip.port),
    '-j', 'DNAT', '--to-destination', `${server.ip}:${server.port}`);
  await startHttpServer(names.server, SERVER_PORT);
  return {
    nodes: {
      client: { netns: netnsRef(names.client), ifaces: [iface(HOST_IFACE, `${clientNet}.2/24`)] },
      edge: { netns: netnsRef(names.edge), ifaces: [iface('to-client', `${clientNet}.1/24`), iface('to-core', `${coreNet}.1/24`)] },
      router: { netns: netnsRef(names.router), ifaces: [iface('to-edge', `${coreNet}.2/24`), iface('to-server', `${serverNet}.1/24`)] },
      server: { netns: netnsRef(names.server), ifaces: [iface(HOST_IFACE, `${serverNet}.2/24`)] },
    },
    service: vip,
    backends: [server],
    masqueradeIp: `${coreNet}.1`,
    zone: 0,
    ovsRundir: null,
  };
}

/** client and server on an OVS bridge (userspace datapath) in the switch namespace, which DNATs the service. */
async function ovsLab(prefix: string, names: Record<LabRole, string>, n: number): Promise<LabSetup> {
  const net = `10.234.${n}`;
  const [clientIp, serverIp, vipIp] = [`${net}.2`, `${net}.3`, `${net}.100`];
  const switchNs = names.router;
  await wire({ netns: names.client, iface: HOST_IFACE, ip: `${clientIp}/24` }, { netns: switchNs, iface: 'p-client' });
  await wire({ netns: names.server, iface: HOST_IFACE, ip: `${serverIp}/24` }, { netns: switchNs, iface: 'p-server' });

  // A private ovsdb-server and ovs-vswitchd in the switch namespace: their netdev ports are its veths.
  const rundir = labOvsRundir(prefix);
  rmSync(rundir, { recursive: true, force: true });
  mkdirSync(rundir, { recursive: true });
  const env = { ...process.env, OVS_RUNDIR: rundir, OVS_DBDIR: rundir, OVS_LOGDIR: rundir, OVS_SYSCONFDIR: rundir };
  const db = `unix:${rundir}/db.sock`;
  await run('ovsdb-tool', ['create', `${rundir}/conf.db`, OVS_SCHEMA], { env });
  await run('ip', ['netns', 'exec', switchNs, 'ovsdb-server', `${rundir}/conf.db`, `--remote=punix:${rundir}/db.sock`, '--pidfile', '--detach', '--log-file'], { env });
  await run('ovs-vsctl', [`--db=${db}`, '--no-wait', 'init'], { env });
  await run('ip', ['netns', 'exec', switchNs, 'ovs-vswitchd', db, '--pidfile', '--detach', '--log-file'], { env });
  await run('ovs-vsctl', [`--db=${db}`, 'add-br', OVS_BRIDGE, '--', 'set', 'bridge', OVS_BRIDGE, 'datapath_type=netdev',
    '--', 'add-port', OVS_BRIDGE, 'p-client', '--', 'add-port', OVS_BRIDGE, 'p-server'], { env });
  // Untracked IP goes through conntrack (zone OVS_ZONE, with NAT for known connections); new connections
  // to the service are committed with DNAT to the server; everything is then switched normally.
  const ct = `zone=${OVS_ZONE}`;
  const flows = [
    'table=0,priority=10,arp,actions=NORMAL',
    `table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1,${ct},nat)`,
    'table=0,priority=0,actions=NORMAL',
    `table=1,priority=100,tcp,ct_state=+trk+new,nw_dst=${vipIp},tp_dst=${SERVICE_PORT},actions=ct(commit,${ct},nat(dst=${serverIp}:${SERVER_PORT})),NORMAL`,
    'table=1,priority=90,ip,ct_state=+trk+est,actions=NORMAL',
    'table=1,priority=90,ip,ct_state=+trk+rel,actions=NORMAL',
    `table=1,priority=80,ip,ct_state=+trk+new,actions=ct(commit,${ct}),NORMAL`,
  ];
  await run('ovs-ofctl', ['add-flows', `unix:${rundir}/${OVS_BRIDGE}.mgmt`, '-'], { env, input: `${flows.join('\n')}\n` });
  // The service address is nobody's: the client sends it to the server's MAC, the bridge translates.
  const [link] = JSON.parse(await run('ip', ['-n', names.server, '-j', 'link', 'show', HOST_IFACE])) as Array<{ address: string }>;
  await run('ip', ['-n', names.client, 'neigh', 'add', vipIp, 'lladdr', link!.address, 'dev', HOST_IFACE, 'nud', 'permanent']);
  await startHttpServer(names.server, SERVER_PORT);
  return {
    nodes: {
      client: { netns: netnsRef(names.client), ifaces: [iface(HOST_IFACE, `${clientIp}/24`)] },
      router: { netns: netnsRef(switchNs), ifaces: [] },
      server: { netns: netnsRef(names.server), ifaces: [iface(HOST_IFACE, `${serverIp}/24`)] },
    },
    service: { ip: vipIp, port: SERVICE_PORT },
    backends: [{ ip: serverIp, port: SERVER_PORT }],
    masqueradeIp: null,
    zone: OVS_ZONE,
    ovsRundir: rundir,
  };
}

export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  const prefix = opts.prefix ?? 'nt';
  const scenario = opts.scenario ?? 'fullnat';
  validatePrefix(prefix);
  validateScenario(scenario);
  const base = opts.subnet ?? labSubnetFor(prefix);
  if (!Number.isInteger(base) || base < 1 || base > 254) throw new LabError('LAB_BAD_OPTIONS', `lab subnet must be 1-254, got ${base}`);
  const n = ((base - 1 + LAB_SCENARIOS.indexOf(scenario)) % 254) + 1;
  const roles = SCENARIO_ROLES[scenario];
  const names = Object.fromEntries(roles.map((r) => [r, labNetnsName(prefix, r, scenario)])) as Record<LabRole, string>;
  const existing = Object.values(names).filter((ns) => existsSync(`/run/netns/${ns}`));
  if (existing.length > 0) {
    throw new LabError('LAB_EXISTS', `namespaces already exist: ${existing.join(', ')} (nettrail lab down${prefix === 'nt' ? '' : ` --prefix ${prefix}`} removes them)`);
  }

  if (!opts.persist) {
    watchProcess();
    liveLabs.set(labKey(prefix, scenario), { prefix, scenario });
  }
  try {
    for (const ns of Object.values(names)) {
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    const setup = scenario === 'two-routers' ? await twoRoutersLab(names, n) : scenario === 'ovs' ? await ovsLab(prefix, names, n) : await routedLab(names, n, scenario);
    return new Lab(prefix, scenario, setup);
  } catch (err) {
    destroyLabSync(prefix, scenario);
    throw err;
  }
}

/** A lab's state as found on the system (works for a lab made by another process). */
export async function labStatus(prefix = 'nt', scenario: LabScenario = 'fullnat'): Promise<LabStatus> {
  validatePrefix(prefix);
  validateScenario(scenario);
  const namespaces = await Promise.all(
    SCENARIO_ROLES[scenario].map(async (role) => {
      const name = labNetnsName(prefix, role, scenario);
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
  const serverNs = namespaces.at(-1)!;
  const up = namespaces.every((ns) => ns.exists) && serverNs.processes.some((p) => p.cmd.includes(HTTP_SERVER_JS));
  const traffic = namespaces[0]!.processes.some((p) => p.cmd.includes(HTTP_CLIENT_JS));
  return { prefix, scenario, up, traffic, namespaces };
}

/** A connection's tuple as seen at one hop. */
export interface LabTuple {
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

const CT_TUPLE = /src=([0-9a-f.:]+),?\s*dst=([0-9a-f.:]+),?\s*sport=(\d+),?\s*dport=(\d+)/g;

/**
 * The original and reply tuples of each TCP entry of `conntrack -L` (netfilter) or `ovs-appctl
 * dpctl/dump-conntrack` (OVS) output; netfilter's with the most time left first (the newest, of
 * entries in one state).
 */
function conntrackEntries(text: string): Array<{ orig: LabTuple; reply: LabTuple }> {
  return text
    .split('\n')
    .filter((line) => /^tcp\b/.test(line) && !line.includes('UNREPLIED'))
    .flatMap((line) => {
      const [orig, reply] = [...line.matchAll(CT_TUPLE)].map((m) => ({ src: m[1]!, sport: Number(m[3]), dst: m[2]!, dport: Number(m[4]) }));
      return orig && reply ? [{ orig, reply, left: Number(/^tcp\s+\d+\s+(\d+)/.exec(line)?.[1] ?? 0) }] : [];
    })
    .sort((a, b) => b.left - a.left);
}

const reversed = (t: LabTuple): LabTuple => ({ src: t.dst, sport: t.dport, dst: t.src, dport: t.sport });
const sameLabTuple = (a: LabTuple, b: LabTuple) => a.src === b.src && a.sport === b.sport && a.dst === b.dst && a.dport === b.dport;

/**
 * One recent connection of a running lab's traffic, as the client sent it and as the server
 * received it (from the NAT devices' conntrack tables, followed hop by hop), or null when none is
 * known (the lab is down, or has had no traffic for a while).
 */
export async function labRecentTuples(prefix = 'nt', scenario: LabScenario = 'fullnat'): Promise<{ client: LabTuple; server: LabTuple } | null> {
  validatePrefix(prefix);
  validateScenario(scenario);
  const status = await labStatus(prefix, scenario);
  if (!status.up) return null;
  const devices = SCENARIO_ROLES[scenario].filter((role) => role === 'edge' || role === 'router').map((role) => labNetnsName(prefix, role, scenario));
  const tables = await Promise.all(
    devices.map((netns) =>
      scenario === 'ovs'
        ? run('ovs-appctl', ['dpctl/dump-conntrack'], { env: { ...process.env, OVS_RUNDIR: labOvsRundir(prefix) } })
        : inNetns(netns, 'conntrack', '-L', '-p', 'tcp'),
    ),
  ).catch(() => null);
  if (!tables) return null;
  const [first, ...rest] = tables.map(conntrackEntries);
  const clientIp = status.namespaces[0]!.interfaces.find((i) => i.name === HOST_IFACE)?.addresses[0]?.split('/')[0];
  // Any entry of the client's whose path is complete will do: each is a real connection of the last minutes.
  for (const entry of (first ?? []).filter((e) => e.orig.src === clientIp)) {
    let after = reversed(entry.reply);
    let complete = true;
    for (const table of rest) {
      const next = table.find((e) => sameLabTuple(e.orig, after));
      if (!next) {
        complete = false;
        break;
      }
      after = reversed(next.reply);
    }
    if (complete) return { client: entry.orig, server: after };
  }
  return null;
}
