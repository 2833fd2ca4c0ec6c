// The NAT translation sources of one nettrail process, kept in step with the
// namespaces capture follows: netfilter conntrack and IPVS in each namespace,
// Open vSwitch's userspace datapath for each ovs-vswitchd named. What cannot
// be tracked is logged once, saying what is missing. Namespaces of other processes that vanish
// before their tables are read (a busy host's containers and sandboxes) are one line per burst.
import { existsSync, statSync } from 'node:fs';
import type { Collector } from '../model/collector.js';
import type { NatTranslation, NetnsRef } from '../model/records.js';
import { ConntrackSource } from './sources/conntrack.js';
import { IpvsSource } from './sources/ipvs.js';
import { DEFAULT_OVS_RUNDIR, OvsSource } from './sources/ovs.js';

/** Present when the kernel has IPVS, loaded or built in. */
const IPVS_MODULE = '/sys/module/ip_vs';

export interface NatSourcesOptions {
  node: string;
  onTranslations(records: NatTranslation[]): void;
  log(message: string): void;
  /** Let conntrack sources turn on nf_conntrack_timestamp (and events when off) in their namespaces; default false. */
  conntrackSysctls?: boolean;
  /** ovs-vswitchd run directories to poll; default /var/run/openvswitch. */
  ovsRundirs?: string[];
  /** Poll period of IPVS and OVS (ms); default 2000. */
  pollMs?: number;
  /** Namespaces of other processes gone before they were read are counted this long, then logged in one line (ms); default 10 000. */
  churnWindowMs?: number;
}

const CHURN_WINDOW_MS = 10_000;

/** A conntrack reader's counters. */
export interface ConntrackCounters {
  /** Event messages received (NEW, UPDATE, DESTROY). */
  events: number;
  /** Dumps of a table completed. */
  dumps: number;
  /** Times a socket's receive buffer overflowed (ENOBUFS): events were lost, and a dump followed each. */
  overflows: number;
}

/** What NAT tracking reads: conntrack summed over the namespaces tracked now and per namespace; IPVS; OVS per run directory. */
export interface NatTrackingStatus {
  conntrack: ConntrackCounters & {
    /** Namespaces whose conntrack table is read. */
    namespaces: number;
    per_namespace: Array<ConntrackCounters & { netns: string }>;
  };
  ipvs: {
    /** Whether the kernel has IPVS (then /proc/net/ip_vs_conn is read in every namespace). */
    available: boolean;
    namespaces: number;
    /** Namespaces whose last read failed, with why. */
    failing: Array<{ netns: string; error: string }>;
  };
  /** Each ovs-vswitchd run directory polled, and why its last poll failed (null: it reads). */
  ovs: Array<{ rundir: string; error: string | null }>;
}

interface Stoppable {
  stop(): Promise<void>;
}

export class NatSources implements Collector {
  readonly name = 'NAT tracking';
  private readonly conntrack = new Map<number, ConntrackSource>();
  private readonly ipvs = new Map<number, IpvsSource>();
  private readonly ovs: OvsSource[];
  private namespaces: NetnsRef[] = [];
  private ipvsLoaded: boolean | null = null;
  private ovsStarted = false;
  private stopped = false;
  /** The update under way; it goes on with the newest namespaces given meanwhile (calls coalesce, none run at once). */
  private following: Promise<void> | null = null;
  private wanted: NetnsRef[] | null = null;
  /** Processes' namespaces (name and inode: a freed inode is soon another's) gone before their sources could read them, since the burst's first. */
  private readonly churned = new Set<string>();
  private churnTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: NatSourcesOptions) {
    this.ovs = (opts.ovsRundirs ?? [DEFAULT_OVS_RUNDIR]).map(
      (rundir) =>
        new OvsSource({
          node: opts.node,
          rundir,
          netnsOf: (pid) => this.netnsOf(pid),
          onTranslations: opts.onTranslations,
          onError: (err) => opts.log(`${err.code}: ${err.message}`),
          pollMs: opts.pollMs,
        }),
    );
  }

  /** Nothing to start ahead: each source starts with the namespace it tracks, OVS's with the first namespaces followed. */
  async start(): Promise<void> {}

  /** Starts the sources of namespaces that appeared, stops those of namespaces that went. */
  follow(namespaces: NetnsRef[]): Promise<void> {
    this.wanted = namespaces;
    this.following ??= (async () => {
      for (let next = this.wanted; next !== null; next = this.wanted) {
        this.wanted = null;
        await this.update(next).catch((err: unknown) => this.opts.log(`NAT sources: following namespaces failed: ${String(err)}`));
      }
    })().finally(() => {
      this.following = null;
    });
    return this.following;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.churnTimer);
    await this.following;
    const sources: Stoppable[] = [...this.conntrack.values(), ...this.ipvs.values(), ...this.ovs];
    this.conntrack.clear();
    this.ipvs.clear();
    await Promise.all(sources.map((s) => s.stop()));
  }

  status(): NatTrackingStatus {
    const conntrack: NatTrackingStatus['conntrack'] = { namespaces: 0, events: 0, dumps: 0, overflows: 0, per_namespace: [] };
    for (const source of this.conntrack.values()) {
      const reader = source.status();
      if (!reader) continue;
      conntrack.namespaces++;
      conntrack.events += reader.events;
      conntrack.dumps += reader.dumps;
      conntrack.overflows += reader.overflows;
      conntrack.per_namespace.push({ netns: source.netns.name, events: reader.events, dumps: reader.dumps, overflows: reader.overflows });
    }
    const ipvsFailing = [...this.ipvs.values()].flatMap((s) => (s.error === null ? [] : [{ netns: s.netns.name, error: s.error }]));
    return {
      conntrack,
      ipvs: { available: this.ipvsLoaded === true, namespaces: this.ipvs.size, failing: ipvsFailing },
      ovs: this.ovs.map((s) => ({ rundir: s.rundir, error: s.error })),
    };
  }

  /** A source's failure, logged; a process's namespace gone before it was read is counted into its burst instead. */
  private sourceError(netns: NetnsRef, code: string, message: string): void {
    if (!(netns.name.startsWith('pid:') && code.endsWith('_NETNS_GONE'))) return this.opts.log(message);
    this.churned.add(`${netns.name} ${netns.ino}`);
    const windowMs = this.opts.churnWindowMs ?? CHURN_WINDOW_MS;
    this.churnTimer ??= setTimeout(() => {
      const n = this.churned.size;
      this.churned.clear();
      this.churnTimer = undefined;
      this.opts.log(`${n} namespace${n === 1 ? '' : 's'} of other processes came and went in the last ${windowMs / 1000} s, gone before NAT tracking could read ${n === 1 ? 'it' : 'them'}`);
    }, windowMs).unref();
  }

  /** The name of the captured namespace process `pid` is in, else `pid:<PID>`. */
  private netnsOf(pid: number): string {
    try {
      const ino = statSync(`/proc/${pid}/ns/net`).ino;
      return this.namespaces.find((n) => n.ino === ino)?.name ?? `pid:${pid}`;
    } catch {
      return `pid:${pid}`;
    }
  }

  private async update(namespaces: NetnsRef[]): Promise<void> {
    if (this.stopped) return;
    this.namespaces = namespaces;
    const wanted = new Map(namespaces.map((netns) => [netns.ino, netns]));
    const gone: Stoppable[] = [];
    for (const sources of [this.conntrack, this.ipvs] as Map<number, Stoppable>[]) {
      for (const [ino, source] of sources) {
        if (wanted.has(ino)) continue;
        sources.delete(ino);
        gone.push(source);
      }
    }
    await Promise.all(gone.map((s) => s.stop()));

    const ipvsLoaded = existsSync(IPVS_MODULE);
    if (ipvsLoaded !== this.ipvsLoaded) {
      this.opts.log(
        ipvsLoaded
          ? 'IPVS: the kernel has IPVS; tracking /proc/net/ip_vs_conn in every namespace'
          : `IPVS_UNAVAILABLE: the kernel has no IPVS (no ${IPVS_MODULE}): IPVS connections are not tracked until ip_vs is loaded`,
      );
      this.ipvsLoaded = ipvsLoaded;
    }
    const starting: Promise<void>[] = [];
    for (const [ino, netns] of wanted) {
      if (!this.conntrack.has(ino)) {
        const source = new ConntrackSource({
          node: this.opts.node,
          netns,
          sysctls: this.opts.conntrackSysctls ?? false,
          onTranslations: this.opts.onTranslations,
          onError: (err) => this.sourceError(netns, err.code, `conntrack in ${netns.name}: ${err.code}: ${err.message}`),
        });
        this.conntrack.set(ino, source);
        starting.push(source.start());
      }
      if (ipvsLoaded && !this.ipvs.has(ino)) {
        const source = new IpvsSource({
          node: this.opts.node,
          netns,
          pollMs: this.opts.pollMs,
          onTranslations: this.opts.onTranslations,
          onError: (err) => this.sourceError(netns, err.code, `${err.code}: ${err.message}`),
        });
        this.ipvs.set(ino, source);
        starting.push(source.start());
      }
    }
    if (!this.ovsStarted) {
      this.ovsStarted = true;
      starting.push(...this.ovs.map((s) => s.start()));
    }
    await Promise.all(starting);
  }
}
