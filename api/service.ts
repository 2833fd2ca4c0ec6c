// `nettrail serve` in one object: capture + flow assembly + NAT tracking feed
// the flow-log store; the HTTP API and UI read it.
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { PacketCapture } from '../capture/capture.js';
import { FlowTable } from '../capture/flows.js';
import { packageRoot } from '../capture/native.js';
import type { NetnsRef } from '../flowlog/records.js';
import { openStore, type FlowLogStore, type StoreOptions } from '../flowlog/store.js';
import { FlowLogWriter } from '../flowlog/writer.js';
import { flowsForTuples, natForTuple, natTranslations, packetsForTuples, recentFlows } from '../flowlog/queries.js';
import { ConntrackSource } from '../nat-tracker/conntrack.js';
import { buildServer } from './server.js';

export interface ServiceOptions {
  store: StoreOptions;
  /** Namespace names to capture in, or 'all'. */
  netns: string[] | 'all';
  ifaces: string[] | null;
  snaplen?: number;
  /** Bearer token required on the API when set. */
  token?: string;
  listen: { host: string; port: number };
  node?: string;
  /** How often flows are written while they last (ms). */
  flowFlushMs?: number;
  logger?: boolean;
  log?: (message: string) => void;
}

export interface Service {
  server: FastifyInstance;
  store: FlowLogStore;
  capture: PacketCapture;
  writer: FlowLogWriter;
  /** The address the HTTP server listens on. */
  url: string;
  /** Write out everything captured so far (flows as they stand). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

const nowNs = () => BigInt(Date.now()) * 1_000_000n;

export async function startService(options: ServiceOptions): Promise<Service> {
  const node = options.node ?? os.hostname();
  const log = options.log ?? ((message: string) => console.error(`nettrail: ${message}`));
  const store = await openStore(options.store);
  const writer = new FlowLogWriter(store);
  const flows = new FlowTable();
  const conntrack = new Map<number, ConntrackSource>();

  const capture = await PacketCapture.start({
    node,
    netns: options.netns,
    ifaces: options.ifaces,
    snaplen: options.snaplen,
    onPackets(packets) {
      writer.addPackets(packets);
      flows.add(packets);
    },
    onWarning: log,
  }).catch(async (err) => {
    await writer.close();
    await store.close();
    throw err;
  });

  // NAT tracking follows the namespaces capture is attached in.
  const trackNamespaces = async (namespaces: NetnsRef[]) => {
    const wanted = new Map(namespaces.map((netns) => [netns.ino, netns]));
    for (const [ino, source] of conntrack) {
      if (wanted.has(ino)) continue;
      conntrack.delete(ino);
      await source.stop();
    }
    for (const [ino, netns] of wanted) {
      if (conntrack.has(ino)) continue;
      const source = new ConntrackSource({
        node,
        netns,
        onTranslations: (records) => writer.addNat(records),
        onError: (err) => log(`conntrack in ${netns.name}: ${err.message}`),
      });
      conntrack.set(ino, source);
      await source.start();
    }
  };
  await trackNamespaces(capture.namespaces());

  const flushFlows = () => writer.addFlows(flows.collect(nowNs()));
  const timer = setInterval(() => {
    flushFlows();
    void trackNamespaces(capture.namespaces());
  }, options.flowFlushMs ?? 1000);
  timer.unref();

  const server = await buildServer(
    {
      reader: {
        natForTuple: (proto, tuple, at) => natForTuple(store, proto, tuple, at),
        flowsForTuples: (proto, tuples, range) => flowsForTuples(store, proto, tuples, range),
        packetsForTuples: (proto, tuples, range) => packetsForTuples(store, proto, tuples, range),
      },
      recentFlows: (limit) => recentFlows(store, limit),
      natTranslations: (limit) => natTranslations(store, { limit }),
      storeHealthy: () => store.ping(),
      captureStatus: () => capture.status(),
      uiDir: path.join(packageRoot, 'ui', 'dist'),
      token: options.token ?? null,
    },
    options.logger ?? false,
  );
  const url = await server.listen({ host: options.listen.host, port: options.listen.port });

  let closing: Promise<void> | undefined;
  return {
    server,
    store,
    capture,
    writer,
    url,
    async flush() {
      flushFlows();
      await writer.flush();
    },
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        await server.close();
        await capture.stop();
        writer.addFlows(flows.drain());
        await Promise.all([...conntrack.values()].map((source) => source.stop()));
        await writer.close();
        await store.close();
      })();
      return closing;
    },
  };
}
