// Drop scenarios on a lab (lab.ts): rules and programs that make the kernel drop
// packets of chosen ports, and a probe that sends them, for tests, the benchmark
// and `nettrail lab up`, and a way to run a command in a lab namespace. Everything
// lives in the lab's namespaces and goes with them.
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BpfObject, bpfObjectPath } from '../native/addon.js';
import type { NetnsRef } from '../model/records.js';
import type { ProbeArgs, ProbeResult } from './drop-probe.js';
import type { Lab } from './lab.js';

const PROBE_JS = fileURLToPath(new URL('./drop-probe.js', import.meta.url));
const COMMAND_TIMEOUT_MS = 20_000;

/** Runs `command` in `netns`; resolves with what it printed. */
export function inNetns(netns: string, command: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', netns, command, ...args], { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${netns}: ${command} ${args.join(' ').slice(0, 200)}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** One probe (drop-probe.ts) from inside `netns`. */
export async function probeFrom(netns: string, args: ProbeArgs): Promise<ProbeResult> {
  return JSON.parse(await inNetns(netns, process.execPath, PROBE_JS, JSON.stringify(args))) as ProbeResult;
}

/** The router's FORWARD chain drops `proto` packets to the server's `port`. */
export async function dropForwarded(lab: Lab, proto: 'tcp' | 'udp', port: number): Promise<void> {
  await inNetns(lab.nodes.router.netns.name, 'iptables', '-I', 'FORWARD', '-p', proto, '-d', lab.server.ip, '--dport', String(port), '-j', 'DROP');
}

/** The server's INPUT chain drops `proto` packets to its `port`. */
export async function dropInput(lab: Lab, proto: 'tcp' | 'udp', port: number): Promise<void> {
  await inNetns(lab.nodes.server.netns.name, 'iptables', '-I', 'INPUT', '-p', proto, '--dport', String(port), '-j', 'DROP');
}

/** `netns`'s OUTPUT chain drops the `proto` packets it sends to `port` (the sender gets EPERM). */
export async function dropOutput(netns: NetnsRef, proto: 'tcp' | 'udp', port: number): Promise<void> {
  await inNetns(netns.name, 'iptables', '-I', 'OUTPUT', '-p', proto, '--dport', String(port), '-j', 'DROP');
}

/**
 * A tc program (bpf/lab_drop.bpf.c) on the ingress of the server's device drops
 * IPv4 TCP/UDP packets to `port`. It stays attached until close() or until this process exits.
 */
export function dropOnServerIngress(lab: Lab, port: number): { close(): Promise<void> } {
  const rodata = { drop_port: Buffer.alloc(2) };
  rodata.drop_port.writeUInt16LE(port);
  const bpf = BpfObject.load(bpfObjectPath('lab_drop'), {}, rodata);
  try {
    bpf.attach('drop_port_packets', lab.nodes.server.netns.path, lab.nodes.server.ifaces[0].name, 'tc-ingress');
  } catch (err) {
    void bpf.close();
    throw err;
  }
  return { close: () => bpf.close() };
}

/** The port `nettrail lab up` blocks on the router, and probes every few seconds. */
export const DEMO_BLOCKED_PORT = 81;

/**
 * The demo's drop: the router's FORWARD chain drops TCP to the server's port
 * DEMO_BLOCKED_PORT, and a process in the client namespace tries to connect
 * there every `everyMs` (for an hour). The process dies with the lab.
 */
export async function startDropDemo(lab: Lab, everyMs: number): Promise<void> {
  await dropForwarded(lab, 'tcp', DEMO_BLOCKED_PORT);
  const args: ProbeArgs = { proto: 'tcp', host: lab.server.ip, port: DEMO_BLOCKED_PORT, timeoutMs: 1000, everyMs, forMs: 60 * 60 * 1000 };
  const proc = spawn('ip', ['netns', 'exec', lab.nodes.client.netns.name, process.execPath, PROBE_JS, JSON.stringify(args)], { detached: true, stdio: 'ignore' });
  await new Promise<void>((resolve, reject) => {
    proc.once('spawn', resolve);
    proc.once('error', (err) => reject(new Error(`cannot start the drop demo's probe: ${err.message}`)));
  });
  proc.unref();
}
