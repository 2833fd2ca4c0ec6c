// Open vSwitch as a NAT translation source: the conntrack of its userspace
// (netdev) datapaths, `dpctl/dump-conntrack DP` asked of ovs-vswitchd over its
// control socket (what ovs-appctl does, without a process), polled. Entries of
// the kernel (system) datapath are netfilter conntrack entries with the zone OVS
// gave them, so the conntrack source records those, in the namespace the
// datapath's ports are in.
//
// One entry per line, as ct_dpif_format_entry prints it (lib/ct-dpif.c):
//   tcp,orig=(src=10.0.0.1,dst=10.0.0.9,sport=41000,dport=8080),reply=(src=10.0.0.2,dst=10.0.0.1,sport=80,dport=41000),zone=7,protoinfo=(state=ESTABLISHED)
// `zone=` only when not 0; `id=` only with -m (the userspace datapath's ids are 0).
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { canonicalAddress } from '../../model/address.js';
import type { FourTuple, NatTranslation } from '../../model/records.js';
import { classifyNat } from '../classify.js';
import { NatSourceError, nowNs, PolledTable, Poller, type PolledEntry } from './polled.js';

export interface OvsConntrackEntry {
  /** As printed: tcp, udp, icmp, sctp, ... */
  proto: string;
  orig: FourTuple;
  reply: FourTuple;
  zone: number;
}

/** Splits at the commas outside parentheses. */
function fields(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out;
}

function keyValues(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const field of fields(text)) {
    const eq = field.indexOf('=');
    if (eq > 0) map.set(field.slice(0, eq), field.slice(eq + 1));
  }
  return map;
}

const parseError = (line: string, why: string) => new NatSourceError('OVS_PARSE', `dpctl/dump-conntrack: ${why} in ${JSON.stringify(line.slice(0, 200))}`);

function tuple(line: string, value: string | undefined, what: string): FourTuple {
  if (!value?.startsWith('(') || !value.endsWith(')')) throw parseError(line, `no ${what} tuple`);
  const kv = keyValues(value.slice(1, -1));
  const src = canonicalAddress(kv.get('src') ?? '');
  const dst = canonicalAddress(kv.get('dst') ?? '');
  if (src === null || dst === null) throw parseError(line, `bad ${what} address`);
  // Port-less protocols (icmp: id, type, code) get ports 0.
  const port = (name: string): number => {
    const text = kv.get(name);
    if (text === undefined) return 0;
    if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw parseError(line, `bad ${what} ${name}`);
    return Number(text);
  };
  return { src, sport: port('sport'), dst, dport: port('dport') };
}

/** Parses `dpctl/dump-conntrack` output. */
export function parseOvsConntrack(text: string): OvsConntrackEntry[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [proto = '', ...rest] = fields(line.trim());
      const kv = keyValues(rest.join(','));
      const zoneText = kv.get('zone') ?? '0';
      if (!/^\d{1,5}$/.test(zoneText) || Number(zoneText) > 65535) throw parseError(line, 'bad zone');
      return { proto, orig: tuple(line, kv.get('orig'), 'orig'), reply: tuple(line, kv.get('reply'), 'reply'), zone: Number(zoneText) };
    });
}

// ---- the source ------------------------------------------------------------

export const DEFAULT_OVS_RUNDIR = '/var/run/openvswitch';
const VSWITCHD = 'ovs-vswitchd';
const UNIXCTL_TIMEOUT_MS = 10_000;

/**
 * One command of a daemon's unixctl server, as ovs-appctl sends it: a JSON-RPC 1.0 request
 * over the unix socket `socketPath`; the reply's `result` is the command's text output,
 * `error` what went wrong. Rejects with an Error saying why.
 */
function unixctl(socketPath: string, method: string, params: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let text = '';
    let settled = false;
    const settle = (err: Error | null, result?: string) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (err) reject(err);
      else resolve(result!);
    };
    socket.setEncoding('utf8');
    socket.setTimeout(UNIXCTL_TIMEOUT_MS, () => settle(new Error(`no reply within ${UNIXCTL_TIMEOUT_MS / 1000} s`)));
    socket.on('connect', () => socket.write(JSON.stringify({ method, params, id: 0 })));
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (!text.trimEnd().endsWith('}')) return; // the reply is one JSON object
      let reply: { result?: unknown; error?: unknown };
      try {
        reply = JSON.parse(text) as typeof reply;
      } catch {
        return; // not whole yet
      }
      if (typeof reply.result === 'string') settle(null, reply.result);
      else settle(new Error(typeof reply.error === 'string' ? reply.error.trim() : `unexpected reply ${text.slice(0, 200)}`));
    });
    socket.on('error', (err) => settle(err));
    socket.on('close', () => settle(new Error('the connection closed before the reply')));
  });
}

export interface OvsSourceOptions {
  node: string;
  /** ovs-vswitchd's run directory (OVS_RUNDIR): its pidfile and control socket are there. */
  rundir: string;
  /** The name of the network namespace process `pid` is in: the records' netns. */
  netnsOf(pid: number): string;
  onTranslations(records: NatTranslation[]): void;
  onError(err: NatSourceError): void;
  /** Default 2 s: the userspace datapath keeps a closed TCP connection 30 s. */
  pollMs?: number;
  /** How often a lasting entry's last seen is written; default 30 s. */
  refreshMs?: number;
}

export class OvsSource {
  get rundir(): string {
    return this.opts.rundir;
  }

  private readonly table: PolledTable;
  private readonly poller: Poller;

  constructor(private readonly opts: OvsSourceOptions) {
    this.table = new PolledTable({ via: 'ovs', node: opts.node, refreshNs: BigInt(opts.refreshMs ?? 30_000) * 1_000_000n });
    this.poller = new Poller({ pollMs: opts.pollMs ?? 2000, poll: () => this.poll(), onError: opts.onError, failureCode: 'OVS_APPCTL_FAILED' });
  }

  /** Reads the tables once (failures go to onError), then polls. */
  start(): Promise<void> {
    return this.poller.start();
  }

  stop(): Promise<void> {
    return this.poller.stop();
  }

  /** Why its last poll failed (`CODE: message`), or null while it reads. */
  get error(): string | null {
    return this.poller.error;
  }

  /** The running ovs-vswitchd's pid, from its pidfile (its control socket is named by it). */
  private daemonPid(): number {
    const pidfile = path.join(this.opts.rundir, `${VSWITCHD}.pid`);
    const notRunning = (why: string) =>
      new NatSourceError('OVS_NOT_RUNNING', `Open vSwitch: ${why}; OVS conntrack NAT is not tracked (--ovs-rundir names where ovs-vswitchd runs)`);
    if (!existsSync(pidfile)) throw notRunning(`no ovs-vswitchd (no ${pidfile})`);
    const pid = Number(readFileSync(pidfile, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0 || !existsSync(`/proc/${pid}`)) throw notRunning(`ovs-vswitchd of ${pidfile} is not running`);
    return pid;
  }

  private async appctl(pid: number, method: string, ...params: string[]): Promise<string> {
    try {
      return await unixctl(path.join(this.opts.rundir, `${VSWITCHD}.${pid}.ctl`), method, params);
    } catch (err) {
      this.daemonPid(); // a daemon that went meanwhile is OVS_NOT_RUNNING, not a failed command
      throw new NatSourceError('OVS_APPCTL_FAILED', `Open vSwitch in ${this.opts.rundir}: ${[method, ...params].join(' ')} failed: ${(err as Error).message}`);
    }
  }

  private async poll(): Promise<void> {
    const pid = this.daemonPid();
    const now = nowNs();
    const datapaths = (await this.appctl(pid, 'dpctl/dump-dps')).split('\n').map((l) => l.trim()).filter((dp) => dp.startsWith('netdev@'));
    const entries: PolledEntry[] = [];
    for (const dp of datapaths) {
      for (const e of parseOvsConntrack(await this.appctl(pid, 'dpctl/dump-conntrack', dp))) {
        if ((e.proto === 'tcp' || e.proto === 'udp') && classifyNat(e.orig, e.reply)) {
          entries.push({ zone: e.zone, proto: e.proto, orig: e.orig, reply: e.reply });
        }
      }
    }
    const records = this.table.update(entries, this.opts.netnsOf(pid), now);
    if (records.length > 0) this.opts.onTranslations(records);
  }
}
