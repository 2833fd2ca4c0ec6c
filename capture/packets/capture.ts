// Packet capture: attach policy (which namespaces, interfaces and hooks), following
// them as they come and go, the in-kernel filter, decoding ring-buffer batches,
// per-point counters and rates.
import type { PacketColumns, PointNames } from '../../model/packet-columns.js';
import type { NetnsRef } from '../../model/records.js';
import { readPacketColumns } from '../../native/packet-columns-layout.js';
import { CAPTURE_EVERYTHING, writeFilter, type CaptureFilter } from './filter.js';
import { CAPTURE_MAX, DIRECTION, HOOK, POINT_COUNTERS, pointKeyLayout, pointStatsLayout, type PointCounter } from './layout.js';
import { BpfObject, CaptureError, bpfObjectPath, possibleCpus, type AttachHook } from '../../native/addon.js';
import { NetnsWatcher, type NetIface } from '../netns.js';

/**
 * XDP at ingress, besides TC: `off` (default), `native` (driver mode), `generic`
 * (skb mode), `auto` (native where the driver has it, else generic).
 */
export type XdpMode = 'off' | 'native' | 'generic' | 'auto';
export const XDP_MODES: readonly XdpMode[] = ['off', 'native', 'generic', 'auto'];

export interface CaptureConfig {
  node: string;
  /** Namespace names (`root`, /run/netns names, `pid:PID`); 'all' follows every namespace. */
  netns: string[] | 'all';
  /** Interface names to restrict to; null for all. */
  ifaces: string[] | null;
  /** Each batch of packets as it comes; the columns are valid during the call only. */
  onPackets(packets: PacketColumns): void;
  /**
   * Asked after each batch: a promise it returns holds off reading the ring buffer until it settles
   * (backpressure: meanwhile the kernel counts what overflows as lost, per point).
   */
  backpressure?(): Promise<void> | undefined;
  /** Problems that do not stop capture elsewhere (one interface failing to attach, a namespace vanishing). */
  onWarning(message: string): void;
  /** Ring-buffer bytes per possible CPU (default 4 MiB); the ring is this times the CPUs, rounded up to a power of two. */
  ringBytesPerCpu?: number;
  /**
   * Wake the ring's consumer only once this many bytes wait in the ring (it drains the ring every RING_POLL_MS
   * meanwhile); 0: at every record it has not caught up with (default DEFAULT_WAKEUP_BYTES, at most a quarter of the ring).
   */
  wakeupBytes?: number;
  /** Bytes kept per packet from the link-layer header on, payload included; the L2-L4 headers are always kept whole. 0 (default): headers only. */
  snaplen?: number;
  xdp?: XdpMode;
  /** What the kernel programs capture; default everything. */
  filter?: CaptureFilter;
}

/** Kernel counters of one hook (or their sum): see struct nt_point_stats. */
export type HookCounters = Record<PointCounter, number>;

export interface PointStatus extends HookCounters {
  node: string;
  netns: string;
  iface: string;
  ifindex: number;
  hooks: AttachHook[];
  /** Packets decoded in user space. */
  packets: number;
  /** Since an earlier read of status() (see status()); absent until there is one. */
  events_per_s?: number;
  lost_per_s?: number;
  by_hook: Array<{ hook: AttachHook } & HookCounters>;
}

export interface CaptureStatus extends HookCounters {
  points: PointStatus[];
  /** Packets decoded in user space. */
  packets: number;
  /** Kernel-counted totals include points detached since and packets whose point found the counter table full. */
  events_per_s?: number;
  lost_per_s?: number;
  /** Ring-buffer records user space could not decode (added to `malformed`). */
  undecodable: number;
  /** Later IP fragments whose first fragment was not seen: kept with ports 0. */
  unattributed_fragments: number;
  ring_bytes: number;
  snaplen: number;
  xdp: XdpMode;
  filter: CaptureFilter;
  skipped: Array<{ netns: string; iface: string; reason: string }>;
}

interface Attachment {
  netns: NetnsRef;
  iface: NetIface;
  links: number[];
  hooks: AttachHook[];
  packets: number;
}

const PROGRAMS: Record<AttachHook, string> = { 'tc-ingress': 'tc_ingress', 'tc-egress': 'tc_egress', xdp: 'xdp_ingress' };
const XDP_FLAGS_SKB_MODE = 1 << 1;
const XDP_FLAGS_DRV_MODE = 1 << 2;
/** Link types whose frames start with an Ethernet header at TC and XDP. */
const ETHERNET_LINK_TYPES = new Set(['ether', 'loopback']);
const DEFAULT_RING_BYTES_PER_CPU = 4 << 20;
/** Measured in bench/serve.ts against waking at every record (docs/capture.md); at most a quarter of the ring. */
export const DEFAULT_WAKEUP_BYTES = 256 * 1024;
/** How often the consumer drains the ring when the kernel wakes it only above wakeupBytes. */
const RING_POLL_MS = 20;
const MAX_RING_BYTES = 1 << 30;
/**
 * Rates are measured between reads of status() at least RATE_MIN_MS apart and at most RATE_MAX_MS: no
 * timer reads every point's kernel counters while no one asks (at hundreds of points that was most of
 * serve's idle CPU).
 */
const RATE_MIN_MS = 1000;
const RATE_MAX_MS = 60_000;

const pointKey = (netnsIno: number, ifindex: number) => `${netnsIno}/${ifindex}`;
const zeroCounters = (): HookCounters => Object.fromEntries(POINT_COUNTERS.map((c) => [c, 0])) as HookCounters;
const hookOf = (hook: number, direction: number): AttachHook | null =>
  hook === HOOK.xdp ? 'xdp' : hook !== HOOK.tc ? null : direction === DIRECTION.ingress ? 'tc-ingress' : direction === DIRECTION.egress ? 'tc-egress' : null;

/** The ring size for `perCpu` bytes per possible CPU: a power of two, at least one page. */
export function ringBytesFor(perCpu: number, cpus: number): number {
  let bytes = 4096;
  while (bytes < perCpu * cpus && bytes < MAX_RING_BYTES) bytes *= 2;
  return bytes;
}

export class PacketCapture {
  readonly #config: CaptureConfig;
  readonly #bpf: BpfObject;
  readonly #names: PointNames;
  readonly #ringBytes: number;
  readonly #snaplen: number;
  readonly #xdp: XdpMode;
  #filter: CaptureFilter;
  readonly #attachments = new Map<string, Attachment>();
  /** Names of every namespace and interface seen, kept after they vanish for late events. */
  readonly #netnsNames = new Map<number, string>();
  readonly #ifaceNames = new Map<string, string>();
  readonly #pointKeys = new Map<number, Map<number, string>>();
  #attachmentsVersion = 0;
  /**
   * Interfaces waiting to be attached, in the order they appeared. Attaching takes the kernel tens of
   * milliseconds (tcx waits for an RCU grace period under rtnl_lock); one is attached per turn of the
   * event loop so that the HTTP API and the ring keep being served while hundreds are attached.
   */
  readonly #toAttach = new Map<string, { netns: NetnsRef; iface: NetIface }>();
  #attaching: Promise<void> | null = null;
  readonly #skipped = new Map<string, { netns: string; iface: string; reason: string }>();
  /** What follows namespaces and interfaces for capture; null once frozen or stopped. */
  #watcher: NetnsWatcher | null = null;
  #frozen = false;
  #undecodable = 0;
  #unattributedFragments = 0;
  #packets = 0;
  /** The kernel counters per point (and '' for the total) at the read of status() rates are measured from. */
  #sample: { at: number; events: Map<string, [number, number]> } | null = null;
  /** Events and lost per second per point (and '' for the total) between the last two samples; empty until measured. */
  #rates = new Map<string, { events: number; lost: number }>();
  /** Kernel counters of points detached since, let go from point_stats and summed here (for the totals). */
  readonly #retired: HookCounters = zeroCounters();
  /** The kernel counters as they were when capture stopped. */
  #finalCounters: Map<string, Map<AttachHook, HookCounters>> | null = null;

  private constructor(config: CaptureConfig, bpf: BpfObject, ringBytes: number, snaplen: number, xdp: XdpMode) {
    this.#config = config;
    this.#bpf = bpf;
    this.#ringBytes = ringBytes;
    this.#snaplen = snaplen;
    this.#xdp = xdp;
    this.#filter = CAPTURE_EVERYTHING;
    this.#names = {
      netnsName: (ino) => this.#netnsNames.get(ino) ?? `ino:${ino}`,
      ifaceName: (ino, ifindex) => this.#ifaceNames.get(pointKey(ino, ifindex)) ?? `if${ifindex}`,
    };
  }

  static async start(config: CaptureConfig): Promise<PacketCapture> {
    const snaplen = config.snaplen ?? 0;
    if (!Number.isInteger(snaplen) || snaplen < 0 || snaplen > CAPTURE_MAX) {
      throw new CaptureError('INVALID_ARGUMENT', `snaplen ${snaplen}: from 0 (the L2-L4 headers only) to ${CAPTURE_MAX} bytes`);
    }
    const xdp = config.xdp ?? 'off';
    if (!XDP_MODES.includes(xdp)) throw new CaptureError('INVALID_ARGUMENT', `xdp mode ${xdp}: one of ${XDP_MODES.join(', ')}`);
    const perCpu = config.ringBytesPerCpu ?? DEFAULT_RING_BYTES_PER_CPU;
    if (!Number.isInteger(perCpu) || perCpu < 4096) throw new CaptureError('INVALID_ARGUMENT', `ring bytes per CPU ${perCpu}: an integer ≥ 4096`);
    const ringBytes = ringBytesFor(perCpu, possibleCpus());
    const wakeupBytes = config.wakeupBytes ?? Math.min(DEFAULT_WAKEUP_BYTES, ringBytes / 4);
    if (!Number.isInteger(wakeupBytes) || wakeupBytes < 0 || wakeupBytes >= ringBytes) {
      throw new CaptureError('INVALID_ARGUMENT', `wakeup bytes ${wakeupBytes}: from 0 to less than the ring's ${ringBytes} bytes`);
    }
    const u32 = (value: number) => {
      const bytes = Buffer.alloc(4);
      bytes.writeUInt32LE(value);
      return bytes;
    };
    const bpf = BpfObject.load(bpfObjectPath('capture'), { packet_events: ringBytes }, { snaplen: u32(snaplen), wakeup_bytes: u32(wakeupBytes) });
    const capture = new PacketCapture(config, bpf, ringBytes, snaplen, xdp);
    try {
      capture.setFilter(config.filter ?? CAPTURE_EVERYTHING);
      bpf.consume('packet_events', 'packet-columns', (batch) => capture.#onBatch(batch), { pollMs: wakeupBytes > 0 ? RING_POLL_MS : 0 });
      capture.#watcher = await NetnsWatcher.start(config.netns, {
        netnsAppeared: (netns) => capture.#netnsNames.set(netns.ino, netns.name),
        ifaceAppeared: (netns, iface) => capture.#follow(netns, iface),
        ifaceChanged: (netns, iface) => capture.#follow(netns, iface),
        ifaceVanished: (netns, iface) => capture.#forget(netns, iface),
        onWarning: config.onWarning,
      });
      await capture.attached();
    } catch (err) {
      await bpf.close();
      throw err;
    }
    return capture;
  }

  /** Resolves once every interface known so far is attached (or has failed to attach, with a warning). */
  async attached(): Promise<void> {
    while (this.#attaching) await this.#attaching;
  }

  /** Resolves once every packet captured so far has been handed to onPackets. */
  flush(): Promise<void> {
    return this.#bpf.flushRing('packet_events');
  }

  /** Replace the in-kernel filter; takes effect for the next packet at every point. */
  setFilter(filter: CaptureFilter): void {
    writeFilter(this.#bpf, filter, this.#filter);
    this.#filter = structuredClone(filter);
  }

  #onBatch(batch: Buffer): void | Promise<void> {
    const { columns, malformed, unattributedFragments } = readPacketColumns(batch, this.#config.node, this.#names);
    this.#undecodable += malformed;
    this.#unattributedFragments += unattributedFragments;
    this.#packets += columns.count;
    this.#countPerPoint(columns);
    if (columns.count > 0) this.#config.onPackets(columns);
    return this.#config.backpressure?.();
  }

  /** pointKey(), made once per point: keys are looked up for every run of packets. */
  #pointKeyOf(netnsIno: number, ifindex: number): string {
    let byIfindex = this.#pointKeys.get(netnsIno);
    if (byIfindex === undefined) this.#pointKeys.set(netnsIno, (byIfindex = new Map()));
    let key = byIfindex.get(ifindex);
    if (key === undefined) byIfindex.set(ifindex, (key = pointKey(netnsIno, ifindex)));
    return key;
  }

  /** Packets per attached point: a batch holds runs of packets of one point, counted run by run. */
  #countPerPoint(c: PacketColumns): void {
    for (let i = 0; i < c.count; ) {
      const netnsIno = c.netnsIno[i];
      const ifindex = c.ifindex[i];
      let end = i + 1;
      while (end < c.count && c.netnsIno[end] === netnsIno && c.ifindex[end] === ifindex) end++;
      const attachment = this.#attachments.get(this.#pointKeyOf(netnsIno, ifindex));
      if (attachment) attachment.packets += end - i;
      i = end;
    }
  }

  /**
   * Stop following namespaces and interfaces: their watchers close, the attachments there are stay
   * (their links stay open and their events keep coming), rates are still sampled. For a process about
   * to give up the privileges that opening sockets in other namespaces and attaching need (`serve --user`).
   */
  async freeze(): Promise<void> {
    const watcher = this.#watcher;
    this.#watcher = null;
    this.#frozen = true;
    await watcher?.close();
    await this.attached();
  }

  /** Attach to an interface that appeared (or changed: renamed), or let go of one --iface leaves out now. */
  #follow(netns: NetnsRef, iface: NetIface): void {
    const key = pointKey(netns.ino, iface.ifindex);
    this.#ifaceNames.set(key, iface.name);
    if (this.#config.ifaces && !this.#config.ifaces.includes(iface.name)) return this.#forget(netns, iface);
    const attachment = this.#attachments.get(key);
    if (attachment) attachment.iface = iface;
    if (attachment || this.#skipped.has(key)) return;
    if (!ETHERNET_LINK_TYPES.has(iface.linkType)) {
      this.#skipped.set(key, { netns: netns.name, iface: iface.name, reason: `link type ${iface.linkType} has no Ethernet header` });
      return;
    }
    this.#toAttach.set(key, { netns, iface });
    this.#attaching ??= this.#attachQueued();
  }

  async #attachQueued(): Promise<void> {
    for (const [key, { netns, iface }] of this.#toAttach) {
      this.#toAttach.delete(key);
      if (this.#frozen) break; // nothing new gets attached once frozen
      this.#attach(netns, iface, key);
      await new Promise(setImmediate);
    }
    this.#toAttach.clear();
    this.#attaching = null;
  }

  /** Detach from an interface that vanished (its name stays known for late events). */
  #forget(netns: NetnsRef, iface: NetIface): void {
    const key = pointKey(netns.ino, iface.ifindex);
    this.#skipped.delete(key);
    this.#toAttach.delete(key);
    const attachment = this.#attachments.get(key);
    if (!attachment) return;
    for (const link of attachment.links) this.#bpf.detach(link);
    this.#attachments.delete(key);
    this.#attachmentsVersion++;
    this.#retire(netns.ino, iface.ifindex);
  }

  #attach(netns: NetnsRef, iface: NetIface, key: string): void {
    const attachment: Attachment = { netns, iface, links: [], hooks: [], packets: 0 };
    const hooks: AttachHook[] = this.#xdp === 'off' ? ['tc-ingress', 'tc-egress'] : ['xdp', 'tc-ingress', 'tc-egress'];
    for (const hook of hooks) {
      try {
        attachment.links.push(this.#attachHook(netns, iface, hook));
        attachment.hooks.push(hook);
      } catch (err) {
        if (err instanceof CaptureError && (err.code === 'NETNS_NOT_FOUND' || err.code === 'IFACE_NOT_FOUND')) {
          // Gone between listing and attaching: let go of the hooks attached so far, or their links would leak.
          for (const link of attachment.links) this.#bpf.detach(link);
          return;
        }
        this.#config.onWarning(`attach ${hook} on ${netns.name}/${iface.name}: ${(err as Error).message}`);
      }
    }
    if (attachment.links.length > 0) {
      this.#attachments.set(key, attachment);
      this.#attachmentsVersion++;
    }
  }

  #attachHook(netns: NetnsRef, iface: NetIface, hook: AttachHook): number {
    const attach = (flags = 0) => this.#bpf.attach(PROGRAMS[hook], netns.path, iface.name, hook, flags).link;
    if (hook !== 'xdp') return attach();
    if (this.#xdp === 'generic') return attach(XDP_FLAGS_SKB_MODE);
    if (this.#xdp === 'native') return attach(XDP_FLAGS_DRV_MODE);
    try {
      return attach(XDP_FLAGS_DRV_MODE);
    } catch (err) {
      if (err instanceof CaptureError && err.code === 'ATTACH_FAILED') return attach(XDP_FLAGS_SKB_MODE);
      throw err;
    }
  }

  /**
   * Moves a detached point's kernel counters out of point_stats into #retired: the table
   * (16384 entries) would otherwise fill up as namespaces and interfaces come and go, and a
   * new point whose namespace inode and ifindex were reused would start with old counts.
   */
  #retire(netnsIno: number, ifindex: number): void {
    const K = pointKeyLayout.fields;
    const slot = (pointStatsLayout.size + 7) & ~7;
    for (const { key, value } of this.#bpf.mapEntries('point_stats')) {
      if (key.readUInt32LE(K.netns_ino.offset) !== netnsIno || key.readUInt32LE(K.ifindex.offset) !== ifindex) continue;
      for (let cpu = 0; cpu + pointStatsLayout.size <= value.length; cpu += slot) {
        for (const name of POINT_COUNTERS) this.#retired[name] += Number(value.readBigUInt64LE(cpu + pointStatsLayout.fields[name].offset));
      }
      this.#bpf.mapDelete('point_stats', Buffer.from(key));
    }
  }

  /** Kernel counters per point and hook, summed over CPUs, plus the table-full remainder under key `*` and detached points' under `retired`. */
  #kernelCounters(): Map<string, Map<AttachHook, HookCounters>> {
    if (this.#finalCounters) return this.#finalCounters;
    const out = new Map<string, Map<AttachHook, HookCounters>>();
    const K = pointKeyLayout.fields;
    const slot = (pointStatsLayout.size + 7) & ~7;
    const add = (point: string, hook: AttachHook, value: Buffer) => {
      const byHook = out.get(point) ?? new Map<AttachHook, HookCounters>();
      const counters = byHook.get(hook) ?? zeroCounters();
      for (let cpu = 0; cpu + pointStatsLayout.size <= value.length; cpu += slot) {
        for (const name of POINT_COUNTERS) counters[name] += Number(value.readBigUInt64LE(cpu + pointStatsLayout.fields[name].offset));
      }
      byHook.set(hook, counters);
      out.set(point, byHook);
    };
    for (const { key, value } of this.#bpf.mapEntries('point_stats')) {
      const hook = hookOf(key.readUInt8(K.hook.offset), key.readUInt8(K.direction.offset));
      if (hook) add(pointKey(key.readUInt32LE(K.netns_ino.offset), key.readUInt32LE(K.ifindex.offset)), hook, value);
    }
    for (const { value } of this.#bpf.mapEntries('unattributed_stats')) add('*', 'tc-ingress', value);
    out.set('retired', new Map([['tc-ingress', { ...this.#retired }]]));
    return out;
  }

  /** Measures the rates from the counters of this read of status() and the sample (see RATE_MIN_MS). */
  #measureRates(counters: Map<string, Map<AttachHook, HookCounters>>): void {
    const now = performance.now();
    const previous = this.#sample;
    if (previous !== null && now - previous.at < RATE_MIN_MS) return;
    const current = new Map<string, [number, number]>();
    let total: [number, number] = [0, 0];
    for (const [point, byHook] of counters) {
      const sum = sumCounters([...byHook.values()]);
      current.set(point, [sum.events, sum.lost]);
      total = [total[0] + sum.events, total[1] + sum.lost];
    }
    current.set('', total);
    this.#rates = new Map();
    if (previous !== null && now - previous.at <= RATE_MAX_MS) {
      const seconds = (now - previous.at) / 1000;
      for (const [point, [events, lost]] of current) {
        const [events0, lost0] = previous.events.get(point) ?? [0, 0];
        this.#rates.set(point, { events: (events - events0) / seconds, lost: (lost - lost0) / seconds });
      }
    }
    this.#sample = { at: now, events: current };
  }

  /** Changes whenever an interface is attached or detached: namespaces() may then differ. */
  get attachmentsVersion(): number {
    return this.#attachmentsVersion;
  }

  /** The namespaces with at least one attached interface. */
  namespaces(): NetnsRef[] {
    const unique = new Map<number, NetnsRef>();
    for (const { netns } of this.#attachments.values()) unique.set(netns.ino, netns);
    return [...unique.values()];
  }

  /** Rates (events_per_s, lost_per_s) are over the time since an earlier read, 1 to 60 s before; absent at the first read. */
  status(): CaptureStatus {
    const counters = this.#kernelCounters();
    if (this.#finalCounters === null) this.#measureRates(counters);
    const points: PointStatus[] = [];
    for (const [key, a] of this.#attachments) {
      const byHook = counters.get(key) ?? new Map<AttachHook, HookCounters>();
      const rate = this.#rates.get(key);
      points.push({
        node: this.#config.node,
        netns: a.netns.name,
        iface: a.iface.name,
        ifindex: a.iface.ifindex,
        hooks: [...a.hooks],
        packets: a.packets,
        ...sumCounters([...byHook.values()]),
        ...(rate && { events_per_s: rate.events, lost_per_s: rate.lost }),
        by_hook: [...byHook].map(([hook, c]) => ({ hook, ...c })),
      });
    }
    const totals = sumCounters([...counters.values()].flatMap((byHook) => [...byHook.values()]));
    const rate = this.#rates.get('');
    return {
      points,
      packets: this.#packets,
      ...totals,
      malformed: totals.malformed + this.#undecodable,
      ...(rate && { events_per_s: rate.events, lost_per_s: rate.lost }),
      undecodable: this.#undecodable,
      unattributed_fragments: this.#unattributedFragments,
      ring_bytes: this.#ringBytes,
      snaplen: this.#snaplen,
      xdp: this.#xdp,
      filter: structuredClone(this.#filter),
      skipped: [...this.#skipped.values()],
    };
  }

  /** Detach everything after delivering every packet already captured; status() then stays as it ended. */
  async stop(): Promise<void> {
    await this.freeze();
    if (this.#finalCounters) return;
    for (const attachment of this.#attachments.values()) for (const link of attachment.links) this.#bpf.detach(link);
    this.#finalCounters = this.#kernelCounters();
    await this.#bpf.close();
  }
}

function sumCounters(all: HookCounters[]): HookCounters {
  const sum = zeroCounters();
  for (const counters of all) for (const name of POINT_COUNTERS) sum[name] += counters[name];
  return sum;
}
