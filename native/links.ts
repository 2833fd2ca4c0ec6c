// Typed wrapper over native/links.cc: a link watcher per network namespace (rtnetlink) and a
// directory watcher (inotify), read on the addon's event-loop thread and delivered in batches of
// native/links.h's fixed-size records (capture/links-layout.ts reads them). Argument checks and
// error codes here; what the events mean is for capture/.
import { CaptureError, errnoOf, loadNative, messageOf, stepOf } from './addon.js';

/** What links.cc (and native/netns.h, entering the namespace) was doing when it threw. */
type LinksStep = 'open_own_netns' | 'open_netns' | 'setns' | 'rtnl_socket' | 'rtnl_bind' | 'rtnl_dump' | 'inotify_init' | 'inotify_add_watch';

type NativeOnBatch = (batch: Buffer | null, count: number) => void;

interface NativeWatcher {
  ack(): void;
  close(): void;
}

interface NativeDirectoryWatcher extends NativeWatcher {
  watch(path: string): number;
  unwatch(watch: number): boolean;
}

interface NativeLinks {
  LinkWatcher: new (netnsPath: string, onBatch: NativeOnBatch) => NativeWatcher;
  DirectoryWatcher: new (onBatch: NativeOnBatch) => NativeDirectoryWatcher;
}

/** Takes a batch of `count` records; the next batch comes once it has returned. */
export type RecordBatchHandler = (batch: Buffer, count: number) => void;

const ENOENT = 2;

function watchError(err: unknown): CaptureError {
  const step = stepOf<LinksStep>(err);
  const errno = errnoOf(err);
  if (step === 'open_netns' && errno === ENOENT) return new CaptureError('NETNS_NOT_FOUND', messageOf(err), errno);
  if (step === 'inotify_add_watch' && errno === ENOENT) return new CaptureError('PATH_NOT_FOUND', messageOf(err), errno);
  return new CaptureError('WATCH_FAILED', messageOf(err), errno);
}

/** A native watcher and its batches: each handed to onBatch, then acknowledged; the end (null) settles close(). */
abstract class BatchWatcher<Handle extends NativeWatcher> {
  readonly #handle: Handle;
  readonly #ended: Promise<void>;
  #closed = false;

  protected constructor(open: (onBatch: NativeOnBatch) => Handle, onBatch: RecordBatchHandler) {
    let ended!: () => void;
    this.#ended = new Promise((resolve) => (ended = resolve));
    try {
      // Batches come from the event loop, after open() has returned.
      this.#handle = open((batch, count) => {
        if (!batch) return ended();
        try {
          onBatch(batch, count);
        } finally {
          this.#handle.ack();
        }
      });
    } catch (err) {
      throw watchError(err);
    }
  }

  protected live(): Handle {
    if (this.#closed) throw new CaptureError('CLOSED', 'watcher is closed');
    return this.#handle;
  }

  /** Stop watching; resolves once the last batch has been handed over. */
  close(): Promise<void> {
    if (!this.#closed) this.#handle.close();
    this.#closed = true;
    return this.#ended;
  }
}

/** The interfaces of one network namespace: a dump, then every change, as batches of struct nt_link_event. */
export class LinkWatcher extends BatchWatcher<NativeWatcher> {
  /** Opens an rtnetlink socket inside the namespace at `netnsPath` (entered on this thread, for the call). */
  static open(netnsPath: string, onBatch: RecordBatchHandler): LinkWatcher {
    if (!netnsPath.startsWith('/')) throw new CaptureError('INVALID_ARGUMENT', `namespace path ${JSON.stringify(netnsPath)} is not absolute`);
    const { LinkWatcher: Native } = loadNative<NativeLinks>();
    return new LinkWatcher((callback) => new Native(netnsPath, callback), onBatch);
  }
}

/** Entries created and deleted in watched directories, as batches of struct nt_dir_event. */
export class DirectoryWatcher extends BatchWatcher<NativeDirectoryWatcher> {
  static open(onBatch: RecordBatchHandler): DirectoryWatcher {
    const { DirectoryWatcher: Native } = loadNative<NativeLinks>();
    return new DirectoryWatcher((callback) => new Native(callback), onBatch);
  }

  /** Watches directory `dir`; returns the id its events carry. PATH_NOT_FOUND when there is no such directory. */
  watch(dir: string): number {
    if (!dir.startsWith('/')) throw new CaptureError('INVALID_ARGUMENT', `directory ${JSON.stringify(dir)} is not absolute`);
    try {
      return this.live().watch(dir);
    } catch (err) {
      if (err instanceof CaptureError) throw err;
      throw watchError(err);
    }
  }

  /** Stops watching; false when the watch had already ended (its directory went). */
  unwatch(watch: number): boolean {
    return this.live().unwatch(watch);
  }
}
