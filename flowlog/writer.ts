// Batched, bounded, retrying writer of records into the flow-log store.

import { setTimeout as sleep } from 'node:timers/promises';
import type { PacketColumns } from '../model/packet-columns.js';
import type { DropRecord, FlowRecord, NatTranslation } from '../model/records.js';
import { encodeFlow, encodeNat, FLOW_COLUMNS, NAT_COLUMNS } from './codec.js';
import { DROP_COLUMNS, encodeDrop } from './drops-table.js';
import { FlowLogError } from './errors.js';
import { PacketChunkBuilder } from './packets/chunk-writer.js';
import { PACKET_CHUNK_COLUMNS } from './packets/chunk-format.js';
import { RowBinaryWriter } from './rowbinary.js';
import { TABLE_NAMES, type TableName } from './schema.js';
import type { FlowLogStore } from './store.js';

/**
 * Rows of a table per insert, by default. Each insert makes a part the engine merges again and again as
 * the table grows, so larger inserts cost the merges less CPU per packet (measured in docs/store.md).
 */
export const DEFAULT_BATCH_ROWS = 250_000;

export interface WriterOptions {
  /**
   * A table's rows are inserted once this many are buffered (default DEFAULT_BATCH_ROWS, at most highWaterRows, so
   * that a table over its high-water mark always has an insert to wait for); a call's records always go in one insert.
   */
  batchRows?: number;
  /** ... or this long after the first of them was buffered (default 1000 ms). */
  flushIntervalMs?: number;
  /** Rows a table may buffer; more are dropped and counted (default 1 000 000). */
  maxBufferedRows?: number;
  /** Above this many buffered rows in a table the writer is over its high-water mark (default maxBufferedRows / 2). */
  highWaterRows?: number;
  /** First delay before retrying a failed insert; doubles up to retryMaxMs (defaults 200 ms, 10 s). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** How long flush() and close() keep retrying before they give up (default 30 s). */
  drainTimeoutMs?: number;
  /**
   * Called when an insert fails (`error` set, `failures` in a row so far) and when a
   * table's inserts succeed again after failing (`error` null, `failures` the streak's length).
   */
  onInsertFailure?(event: { table: TableName; error: unknown; failures: number }): void;
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
  /** Inserts that failed since the last one that succeeded: > 0 while the store refuses this table's rows. */
  consecutiveFailures: number;
  /** Rows accepted and not yet written, including an insert in progress. */
  bufferedRows: number;
  /** Bytes those rows take (encoded). */
  bufferedBytes: number;
}

export type WriterStats = Record<TableName, TableStats>;

const INSERT_COLUMNS: Record<TableName, readonly string[]> = {
  packets: PACKET_CHUNK_COLUMNS,
  flows: FLOW_COLUMNS,
  nat_translations: NAT_COLUMNS,
  drops: DROP_COLUMNS,
};

/** Encoded rows of one insert. */
interface Batch {
  body: Buffer;
  rows: number;
  /** The buffer `body` is in, for the next batch once this one is written. */
  buffer: Uint8Array;
}

interface TableQueue {
  name: TableName;
  /** Sealed batches, oldest first; the first stays here while it is inserted, until it is written. */
  batches: Batch[];
  /** Rows being encoded into the next batch. */
  open: RowBinaryWriter;
  /** Packets only: the next batch's packets, grouped into chunks and encoded into `open` when it is sealed. */
  chunks: PacketChunkBuilder | null;
  openRows: number;
  /** The buffer of the last batch written, for the next batch to reuse (fresh buffers of tens of MB cost page faults and GC). */
  spare: Uint8Array | null;
  bufferedRows: number;
  /** The insert in progress; inserts of one table run one at a time, in order. */
  writing: Promise<void> | null;
  /** A background write loop is running. */
  pumping: boolean;
  /** The next background write (interval or retry). */
  timer: NodeJS.Timeout | null;
  /** The last background insert failed; the next one waits for the retry timer. */
  retrying: boolean;
  retryDelayMs: number;
  stats: Omit<TableStats, 'bufferedRows' | 'bufferedBytes'>;
}

export class FlowLogWriter {
  private readonly batchRows: number;
  private readonly flushIntervalMs: number;
  private readonly maxBufferedRows: number;
  private readonly highWaterRows: number;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly drainTimeoutMs: number;
  private readonly onInsertFailure: WriterOptions['onInsertFailure'];
  private readonly queues: Record<TableName, TableQueue>;
  /** Callers of belowHighWater() waiting. */
  private waiting: Array<() => void> = [];
  private lastFlowVersion = 0n;
  private closed = false;

  constructor(
    private readonly store: FlowLogStore,
    options: WriterOptions = {},
  ) {
    this.flushIntervalMs = options.flushIntervalMs ?? 1000;
    this.maxBufferedRows = options.maxBufferedRows ?? 1_000_000;
    this.highWaterRows = options.highWaterRows ?? Math.ceil(this.maxBufferedRows / 2);
    this.batchRows = Math.min(options.batchRows ?? DEFAULT_BATCH_ROWS, this.highWaterRows);
    this.retryInitialMs = options.retryInitialMs ?? 200;
    this.retryMaxMs = options.retryMaxMs ?? 10_000;
    this.drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    this.onInsertFailure = options.onInsertFailure;
    const queue = (name: TableName): TableQueue => ({
      name, batches: [], open: new RowBinaryWriter(), chunks: name === 'packets' ? new PacketChunkBuilder() : null, openRows: 0, spare: null, bufferedRows: 0,
      writing: null, pumping: false, timer: null, retrying: false, retryDelayMs: this.retryInitialMs,
      stats: { accepted: 0, written: 0, dropped: 0, failures: 0, consecutiveFailures: 0 },
    });
    this.queues = Object.fromEntries(TABLE_NAMES.map((name) => [name, queue(name)])) as Record<TableName, TableQueue>;
  }

  /**
   * Returns how many packets were accepted: the first ones, up to the buffer's bound; the rest were dropped and
   * counted. The columns are staged at once (they need not outlive the call).
   */
  addPackets(columns: PacketColumns): number {
    const chunks = this.queues.packets.chunks!;
    return this.add(this.queues.packets, columns.count, (taken) => chunks.add(columns, taken));
  }

  /** Each call records a newer state of the flows it names; queries return the newest. */
  addFlows(records: readonly FlowRecord[]): number {
    return this.add(this.queues.flows, records.length, this.encoder(this.queues.flows, records, (flow, out) => encodeFlow(flow, this.nextFlowVersion(), out)));
  }

  addNat(records: readonly NatTranslation[]): number {
    return this.add(this.queues.nat_translations, records.length, this.encoder(this.queues.nat_translations, records, encodeNat));
  }

  addDrops(records: readonly DropRecord[]): number {
    return this.add(this.queues.drops, records.length, this.encoder(this.queues.drops, records, encodeDrop));
  }

  stats(): WriterStats {
    const of = (q: TableQueue): TableStats => ({
      ...q.stats,
      bufferedRows: q.bufferedRows,
      bufferedBytes: q.open.length + (q.chunks?.stagedByteLength ?? 0) + q.batches.reduce((sum, batch) => sum + batch.body.length, 0),
    });
    return Object.fromEntries(TABLE_NAMES.map((name) => [name, of(this.queues[name])])) as WriterStats;
  }

  /**
   * True while a table buffers more than highWaterRows rows: the store is
   * behind. Whoever feeds the writer should then wait for belowHighWater()
   * before taking more in (capture: before reading more from its ring buffer,
   * so that what overflows is lost and counted where it is cheapest).
   */
  get overHighWater(): boolean {
    return TABLE_NAMES.some((name) => this.queues[name].bufferedRows > this.highWaterRows);
  }

  /** Resolves once no table is over the high-water mark (at once if none is), or the writer is closed. */
  belowHighWater(): Promise<void> {
    if (!this.overHighWater || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
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
    this.wakeWaiting();
    await this.flush();
  }

  /** Takes records[0, taken) into the open batch of `q` by encoding each; an invalid one leaves the batch as it was. */
  private encoder<R>(q: TableQueue, records: readonly R[], encode: (record: R, out: RowBinaryWriter) => void): (taken: number) => void {
    return (taken) => {
      const start = q.open.length;
      try {
        for (let i = 0; i < taken; i++) encode(records[i], q.open);
      } catch (err) {
        q.open.truncate(start);
        throw err;
      }
    };
  }

  /** `take(n)` takes the first n of `count` records into the open batch, or throws and takes none (the call is refused whole). */
  private add(q: TableQueue, count: number, take: (taken: number) => void): number {
    if (this.closed) throw new FlowLogError('WRITER_CLOSED', 'the flow-log writer is closed');
    const room = Math.max(0, this.maxBufferedRows - q.bufferedRows);
    const taken = Math.min(room, count);
    take(taken);
    q.openRows += taken;
    q.bufferedRows += taken;
    q.stats.accepted += taken;
    q.stats.dropped += count - taken;
    if (q.openRows >= this.batchRows) {
      this.seal(q);
      if (!q.retrying) void this.pump(q);
    } else if (q.openRows > 0 && q.timer === null) {
      this.schedule(q, this.flushIntervalMs);
    }
    return taken;
  }

  private nextFlowVersion(): bigint {
    const now = BigInt(Date.now()) * 1_000_000n;
    this.lastFlowVersion = now > this.lastFlowVersion ? now : this.lastFlowVersion + 1n;
    return this.lastFlowVersion;
  }

  /** Ends the open batch: its rows are inserted next after the batches before it. */
  private seal(q: TableQueue): void {
    if (q.openRows === 0) return;
    q.chunks?.encode(q.open);
    const body = q.open.contents();
    q.batches.push({ body, rows: q.openRows, buffer: q.open.raw });
    // The batch keeps the buffer; the next one starts in the buffer of a batch written, or as large as this one.
    q.open = new RowBinaryWriter(q.spare ?? body.length);
    q.spare = null;
    q.openRows = 0;
  }

  private schedule(q: TableQueue, delayMs: number): void {
    if (this.closed) return;
    if (q.timer) clearTimeout(q.timer);
    q.timer = setTimeout(() => {
      q.timer = null;
      this.seal(q);
      void this.pump(q);
    }, delayMs);
    q.timer.unref();
  }

  /** Background write loop: writes until no batch is left; on failure retries later with backoff. */
  private async pump(q: TableQueue): Promise<void> {
    if (q.pumping) return;
    q.pumping = true;
    try {
      while (q.batches.length > 0) await this.writeBatch(q);
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
    this.seal(q);
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

  /** Inserts the oldest batch, after any insert in progress. */
  private async writeBatch(q: TableQueue): Promise<void> {
    while (q.writing) await q.writing.catch(() => undefined);
    const batch = q.batches[0];
    if (batch === undefined) return;
    q.writing = this.store.insertRowBinary(q.name, INSERT_COLUMNS[q.name], batch.body).then(
      () => {
        q.batches.shift();
        q.spare = batch.buffer;
        q.bufferedRows -= batch.rows;
        q.stats.written += batch.rows;
        q.retrying = false;
        q.retryDelayMs = this.retryInitialMs;
        const failed = q.stats.consecutiveFailures;
        q.stats.consecutiveFailures = 0;
        if (failed > 0) this.onInsertFailure?.({ table: q.name, error: null, failures: failed });
        if (!this.overHighWater) this.wakeWaiting();
      },
      (err: unknown) => {
        q.stats.failures++;
        q.stats.consecutiveFailures++;
        this.onInsertFailure?.({ table: q.name, error: err, failures: q.stats.consecutiveFailures });
        throw err;
      },
    );
    try {
      await q.writing;
    } finally {
      q.writing = null;
    }
  }

  private wakeWaiting(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const resolve of waiting) resolve();
  }
}
