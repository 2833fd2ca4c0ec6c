// Batched, bounded, retrying writer of records into the flow-log store.

import { setTimeout as sleep } from 'node:timers/promises';
import type { FlowRecord, NatTranslation, PacketRecord } from './records.js';
import {
  encodeFlow, encodeNat, encodePacket, FLOW_INSERT_COLUMNS, NAT_INSERT_COLUMNS, PACKET_INSERT_COLUMNS,
} from './codec.js';
import { FlowLogError } from './errors.js';
import { TABLE_NAMES, type TableName } from './schema.js';
import type { FlowLogStore } from './store.js';

export interface WriterOptions {
  /** A table's buffer is written once it holds this many rows (default 50 000); also the most rows per insert. */
  batchRows?: number;
  /** ... or this long after its first buffered row (default 1000 ms). */
  flushIntervalMs?: number;
  /** Rows a table may buffer; more are dropped and counted (default 500 000). */
  maxBufferedRows?: number;
  /** First delay before retrying a failed insert; doubles up to retryMaxMs (defaults 200 ms, 10 s). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** How long flush() and close() keep retrying before they give up (default 30 s). */
  drainTimeoutMs?: number;
}

export interface TableStats {
  /** Rows taken into the buffer. */
  accepted: number;
  /** Rows stored. */
  written: number;
  /** Rows refused because the buffer was full. */
  dropped: number;
  /** Inserts that failed (their rows stayed buffered). */
  failures: number;
  /** Rows accepted and not yet written, including an insert in progress. */
  bufferedRows: number;
}

export type WriterStats = Record<TableName, TableStats>;

const INSERT_COLUMNS: Record<TableName, readonly string[]> = {
  packets: PACKET_INSERT_COLUMNS,
  flows: FLOW_INSERT_COLUMNS,
  nat_translations: NAT_INSERT_COLUMNS,
};

interface TableQueue {
  name: TableName;
  /** Encoded rows waiting, oldest first. */
  lines: string[];
  /** Rows of the insert in progress. */
  inFlight: number;
  /** The insert in progress; inserts of one table run one at a time, in order. */
  writing: Promise<void> | null;
  /** A background write loop is running. */
  pumping: boolean;
  /** The next background write (interval or retry). */
  timer: NodeJS.Timeout | null;
  /** The last background insert failed; the next one waits for the retry timer. */
  retrying: boolean;
  retryDelayMs: number;
  stats: Omit<TableStats, 'bufferedRows'>;
}

export class FlowLogWriter {
  private readonly batchRows: number;
  private readonly flushIntervalMs: number;
  private readonly maxBufferedRows: number;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly drainTimeoutMs: number;
  private readonly queues: Record<TableName, TableQueue>;
  private lastFlowVersion = 0n;
  private closed = false;

  constructor(
    private readonly store: FlowLogStore,
    options: WriterOptions = {},
  ) {
    this.batchRows = options.batchRows ?? 50_000;
    this.flushIntervalMs = options.flushIntervalMs ?? 1000;
    this.maxBufferedRows = options.maxBufferedRows ?? 500_000;
    this.retryInitialMs = options.retryInitialMs ?? 200;
    this.retryMaxMs = options.retryMaxMs ?? 10_000;
    this.drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    const queue = (name: TableName): TableQueue => ({
      name, lines: [], inFlight: 0, writing: null, pumping: false, timer: null, retrying: false,
      retryDelayMs: this.retryInitialMs,
      stats: { accepted: 0, written: 0, dropped: 0, failures: 0 },
    });
    this.queues = { packets: queue('packets'), flows: queue('flows'), nat_translations: queue('nat_translations') };
  }

  /** Returns how many records were accepted; the rest were dropped (buffer full). */
  addPackets(records: readonly PacketRecord[]): number {
    return this.add(this.queues.packets, records, encodePacket);
  }

  /** Each call records a newer state of the flows it names; queries return the newest. */
  addFlows(records: readonly FlowRecord[]): number {
    return this.add(this.queues.flows, records, (flow) => encodeFlow(flow, this.nextFlowVersion()));
  }

  addNat(records: readonly NatTranslation[]): number {
    return this.add(this.queues.nat_translations, records, encodeNat);
  }

  stats(): WriterStats {
    const of = (q: TableQueue): TableStats => ({ ...q.stats, bufferedRows: q.lines.length + q.inFlight });
    return { packets: of(this.queues.packets), flows: of(this.queues.flows), nat_translations: of(this.queues.nat_translations) };
  }

  /** Writes every row accepted so far, retrying failed inserts for up to drainTimeoutMs. */
  async flush(): Promise<void> {
    const deadline = Date.now() + this.drainTimeoutMs;
    await Promise.all(TABLE_NAMES.map((name) => this.drain(this.queues[name], deadline)));
  }

  /** Stops accepting records and writes everything accepted (see flush()). */
  async close(): Promise<void> {
    this.closed = true;
    for (const q of Object.values(this.queues)) {
      if (q.timer) clearTimeout(q.timer);
      q.timer = null;
    }
    await this.flush();
  }

  private add<R>(q: TableQueue, records: readonly R[], encode: (record: R) => string): number {
    if (this.closed) throw new FlowLogError('WRITER_CLOSED', 'the flow-log writer is closed');
    const room = Math.max(0, this.maxBufferedRows - q.lines.length - q.inFlight);
    const taken = records.length <= room ? records : records.slice(0, room);
    // Encode everything before buffering anything, so an invalid record leaves the buffer as it was.
    const lines = taken.map(encode);
    for (const line of lines) q.lines.push(line);
    q.stats.accepted += lines.length;
    q.stats.dropped += records.length - lines.length;
    if (q.lines.length >= this.batchRows && !q.retrying) {
      void this.pump(q);
    } else if (q.lines.length > 0 && q.timer === null) {
      this.schedule(q, this.flushIntervalMs);
    }
    return lines.length;
  }

  private nextFlowVersion(): bigint {
    const now = BigInt(Date.now()) * 1_000_000n;
    this.lastFlowVersion = now > this.lastFlowVersion ? now : this.lastFlowVersion + 1n;
    return this.lastFlowVersion;
  }

  private schedule(q: TableQueue, delayMs: number): void {
    if (this.closed) return;
    if (q.timer) clearTimeout(q.timer);
    q.timer = setTimeout(() => {
      q.timer = null;
      void this.pump(q);
    }, delayMs);
    q.timer.unref();
  }

  /** Background write loop: writes until the buffer is empty; on failure retries later with backoff. */
  private async pump(q: TableQueue): Promise<void> {
    if (q.pumping) return;
    q.pumping = true;
    try {
      while (q.lines.length > 0) await this.writeBatch(q);
    } catch {
      q.retrying = true;
      this.schedule(q, q.retryDelayMs);
      q.retryDelayMs = Math.min(q.retryDelayMs * 2, this.retryMaxMs);
    } finally {
      q.pumping = false;
    }
  }

  /** Writes the rows accepted until now, retrying until `deadline`. */
  private async drain(q: TableQueue, deadline: number): Promise<void> {
    const target = q.stats.accepted;
    let delayMs = this.retryInitialMs;
    while (q.stats.written < target) {
      try {
        await this.writeBatch(q);
      } catch (err) {
        if (Date.now() + delayMs > deadline) {
          const left = target - q.stats.written;
          throw new FlowLogError('FLUSH_FAILED', `could not write ${left} buffered ${q.name} rows: ${String(err)}`, {
            cause: err,
          });
        }
        await sleep(delayMs);
        delayMs = Math.min(delayMs * 2, this.retryMaxMs);
      }
    }
  }

  /** Inserts up to batchRows of the oldest buffered rows, after any insert in progress. */
  private async writeBatch(q: TableQueue): Promise<void> {
    while (q.writing) await q.writing.catch(() => undefined);
    if (q.lines.length === 0) return;
    const batch = q.lines.splice(0, this.batchRows);
    q.inFlight = batch.length;
    const body = Buffer.from(batch.join('\n') + '\n');
    q.writing = this.store.insertRows(q.name, INSERT_COLUMNS[q.name], body).then(
      () => {
        q.inFlight = 0;
        q.stats.written += batch.length;
        q.retrying = false;
        q.retryDelayMs = this.retryInitialMs;
      },
      (err: unknown) => {
        q.inFlight = 0;
        q.stats.failures++;
        q.lines = batch.concat(q.lines);
        throw err;
      },
    );
    try {
      await q.writing;
    } finally {
      q.writing = null;
    }
  }
}
