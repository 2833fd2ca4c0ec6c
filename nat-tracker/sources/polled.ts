// NAT tables that are read whole on every poll (IPVS, Open vSwitch): which
// entries appeared, lasted or went, as NatTranslation records with first and
// last seen; and the poll loop with its error reporting.
import type { EpochNs, FourTuple, NatTranslation, NatVia, Proto } from '../../model/records.js';

export type NatSourceErrorCode =
  | 'IPVS_UNAVAILABLE' // no /proc/net/ip_vs_conn: the kernel has no IPVS loaded
  | 'IPVS_NETNS_GONE'
  | 'IPVS_READ_FAILED'
  | 'IPVS_PARSE'
  | 'OVS_NOT_RUNNING' // no ovs-vswitchd pidfile, or its control socket does not answer
  | 'OVS_APPCTL_FAILED' // an appctl command, sent over the daemon's control socket, failed
  | 'OVS_PARSE';

export class NatSourceError extends Error {
  constructor(
    readonly code: NatSourceErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'NatSourceError';
  }
}

/** One entry of a polled table. */
export interface PolledEntry {
  zone: number;
  proto: Proto;
  orig: FourTuple;
  reply: FourTuple;
}

const tupleKey = (t: FourTuple) => `${t.src}:${t.sport}>${t.dst}:${t.dport}`;

/**
 * An entry is reported when it first appears, again every `refreshNs` while it
 * lasts (so last seen moves on without a row per poll), and once more when it
 * is gone, with the last poll that saw it as its last seen.
 */
export class PolledTable {
  private readonly entries = new Map<string, { record: NatTranslation; reported: EpochNs }>();

  constructor(private readonly opts: { via: NatVia; node: string; refreshNs: bigint }) {}

  /** The table as read at `now`; returns the records to store. */
  update(entries: PolledEntry[], netns: string, now: EpochNs): NatTranslation[] {
    const out: NatTranslation[] = [];
    const present = new Set<string>();
    const copy = (r: NatTranslation): NatTranslation => ({ ...r, orig: { ...r.orig }, reply: { ...r.reply } });
    for (const e of entries) {
      const key = `${e.zone}/${e.proto}/${tupleKey(e.orig)}/${tupleKey(e.reply)}`;
      present.add(key);
      const tracked = this.entries.get(key);
      if (!tracked) {
        // Neither IPVS nor the userspace datapath gives entries an id.
        const record: NatTranslation = { via: this.opts.via, node: this.opts.node, netns, ...e, firstSeen: now, lastSeen: now, entryId: 0 };
        this.entries.set(key, { record, reported: now });
        out.push(copy(record));
        continue;
      }
      tracked.record.lastSeen = now;
      if (now - tracked.reported >= this.opts.refreshNs) {
        tracked.reported = now;
        out.push(copy(tracked.record));
      }
    }
    for (const [key, tracked] of this.entries) {
      if (present.has(key)) continue;
      if (tracked.record.lastSeen !== tracked.reported) out.push(copy(tracked.record));
      this.entries.delete(key);
    }
    return out;
  }
}

export interface PollerOptions {
  pollMs: number;
  /** One poll; what it throws is reported (anything but a NatSourceError with `failureCode`). */
  poll(): Promise<void>;
  failureCode: NatSourceErrorCode;
  onError(err: NatSourceError): void;
}

/**
 * Runs a poll every pollMs, never two at once. A failure is reported once
 * until a poll succeeds again, so a missing daemon is one message, not one
 * per poll.
 */
export class Poller {
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<void> | null = null;
  private lastError: string | null = null;

  constructor(private readonly opts: PollerOptions) {}

  /** Polls once, then keeps polling. */
  async start(): Promise<void> {
    if (this.timer) return;
    this.timer = setInterval(() => void this.pollOnce(), this.opts.pollMs).unref();
    await this.pollOnce();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.polling;
  }

  /** Why the last poll failed (`CODE: message`), or null when it succeeded. */
  get error(): string | null {
    return this.lastError;
  }

  /** Resolves when a poll (this one, or the one under way) is done. */
  private pollOnce(): Promise<void> {
    this.polling ??= this.opts
      .poll()
      .then(
        () => {
          this.lastError = null;
        },
        (err: unknown) => {
          const error = err instanceof NatSourceError ? err : new NatSourceError(this.opts.failureCode, String(err));
          const signature = `${error.code}: ${error.message}`;
          if (signature !== this.lastError) this.opts.onError(error);
          this.lastError = signature;
        },
      )
      .finally(() => {
        this.polling = null;
      });
    return this.polling;
  }
}

export const nowNs = (): EpochNs => BigInt(Date.now()) * 1_000_000n;
