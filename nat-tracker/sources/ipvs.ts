// IPVS as a NAT translation source: /proc/net/ip_vs_conn (the connections) and
// /proc/net/ip_vs (the services, for each real server's forwarding method),
// read inside a namespace by the addon (no process) and polled.
//
// Formats, as the kernel's seq_show functions print them (net/netfilter/ipvs/
// ip_vs_conn.c, ip_vs_ctl.c):
//   ip_vs_conn  "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData"
//               IPv4 addresses as 8 hex digits (host order), IPv6 in full (%pI6), ports as 4 hex digits;
//               the destination may be IPv6 under an IPv4 service (tunnelling across families).
//   the FULLNAT variant (Alibaba's LVS patch) adds the local address the real server sees:
//               "Pro FromIP   FPrt ToIP     TPrt LocalIP  LPrt DestIP   DPrt State       Expires"
//   ip_vs       "TCP  0A000001:1F90 rr " then "  -> 0A000002:0050      Masq    1      0          0";
//               IPv6 as [%pI6]:PORT; firewall-mark services as "FWM  00000001 rr ".
// Masq rewrites the destination (DNAT); FULLNAT both ends; Route (DR), Tunnel
// and Local leave the client's tuple as it is, so they are no NAT hop.
import { canonicalAddress } from '../../model/address.js';
import type { FourTuple, NatTranslation, NetnsRef, Proto } from '../../model/records.js';
import { NetnsIoError, readFileInNetns } from '../../native/conntrack.js';
import { classifyNat } from '../classify.js';
import { NatSourceError, nowNs, PolledTable, Poller, type PolledEntry } from './polled.js';

export interface IpvsEndpoint {
  ip: string;
  port: number;
}

/** One line of /proc/net/ip_vs_conn. */
export interface IpvsConnection {
  /** As printed: TCP, UDP, SCTP, IP (a persistence template), ... */
  proto: string;
  client: IpvsEndpoint;
  virtual: IpvsEndpoint;
  /** The FULLNAT variant's local address: the source the real server sees. Null in the mainline format. */
  local: IpvsEndpoint | null;
  dest: IpvsEndpoint;
  state: string;
  expiresSec: number;
}

/** Forwarding methods as /proc/net/ip_vs names them; FullNat is the FULLNAT patch's. */
export type IpvsForwarding = 'Masq' | 'Local' | 'Tunnel' | 'Route' | 'FullNat';
const FORWARDINGS: readonly string[] = ['Masq', 'Local', 'Tunnel', 'Route', 'FullNat'];

/** One virtual service of /proc/net/ip_vs with its real servers. */
export interface IpvsService {
  proto: string;
  /** Null for a firewall-mark service. */
  virtual: IpvsEndpoint | null;
  fwmark: number | null;
  dests: Array<{ dest: IpvsEndpoint; forwarding: IpvsForwarding }>;
}

const parseError = (file: string, line: string, why: string) =>
  new NatSourceError('IPVS_PARSE', `${file}: ${why} in line ${JSON.stringify(line.slice(0, 160))}`);

/** `0A000001` (IPv4, host order) or a full or compressed IPv6 address. */
function address(text: string): string | null {
  if (/^[0-9A-Fa-f]{8}$/.test(text)) {
    const n = parseInt(text, 16);
    return [24, 16, 8, 0].map((shift) => (n >>> shift) & 0xff).join('.');
  }
  return text.includes(':') ? canonicalAddress(text) : null;
}

function hexPort(text: string): number | null {
  return /^[0-9A-Fa-f]{4}$/.test(text) ? parseInt(text, 16) : null;
}

/** Parses /proc/net/ip_vs_conn, in the mainline or the FULLNAT format (told apart by the header). */
export function parseIpvsConnections(text: string): IpvsConnection[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) return [];
  const header = lines[0]!;
  if (!header.startsWith('Pro ')) throw parseError('ip_vs_conn', header, 'no "Pro FromIP ..." header');
  const fullnat = /\bLocalIP\b/.test(header);
  return lines.slice(1).map((line) => {
    const f = line.trim().split(/\s+/);
    const endpoint = (at: number, what: string): IpvsEndpoint => {
      const ip = address(f[at] ?? '');
      const port = hexPort(f[at + 1] ?? '');
      if (ip === null || port === null) throw parseError('ip_vs_conn', line, `bad ${what} address or port`);
      return { ip, port };
    };
    const rest = fullnat ? 9 : 7;
    if (f.length < rest + 2) throw parseError('ip_vs_conn', line, `${f.length} fields`);
    const expiresSec = Number(f[rest + 1]);
    if (!Number.isInteger(expiresSec)) throw parseError('ip_vs_conn', line, 'bad Expires');
    return {
      proto: f[0]!,
      client: endpoint(1, 'client'),
      virtual: endpoint(3, 'virtual'),
      local: fullnat ? endpoint(5, 'local') : null,
      dest: endpoint(fullnat ? 7 : 5, 'destination'),
      state: f[rest]!,
      expiresSec,
    };
  });
}

/** `0A000001:1F90` or `[fd00:...:0001]:1F90`. */
function serviceEndpoint(text: string): IpvsEndpoint | null {
  const m = /^(?:\[([^\]]+)\]|([0-9A-Fa-f]{8})):([0-9A-Fa-f]{4})$/.exec(text);
  if (!m) return null;
  const ip = address(m[1] ?? m[2]!);
  return ip === null ? null : { ip, port: parseInt(m[3]!, 16) };
}

/** Parses /proc/net/ip_vs: services and, under each, its real servers with their forwarding method. */
export function parseIpvsServices(text: string): IpvsService[] {
  const services: IpvsService[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (line.startsWith('  -> ')) {
      if (f[1] === 'RemoteAddress:Port') continue; // the column header
      const dest = serviceEndpoint(f[1] ?? '');
      const forwarding = f[2] ?? '';
      const service = services.at(-1);
      if (!dest || !FORWARDINGS.includes(forwarding) || !service) throw parseError('ip_vs', line, 'bad real server');
      service.dests.push({ dest, forwarding: forwarding as IpvsForwarding });
    } else if (f[0] === 'FWM') {
      const fwmark = /^[0-9A-Fa-f]{8}$/.test(f[1] ?? '') ? parseInt(f[1]!, 16) : NaN;
      if (Number.isNaN(fwmark)) throw parseError('ip_vs', line, 'bad firewall mark');
      services.push({ proto: 'FWM', virtual: null, fwmark, dests: [] });
    } else if (/^[A-Z]+$/.test(f[0] ?? '') && f.length >= 2 && !line.startsWith('IP Virtual Server')) {
      const virtual = serviceEndpoint(f[1]!);
      if (!virtual) throw parseError('ip_vs', line, 'bad virtual address');
      services.push({ proto: f[0]!, virtual, fwmark: null, dests: [] });
    }
  }
  return services;
}

const sameEndpoint = (a: IpvsEndpoint, b: IpvsEndpoint) => a.ip === b.ip && a.port === b.port;

/**
 * The forwarding method of a connection's real server: under its own virtual
 * service, else (firewall-mark services match packets, not addresses) under
 * any service whose servers agree on it; null when that is ambiguous or unknown.
 */
export function forwardingOf(conn: IpvsConnection, services: IpvsService[]): IpvsForwarding | null {
  const byVirtual = services.find((s) => s.proto === conn.proto && s.virtual !== null && sameEndpoint(s.virtual, conn.virtual));
  const own = byVirtual?.dests.find((d) => sameEndpoint(d.dest, conn.dest));
  if (own) return own.forwarding;
  const methods = new Set(services.flatMap((s) => s.dests.filter((d) => sameEndpoint(d.dest, conn.dest)).map((d) => d.forwarding)));
  return methods.size === 1 ? [...methods][0]! : null;
}

/** The translation a connection entry stands for, or null when IPVS leaves the client's tuple unchanged (or it is no TCP/UDP connection). */
export function ipvsTranslation(conn: IpvsConnection, services: IpvsService[]): { proto: Proto; orig: FourTuple; reply: FourTuple } | null {
  const proto = conn.proto === 'TCP' ? 'tcp' : conn.proto === 'UDP' ? 'udp' : null;
  if (proto === null || conn.client.port === 0) return null; // other protocols, and persistence templates (no client port)
  const orig = { src: conn.client.ip, sport: conn.client.port, dst: conn.virtual.ip, dport: conn.virtual.port };
  let replyTo: IpvsEndpoint;
  if (conn.local !== null && !(conn.local.port === 0 && /^(0\.0\.0\.0|::)$/.test(conn.local.ip))) replyTo = conn.local;
  else if (forwardingOf(conn, services) === 'Masq') replyTo = conn.client;
  else return null;
  const reply = { src: conn.dest.ip, sport: conn.dest.port, dst: replyTo.ip, dport: replyTo.port };
  return classifyNat(orig, reply) ? { proto, orig, reply } : null;
}

// ---- the source ------------------------------------------------------------

/** /proc/net as the reading thread sees it: /proc/net is /proc/self/net, the main thread's namespace's. */
const PROC_NET = '/proc/thread-self/net';
export const IPVS_CONN_FILE = `${PROC_NET}/ip_vs_conn`;
export const IPVS_SERVICES_FILE = `${PROC_NET}/ip_vs`;

export interface IpvsSourceOptions {
  node: string;
  netns: NetnsRef;
  onTranslations(records: NatTranslation[]): void;
  onError(err: NatSourceError): void;
  /** Default 2 s: IPVS keeps a finished TCP connection for 2 min (TIME_WAIT), so none is missed. */
  pollMs?: number;
  /** How often a lasting entry's last seen is written; default 30 s. */
  refreshMs?: number;
  /** The files read inside the namespace; default its /proc/net/ip_vs_conn and /proc/net/ip_vs. */
  connFile?: string;
  servicesFile?: string;
}

export class IpvsSource {
  get netns(): NetnsRef {
    return this.opts.netns;
  }

  private readonly table: PolledTable;
  private readonly poller: Poller;
  private readonly connFile: string;
  private readonly servicesFile: string;

  constructor(private readonly opts: IpvsSourceOptions) {
    this.connFile = opts.connFile ?? IPVS_CONN_FILE;
    this.servicesFile = opts.servicesFile ?? IPVS_SERVICES_FILE;
    this.table = new PolledTable({ via: 'ipvs', node: opts.node, refreshNs: BigInt(opts.refreshMs ?? 30_000) * 1_000_000n });
    this.poller = new Poller({ pollMs: opts.pollMs ?? 2000, poll: () => this.poll(), onError: opts.onError, failureCode: 'IPVS_READ_FAILED' });
  }

  /** Reads the table once (failures go to onError), then polls. */
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

  /** Reads a file inside the namespace: /proc/thread-self/net is the reading thread's namespace's. */
  private async read(file: string): Promise<string> {
    const { netns } = this.opts;
    try {
      return (await readFileInNetns(netns.path, file)).toString('utf8');
    } catch (err) {
      const code = err instanceof NetnsIoError ? err.code : null;
      if (code === 'NETNS_NOT_FOUND') throw new NatSourceError('IPVS_NETNS_GONE', `IPVS in ${netns.name}: namespace ${netns.path} is gone`);
      if (code === 'FILE_NOT_FOUND') {
        throw new NatSourceError('IPVS_UNAVAILABLE', `IPVS in ${netns.name}: no ${file}: the kernel has no IPVS (ip_vs) loaded; IPVS connections are not tracked`);
      }
      throw new NatSourceError('IPVS_READ_FAILED', `IPVS in ${netns.name}: reading ${file} failed: ${(err as Error).message}`);
    }
  }

  private async poll(): Promise<void> {
    const now = nowNs();
    const connections = parseIpvsConnections(await this.read(this.connFile));
    const services = connections.some((c) => c.local === null) ? parseIpvsServices(await this.read(this.servicesFile)) : [];
    const entries: PolledEntry[] = [];
    for (const conn of connections) {
      const translation = ipvsTranslation(conn, services);
      if (translation) entries.push({ zone: 0, ...translation });
    }
    const records = this.table.update(entries, this.opts.netns.name, now);
    if (records.length > 0) this.opts.onTranslations(records);
  }
}
