// Netfilter conntrack as a NAT translation source: `conntrack -E` events plus
// periodic `conntrack -L` dumps, run inside a namespace through nsenter, so
// translations are recorded before the kernel expires them.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { canonicalAddress } from '../../model/address.js';
import type { EpochNs, FourTuple, NatTranslation, NetnsRef, Proto } from '../../model/records.js';
import { classifyNat } from '../classify.js';
import { runCommand } from './command.js';

export type ConntrackErrorCode =
  | 'CONNTRACK_NOT_FOUND' // nsenter or conntrack binary missing
  | 'CONNTRACK_NETNS_GONE' // the namespace path no longer opens
  | 'CONNTRACK_EXITED' // the event stream died; it is restarted
  | 'CONNTRACK_DUMP_FAILED'
  | 'CONNTRACK_EVENTS_LOST' // netlink overflow (ENOBUFS); a dump follows
  | 'CONNTRACK_SUBSCRIBE_TIMEOUT'
  | 'CONNTRACK_EVENTS_OFF' // net.netfilter.nf_conntrack_events is 0: only the periodic dumps see entries
  | 'CONNTRACK_SYSCTL_FAILED'
  | 'CONNTRACK_PARSE';

export class ConntrackError extends Error {
  constructor(
    readonly code: ConntrackErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ConntrackError';
  }
}

// ---- conntrack's XML output ------------------------------------------------

interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const XML_TOKEN = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*\s*=\s*"[^"]*")*)\s*(\/?)>|([^<]+)/g;
const XML_ATTR = /([A-Za-z_][\w.-]*)\s*=\s*"([^"]*)"/g;
const XML_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeEntities(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos);/g, (_, e: string) => XML_ENTITIES[e] ?? '');
}

/** Parses one XML element (no prolog, comments or CDATA: conntrack emits none inside a flow). */
function parseXmlElement(xml: string): XmlElement {
  const root: XmlElement = { name: '', attrs: {}, children: [], text: '' };
  const stack: XmlElement[] = [root];
  let consumed = 0;
  for (const m of xml.matchAll(XML_TOKEN)) {
    if (m.index !== consumed) break;
    consumed += m[0].length;
    const top = stack[stack.length - 1]!;
    if (m[5] !== undefined) {
      top.text += decodeEntities(m[5]);
      continue;
    }
    const [, closing, name, attrText, selfClosing] = m as unknown as [string, string, string, string, string];
    if (closing) {
      if (top.name !== name) throw new ConntrackError('CONNTRACK_PARSE', `unexpected </${name}> in ${top.name || 'document'}`);
      stack.pop();
      continue;
    }
    const el: XmlElement = { name, attrs: {}, children: [], text: '' };
    for (const a of attrText.matchAll(XML_ATTR)) el.attrs[a[1]!] = decodeEntities(a[2]!);
    top.children.push(el);
    if (!selfClosing) stack.push(el);
  }
  if (consumed !== xml.length) throw new ConntrackError('CONNTRACK_PARSE', `malformed XML near: ${xml.slice(consumed, consumed + 40)}`);
  if (stack.length !== 1 || root.children.length !== 1) throw new ConntrackError('CONNTRACK_PARSE', 'unbalanced XML element');
  return root.children[0]!;
}

function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return el?.children.find((c) => c.name === name);
}

/** A decimal integer from 0 to `max` (default: 32 bits). */
function intText(el: XmlElement | undefined, what: string, max = 0xffffffff): number {
  const text = el?.text.trim() ?? '';
  const n = Number(text);
  if (!/^\d{1,10}$/.test(text) || n > max) throw new ConntrackError('CONNTRACK_PARSE', `flow without a valid ${what}`);
  return n;
}

/** One conntrack entry as printed by `conntrack -o xml,id,ktimestamp`. */
export interface ConntrackEntry {
  /** The event type for `-E` output, null for a dump. */
  event: 'new' | 'update' | 'destroy' | null;
  /** layer4 protoname, e.g. tcp, udp, icmp. */
  proto: string;
  orig: FourTuple;
  reply: FourTuple;
  zone: number;
  id: number;
  /** Seconds since the entry was created (present when nf_conntrack_timestamp is on). */
  deltaSec: number | null;
  /** The kernel's creation and destruction times, epoch ns (with nf_conntrack_timestamp; start in dumps and DESTROY events, stop in DESTROY events). */
  startNs: bigint | null;
  stopNs: bigint | null;
}

function tupleOf(meta: XmlElement | undefined, direction: string): FourTuple {
  const l3 = child(meta, 'layer3');
  const l4 = child(meta, 'layer4');
  const src = canonicalAddress(child(l3, 'src')?.text.trim() ?? '');
  const dst = canonicalAddress(child(l3, 'dst')?.text.trim() ?? '');
  if (!src || !dst) throw new ConntrackError('CONNTRACK_PARSE', `flow without valid ${direction} addresses`);
  // Port-less protocols (icmp, ...) have no sport/dport: 0.
  const port = (name: string): number => (child(l4, name) ? intText(child(l4, name), `${direction} ${name}`, 0xffff) : 0);
  return { src, sport: port('sport'), dst, dport: port('dport') };
}

/** Parses one `<flow>...</flow>` element. */
export function parseConntrackFlow(xml: string): ConntrackEntry {
  const flow = parseXmlElement(xml);
  if (flow.name !== 'flow') throw new ConntrackError('CONNTRACK_PARSE', `expected <flow>, got <${flow.name}>`);
  const meta = (dir: string): XmlElement | undefined => flow.children.find((c) => c.name === 'meta' && c.attrs['direction'] === dir);
  const orig = meta('original');
  const independent = meta('independent');
  const type = flow.attrs['type'];
  if (type !== undefined && type !== 'new' && type !== 'update' && type !== 'destroy') {
    throw new ConntrackError('CONNTRACK_PARSE', `unknown flow type ${type}`);
  }
  const zoneEl = child(independent, 'zone') ?? child(orig, 'zone');
  const deltaEl = child(independent, 'deltatime');
  const timestamp = child(independent, 'timestamp');
  const ns = (name: string): bigint | null => {
    const el = child(timestamp, name);
    if (!el) return null;
    if (!/^\d{1,19}$/.test(el.text.trim()) || BigInt(el.text.trim()) >= 1n << 63n) throw new ConntrackError('CONNTRACK_PARSE', `flow with a bad timestamp ${name}`);
    return BigInt(el.text.trim());
  };
  return {
    event: type ?? null,
    proto: child(orig, 'layer4')?.attrs['protoname'] ?? 'unknown',
    orig: tupleOf(orig, 'original'),
    reply: tupleOf(meta('reply'), 'reply'),
    zone: zoneEl ? intText(zoneEl, 'zone', 0xffff) : 0,
    id: intText(child(independent, 'id'), 'id'),
    deltaSec: deltaEl ? intText(deltaEl, 'deltatime') : null,
    startNs: ns('start'),
    stopNs: ns('stop'),
  };
}

/** Cuts a stream of conntrack XML output into complete `<flow>` elements, dropping everything between them. */
export class FlowSplitter {
  private buf = '';

  push(chunk: string): string[] {
    this.buf += chunk;
    const flows: string[] = [];
    for (;;) {
      const start = this.buf.indexOf('<flow');
      if (start < 0) {
        this.buf = this.buf.slice(-'<flow'.length); // a start tag may be cut in two
        return flows;
      }
      const end = this.buf.indexOf('</flow>', start);
      if (end < 0) {
        this.buf = this.buf.slice(start);
        return flows;
      }
      flows.push(this.buf.slice(start, end + '</flow>'.length));
      this.buf = this.buf.slice(end + '</flow>'.length);
    }
  }
}

// ---- the source --------------------------------------------------------------

export interface ConntrackSourceOptions {
  node: string;
  netns: NetnsRef;
  onTranslations(records: NatTranslation[]): void;
  onError(err: ConntrackError): void;
  /** Full re-dump period; default 30 s. */
  resyncMs?: number;
  /** Delay before restarting a dead event stream; default 2 s. */
  restartMs?: number;
  /** The conntrack binary; default `conntrack` from PATH. */
  conntrackBin?: string;
  /**
   * Whether the source may turn on, in its namespace, what it needs of the
   * kernel: net.netfilter.nf_conntrack_timestamp (exact creation and
   * destruction times) and nf_conntrack_events when 0. Default false: it only
   * reads them, and reports events being off.
   */
  sysctls?: boolean;
}

interface Tracked {
  record: NatTranslation;
  /** The resync generation in which the entry was last observed. */
  generation: number;
}

const EVENT_BUFFER_BYTES = 8 * 1024 * 1024;
/** XML with entry ids and, where nf_conntrack_timestamp is on, the kernel's start and stop times. */
const OUTPUT_FORMAT = 'xml,id,ktimestamp';
const SYSCTL_DIR = '/proc/sys/net/netfilter';
const SUBSCRIBE_TIMEOUT_MS = 5000;
const NETLINK_NETFILTER = 12;

function nowNs(): EpochNs {
  return BigInt(Date.now()) * 1_000_000n;
}

function tupleKey(t: FourTuple): string {
  return `${t.src}:${t.sport}>${t.dst}:${t.dport}`;
}

/** Calls back once when the process is gone: on 'close', or on 'error' when it never started. */
function onceGone(proc: ChildProcess, cb: (code: number | null, signal: NodeJS.Signals | null, spawnError?: NodeJS.ErrnoException) => void): void {
  let spawnError: NodeJS.ErrnoException | undefined;
  let called = false;
  const done = (code: number | null, signal: NodeJS.Signals | null): void => {
    if (called) return;
    called = true;
    cb(code, signal, spawnError);
  };
  proc.once('error', (err) => {
    spawnError = err;
    if (proc.pid === undefined) done(null, null);
  });
  proc.once('close', done);
}

function copyRecord(r: NatTranslation): NatTranslation {
  return { ...r, orig: { ...r.orig }, reply: { ...r.reply } };
}

/** Whether the process holds a NETLINK_NETFILTER socket bound to multicast groups, i.e. is subscribed to events. */
async function hasConntrackSubscription(pid: number): Promise<boolean> {
  try {
    const sockets = new Set<string>();
    for (const fd of await readdir(`/proc/${pid}/fd`)) {
      const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
      if (m) sockets.add(m[1]!);
    }
    const table = await readFile(`/proc/${pid}/net/netlink`, 'utf8');
    return table.split('\n').slice(1).some((line) => {
      const f = line.trim().split(/\s+/); // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
      return Number(f[1]) === NETLINK_NETFILTER && parseInt(f[3] ?? '0', 16) !== 0 && sockets.has(f[9] ?? '');
    });
  } catch {
    return false; // the process is gone or not yet exec'd
  }
}

export class ConntrackSource {
  private readonly resyncMs: number;
  private readonly restartMs: number;
  private readonly bin: string;
  private readonly entries = new Map<string, Tracked>();
  private readonly pending = new Map<string, NatTranslation>();
  private flushScheduled = false;
  private generation = 0;
  private running = false;
  private events: ChildProcess | null = null;
  private readonly dumps = new Set<ChildProcess>();
  private resyncTimer: NodeJS.Timeout | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private resyncing: Promise<void> | null = null;
  private resyncAgain = false;

  constructor(private readonly opts: ConntrackSourceOptions) {
    this.resyncMs = opts.resyncMs ?? 30_000;
    this.restartMs = opts.restartMs ?? 2_000;
    this.bin = opts.conntrackBin ?? 'conntrack';
  }

  /** Subscribes to events, then dumps the table. Resolves when both were tried; failures go to onError. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    if (await this.subscribe()) {
      await this.checkSysctls();
      await this.resync();
    }
    if (this.running) this.resyncTimer = setInterval(() => void this.resync(), this.resyncMs).unref();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.resyncTimer = this.restartTimer = null;
    const children = [...this.dumps, ...(this.events ? [this.events] : [])];
    this.events = null;
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('close', () => resolve());
            c.kill('SIGTERM');
          }),
      ),
    );
    this.flush();
  }

  /**
   * Reads the sysctls the source depends on and, where it may, turns on what
   * it needs; otherwise reports events being off (then only dumps see entries).
   */
  private async checkSysctls(): Promise<void> {
    const { path, name } = this.opts.netns;
    const read = async (sysctl: string): Promise<string | null> => {
      const result = await runCommand('nsenter', [`--net=${path}`, 'cat', `${SYSCTL_DIR}/${sysctl}`]);
      return result.code === 0 ? result.stdout.trim() : null;
    };
    const [events, timestamp] = [await read('nf_conntrack_events'), await read('nf_conntrack_timestamp')];
    if (!this.opts.sysctls) {
      if (events === '0') {
        this.opts.onError(new ConntrackError('CONNTRACK_EVENTS_OFF', `net.netfilter.nf_conntrack_events is 0 in ${name}: translations are seen only by the dump every ${this.resyncMs / 1000} s, short connections are missed (--conntrack-sysctls lets nettrail turn events on)`));
      }
      return;
    }
    const settings = [
      ...(timestamp === '0' ? ['net.netfilter.nf_conntrack_timestamp=1'] : []),
      ...(events === '0' ? ['net.netfilter.nf_conntrack_events=1'] : []),
    ];
    if (settings.length === 0) return;
    const result = await runCommand('nsenter', [`--net=${path}`, 'sysctl', '-qw', ...settings]);
    if (result.code !== 0) {
      const detail = (result.spawnError?.message ?? result.stderr.trim()) || `exit code ${result.code}`;
      this.opts.onError(new ConntrackError('CONNTRACK_SYSCTL_FAILED', `setting ${settings.join(' ')} in ${name} failed: ${detail}`));
    }
  }

  private spawnConntrack(args: string[]): ChildProcess {
    return spawn('nsenter', [`--net=${this.opts.netns.path}`, this.bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Turns a failed run into the error that says why. */
  private failure(what: string, code: number | null, stderr: string, spawnError?: NodeJS.ErrnoException): ConntrackError {
    const detail = (spawnError?.message ?? stderr.trim()) || `exit code ${code}`;
    if (spawnError?.code === 'ENOENT' || code === 127) {
      return new ConntrackError('CONNTRACK_NOT_FOUND', `${what}: nsenter or ${this.bin} not found: ${detail}`);
    }
    if (!existsSync(this.opts.netns.path)) {
      return new ConntrackError('CONNTRACK_NETNS_GONE', `${what}: namespace ${this.opts.netns.path} is gone`);
    }
    return new ConntrackError(what === 'event stream' ? 'CONNTRACK_EXITED' : 'CONNTRACK_DUMP_FAILED', `${what} in ${this.opts.netns.name} failed: ${detail}`);
  }

  /** Starts `conntrack -E` and waits until its netlink socket is subscribed. */
  private async subscribe(): Promise<boolean> {
    const proc = this.spawnConntrack(['-E', '-o', OUTPUT_FORMAT, '-b', String(EVENT_BUFFER_BYTES)]);
    this.events = proc;
    const splitter = new FlowSplitter();
    let stderr = '';
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const now = nowNs();
      for (const xml of splitter.push(chunk)) this.observe(xml, now);
      this.scheduleFlush();
    });
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4096);
      if (chunk.includes('ENOBUFS')) {
        this.opts.onError(new ConntrackError('CONNTRACK_EVENTS_LOST', `conntrack events lost in ${this.opts.netns.name} (ENOBUFS); re-dumping`));
        void this.resync();
      }
    });
    let gone = false;
    onceGone(proc, (code, _signal, spawnError) => {
      gone = true;
      if (this.events === proc) this.events = null;
      if (this.running) this.onEventStreamDeath(this.failure('event stream', code, stderr, spawnError));
    });
    const deadline = Date.now() + SUBSCRIBE_TIMEOUT_MS;
    while (!gone && Date.now() < deadline) {
      if (proc.pid !== undefined && (await hasConntrackSubscription(proc.pid))) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    if (gone) return false;
    this.opts.onError(new ConntrackError('CONNTRACK_SUBSCRIBE_TIMEOUT', `conntrack -E in ${this.opts.netns.name} did not subscribe within ${SUBSCRIBE_TIMEOUT_MS} ms`));
    return true;
  }

  private onEventStreamDeath(err: ConntrackError): void {
    this.opts.onError(err);
    if (err.code !== 'CONNTRACK_EXITED') return; // restarting cannot help
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      void this.subscribe().then((ok) => (ok ? this.resync() : undefined));
    }, this.restartMs);
  }

  /** Re-dumps the whole table (both families) and forgets entries that vanished unseen. */
  private resync(): Promise<void> {
    if (this.resyncing) {
      this.resyncAgain = true;
      return this.resyncing;
    }
    this.resyncing = (async () => {
      do {
        this.resyncAgain = false;
        const generation = ++this.generation;
        try {
          for (const family of ['ipv4', 'ipv6']) await this.dump(family);
        } catch (err) {
          this.opts.onError(err as ConntrackError);
          continue;
        }
        for (const [key, t] of this.entries) if (t.generation < generation) this.entries.delete(key);
        this.flush();
      } while (this.resyncAgain && this.running);
    })().finally(() => (this.resyncing = null));
    return this.resyncing;
  }

  private dump(family: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.running) return resolve();
      const proc = this.spawnConntrack(['-L', '-f', family, '-o', OUTPUT_FORMAT]);
      this.dumps.add(proc);
      const splitter = new FlowSplitter();
      let stderr = '';
      proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        const now = nowNs();
        for (const xml of splitter.push(chunk)) this.observe(xml, now);
      });
      proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4096)));
      onceGone(proc, (code, signal, spawnError) => {
        this.dumps.delete(proc);
        if ((code === 0 && !spawnError) || (!this.running && signal)) resolve();
        else reject(this.failure(`conntrack -L -f ${family}`, code, stderr, spawnError));
      });
    });
  }

  private observe(xml: string, now: EpochNs): void {
    let entry: ConntrackEntry;
    try {
      entry = parseConntrackFlow(xml);
    } catch (err) {
      this.opts.onError(err as ConntrackError);
      return;
    }
    if (entry.proto !== 'tcp' && entry.proto !== 'udp') return;
    if (classifyNat(entry.orig, entry.reply) === null) return;
    const key = `${entry.zone}/${entry.id}/${entry.proto}/${tupleKey(entry.orig)}`;
    let tracked = this.entries.get(key);
    if (!tracked) {
      const age = entry.deltaSec === null ? 0n : BigInt(entry.deltaSec) * 1_000_000_000n;
      const started = entry.startNs ?? (age <= now ? now - age : now);
      tracked = {
        generation: this.generation,
        record: {
          via: 'iptables',
          node: this.opts.node,
          netns: this.opts.netns.name,
          zone: entry.zone,
          proto: entry.proto as Proto,
          orig: entry.orig,
          reply: entry.reply,
          firstSeen: started,
          lastSeen: entry.stopNs ?? now,
          entryId: entry.id,
        },
      };
      this.entries.set(key, tracked);
    }
    tracked.generation = this.generation;
    const seen = entry.stopNs ?? now;
    if (seen > tracked.record.lastSeen) tracked.record.lastSeen = seen;
    this.pending.set(key, copyRecord(tracked.record));
    if (entry.event === 'destroy') this.entries.delete(key);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    this.pending.clear();
    this.opts.onTranslations(batch);
  }
}
