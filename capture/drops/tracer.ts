// The drop tracer: bpf/drop_trace.bpf.c on skb:kfree_skb (one tp_btf program for
// the whole kernel), limited to the network namespaces it is given, its events
// decoded into DropRecords, its counters (including what it suppressed) read back.
import type { TracedDrop, NetnsRef } from '../../model/records.js';
import { DropDecoder } from './decode.js';
import { DROP_COUNTER, DROP_COUNTERS } from './layout.js';
import { DropReasons } from './reasons.js';
import { CAPTURE_EVERYTHING, writeFilter, type CaptureFilter } from '../packets/filter.js';
import { KernelSymbols } from './symbols.js';
import { BpfObject, CaptureError, bpfObjectPath, clockOffsetNs } from '../../native/addon.js';

export interface DropTracerConfig {
  node: string;
  onDrops(drops: TracedDrop[]): void;
  /** Problems that do not stop tracing (a batch that failed to decode, kallsyms unreadable). */
  onWarning(message: string): void;
  /** Drop events per second per CPU; more are counted, not reported. 0: no limit. Default 1000. */
  rateLimit?: number;
  /**
   * Reasons that are no loss of a packet in flight, counted but not reported; default
   * DEFAULT_IGNORED_REASONS. Add NOT_SPECIFIED to leave out plain kfree_skb() calls.
   */
  ignoredReasons?: string[];
  /** Ring buffer bytes (a power of two ≥ page size); default 1 MiB. */
  ringBytes?: number;
  /** Capture's filter, applied to the dropped packets too (default everything). */
  filter?: CaptureFilter;
}

/** What the kernel program counted in the traced namespaces since it started. */
export interface DropCounters {
  /** kfree_skb calls in a traced namespace; each also counts in exactly one of the others. */
  seen: number;
  reported: number;
  /** Left out: a reason in ignoredReasons. */
  ignored: number;
  /** Left out: no IPv4/IPv6 TCP/UDP header in the linear data (ARP, ICMP, IPv6 extension headers, later fragments). */
  unparsed: number;
  /** Left out by the capture filter. */
  filtered: number;
  rateLimited: number;
  /** Lost: the ring buffer was full. */
  ringFull: number;
}

export interface DropTracerStatus extends DropCounters {
  /** Namespaces traced. */
  namespaces: number;
  /** Per-CPU rate limit in events/s (0: none). */
  rateLimit: number;
  ignoredReasons: string[];
  /** Events user space could not decode. */
  malformed: number;
}

const DEFAULT_RATE_LIMIT = 1000;
/**
 * QUEUE_PURGE frees what had reached a queue when its socket or device goes
 * away (e.g. a FIN left unread in a closed socket's receive queue): the packet
 * got where it was going. Every other reason is a packet lost on its way.
 */
export const DEFAULT_IGNORED_REASONS = ['QUEUE_PURGE'];
const u32Key = (value: number) => {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(value);
  return key;
};
const PRESENT = Buffer.of(1);

export class DropTracer {
  readonly #bpf: BpfObject;
  readonly #decoder: DropDecoder;
  /** Names of every namespace traced, kept after it is no longer traced for late events. */
  readonly #netnsNames = new Map<number, string>();
  readonly #traced = new Set<number>();
  readonly #rateLimit: number;
  readonly #ignoredReasons: string[];
  #malformed = 0;
  #filter: CaptureFilter = CAPTURE_EVERYTHING;
  /** The counters as the program left them, once stopped. */
  #finalCounters: DropCounters | null = null;
  /** Batches decode in arrival order. */
  #decoding: Promise<void> = Promise.resolve();

  private constructor(config: DropTracerConfig, bpf: BpfObject, reasons: DropReasons, symbols: KernelSymbols) {
    this.#bpf = bpf;
    this.#rateLimit = config.rateLimit ?? DEFAULT_RATE_LIMIT;
    this.#ignoredReasons = config.ignoredReasons ?? DEFAULT_IGNORED_REASONS;
    this.#decoder = new DropDecoder(reasons, symbols, {
      node: config.node,
      netnsName: (ino) => this.#netnsNames.get(ino) ?? `ino:${ino}`,
    });
  }

  /** Loads and attaches the program; nothing is reported until setNamespaces() names namespaces. */
  static async start(config: DropTracerConfig): Promise<DropTracer> {
    const rateLimit = config.rateLimit ?? DEFAULT_RATE_LIMIT;
    if (!Number.isInteger(rateLimit) || rateLimit < 0 || rateLimit > 1_000_000_000) {
      throw new CaptureError('INVALID_ARGUMENT', `drop rate limit ${rateLimit}: an integer number of events per second per CPU, 0 for none`);
    }
    const reasons = DropReasons.load();
    const symbols = await KernelSymbols.load();
    if (!symbols.available) config.onWarning('drop tracing: /proc/kallsyms shows no addresses (kernel.kptr_restrict?): locations stay hexadecimal');
    const rodata = { rate_limit: Buffer.alloc(4) };
    rodata.rate_limit.writeUInt32LE(rateLimit);
    const bpf = BpfObject.load(bpfObjectPath('drop_trace'), config.ringBytes ? { drop_events: config.ringBytes } : {}, rodata);
    const tracer = new DropTracer(config, bpf, reasons, symbols);
    try {
      tracer.setFilter(config.filter ?? CAPTURE_EVERYTHING);
      for (const name of tracer.#ignoredReasons) {
        const code = reasons.code(name);
        if (code === undefined) config.onWarning(`drop tracing: this kernel has no drop reason ${name} to ignore`);
        else bpf.mapUpdate('ignored_reasons', u32Key(code), PRESENT);
      }
      bpf.attachTracing('trace_drop');
    } catch (err) {
      await bpf.close();
      throw err;
    }
    bpf.consume('drop_events', 'records', (batch) => {
      // Taken now, per batch: the wall clock may have been stepped since the last one.
      const clockOffset = clockOffsetNs();
      tracer.#decoding = tracer.#decoding.then(async () => {
        try {
          const { drops, malformed } = await tracer.#decoder.decode(batch, clockOffset);
          tracer.#malformed += malformed;
          if (drops.length > 0) config.onDrops(drops);
        } catch (err) {
          config.onWarning(`drop tracing: ${(err as Error).message}`);
        }
      });
    });
    return tracer;
  }

  /** Trace drops in exactly these namespaces from now on. */
  setNamespaces(namespaces: NetnsRef[]): void {
    if (this.#finalCounters) return;
    const wanted = new Set(namespaces.map((n) => n.ino));
    for (const netns of namespaces) {
      this.#netnsNames.set(netns.ino, netns.name);
      if (!this.#traced.has(netns.ino)) this.#bpf.mapUpdate('traced_netns', u32Key(netns.ino), PRESENT);
      this.#traced.add(netns.ino);
    }
    for (const ino of this.#traced) {
      if (wanted.has(ino)) continue;
      this.#bpf.mapDelete('traced_netns', u32Key(ino));
      this.#traced.delete(ino);
    }
  }

  /** Report only the drops `filter` selects (capture's --filter), from now on. */
  setFilter(filter: CaptureFilter): void {
    writeFilter(this.#bpf, filter, this.#filter);
    this.#filter = filter;
  }

  /** The kernel program's counters, summed over CPUs. */
  counters(): DropCounters {
    if (this.#finalCounters) return this.#finalCounters;
    const totals = new Array<number>(DROP_COUNTERS).fill(0);
    for (const { key, value } of this.#bpf.mapEntries('drop_counters')) {
      const index = key.readUInt32LE(0);
      for (let at = 0; at + 8 <= value.length; at += 8) totals[index] += Number(value.readBigUInt64LE(at));
    }
    return {
      seen: totals[DROP_COUNTER.seen],
      reported: totals[DROP_COUNTER.reported],
      ignored: totals[DROP_COUNTER.ignored],
      unparsed: totals[DROP_COUNTER.unparsed],
      filtered: totals[DROP_COUNTER.filtered],
      rateLimited: totals[DROP_COUNTER.rateLimited],
      ringFull: totals[DROP_COUNTER.ringFull],
    };
  }

  status(): DropTracerStatus {
    return {
      namespaces: this.#traced.size,
      rateLimit: this.#rateLimit,
      ignoredReasons: this.#ignoredReasons,
      malformed: this.#malformed,
      ...this.counters(),
    };
  }

  /** Every drop reported so far has been decoded and handed to onDrops. */
  async settled(): Promise<void> {
    let last: Promise<void>;
    do {
      last = this.#decoding;
      await last;
    } while (last !== this.#decoding);
  }

  /** Detach, after handing over every drop already in the ring buffer. */
  async stop(): Promise<void> {
    if (this.#finalCounters) return;
    this.#finalCounters = this.counters();
    await this.#bpf.close();
    await this.settled();
  }
}
