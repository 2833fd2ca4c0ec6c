// Netfilter conntrack as a NAT translation source: the addon's ctnetlink reader in a
// namespace (native/conntrack.ts) delivers the table's events and dumps as records, made
// here into NatTranslation records, so translations are recorded before the kernel
// expires them. No process runs for it: the socket is the addon's.
import { getSystemErrorName } from 'node:util';
import { formatIPv4, formatIPv6 } from '../../model/address.js';
import { fieldReader } from '../../model/c-struct.js';
import { PROTO_NUMBER } from '../../model/protocol.js';
import type { EpochNs, FourTuple, NatTranslation, NetnsRef, Proto } from '../../model/records.js';
import { ConntrackReader, NetnsIoError, readFileInNetns, writeFileInNetns, type ConntrackReaderStatus } from '../../native/conntrack.js';
import { classifyNat } from '../classify.js';
import { CT_FAMILY, CT_KIND, ctRecordLayout } from './conntrack-layout.js';

export type ConntrackErrorCode =
  | 'CONNTRACK_NETNS_GONE' // the namespace path no longer opens
  | 'CONNTRACK_OPEN_FAILED' // the ctnetlink socket could not be opened or subscribed to events
  | 'CONNTRACK_DUMP_FAILED'
  | 'CONNTRACK_EVENTS_LOST' // the socket's buffer overflowed (ENOBUFS); a dump follows
  | 'CONNTRACK_EVENTS_OFF' // net.netfilter.nf_conntrack_events is 0: only the periodic dumps see entries
  | 'CONNTRACK_SYSCTL_FAILED';

export class ConntrackError extends Error {
  constructor(
    readonly code: ConntrackErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ConntrackError';
  }
}

// ---- the reader's records ----------------------------------------------------

/** One conntrack entry as the reader delivers it. */
export interface ConntrackEntry {
  /** The event, or null for an entry of a dump. */
  event: 'new' | 'update' | 'destroy' | null;
  /** IPPROTO_* of the tuples. */
  proto: number;
  orig: FourTuple;
  reply: FourTuple;
  zone: number;
  id: number;
  /** The kernel's IPS_* bits (CT_STATUS names those of NAT). */
  status: number;
  /** The kernel's creation and destruction times, epoch ns (with nf_conntrack_timestamp; start in dumps and events, stop in DESTROY events). */
  startNs: bigint | null;
  stopNs: bigint | null;
}

export type ConntrackRecord =
  | { kind: 'entry'; entry: ConntrackEntry }
  /** A dump was asked for: entries neither it nor later events show are gone. */
  | { kind: 'dump-start' }
  /** The dump ended: errno 0, or why it failed. */
  | { kind: 'dump-done'; errno: number }
  /** The socket's buffer overflowed: events were lost; a dump follows. */
  | { kind: 'events-lost' };

/** A kernel timestamp, or null when absent (0) or past what an epoch-ns time can be (signed 64 bits, as stored). */
const kernelTime = (ns: bigint): bigint | null => (ns === 0n || ns >= 1n << 63n ? null : ns);

const EVENTS: Partial<Record<number, ConntrackEntry['event']>> = { [CT_KIND.new]: 'new', [CT_KIND.update]: 'update', [CT_KIND.destroy]: 'destroy', [CT_KIND.dumped]: null };

/** Decodes a batch of the reader's records (struct nt_ct_record). */
export function decodeConntrackRecords(records: Buffer, count: number): ConntrackRecord[] {
  const size = ctRecordLayout.size;
  if (records.length !== count * size) throw new Error(`conntrack batch of ${records.length} bytes for ${count} records of ${size}: the addon and conntrack-layout.ts disagree`);
  const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
  const bytes = new Uint8Array(records.buffer, records.byteOffset, records.byteLength);
  const fields = ctRecordLayout.fields;
  const decoded: ConntrackRecord[] = [];
  for (let at = 0; at < records.length; at += size) {
    const { u8, u16, u32, u64 } = fieldReader(ctRecordLayout, view, at);
    const kind = u8('kind');
    if (kind === CT_KIND.dumpStart) decoded.push({ kind: 'dump-start' });
    if (kind === CT_KIND.dumpDone) decoded.push({ kind: 'dump-done', errno: u32('error') });
    if (kind === CT_KIND.eventsLost) decoded.push({ kind: 'events-lost' });
    const event = EVENTS[kind]; // undefined for the markers
    const family = u8('family');
    if (event === undefined || (family !== CT_FAMILY.ipv4 && family !== CT_FAMILY.ipv6)) continue;
    const address = family === CT_FAMILY.ipv4 ? formatIPv4 : formatIPv6;
    const tuple = (direction: 'orig' | 'reply'): FourTuple => ({
      src: address(bytes, at + fields[`${direction}_src`].offset),
      sport: u16(`${direction}_sport`),
      dst: address(bytes, at + fields[`${direction}_dst`].offset),
      dport: u16(`${direction}_dport`),
    });
    decoded.push({
      kind: 'entry',
      entry: {
        event,
        proto: u8('proto'),
        orig: tuple('orig'),
        reply: tuple('reply'),
        zone: u16('zone'),
        id: u32('id'),
        status: u32('status'),
        startNs: kernelTime(u64('start_ns')),
        stopNs: kernelTime(u64('stop_ns')),
      },
    });
  }
  return decoded;
}

// ---- the source --------------------------------------------------------------

export interface ConntrackSourceOptions {
  node: string;
  netns: NetnsRef;
  onTranslations(records: NatTranslation[]): void;
  onError(err: ConntrackError): void;
  /**
   * How often entries still alive get their last seen refreshed; default 30 s. With events on,
   * from what the events said (no dump: a dump walks the host's whole conntrack hash table,
   * milliseconds each, in every namespace); with events off, by a dump.
   */
  refreshMs?: number;
  /** With events on, a full re-dump this often anyway (entries that vanished unseen are forgotten); default 15 min. */
  resyncMs?: number;
  /** The socket's receive buffer (see ConntrackReaderOptions); default 8 MiB. */
  receiveBufferBytes?: number;
  /**
   * Whether the source may turn on, in its namespace, what it needs of the
   * kernel: net.netfilter.nf_conntrack_timestamp (exact creation and
   * destruction times) and nf_conntrack_events when 0. Default false: it only
   * reads them, and reports events being off.
   */
  sysctls?: boolean;
}

interface Tracked {
  record: NatTranslation;
  /** The dump generation in which the entry was last observed. */
  generation: number;
}

/** Per namespace: /proc/sys/net is the opener's namespace's. */
const SYSCTL_DIR = '/proc/sys/net/netfilter';
const PROTOS: ReadonlyMap<number, Proto> = new Map(Object.entries(PROTO_NUMBER).map(([name, number]) => [number, name as Proto]));

function nowNs(): EpochNs {
  return BigInt(Date.now()) * 1_000_000n;
}

function tupleKey(t: FourTuple): string {
  return `${t.src}:${t.sport}>${t.dst}:${t.dport}`;
}

function copyRecord(r: NatTranslation): NatTranslation {
  return { ...r, orig: { ...r.orig }, reply: { ...r.reply } };
}

const errnoName = (errno: number) => {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
};

export class ConntrackSource {
  get netns(): NetnsRef {
    return this.opts.netns;
  }

  private readonly refreshMs: number;
  private readonly resyncMs: number;
  /** Whether the kernel sends conntrack events in this namespace (net.netfilter.nf_conntrack_events). */
  private eventsOn = true;
  private refreshTimer: NodeJS.Timeout | null = null;
  private readonly entries = new Map<string, Tracked>();
  private readonly pending = new Map<string, NatTranslation>();
  private generation = 0;
  private reader: ConntrackReader | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;
  /** Called when the next dump ends (or the reader does). */
  private dumpWaiters: Array<() => void> = [];
  /** Events were lost since the last complete dump, and that was said. */
  private lossReported = false;

  constructor(private readonly opts: ConntrackSourceOptions) {
    this.refreshMs = opts.refreshMs ?? 30_000;
    this.resyncMs = opts.resyncMs ?? 15 * 60_000;
  }

  /** Subscribes to events and dumps the table; resolves when the dump is reported. Failures go to onError. */
  async start(): Promise<void> {
    if (this.reader) return;
    const dumped = new Promise<void>((resolve) => this.dumpWaiters.push(resolve));
    try {
      this.reader = ConntrackReader.open(this.opts.netns.path, (records, count) => this.onRecords(records, count), {
        receiveBufferBytes: this.opts.receiveBufferBytes,
      });
    } catch (err) {
      this.dumpWaiters = [];
      this.opts.onError(this.openError(err));
      return;
    }
    await this.checkSysctls();
    await dumped;
    if (!this.reader) return;
    if (this.eventsOn) {
      this.refreshTimer = setInterval(() => this.refreshAlive(), this.refreshMs).unref();
      this.resyncTimer = setInterval(() => this.reader?.dump(), this.resyncMs).unref();
    } else {
      this.resyncTimer = setInterval(() => this.reader?.dump(), this.refreshMs).unref();
    }
  }

  async stop(): Promise<void> {
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.resyncTimer = null;
    this.refreshTimer = null;
    const reader = this.reader;
    this.reader = null;
    await reader?.stop();
    for (const resolve of this.dumpWaiters.splice(0)) resolve();
    this.flush();
  }

  /** The reader's counters; null when it is not open. */
  status(): ConntrackReaderStatus | null {
    return this.reader?.status() ?? null;
  }

  private openError(err: unknown): ConntrackError {
    const { name, path } = this.opts.netns;
    if (err instanceof NetnsIoError && err.code === 'NETNS_NOT_FOUND') return new ConntrackError('CONNTRACK_NETNS_GONE', `namespace ${path} is gone`);
    return new ConntrackError('CONNTRACK_OPEN_FAILED', `opening a ctnetlink socket in ${name} failed: ${(err as Error).message}`);
  }

  /**
   * Reads the sysctls the source depends on and, where it may, turns on what
   * it needs; otherwise reports events being off (then only dumps see entries).
   */
  private async checkSysctls(): Promise<void> {
    const { path, name } = this.opts.netns;
    const read = async (sysctl: string): Promise<string | null> => {
      try {
        return (await readFileInNetns(path, `${SYSCTL_DIR}/${sysctl}`)).toString('utf8').trim();
      } catch {
        return null;
      }
    };
    const [events, timestamp] = await Promise.all([read('nf_conntrack_events'), read('nf_conntrack_timestamp')]);
    if (!this.opts.sysctls) {
      if (events === '0') {
        this.eventsOn = false;
        this.opts.onError(new ConntrackError('CONNTRACK_EVENTS_OFF', `net.netfilter.nf_conntrack_events is 0 in ${name}: translations are seen only by the dump every ${this.refreshMs / 1000} s, short connections are missed (--conntrack-sysctls lets nettrail turn events on)`));
      }
      return;
    }
    const settings = [...(timestamp === '0' ? ['nf_conntrack_timestamp'] : []), ...(events === '0' ? ['nf_conntrack_events'] : [])];
    for (const sysctl of settings) {
      try {
        await writeFileInNetns(path, `${SYSCTL_DIR}/${sysctl}`, '1\n');
      } catch (err) {
        if (sysctl === 'nf_conntrack_events') this.eventsOn = false;
        this.opts.onError(new ConntrackError('CONNTRACK_SYSCTL_FAILED', `setting net.netfilter.${sysctl}=1 in ${name} failed: ${(err as Error).message}`));
      }
    }
  }

  /** Entries no event ended are alive now: their last seen moves on (what a dump would tell, without one). */
  private refreshAlive(): void {
    const now = nowNs();
    for (const [key, tracked] of this.entries) {
      if (now > tracked.record.lastSeen) tracked.record.lastSeen = now;
      this.pending.set(key, copyRecord(tracked.record));
    }
    this.flush();
  }

  private onRecords(records: Buffer, count: number): void {
    const now = nowNs();
    for (const record of decodeConntrackRecords(records, count)) {
      if (record.kind === 'entry') this.observe(record.entry, now);
      else if (record.kind === 'dump-start') this.generation++;
      else if (record.kind === 'dump-done') this.onDumpDone(record.errno);
      else this.onEventsLost();
    }
    this.flush();
  }

  /** A complete dump forgets the entries that vanished unseen (events lost, or turned off). */
  private onDumpDone(errno: number): void {
    if (errno === 0) {
      for (const [key, t] of this.entries) if (t.generation < this.generation) this.entries.delete(key);
      this.lossReported = false;
    } else {
      this.opts.onError(new ConntrackError('CONNTRACK_DUMP_FAILED', `dumping the conntrack table in ${this.opts.netns.name} failed: ${errnoName(errno)}`));
    }
    for (const resolve of this.dumpWaiters.splice(0)) resolve();
  }

  private onEventsLost(): void {
    if (this.lossReported) return;
    this.lossReported = true;
    const overflows = this.reader?.status().overflows;
    this.opts.onError(new ConntrackError('CONNTRACK_EVENTS_LOST', `conntrack events lost in ${this.opts.netns.name} (ENOBUFS: the socket's buffer overflowed, ${overflows} times so far); re-dumping`));
  }

  private observe(entry: ConntrackEntry, now: EpochNs): void {
    const proto = PROTOS.get(entry.proto);
    if (proto === undefined || classifyNat(entry.orig, entry.reply) === null) return;
    const key = `${entry.zone}/${entry.id}/${proto}/${tupleKey(entry.orig)}`;
    let tracked = this.entries.get(key);
    if (!tracked) {
      tracked = {
        generation: this.generation,
        record: {
          via: 'iptables',
          node: this.opts.node,
          netns: this.opts.netns.name,
          zone: entry.zone,
          proto,
          orig: entry.orig,
          reply: entry.reply,
          firstSeen: entry.startNs ?? now,
          lastSeen: entry.stopNs ?? now,
          entryId: entry.id,
        },
      };
      this.entries.set(key, tracked);
    }
    tracked.generation = this.generation;
    const seen = entry.stopNs ?? now;
    if (seen > tracked.record.lastSeen) tracked.record.lastSeen = seen;
    this.pending.set(key, copyRecord(tracked.record));
    if (entry.event === 'destroy') this.entries.delete(key);
  }

  private flush(): void {
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    this.pending.clear();
    this.opts.onTranslations(batch);
  }
}
