// Prometheus metrics at /metrics: capture events and losses per point, the
// drop tracer's outcomes, the flow-log writer's rows and failures per table,
// HTTP latency per route, and the process's own (CPU, memory, event loop).
// One registry per app.
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { Type } from 'typebox';
import type { CaptureStatus } from '../capture/packets/capture.js';
import type { DropTracerStatus } from '../capture/drops/tracer.js';
import type { DropFateCounts } from '../flowlog/drop-fate.js';
import type { WriterStats } from '../flowlog/writer.js';
import type { NatTrackingJson } from './schemas/status.js';

export interface MetricSources {
  /** null when this process does not capture. */
  captureStatus(): CaptureStatus | null;
  /** null when this process does not write the flow log. */
  writerStats(): WriterStats | null;
  /** null when this process does not trace drops. */
  dropStatus(): DropTracerStatus | null;
  /** null when this process decides no drop fates. */
  dropFates(): DropFateCounts | null;
  /** null when this process does not track NAT. */
  natStatus(): NatTrackingJson | null;
}

export interface ApiMetrics {
  registry: Registry;
  /** An onResponse hook: the request's latency by method, route and status. */
  observeResponse(request: FastifyRequest, reply: FastifyReply): Promise<void>;
}

/** Latency buckets (seconds): sub-millisecond lookups up to slow searches and PCAP downloads. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const EVENT_LOOP_SAMPLE_MS = 500;

export function createMetrics(sources: MetricSources): ApiMetrics {
  const registry = new Registry();
  // The event loop's delay is sampled by a timer; prom-client's default (every 10 ms) alone would wake
  // an idle serve a hundred times a second.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const registers = [registry];

  const pointLabels = ['node', 'netns', 'iface'] as const;
  /**
   * A counter or gauge whose values are read from a source at scrape time:
   * cleared, then each label set's value added (`inc` on both kinds).
   */
  const sourced = <L extends string>(
    Metric: typeof Counter<L> | typeof Gauge<L>, name: string, help: string, labelNames: readonly L[],
    read: (set: (labels: Record<L, string>, value: number) => void) => void,
  ) =>
    new Metric({
      name,
      help,
      labelNames,
      registers,
      collect(this: Counter<L> | Gauge<L>) {
        this.reset();
        read((labels, value) => this.inc(labels, value));
      },
    });

  const eachPoint = (value: (point: CaptureStatus['points'][number]) => number) => (set: (labels: Record<(typeof pointLabels)[number], string>, value: number) => void) => {
    for (const point of sources.captureStatus()?.points ?? []) set({ node: point.node, netns: point.netns, iface: point.iface }, value(point));
  };
  sourced(Gauge, 'nettrail_capture_points', 'Capture points (interface and hook sets) attached', [], (set) => {
    const status = sources.captureStatus();
    if (status) set({}, status.points.length);
  });
  sourced(Counter, 'nettrail_capture_events_total', 'Packet events the kernel wrote to the ring buffer, per capture point', pointLabels, eachPoint((p) => p.events));
  sourced(Counter, 'nettrail_capture_lost_events_total', 'Packet events the kernel could not write (ring buffer full), per capture point', pointLabels, eachPoint((p) => p.lost));
  sourced(Counter, 'nettrail_capture_filtered_total', 'Packets left out by the capture filter, per capture point', pointLabels, eachPoint((p) => p.filtered));
  sourced(Counter, 'nettrail_capture_malformed_total', 'Packets with truncated or inconsistent headers, per capture point', pointLabels, eachPoint((p) => p.malformed));
  sourced(Counter, 'nettrail_capture_packets_total', 'Packets decoded in user space, per capture point', pointLabels, eachPoint((p) => p.packets));

  sourced(Counter, 'nettrail_drop_events_total', 'kfree_skb calls in traced namespaces, by what became of them (reported, ignored, unparsed, filtered, rate_limited, ring_full)', ['outcome'], (set) => {
    const status = sources.dropStatus();
    if (!status) return;
    const { reported, ignored, unparsed, filtered, rateLimited, ringFull } = status;
    for (const [outcome, value] of Object.entries({ reported, ignored, unparsed, filtered, rate_limited: rateLimited, ring_full: ringFull })) set({ outcome }, value);
  });
  sourced(Counter, 'nettrail_drop_fates_total', 'Reported drops by their decided fate: lost (the losses), copy (the packet went on elsewhere), consumed (processed, then freed), unknown (not decided, counted as lost)', ['fate'], (set) => {
    for (const [fate, value] of Object.entries(sources.dropFates() ?? {})) set({ fate }, value);
  });

  const conntrack = (stat: 'events' | 'dumps' | 'overflows') => (set: (labels: Record<string, string>, value: number) => void) => {
    const status = sources.natStatus();
    if (status) set({}, status.conntrack[stat]);
  };
  sourced(Counter, 'nettrail_conntrack_events_total', 'conntrack event messages received, over the namespaces tracked now', [], conntrack('events'));
  sourced(Counter, 'nettrail_conntrack_dumps_total', 'conntrack table dumps completed, over the namespaces tracked now', [], conntrack('dumps'));
  sourced(Counter, 'nettrail_conntrack_overflows_total', 'conntrack socket overflows (ENOBUFS: events lost, a dump followed), over the namespaces tracked now', [], conntrack('overflows'));

  type TableStat = keyof WriterStats[keyof WriterStats];
  const eachTable = (stat: TableStat) => (set: (labels: { table: string }, value: number) => void) => {
    for (const [table, stats] of Object.entries(sources.writerStats() ?? {})) set({ table }, stats[stat]);
  };
  sourced(Counter, 'nettrail_store_rows_accepted_total', 'Rows taken into the flow-log writer, per table', ['table'], eachTable('accepted'));
  sourced(Counter, 'nettrail_store_rows_written_total', 'Rows written to the flow-log store, per table (rate() of it is the write rate)', ['table'], eachTable('written'));
  sourced(Counter, 'nettrail_store_rows_dropped_total', 'Rows refused because the writer buffer was full, per table', ['table'], eachTable('dropped'));
  sourced(Counter, 'nettrail_store_insert_failures_total', 'Failed inserts into the flow-log store (their rows are retried), per table', ['table'], eachTable('failures'));
  sourced(Gauge, 'nettrail_store_buffered_rows', 'Rows accepted and not yet written, per table', ['table'], eachTable('bufferedRows'));
  sourced(Gauge, 'nettrail_store_failing', '1 while inserts into the table fail (its rows stay buffered and are retried), else 0', ['table'], (set) => {
    for (const [table, stats] of Object.entries(sources.writerStats() ?? {})) set({ table }, stats.consecutiveFailures > 0 ? 1 : 0);
  });

  const latency = new Histogram({
    name: 'nettrail_http_request_duration_seconds',
    help: 'HTTP request latency, by method, route pattern and status code',
    labelNames: ['method', 'route', 'status_code'],
    buckets: LATENCY_BUCKETS,
    registers,
  });

  return {
    registry,
    async observeResponse(request, reply) {
      const route = request.routeOptions.url ?? 'unmatched';
      latency.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000);
    },
  };
}

export const metricsRoutes: FastifyPluginAsync<{ metrics: ApiMetrics }> = async (fastify, { metrics }) => {
  fastify.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics (text exposition format)',
        response: {
          200: {
            description: 'Prometheus text exposition format',
            content: { 'text/plain; version=0.0.4': { schema: Type.String() } },
          },
        },
      },
    },
    async (_request, reply) => {
      reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    },
  );
};
