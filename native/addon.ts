// Typed wrapper over native/: argument checks, defaults and errors with string
// codes. The addon handle stays private to native/'s wrappers (this one, links.ts).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../model/package-root.js';

export type CaptureErrorCode =
  | 'NATIVE_MISSING'
  | 'BPF_OBJECT_MISSING'
  | 'BPF_LOAD_FAILED'
  | 'ATTACH_FAILED'
  | 'NETNS_NOT_FOUND'
  | 'IFACE_NOT_FOUND'
  | 'INVALID_ARGUMENT'
  | 'MAP_UPDATE_FAILED'
  | 'TEST_RUN_FAILED'
  | 'WATCH_FAILED'
  | 'PATH_NOT_FOUND'
  | 'CLOSED';

export class CaptureError extends Error {
  constructor(
    readonly code: CaptureErrorCode,
    message: string,
    readonly errno?: number,
  ) {
    super(message);
    this.name = 'CaptureError';
  }
}

export const bpfObjectPath = (name: string) => path.join(packageRoot, 'bpf', '.output', `${name}.bpf.o`);

/** What the addon was doing when it threw, as nettrail_native.cc names it. */
type NativeStep =
  | 'bpf_object_open'
  | 'find_map'
  | 'set_max_entries'
  | 'set_rodata'
  | 'bpf_object_load'
  | 'object_closed'
  | 'find_program'
  | 'open_own_netns'
  | 'open_netns'
  | 'setns'
  | 'if_nametoindex'
  | 'attach_tcx'
  | 'attach_xdp'
  | 'attach_tracing'
  | 'start_ring'
  | 'ring_buffer_new'
  | 'map_update'
  | 'map_delete'
  | 'test_run';

/** An exception from the addon: the step that failed and, when the system said why, its errno. */
interface NativeError<Step extends string> extends Error {
  step: Step;
  errno?: number;
}

/** A packet-columns slab's room beyond its batch size: the record that made the batch full (at most NT_CAPTURE_MAX and its event) and the columns' padding. */
const SLAB_SLACK_BYTES = 64 * 1024;

/** The framing of each ring-buffer record in a batch (nettrail_native.cc): u32 size, u32 zero, then the record padded to 8 bytes. */
export const BATCH_RECORD_HEADER = 8;

interface NativeBpfObject {
  attach(program: string, netnsPath: string, ifname: string, hook: string, xdpFlags: number): { link: number; ifindex: number };
  attachTracing(program: string): number;
  detach(link: number): boolean;
  startRing(
    map: string, format: RingFormat, onBatch: (batch: Buffer | number | null, count: number) => void,
    batchBytes: number, flushMs: number, pollMs: number, slab?: ArrayBuffer,
  ): void;
  stopRing(map: string): void;
  flushRing(map: string): void;
  forgetRing(map: string): void;
  ackRing(map: string): void;
  mapEntries(map: string): { keySize: number; valueSize: number; entries: Buffer };
  mapUpdate(map: string, key: Buffer, value: Buffer): void;
  mapDelete(map: string, key: Buffer): boolean;
  testRun(program: string, packet: Buffer, ringMap: string): TestRunResult;
  close(): void;
}

interface NativeAddon {
  BpfObject: new (objectPath: string, mapSizes: Record<string, number>, rodata: Record<string, Buffer>) => NativeBpfObject;
  clockOffsetNs(): bigint;
  possibleCpus(): number;
  PacketDecoder: new () => { decode(batch: Buffer): Buffer };
  packetId(...words: number[]): bigint;
}

const ADDON_FILE = path.join(packageRoot, 'native', 'build', 'Release', 'nettrail_native.node');
export const NATIVE_MISSING_MESSAGE = `native addon not built (${ADDON_FILE}); run scripts/setup.sh or npm run build:native`;

let addon: unknown;

/** The addon's exports, loaded once, each wrapper (this module, links.ts, conntrack.ts) typing its own part; null when it is not built. */
export function nativeExports<T>(): T | null {
  if (addon === undefined && existsSync(ADDON_FILE)) addon = createRequire(import.meta.url)(ADDON_FILE);
  return (addon as T | undefined) ?? null;
}

/** nativeExports(), or CaptureError NATIVE_MISSING. */
export function loadNative<T>(): T {
  const loaded = nativeExports<T>();
  if (loaded === null) throw new CaptureError('NATIVE_MISSING', NATIVE_MISSING_MESSAGE);
  return loaded;
}

const native = () => loadNative<NativeAddon>();

export const errnoOf = (err: unknown) => (err as NativeError<string>).errno;
export const stepOf = <Step extends string = NativeStep>(err: unknown) => (err as NativeError<Step>).step;
export const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Nanoseconds to add to bpf_ktime_get_ns() for wall-clock time. */
export function clockOffsetNs(): bigint {
  return native().clockOffsetNs();
}

export function possibleCpus(): number {
  return native().possibleCpus();
}

/**
 * Decodes batches of framed nt_packet_event records (what testRun returns for the capture programs)
 * into the columns a ring consumer makes of them (native/packet_columns.h); first fragments are
 * remembered from batch to batch, as a consumer does.
 */
export class PacketRecordDecoder {
  readonly #native = new (native().PacketDecoder)();

  decode(batch: Buffer): Buffer {
    return this.#native.decode(batch);
  }
}

/** What the packet id (native/packet_decoder.h) is made of: fields NAT, routing and MSS clamping leave alone. */
export interface PacketInvariants {
  proto: number;
  /** IPv4 identification, or the IPv6 fragment identification of a fragment; else 0. */
  ipId: number;
  /** Fragment offset in 8-byte units (0 when not a fragment). */
  fragOffset: number;
  payloadLen: number;
  /** The kernel's hash of the first payload bytes. */
  payloadHash: number;
  /** TCP only: seq, ack, flags, window, urgent pointer, timestamp option values. */
  tcp?: { seq: number; ack: number; flags: number; win: number; urgent: number; tsVal: number; tsEcr: number };
}

/** The id the packet has at every point where it is captured: the native decoder's, for a packet known otherwise (a drop). */
export function packetIdOf(p: PacketInvariants): bigint {
  const t = p.tcp;
  return t
    ? native().packetId(p.proto, p.ipId, p.fragOffset, p.payloadLen, p.payloadHash, t.seq, t.ack, t.flags, t.win, t.urgent, t.tsVal, t.tsEcr)
    : native().packetId(p.proto, p.ipId, p.fragOffset, p.payloadLen, p.payloadHash);
}

export type AttachHook = 'tc-ingress' | 'tc-egress' | 'xdp';

export interface AttachedLink {
  link: number;
  ifindex: number;
}

/** What a ring's batches hold: its records framed as they are (BATCH_RECORD_HEADER), or packets decoded into columns (packet_columns.h). */
export type RingFormat = 'records' | 'packet-columns';

export interface RingOptions {
  /** Deliver a batch when it holds this many bytes (default 1 MiB). */
  batchBytes?: number;
  /** ... or when its first record is this old (default 100 ms). */
  flushMs?: number;
  /**
   * 0 (default): the kernel wakes the consumer as records come. Otherwise the BPF program wakes it only
   * above a fill threshold, and the ring is drained every pollMs.
   */
  pollMs?: number;
}

export interface MapEntry {
  key: Buffer;
  value: Buffer;
}

/** One BPF_PROG_TEST_RUN: the program's return value and what it wrote to the ring buffer, as a batch. */
export interface TestRunResult {
  retval: number;
  records: number;
  batch: Buffer;
}

const ENOENT = 2;
const ENODEV = 19;
/** Steps that fail with ENODEV when the interface is not there (or went between looking it up and attaching). */
const INTERFACE_STEPS: ReadonlySet<NativeStep> = new Set(['if_nametoindex', 'attach_tcx', 'attach_xdp']);

/** A loaded BPF object: its programs attach through bpf_links, which the kernel removes when this process exits. */
export class BpfObject {
  #handle: NativeBpfObject | undefined;
  readonly #rings = new Map<string, Promise<void>>();
  /** Per ring, the flushes asked for and not yet done, oldest first. */
  readonly #flushes = new Map<string, Array<() => void>>();

  private constructor(handle: NativeBpfObject) {
    this.#handle = handle;
  }

  /** `rodata`: values of `const volatile` globals, each exactly as many bytes as the variable. */
  static load(objectPath: string, mapSizes: Record<string, number> = {}, rodata: Record<string, Buffer> = {}): BpfObject {
    if (!existsSync(objectPath)) {
      throw new CaptureError('BPF_OBJECT_MISSING', `BPF object not built (${objectPath}); run scripts/setup.sh or npm run build:bpf`);
    }
    for (const [map, size] of Object.entries(mapSizes)) {
      if (!Number.isInteger(size) || size <= 0 || size > 2 ** 31) {
        throw new CaptureError('INVALID_ARGUMENT', `map ${map}: size ${size} is not a positive 32-bit integer`);
      }
    }
    const { BpfObject: NativeObject } = native();
    try {
      return new BpfObject(new NativeObject(objectPath, mapSizes, rodata));
    } catch (err) {
      throw new CaptureError('BPF_LOAD_FAILED', messageOf(err), errnoOf(err));
    }
  }

  #live(): NativeBpfObject {
    if (!this.#handle) throw new CaptureError('CLOSED', 'BPF object is closed');
    return this.#handle;
  }

  /** Attach a program to `ifname` inside the network namespace opened by `netnsPath`. */
  attach(program: string, netnsPath: string, ifname: string, hook: AttachHook, xdpFlags = 0): AttachedLink {
    if (!/^[^\s/]{1,15}$/.test(ifname)) throw new CaptureError('INVALID_ARGUMENT', `bad interface name ${JSON.stringify(ifname)}`);
    try {
      return this.#live().attach(program, netnsPath, ifname, hook, xdpFlags);
    } catch (err) {
      if (err instanceof CaptureError) throw err;
      const step = stepOf(err);
      const errno = errnoOf(err);
      if (step === 'open_netns' && errno === ENOENT) throw new CaptureError('NETNS_NOT_FOUND', messageOf(err), errno);
      if (INTERFACE_STEPS.has(step) && errno === ENODEV) throw new CaptureError('IFACE_NOT_FOUND', `no interface ${ifname} in ${netnsPath}`, errno);
      throw new CaptureError('ATTACH_FAILED', messageOf(err), errno);
    }
  }

  /** Attach a tracing program (tp_btf, raw_tp) to the tracepoint its section names; returns the link. */
  attachTracing(program: string): number {
    try {
      return this.#live().attachTracing(program);
    } catch (err) {
      if (err instanceof CaptureError) throw err;
      throw new CaptureError('ATTACH_FAILED', messageOf(err), errnoOf(err));
    }
  }

  detach(link: number): void {
    this.#live().detach(link);
  }

  /**
   * Drain ring buffer `map` on the native event thread; `onBatch` gets one Buffer of many records
   * at a time, in `format`. The next batch comes after the event loop has turned once (so batches
   * never starve I/O), and after the promise `onBatch` returns, if any, settles (backpressure:
   * meanwhile the ring is read into one more batch at most, and what overflows it is lost and
   * counted in the kernel). A 'packet-columns' batch is memory the next batch is written into: it
   * must not be used once onBatch (and its promise) is done.
   */
  consume(map: string, format: RingFormat, onBatch: (batch: Buffer, count: number) => void | Promise<void>, options: RingOptions = {}): void {
    const batchBytes = options.batchBytes ?? 1 << 20;
    const flushMs = options.flushMs ?? 100;
    const pollMs = options.pollMs ?? 0;
    if (!Number.isInteger(batchBytes) || batchBytes < 4096) throw new CaptureError('INVALID_ARGUMENT', 'batchBytes must be an integer ≥ 4096');
    if (!Number.isInteger(flushMs) || flushMs < 1 || flushMs > 10_000) throw new CaptureError('INVALID_ARGUMENT', 'flushMs must be 1..10000');
    if (!Number.isInteger(pollMs) || pollMs < 0 || pollMs > 10_000) throw new CaptureError('INVALID_ARGUMENT', 'pollMs must be 0..10000');
    const handle = this.#live();
    let finished!: () => void;
    this.#rings.set(map, new Promise<void>((resolve) => (finished = resolve)));
    // Packet columns are written into this while no batch is with JavaScript (room for a batch and the
    // record that made it full, with every column's padding): no new memory per batch for the collector.
    const slab = format === 'packet-columns' ? new ArrayBuffer(batchBytes + SLAB_SLACK_BYTES) : undefined;
    handle.startRing(
      map,
      format,
      (delivered, count) => {
        const batch = typeof delivered === 'number' ? Buffer.from(slab!, 0, delivered) : delivered;
        if (batch && batch.length === 0) {
          // The marker of a flush: every record before it was handled.
          this.#flushes.get(map)?.shift()?.();
          handle.ackRing(map);
          return;
        }
        if (batch) {
          const ack = () => setImmediate(() => handle.ackRing(map));
          let handled: void | Promise<void> = undefined;
          try {
            handled = onBatch(batch, count);
          } finally {
            if (!(handled instanceof Promise)) ack();
          }
          if (handled instanceof Promise) handled.then(ack, ack);
          return;
        }
        handle.forgetRing(map);
        this.#rings.delete(map);
        for (const flushed of this.#flushes.get(map) ?? []) flushed();
        this.#flushes.delete(map);
        finished();
      },
      batchBytes,
      flushMs,
      pollMs,
      slab,
    );
  }

  /** Resolves once every record `map` holds now has been delivered and handled (at once when it is not consumed). */
  flushRing(map: string): Promise<void> {
    if (!this.#rings.has(map)) return Promise.resolve();
    return new Promise((resolve) => {
      const waiting = this.#flushes.get(map) ?? [];
      waiting.push(resolve);
      this.#flushes.set(map, waiting);
      this.#live().flushRing(map);
    });
  }

  /** Stop consuming `map` after delivering every record already in the ring. */
  async stopConsuming(map: string): Promise<void> {
    const done = this.#rings.get(map);
    if (!done) return;
    this.#live().stopRing(map);
    await done;
  }

  mapEntries(map: string): MapEntry[] {
    const { keySize, valueSize, entries } = this.#live().mapEntries(map);
    const pairs: MapEntry[] = [];
    for (let at = 0; at + keySize + valueSize <= entries.length; at += keySize + valueSize) {
      pairs.push({ key: entries.subarray(at, at + keySize), value: entries.subarray(at + keySize, at + keySize + valueSize) });
    }
    return pairs;
  }

  /** Insert or replace; a per-CPU map's value holds one slot (rounded to 8 bytes) per possible CPU. */
  mapUpdate(map: string, key: Buffer, value: Buffer): void {
    try {
      this.#live().mapUpdate(map, key, value);
    } catch (err) {
      throw new CaptureError('MAP_UPDATE_FAILED', messageOf(err), errnoOf(err));
    }
  }

  /** Remove a key; false when it was not there. */
  mapDelete(map: string, key: Buffer): boolean {
    try {
      return this.#live().mapDelete(map, key);
    } catch (err) {
      throw new CaptureError('MAP_UPDATE_FAILED', messageOf(err), errnoOf(err));
    }
  }

  /** Run `program` once on `packet` with BPF_PROG_TEST_RUN; returns what it wrote to ring buffer `ringMap`. */
  testRun(program: string, packet: Buffer, ringMap: string): TestRunResult {
    if (this.#rings.has(ringMap)) throw new CaptureError('INVALID_ARGUMENT', `ring ${ringMap} is being consumed`);
    try {
      return this.#live().testRun(program, packet, ringMap);
    } catch (err) {
      if (err instanceof CaptureError) throw err;
      throw new CaptureError('TEST_RUN_FAILED', messageOf(err), errnoOf(err));
    }
  }

  /** Stop consuming gracefully, then detach every link and free the object. */
  async close(): Promise<void> {
    if (!this.#handle) return;
    await Promise.all([...this.#rings.keys()].map((map) => this.stopConsuming(map)));
    this.#handle.close();
    this.#handle = undefined;
  }
}
