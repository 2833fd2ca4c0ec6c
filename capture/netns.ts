// Network namespaces and their interfaces as the attach policy and the NAT tracker see them, followed
// as they come and go: root, the entries of the namespace directories (/run/netns, and /var/run/netns
// where that is another directory), and the namespaces of running processes. The directories are
// watched (inotify); processes' namespaces are read from /proc/PID/ns/net on a timer, since nothing
// announces them; the interfaces of each namespace come from an rtnetlink socket opened inside it (a
// dump, then notifications). No process is spawned.
import { readdirSync, readFileSync, readlinkSync, realpathSync, statSync, type Stats } from 'node:fs';
import path from 'node:path';
import type { NetnsRef } from '../model/records.js';
import { CaptureError } from '../native/addon.js';
import { DirectoryWatcher, LinkWatcher } from '../native/links.js';
import { ARPHRD, DIR_EVENT, IFF_UP, LINK_EVENT, decodeDirEvents, decodeLinkEvents, type DirEvent, type LinkEvent } from './links-layout.js';

const ROOT_NETNS_PATH = '/proc/1/ns/net';
/** The inode of the initial network namespace (PROC_NET_INIT_INO, the same on every kernel since 3.8). */
const INIT_NET_INO = 0xeffffff9;
/** Where `ip netns` keeps named namespaces. */
const NETNS_DIRS = ['/run/netns', '/var/run/netns'];
const PROCESS_SCAN_MS = 2000;
/**
 * `ip netns add` creates the name first and mounts the namespace on it a moment later, which inotify
 * does not report: a new name is looked at again after each of these delays until it is a namespace.
 */
const MOUNT_WAIT_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

export interface NetIface {
  name: string;
  ifindex: number;
  /** `ether`, `loopback`, `none` (no link-layer header: tun, wireguard), else `arphrd N`. */
  linkType: string;
  up: boolean;
}

/** Namespace names (`root`, /run/netns names, `pid:PID`), or 'all': every namespace of the host. */
export type NetnsScope = string[] | 'all';

/** What NetnsWatcher reports, as it happens. A namespace's interfaces vanish before it does. */
export interface NetnsEvents {
  netnsAppeared?(netns: NetnsRef): void;
  netnsVanished?(netns: NetnsRef): void;
  ifaceAppeared(netns: NetnsRef, iface: NetIface): void;
  /** Renamed, or up or down. */
  ifaceChanged(netns: NetnsRef, iface: NetIface): void;
  ifaceVanished(netns: NetnsRef, iface: NetIface): void;
  /** A namespace not found, events lost (and listed again), a namespace that cannot be watched. */
  onWarning(message: string): void;
}

export interface NetnsWatcherOptions {
  /** How often processes' namespaces are read (ms; default 2000); only for scope 'all' or `pid:` names. */
  processScanMs?: number;
}

const LINK_TYPE_NAMES = new Map<number, string>([
  [ARPHRD.ether, 'ether'],
  [ARPHRD.loopback, 'loopback'],
  [ARPHRD.none, 'none'],
]);

const ifaceOf = (event: LinkEvent): NetIface => ({
  name: event.name,
  ifindex: event.ifindex,
  linkType: LINK_TYPE_NAMES.get(event.linkType) ?? `arphrd ${event.linkType}`,
  up: (event.flags & IFF_UP) !== 0,
});

/** A `--netns` name as nettrail spells namespaces: `root`, a name under /run/netns, or `pid:PID`. */
const validName = (name: string) => (name.startsWith('pid:') ? /^pid:\d+$/.test(name) : /^[\w.-]+$/.test(name) && name !== '.' && name !== '..');

/** stat, or null when the path cannot be looked at (gone, or hidden). */
function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/**
 * The root namespace: pid 1's, or where pid 1's cannot be looked at (a sandbox hiding it) this
 * process's when it is the initial one; null when neither is.
 */
function rootNetns(): { path: string; ino: number } | null {
  const init = statOrNull(ROOT_NETNS_PATH);
  if (init) return { path: ROOT_NETNS_PATH, ino: init.ino };
  const own = `/proc/${process.pid}/ns/net`;
  return statOrNull(own)?.ino === INIT_NET_INO ? { path: own, ino: INIT_NET_INO } : null;
}

/** The parent pid of a process (from /proc/PID/stat), or null when it is gone. */
function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** The namespace of a process (readlink /proc/PID/ns/net: `net:[INO]`), or null when it is gone. */
function processNetnsIno(pid: number): number | null {
  try {
    const link = /^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/ns/net`));
    return link ? Number(link[1]) : null;
  } catch {
    return null;
  }
}

interface Followed {
  netns: NetnsRef;
  links: LinkWatcher;
  ifaces: Map<number, NetIface>;
  /** After a resync: interfaces its dump has not listed again yet (gone, unless it does). */
  unconfirmed: Set<number> | null;
  /** Settles once the first dump is in (or the namespace is let go). */
  listed: Promise<void>;
  onListed(): void;
}

/** A namespace directory; its watch is null while it does not exist (its parent is watched for it). */
interface NetnsDir {
  dir: string;
  watch: number | null;
}

/** An entry of a namespace directory: its namespace's inode, null until a namespace is mounted on it. */
interface NamedEntry {
  name: string;
  ino: number | null;
}

export class NetnsWatcher {
  readonly #scope: NetnsScope;
  readonly #events: NetnsEvents;
  /** null when the root namespace cannot be looked at (a container that hides it). */
  readonly #root: { path: string; ino: number } | null;
  /** The device of nsfs: a namespace directory's entry is a namespace once it is on it. */
  readonly #nsfsDev: number;
  readonly #followed = new Map<number, Followed>();
  /** Namespaces whose link watcher could not be opened, until they are out of scope. */
  readonly #unwatchable = new Set<number>();
  readonly #dirs: NetnsDir[] = [];
  /** Entries of the namespace directories by path. */
  readonly #entries = new Map<string, NamedEntry>();
  /** pid → namespace inode of the processes looked at by the last scan (nettrail's own helpers left out). */
  #processes = new Map<number, number>();
  /** Namespace inode → its lowest pid, from the same scan. */
  #firstPid = new Map<number, number>();
  /** Names in the scope not found, warned about once each time they go missing. */
  readonly #missing = new Set<string>();
  readonly #watchHandlers = new Map<number, (event: DirEvent) => void>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #closing = new Set<Promise<void>>();
  #directories: DirectoryWatcher | null = null;
  #scanTimer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(scope: NetnsScope, events: NetnsEvents) {
    this.#scope = scope;
    this.#events = events;
    this.#root = rootNetns();
    this.#nsfsDev = statSync('/proc/self/ns/net').dev;
  }

  /** Follows the namespaces of `scope`; resolves once those there are now and their interfaces have been reported. */
  static async start(scope: NetnsScope, events: NetnsEvents, options: NetnsWatcherOptions = {}): Promise<NetnsWatcher> {
    const processScanMs = options.processScanMs ?? PROCESS_SCAN_MS;
    if (!Number.isInteger(processScanMs) || processScanMs < 10) throw new CaptureError('INVALID_ARGUMENT', `process scan every ${processScanMs} ms: an integer ≥ 10`);
    const watcher = new NetnsWatcher(scope, events);
    try {
      const names = scope === 'all' ? null : scope;
      if (!names || names.some((name) => name !== 'root' && !name.startsWith('pid:'))) watcher.#watchDirectories();
      if (!names || names.some((name) => name.startsWith('pid:'))) {
        watcher.#scanProcesses();
        watcher.#scanTimer = setInterval(() => watcher.#scanProcesses(), processScanMs).unref();
      }
      watcher.#reconcile();
      await Promise.all([...watcher.#followed.values()].map((followed) => followed.listed));
    } catch (err) {
      await watcher.close();
      throw err;
    }
    return watcher;
  }

  /** Stops following, reporting nothing more; every socket and watch is closed once it resolves. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      clearInterval(this.#scanTimer);
      for (const timer of this.#timers) clearTimeout(timer);
      for (const followed of this.#followed.values()) this.#closing.add(followed.links.close());
      this.#followed.clear();
      if (this.#directories) this.#closing.add(this.#directories.close());
    }
    await Promise.all(this.#closing);
  }

  #watchDirectories(): void {
    const canonical = (dir: string) => {
      try {
        return path.join(realpathSync(path.dirname(dir)), path.basename(dir));
      } catch {
        return dir;
      }
    };
    this.#directories = DirectoryWatcher.open((batch, count) => {
      if (this.#closed) return;
      for (const event of decodeDirEvents(batch, count)) {
        if (event.kind === DIR_EVENT.overflow) {
          this.#events.onWarning('namespace directory events were lost (inotify queue overflow): listing the directories again');
          for (const netnsDir of this.#dirs) if (netnsDir.watch !== null) this.#list(netnsDir);
        } else this.#watchHandlers.get(event.watch)?.(event);
      }
      this.#reconcile();
    });
    for (const dir of new Set(NETNS_DIRS.map(canonical))) {
      const netnsDir: NetnsDir = { dir, watch: null };
      this.#dirs.push(netnsDir);
      this.#watchDir(netnsDir);
    }
  }

  /** Watches the directory and lists it; while it does not exist, watches its parent for it. */
  #watchDir(netnsDir: NetnsDir): void {
    try {
      netnsDir.watch = this.#directories!.watch(netnsDir.dir);
    } catch (err) {
      if (err instanceof CaptureError && err.code === 'PATH_NOT_FOUND') return this.#watchParent(netnsDir);
      throw err;
    }
    this.#watchHandlers.set(netnsDir.watch, (event) => {
      const entry = `${netnsDir.dir}/${event.name}`;
      if (event.kind === DIR_EVENT.created) this.#resolveEntry(entry, event.name, 0);
      else if (event.kind === DIR_EVENT.deleted) this.#entries.delete(entry);
      else if (event.kind === DIR_EVENT.gone) {
        this.#directories!.unwatch(netnsDir.watch!);
        this.#watchHandlers.delete(netnsDir.watch!);
        netnsDir.watch = null;
        this.#list(netnsDir);
        this.#watchParent(netnsDir);
      }
    });
    this.#list(netnsDir);
  }

  /** Creating the namespace directory is `ip netns`'s business: until it does, its parent is watched for it. */
  #watchParent(netnsDir: NetnsDir): void {
    const parent = path.dirname(netnsDir.dir);
    const name = path.basename(netnsDir.dir);
    let watch: number;
    try {
      watch = this.#directories!.watch(parent);
    } catch (err) {
      if (!(err instanceof CaptureError && err.code === 'PATH_NOT_FOUND')) throw err;
      return this.#events.onWarning(`neither ${netnsDir.dir} nor ${parent} exists: namespaces named there are not followed`);
    }
    const appeared = () => {
      this.#directories!.unwatch(watch);
      this.#watchHandlers.delete(watch);
      this.#watchDir(netnsDir);
    };
    this.#watchHandlers.set(watch, (event) => {
      if (event.kind === DIR_EVENT.created && event.name === name) appeared();
    });
    // It may have been created before the parent was watched.
    if (statOrNull(netnsDir.dir)?.isDirectory()) appeared();
  }

  /** Brings the entries of one directory up to date with what it holds (all gone when it is not there). */
  #list(netnsDir: NetnsDir): void {
    let names: string[];
    try {
      names = readdirSync(netnsDir.dir);
    } catch {
      names = [];
    }
    const present = new Set(names.map((name) => `${netnsDir.dir}/${name}`));
    for (const entry of this.#entries.keys()) if (path.dirname(entry) === netnsDir.dir && !present.has(entry)) this.#entries.delete(entry);
    for (const name of names) {
      const entry = `${netnsDir.dir}/${name}`;
      if (!this.#entries.has(entry)) this.#resolveEntry(entry, name, 0);
    }
  }

  /** Records a directory entry in scope with its namespace's inode once a namespace is mounted on it. */
  #resolveEntry(entry: string, name: string, attempt: number): void {
    if (this.#scope !== 'all' && !this.#scope.includes(name)) return;
    const stat = statOrNull(entry);
    if (!stat) {
      this.#entries.delete(entry);
      return;
    }
    const record: NamedEntry = { name, ino: stat.dev === this.#nsfsDev ? stat.ino : null };
    this.#entries.set(entry, record);
    if (record.ino !== null || attempt >= MOUNT_WAIT_MS.length) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#entries.get(entry) !== record) return; // deleted, or listed again, meanwhile
      this.#resolveEntry(entry, name, attempt + 1);
      this.#reconcile();
    }, MOUNT_WAIT_MS[attempt]);
    this.#timers.add(timer);
  }

  /**
   * Reads the namespace of every process (scope 'all') or of the `pid:` names. nettrail's own helpers
   * (conntrack -E inside a namespace) are no reason to follow a namespace: they would keep a deleted one
   * followed, and so alive, for as long as nettrail runs.
   */
  #scanProcesses(): void {
    const processes = new Map<number, number>();
    const firstPid = new Map<number, number>();
    if (this.#scope === 'all') {
      const pids = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).map(Number).sort((a, b) => a - b);
      for (const pid of pids) {
        const ino = processNetnsIno(pid);
        if (ino === null) continue;
        // A parent is read for the first process of each namespace, and for nettrail's own helpers.
        if (!firstPid.has(ino)) {
          if (parentOf(pid) === process.pid) continue;
          firstPid.set(ino, pid);
        }
        processes.set(pid, ino);
      }
    } else {
      for (const name of this.#scope) {
        if (!name.startsWith('pid:') || !validName(name)) continue;
        const pid = Number(name.slice(4));
        const ino = processNetnsIno(pid);
        if (ino !== null) processes.set(pid, ino);
      }
    }
    this.#processes = processes;
    this.#firstPid = firstPid;
    this.#reconcile();
  }

  /** The namespaces in scope now, by inode, each under its first name: root, then named, then `pid:`. */
  #wanted(): Map<number, NetnsRef> {
    const wanted = new Map<number, NetnsRef>();
    if (this.#scope === 'all') {
      const add = (name: string, path: string, ino: number | null) => {
        if (ino !== null && !wanted.has(ino)) wanted.set(ino, { name, path, ino });
      };
      if (this.#root) add('root', this.#root.path, this.#root.ino);
      const entries = [...this.#entries].sort(([, a], [, b]) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const [entry, { name, ino }] of entries) add(name, entry, ino);
      for (const [ino, lowest] of this.#firstPid) {
        // The process a namespace is followed through stays its name while it is there.
        const current = this.#followed.get(ino)?.netns.name;
        const pid = current?.startsWith('pid:') && this.#processes.get(Number(current.slice(4))) === ino ? Number(current.slice(4)) : lowest;
        add(`pid:${pid}`, `/proc/${pid}/ns/net`, ino);
      }
      return wanted;
    }
    for (const name of this.#scope) {
      const netns = validName(name) ? this.#resolve(name) : null;
      if (netns && !wanted.has(netns.ino)) wanted.set(netns.ino, netns);
      if (netns) this.#missing.delete(name);
      else if (!this.#missing.has(name)) {
        this.#missing.add(name);
        this.#events.onWarning(`namespace ${name} not found`);
      }
    }
    return wanted;
  }

  /** A valid `--netns` name's namespace as found now, or null. */
  #resolve(name: string): NetnsRef | null {
    if (name === 'root') return this.#root && { name, ...this.#root };
    if (name.startsWith('pid:')) {
      const ino = this.#processes.get(Number(name.slice(4)));
      return ino === undefined ? null : { name, path: `/proc/${name.slice(4)}/ns/net`, ino };
    }
    for (const { dir } of this.#dirs) {
      const ino = this.#entries.get(`${dir}/${name}`)?.ino;
      if (ino != null) return { name, path: `${dir}/${name}`, ino };
    }
    return null;
  }

  /** Follows what came into scope, lets go of what left it, renames what is now reached by another name. */
  #reconcile(): void {
    if (this.#closed) return;
    const wanted = this.#wanted();
    for (const [ino, followed] of this.#followed) {
      const netns = wanted.get(ino);
      if (!netns) this.#unfollow(followed);
      else if (netns.name !== followed.netns.name || netns.path !== followed.netns.path) this.#rename(followed, netns);
    }
    for (const ino of this.#unwatchable) if (!wanted.has(ino)) this.#unwatchable.delete(ino);
    for (const [ino, netns] of wanted) if (!this.#followed.has(ino) && !this.#unwatchable.has(ino)) this.#follow(netns);
  }

  #follow(netns: NetnsRef): void {
    let followed!: Followed;
    let links: LinkWatcher;
    try {
      // Its batches come from the event loop, once followed is set.
      links = LinkWatcher.open(netns.path, (batch, count) => this.#onLinks(followed, decodeLinkEvents(batch, count)));
    } catch (err) {
      this.#unwatchable.add(netns.ino);
      // Gone between finding and opening it: its source reports that soon.
      if (!(err instanceof CaptureError && err.code === 'NETNS_NOT_FOUND')) this.#events.onWarning(`namespace ${netns.name} cannot be followed: ${(err as Error).message}`);
      return;
    }
    let onListed!: () => void;
    const listed = new Promise<void>((resolve) => (onListed = resolve));
    followed = { netns, links, ifaces: new Map(), unconfirmed: null, listed, onListed };
    this.#followed.set(netns.ino, followed);
    this.#events.netnsAppeared?.(netns);
  }

  #unfollow(followed: Followed): void {
    this.#followed.delete(followed.netns.ino);
    this.#vanish(followed);
    followed.onListed();
    const closing = followed.links.close().then(() => {
      this.#closing.delete(closing);
    });
    this.#closing.add(closing);
  }

  /** Reached by another name or path now (its named entry or process went, another remains): it vanishes and appears again. */
  #rename(followed: Followed, netns: NetnsRef): void {
    this.#vanish(followed);
    followed.netns = netns;
    this.#events.netnsAppeared?.(netns);
    for (const iface of followed.ifaces.values()) this.#events.ifaceAppeared(netns, iface);
  }

  #vanish(followed: Followed): void {
    for (const iface of followed.ifaces.values()) this.#events.ifaceVanished(followed.netns, iface);
    this.#events.netnsVanished?.(followed.netns);
  }

  #onLinks(followed: Followed, events: LinkEvent[]): void {
    if (this.#followed.get(followed.netns.ino) !== followed) return; // let go of: the last batches of its socket
    for (const event of events) {
      const known = followed.ifaces.get(event.ifindex);
      if (event.kind === LINK_EVENT.new) {
        const iface = ifaceOf(event);
        followed.unconfirmed?.delete(iface.ifindex);
        followed.ifaces.set(iface.ifindex, iface);
        if (!known) this.#events.ifaceAppeared(followed.netns, iface);
        else if (known.name !== iface.name || known.linkType !== iface.linkType || known.up !== iface.up) this.#events.ifaceChanged(followed.netns, iface);
      } else if (event.kind === LINK_EVENT.del) {
        if (!known) continue;
        followed.ifaces.delete(event.ifindex);
        followed.unconfirmed?.delete(event.ifindex);
        this.#events.ifaceVanished(followed.netns, known);
      } else if (event.kind === LINK_EVENT.resync || event.kind === LINK_EVENT.overflow) {
        if (event.kind === LINK_EVENT.overflow) {
          this.#events.onWarning(`interface events of namespace ${followed.netns.name} were lost (its rtnetlink socket overflowed): listing them again`);
        }
        followed.unconfirmed = new Set(followed.ifaces.keys());
      } else if (event.kind === LINK_EVENT.dumpDone) {
        for (const ifindex of followed.unconfirmed ?? []) {
          const iface = followed.ifaces.get(ifindex)!;
          followed.ifaces.delete(ifindex);
          this.#events.ifaceVanished(followed.netns, iface);
        }
        followed.unconfirmed = null;
        followed.onListed();
      }
    }
  }
}
