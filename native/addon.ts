// Typed wrapper over native/: argument checks, defaults and errors with string
// codes. The addon handle stays private to this module.
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
interface NativeError extends Error {
  step: NativeStep;
  errno?: number;
}

/** The framing of each ring-buffer record in a batch (nettrail_native.cc): u32 size, u32 zero, then the record padded to 8 bytes. */
export const BATCH_RECORD_HEADER = 8;

interface NativeBpfObject {
  attach(program: string, netnsPath: string, ifname: string, hook: string, xdpFlags: number): { link: number; ifindex: number };
  attachTracing(program: string): number;
  detach(link: number): boolean;
  startRing(map: string, onBatch: (batch: Buffer | null, records: number) => void, batchBytes: number, flushMs: number): void;
  stopRing(map: string): void;
  joinRing(map: string): void;
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
}

const ADDON_FILE = path.join(packageRoot, 'native', 'build', 'Release', 'nettrail_native.node');
export const NATIVE_MISSING_MESSAGE = `native addon not built (${ADDON_FILE}); run scripts/setup.sh or npm run build:native`;

/** The addon's exports, each wrapper (this file, conntrack.ts) typing its own; null when it is not built. */
export function nativeExports<T>(): T | null {
  return existsSync(ADDON_FILE) ? (createRequire(import.meta.url)(ADDON_FILE) as T) : null;
}

let addon: NativeAddon | undefined;

function native(): NativeAddon {
  addon ??= nativeExports<NativeAddon>() ?? undefined;
  if (!addon) throw new CaptureError('NATIVE_MISSING', NATIVE_MISSING_MESSAGE);
  return addon;
}

const errnoOf = (err: unknown) => (err as NativeError).errno;
const stepOf = (err: unknown) => (err as NativeError).step;
const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Nanoseconds to add to bpf_ktime_get_ns() for wall-clock time. */
export function clockOffsetNs(): bigint {
  return native().clockOffsetNs();
}

export function possibleCpus(): number {
  return native().possibleCpus();
}

export type AttachHook = 'tc-ingress' | 'tc-egress' | 'xdp';

export interface AttachedLink {
  link: number;
  ifindex: number;
}

export interface RingOptions {
  /** Deliver a batch when it holds this many bytes (default 1 MiB). */
  batchBytes?: number;
  /** ... or when its first record is this old (default 100 ms). */
  flushMs?: number;
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
   * Drain ring buffer `map` on a native thread; `onBatch` gets one Buffer of
   * many records at a time, each framed by BATCH_RECORD_HEADER bytes. The next batch
   * comes after the event loop has turned once (so batches never starve I/O), and
   * after the promise `onBatch` returns, if any, settles (backpressure: meanwhile
   * the ring is not read, and what overflows it is lost and counted in the kernel).
   */
  consume(map: string, onBatch: (batch: Buffer, records: number) => void | Promise<void>, options: RingOptions = {}): void {
    const batchBytes = options.batchBytes ?? 1 << 20;
    const flushMs = options.flushMs ?? 100;
    if (!Number.isInteger(batchBytes) || batchBytes < 4096) throw new CaptureError('INVALID_ARGUMENT', 'batchBytes must be an integer ≥ 4096');
    if (!Number.isInteger(flushMs) || flushMs < 1 || flushMs > 10_000) throw new CaptureError('INVALID_ARGUMENT', 'flushMs must be 1..10000');
    const handle = this.#live();
    let finished!: () => void;
    this.#rings.set(map, new Promise<void>((resolve) => (finished = resolve)));
    handle.startRing(
      map,
      (batch, records) => {
        if (batch) {
          const ack = () => setImmediate(() => handle.ackRing(map));
          let handled: void | Promise<void> = undefined;
          try {
            handled = onBatch(batch, records);
          } finally {
            if (!(handled instanceof Promise)) ack();
          }
          if (handled instanceof Promise) handled.then(ack, ack);
          return;
        }
        handle.joinRing(map);
        this.#rings.delete(map);
        finished();
      },
      batchBytes,
      flushMs,
    );
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
