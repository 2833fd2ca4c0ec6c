// Typed wrapper over the addon's ctnetlink reader and its file access inside a network
// namespace (native/conntrack.cc): argument checks, defaults and errors with string codes.
// The records (struct nt_ct_record of native/conntrack.h) are decoded where they are used,
// in nat-tracker/sources/.
import { NATIVE_MISSING_MESSAGE, nativeExports } from './addon.js';

export type NetnsIoErrorCode =
  | 'NATIVE_MISSING'
  | 'NETNS_NOT_FOUND' // the namespace's path does not open
  | 'PERMISSION_DENIED' // entering the namespace or subscribing needs root
  | 'SOCKET_FAILED'
  | 'FILE_NOT_FOUND'
  | 'FILE_FAILED'
  | 'INVALID_ARGUMENT'
  | 'CLOSED';

export class NetnsIoError extends Error {
  constructor(
    readonly code: NetnsIoErrorCode,
    message: string,
    readonly errno?: number,
  ) {
    super(message);
    this.name = 'NetnsIoError';
  }
}

/** What the addon was doing when it threw, as conntrack.cc and netns.h name it. */
type NativeStep =
  | 'open_own_netns'
  | 'open_netns'
  | 'setns'
  | 'socket'
  | 'set_receive_buffer'
  | 'bind'
  | 'subscribe'
  | 'open_file'
  | 'read_file'
  | 'write_file';

interface NativeError extends Error {
  step: NativeStep;
  errno?: number;
}

declare const readerHandle: unique symbol;
type ReaderHandle = { [readerHandle]: true };

interface NativeConntrack {
  conntrackOpen(netnsPath: string, receiveBufferBytes: number, onBatch: (records: Buffer | null, count: number) => void): ReaderHandle;
  conntrackDump(handle: ReaderHandle): void;
  conntrackAck(handle: ReaderHandle): void;
  conntrackStatus(handle: ReaderHandle): ConntrackReaderStatus;
  conntrackStop(handle: ReaderHandle): void;
  conntrackDecode(datagram: Buffer): Buffer;
  readFileInNetns(netnsPath: string, path: string): Promise<Buffer>;
  writeFileInNetns(netnsPath: string, path: string, data: Buffer): Promise<void>;
}

function native(): NativeConntrack {
  const addon = nativeExports<NativeConntrack>();
  if (!addon) throw new NetnsIoError('NATIVE_MISSING', NATIVE_MISSING_MESSAGE);
  return addon;
}

const ENOENT = 2;
const EPERM = 1;
const EACCES = 13;

/** The addon's exception as a NetnsIoError: a missing namespace or file and a refusal by their own codes, else `otherwise`. */
function netnsIoError(err: unknown, otherwise: NetnsIoErrorCode): NetnsIoError {
  const { step, errno, message } = err as NativeError;
  if (errno === ENOENT && step === 'open_netns') return new NetnsIoError('NETNS_NOT_FOUND', message, errno);
  if (errno === ENOENT && step === 'open_file') return new NetnsIoError('FILE_NOT_FOUND', message, errno);
  if (errno === EPERM || errno === EACCES) return new NetnsIoError('PERMISSION_DENIED', message, errno);
  return new NetnsIoError(otherwise, message, errno);
}

function checkPath(what: string, value: string): void {
  if (typeof value !== 'string' || !value.startsWith('/') || value.includes('\0')) {
    throw new NetnsIoError('INVALID_ARGUMENT', `${what} must be an absolute path, not ${JSON.stringify(value)}`);
  }
}

export interface ConntrackReaderOptions {
  /**
   * The socket's receive buffer, where events wait while JavaScript is busy; default 8 MiB.
   * Root sets it past net.core.rmem_max (SO_RCVBUFFORCE); the kernel rounds it up to its minimum.
   */
  receiveBufferBytes?: number;
}

export interface ConntrackReaderStatus {
  /** Event messages (NEW, UPDATE, DESTROY) received. */
  events: number;
  /** Dumps of the table completed. */
  dumps: number;
  /** Times the receive buffer overflowed (ENOBUFS): events were lost; a dump followed each. */
  overflows: number;
  /** The receive buffer the kernel granted (SO_RCVBUF: twice what was asked, for its bookkeeping). */
  receiveBufferBytes: number;
}

/**
 * `count` records of struct nt_ct_record (native/conntrack.h) back to back. The socket is not
 * read again until the batch is handled: onBatch returned, the promise it returned (if any)
 * settled, and the event loop turned once.
 */
export type ConntrackBatchHandler = (records: Buffer, count: number) => void | Promise<void>;

const DEFAULT_RECEIVE_BUFFER_BYTES = 8 << 20;

/**
 * A ctnetlink socket inside a network namespace, subscribed to conntrack's NEW, UPDATE and
 * DESTROY events, that dumps the table when opened, when asked, and after its buffer
 * overflowed; read on the addon's event-loop thread. Dumps are framed by NT_CT_DUMP_START
 * and NT_CT_DUMP_DONE records, overflows marked by NT_CT_EVENTS_LOST.
 */
export class ConntrackReader {
  readonly #native: NativeConntrack;
  readonly #handle: ReaderHandle;
  readonly #ended: Promise<void>;
  #stopped = false;

  private constructor(addon: NativeConntrack, netnsPath: string, onBatch: ConntrackBatchHandler, receiveBufferBytes: number) {
    this.#native = addon;
    let ended!: () => void;
    this.#ended = new Promise((resolve) => (ended = resolve));
    const ack = () => setImmediate(() => addon.conntrackAck(this.#handle));
    this.#handle = addon.conntrackOpen(netnsPath, receiveBufferBytes, (records, count) => {
      if (records === null) return ended();
      let handled: void | Promise<void> = undefined;
      try {
        handled = onBatch(records, count);
      } finally {
        if (handled instanceof Promise) handled.then(ack, ack);
        else ack();
      }
    });
  }

  static open(netnsPath: string, onBatch: ConntrackBatchHandler, options: ConntrackReaderOptions = {}): ConntrackReader {
    checkPath('netnsPath', netnsPath);
    const receiveBufferBytes = options.receiveBufferBytes ?? DEFAULT_RECEIVE_BUFFER_BYTES;
    if (!Number.isInteger(receiveBufferBytes) || receiveBufferBytes < 1 || receiveBufferBytes > 2 ** 30) {
      throw new NetnsIoError('INVALID_ARGUMENT', `receiveBufferBytes must be an integer from 1 to 2^30, not ${receiveBufferBytes}`);
    }
    const addon = native();
    try {
      return new ConntrackReader(addon, netnsPath, onBatch, receiveBufferBytes);
    } catch (err) {
      throw netnsIoError(err, 'SOCKET_FAILED');
    }
  }

  /** Dumps the table again (after the dump under way, if any). */
  dump(): void {
    if (this.#stopped) throw new NetnsIoError('CLOSED', 'the conntrack reader is stopped');
    this.#native.conntrackDump(this.#handle);
  }

  status(): ConntrackReaderStatus {
    return this.#native.conntrackStatus(this.#handle);
  }

  /** Closes the socket; resolves after the last batch was handed over. */
  stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#native.conntrackStop(this.#handle);
    }
    return this.#ended;
  }
}

/** The records the reader makes of `datagram`'s netlink messages (those that are conntrack entries), as it hands them over. */
export function decodeConntrackMessages(datagram: Buffer): Buffer {
  return native().conntrackDecode(datagram);
}

/** A whole file read inside the namespace at `netnsPath` (/proc/thread-self/net and /proc/sys/net there are that namespace's). */
export async function readFileInNetns(netnsPath: string, path: string): Promise<Buffer> {
  checkPath('netnsPath', netnsPath);
  checkPath('path', path);
  try {
    return await native().readFileInNetns(netnsPath, path);
  } catch (err) {
    throw err instanceof NetnsIoError ? err : netnsIoError(err, 'FILE_FAILED');
  }
}

/** Writes `data` to an existing file inside the namespace at `netnsPath` (a sysctl under /proc/sys/net, say). */
export async function writeFileInNetns(netnsPath: string, path: string, data: string): Promise<void> {
  checkPath('netnsPath', netnsPath);
  checkPath('path', path);
  try {
    await native().writeFileInNetns(netnsPath, path, Buffer.from(data));
  } catch (err) {
    throw err instanceof NetnsIoError ? err : netnsIoError(err, 'FILE_FAILED');
  }
}
