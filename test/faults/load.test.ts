// Overload: a UDP flood (iperf3 -u -b 0 -l 64) between two test namespaces
// while `nettrail serve` (startService, in this process) captures with a ring
// buffer far too small for it. What the ring cannot hold is counted lost per
// point, the same in /api/v1/capture/status and /metrics; the API answers
// throughout; and nothing goes missing uncounted: at the sender's egress every
// datagram is an event or lost, every event is decoded, every decoded packet is
// accepted by the writer or counted dropped, and the store holds exactly what
// was accepted. (Latency and memory under load are figures: bench/soak-load.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startService } from '../../service/service.js';
import { createPair } from '../support/netns-pair.js';
import { iperfServer, iperfUdpFlood, metricValue, pollApi } from '../../bench/support/serve-process.js';
import { storedRows } from '../support/store-fixture.js';

const IPERF_PORT = 5201 + Math.floor(Math.random() * 500);

test('a UDP flood through a tiny ring: loss counted per point and shown, the API answers, every packet accounted for', async (t) => {
  const pair = await createPair(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-faults-load-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const warnings: string[] = [];
  const service = await startService({
    store: { path: path.join(dir, 'store') },
    netns: [pair.client.name, pair.server.name],
    ifaces: ['eth0'],
    // 4 KiB per CPU: a few dozen events fit.
    ringBytesPerCpu: 4096,
    // The test's datagrams only: iperf3's control connection is counted `filtered` in the kernel.
    filter: { nets: [], ports: [], protos: ['udp'] },
    listen: { host: '127.0.0.1', port: 0 },
    node: 'faults',
    log: (message) => warnings.push(message),
  });
  let closed = false;
  t.after(() => (closed ? undefined : service.close()));
  const server = await iperfServer(pair.server.name, IPERF_PORT);
  t.after(() => server.stop());

  // Rates are measured between reads of the status: none at the first.
  const first = (await (await fetch(`${service.url}/api/v1/capture/status`)).json()) as { events_per_s?: number };
  assert.equal(first.events_per_s, undefined, 'no rate at the first read');
  const poll = pollApi(service.url, ['/healthz', '/api/v1/capture/status', '/metrics', '/api/v1/flows?limit=10'], 50);
  const flood = await iperfUdpFlood(pair.client.name, pair.v4, IPERF_PORT, 3);
  const during = await poll.stop();
  await server.stop();

  // The loss is visible while serve runs: per point in the status API and in /metrics, alike.
  const status = (await (await fetch(`${service.url}/api/v1/capture/status`)).json()) as {
    points: Array<{ netns: string; iface: string; events: number; lost: number; events_per_s?: number; lost_per_s?: number; by_hook: Array<{ hook: string; events: number; lost: number }> }>;
    lost: number;
    events: number;
  };
  const metrics = await (await fetch(`${service.url}/metrics`)).text();
  const client = status.points.find((p) => p.netns === pair.client.name)!;
  const serverPoint = status.points.find((p) => p.netns === pair.server.name)!;
  t.diagnostic(`iperf3 sent ${flood.packets} datagrams in ${flood.seconds.toFixed(1)} s; client eth0: ${client.events} events, ${client.lost} lost; ` +
    `server eth0: ${serverPoint.events} events, ${serverPoint.lost} lost`);
  assert.ok(client.lost > 0, 'the tiny ring lost events at the sender');
  assert.ok(status.lost >= client.lost + serverPoint.lost);
  // The polls during the flood measured its rates at the sender: events and losses a second.
  assert.ok(client.events_per_s! > 0 && client.lost_per_s! > 0, `rates at the client: ${client.events_per_s} events/s, ${client.lost_per_s} lost/s`);
  for (const point of [client, serverPoint]) {
    const labels = { node: 'faults', netns: point.netns, iface: 'eth0' };
    assert.equal(metricValue(metrics, 'nettrail_capture_lost_events_total', labels), point.lost, `/metrics shows ${point.netns}'s loss`);
    assert.equal(metricValue(metrics, 'nettrail_capture_events_total', labels), point.events);
  }

  // The API answered every request during the flood.
  t.diagnostic(`API during the flood: ${[...during.answered].map(([k, n]) => `${k} ×${n}`).join(', ')}; failed ${during.failed.length}; ` +
    `latency ms: ${during.latencies.map((l) => l.toFixed(0)).join(' ')}`);
  assert.deepEqual(during.failed, [], 'no request failed');
  for (const [key] of during.answered) assert.match(key, / 200$/, `${key}: answered 200`);
  assert.ok(during.latencies.length >= 4, 'requests were answered during the flood');

  // Exact accounting. At the sender's egress every datagram (and iperf3's opening one) is an event or lost.
  const egress = client.by_hook.find((h) => h.hook === 'tc-egress')!;
  assert.equal(egress.events + egress.lost, flood.packets + 1, 'sent + 1 = events + lost at the client egress');
  await service.close();
  closed = true;
  const final = service.capture.status();
  const stats = service.writer.stats().packets;
  t.diagnostic(`after stop: ${final.events} events, ${final.lost} lost, ${final.packets} decoded; writer accepted ${stats.accepted}, dropped ${stats.dropped}, written ${stats.written}`);
  assert.equal(final.undecodable, 0);
  assert.equal(final.packets, final.events, 'every event in the ring was decoded');
  assert.equal(stats.accepted + stats.dropped, final.packets, 'every decoded packet accepted or counted dropped');
  assert.equal(stats.written, stats.accepted, 'everything accepted was written');
  assert.equal(await storedRows(path.join(dir, 'store'), 'packets'), stats.written, 'the store holds exactly the rows written');
  assert.deepEqual(warnings.filter((w) => /error/i.test(w)), [], 'no errors logged');
});
