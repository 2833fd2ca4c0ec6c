// `nettrail serve` in one object: capture + flow assembly + NAT tracking feed
// the flow-log store; the HTTP API and UI read it.
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { PacketCapture, type XdpMode } from '../capture/packets/capture.js';
import { DropTracer } from '../capture/drops/tracer.js';
import type { CaptureFilter } from '../capture/packets/filter.js';
import { FlowTable } from '../flows/flow-table.js';
import type { Collector } from '../model/collector.js';
import { packageRoot } from '../model/package-root.js';
import { openStore, type FlowLogStore, type StoreOptions } from '../flowlog/store.js';
import { FlowLogWriter, type WriterOptions } from '../flowlog/writer.js';
import { DropSettler } from '../flowlog/drop-fate.js';
import { storeBackedOptions } from './store-reader.js';
import { NatSources } from '../nat-tracker/tracker.js';
import { buildServer } from '../api/server.js';

export interface ServiceOptions {
  store: StoreOptions;
  /** Namespace names to capture in, or 'all'. */
  netns: string[] | 'all';
  ifaces: string[] | null;
  snaplen?: number;
  /** Capture's ring-buffer bytes per possible CPU (default capture's: 4 MiB). */
  ringBytesPerCpu?: number;
  /** Capture's ring wakeup threshold (default capture's DEFAULT_WAKEUP_BYTES). */
  wakeupBytes?: number;
  /** The flow-log writer's batching, buffer bound and retries (default the writer's). */
  writer?: WriterOptions;
  /** XDP at ingress besides TC (default off). */
  xdp?: XdpMode;
  /** In-kernel capture filter (default everything); drop tracing applies it too. */
  filter?: CaptureFilter;
  /** Trace drops (skb:kfree_skb) in the captured namespaces (default true); without it capture goes on. */
  traceDrops?: boolean;
  /** Drop events per second per CPU, more are counted only (default DropTracer's; 0: no limit). */
  dropRateLimit?: number;
  /** Drop reasons counted but not reported (default DEFAULT_IGNORED_REASONS: QUEUE_PURGE). */
  ignoredDropReasons?: string[];
  /** How long a drop is held before its fate is decided (ms, default DropSettler's). */
  dropSettleMs?: number;
  /** Bearer token required on the API when set. */
  token?: string;
  /** API requests per client address and minute; null turns rate limiting off (default: the app's). */
  rateLimitPerMinute?: number | null;
  listen: { host: string; port: number };
  /** The node name of every capture point and record (default: the host name). */
  node?: string;
  /** How often flows are written while they last (ms). */
  flowFlushMs?: number;
  logger?: boolean;
  log?: (message: string) => void;
  /**
   * Called once the HTTP API listens, before capture has attached anywhere (attaching takes the kernel
   * 12–15 ms per tcx link): the API answers, /healthz included, while capture starts.
   */
  onListening?(url: string): void;
  /** Let NAT tracking turn on conntrack timestamps (and events when off) in the captured namespaces (default false). */
  conntrackSysctls?: boolean;
  /** ovs-vswitchd run directories whose userspace-datapath conntrack is tracked (default /var/run/openvswitch). */
  ovsRundirs?: string[];
}

export interface Service {
  server: FastifyInstance;
  store: FlowLogStore;
  capture: PacketCapture;
  /** null when drop tracing is off or could not start. */
  drops: DropTracer | null;
  /** Decides the drops' fates before they are written. */
  dropFates: DropSettler;
  /** NAT tracking (conntrack, IPVS, OVS sources). */
  nat: NatSources;
  writer: FlowLogWriter;
  /** The address the HTTP server listens on. */
  url: string;
  /** The node name its records carry. */
  node: string;
  /** Write out everything captured so far (flows as they stand). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

const nowNs = () => BigInt(Date.now()) * 1_000_000n;
const REFOLLOW_MS = 30_000;

export async function startService(options: ServiceOptions): Promise<Service> {
  const node = options.node ?? os.hostname();
  const log = options.log ?? ((message: string) => console.error(`nettrail: ${message}`));
  const store = await openStore(options.store);
  const writer = new FlowLogWriter(store, {
    // Logged once per failing streak, and when the table is written again.
    onInsertFailure: ({ table, error, failures }) => {
      if (error === null) log(`flow-log store: writing ${table} again, after ${failures} failed inserts`);
      else if (failures === 1) log(`flow-log store: an insert into ${table} failed; its rows stay buffered and are retried: ${error instanceof Error ? error.message : String(error)}`);
    },
    ...options.writer,
  });
  const flows = new FlowTable();
  const dropFates = new DropSettler({
    store,
    onDecided: (records) => writer.addDrops(records),
    packetProgress: () => {
      const { accepted, written, dropped } = writer.stats().packets;
      return { accepted, done: written + dropped };
    },
    settleMs: options.dropSettleMs,
    log,
  });
  const nat = new NatSources({
    node,
    onTranslations: (records) => writer.addNat(records),
    log,
    conntrackSysctls: options.conntrackSysctls,
    ovsRundirs: options.ovsRundirs,
  });

  // Capture and drop tracing come into being started: these collectors start them.
  let capture: PacketCapture | undefined;
  let drops = null as DropTracer | null;
  const packetCapture: Collector = {
    name: 'packet capture',
    required: true,
    async start() {
      capture = await PacketCapture.start({
        node,
        netns: options.netns,
        ifaces: options.ifaces,
        snaplen: options.snaplen,
        ringBytesPerCpu: options.ringBytesPerCpu,
        wakeupBytes: options.wakeupBytes,
        xdp: options.xdp,
        filter: options.filter,
        onPackets(packets) {
          writer.addPackets(packets);
          flows.add(packets);
        },
        // While the store is behind, the ring buffer is not read: what overflows it is lost in
        // the kernel, counted per point, instead of piling up here.
        backpressure: () => (writer.overHighWater ? writer.belowHighWater() : undefined),
        onWarning: log,
      });
    },
    // Capture finds its namespaces itself (--netns): they are what the others follow.
    follow() {},
    stop: () => capture!.stop(),
  };
  const dropTracing: Collector = {
    name: 'drop tracing',
    async start() {
      drops = await DropTracer.start({
        node,
        filter: options.filter,
        rateLimit: options.dropRateLimit,
        ignoredReasons: options.ignoredDropReasons,
        onDrops: (records) => dropFates.add(records),
        onWarning: log,
      });
    },
    follow: (namespaces) => drops!.setNamespaces(namespaces),
    stop: () => drops!.stop(),
  };
  // The API first: it answers (from the store) while capture attaches.
  const server = await buildServer(
    {
      ...storeBackedOptions(store),
      captureStatus: () => capture?.status() ?? null,
      dropStatus: () => drops?.status() ?? null,
      dropFates: () => dropFates.counts(),
      natStatus: () => nat.status(),
      writerStats: () => writer.stats(),
      uiDir: path.join(packageRoot, 'ui', 'dist'),
      token: options.token ?? null,
      rateLimitPerMinute: options.rateLimitPerMinute,
    },
    options.logger ?? false,
  );
  const url = await server.listen({ host: options.listen.host, port: options.listen.port }).catch(async (err: unknown) => {
    await writer.close();
    await store.close();
    throw err;
  });
  options.onListening?.(url);

  // In the order they start: capture first, since the others follow the namespaces it is attached in.
  const collectors: Collector[] = [packetCapture, nat, ...(options.traceDrops === false ? [] : [dropTracing])];
  const running: Collector[] = [];
  // Capture stops first, so that nothing comes in after it; then the others, last started first.
  const stopRunning = async () => {
    for (const collector of [...running.slice(0, 1), ...running.slice(1).reverse()]) await collector.stop();
  };
  for (const collector of collectors) {
    try {
      await collector.start();
    } catch (err) {
      if (!collector.required) {
        log(`${collector.name} is off: ${(err as Error).message}`);
        continue;
      }
      await stopRunning();
      await server.close();
      dropFates.close();
      await writer.close();
      await store.close();
      throw err;
    }
    running.push(collector);
    await collector.follow(capture!.namespaces());
  }

  const flushFlows = () => writer.addFlows(flows.collect(nowNs()));
  // The other collectors follow capture's namespaces: told when they change, and every REFOLLOW_MS
  // anyway (NAT tracking then looks again whether the kernel has IPVS now).
  const started = capture!;
  let followedVersion = started.attachmentsVersion;
  let followedAt = Date.now();
  const timer = setInterval(() => {
    flushFlows();
    if (started.attachmentsVersion === followedVersion && Date.now() - followedAt < REFOLLOW_MS) return;
    followedVersion = started.attachmentsVersion;
    followedAt = Date.now();
    const namespaces = started.namespaces();
    for (const collector of running) void collector.follow(namespaces);
  }, options.flowFlushMs ?? 1000);
  timer.unref();

  let closing: Promise<void> | undefined;
  return {
    server,
    store,
    capture: started,
    drops,
    dropFates,
    nat,
    writer,
    url,
    // Drops are decided once the packets captured so far are stored, then written.
    node,
    async flush() {
      await started.flush();
      flushFlows();
      await drops?.settled();
      await writer.flush();
      await dropFates.settleAll();
      await writer.flush();
    },
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        await server.close();
        await stopRunning();
        // Every packet captured has been handed over; the drops held are decided once it is stored.
        writer.addFlows(flows.drain());
        await writer.flush();
        await dropFates.settleAll();
        dropFates.close();
        await writer.close();
        await store.close();
      })();
      return closing;
    },
  };
}
