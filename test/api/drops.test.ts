// Drops through the whole service: traced in the lab's namespaces, stored, tied to
// their connections (also when the tuple where the packet died is not one a NAT
// event reported), searched with /api/v1/drops, and written into the pcapng.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { PacketJson } from '../../api/schemas/connections.js';
import type { DropJson } from '../../api/schemas/drops.js';
import type { DropTracingJson } from '../../api/schemas/status.js';
import { dropForwarded, dropOutput, probeFrom } from '../../lab/drop-scenarios.js';
import { getJson, getOk, labWithService, NODE, serviceTuple, settledConnection, tupleText } from '../support/service-fixture.js';

test('drops in the API: per connection, in the timeline, searchable, in the pcapng', async (t) => {
  const { lab, service, dir } = await labWithService(t);
  assert.ok(service.drops, 'drop tracing runs');
  const { client, router } = lab.nodes;
  const clientIp = client.ifaces[0].ip;

  // 1. Through DNAT, then dropped in the router's FORWARD chain: conntrack never confirms the
  // entry, so only the packet id ties the drop (server-side tuple) to the client's connection.
  await dropForwarded(lab, 'tcp', lab.server.port);
  const blockedPort = randomInt(40000, 50000);
  const blocked = await probeFrom(client.netns.name, { proto: 'tcp', host: lab.service.ip, port: lab.service.port, localPort: blockedPort, timeoutMs: 1500 });
  assert.equal(blocked.outcome, 'timeout');
  // 2. A UDP datagram dropped in the client's own OUTPUT chain: no capture point ever sees it.
  await dropOutput(client.netns, 'udp', 5353);
  const outputPort = randomInt(50000, 60000);
  assert.equal((await probeFrom(client.netns.name, { proto: 'udp', host: lab.server.ip, port: 5353, localPort: outputPort })).error, 'EPERM');

  const api = <T>(route: string) => getJson<T>(service, route);
  const blockedTupleText = tupleText(serviceTuple(lab, blockedPort));
  const blockedTuple = encodeURIComponent(blockedTupleText);
  // The SYN and its retransmission, both dropped at the router after DNAT.
  const connection = await settledConnection(service, blockedTupleText, 'the SYN and its retransmission dropped', (c) => c.drops.length >= 2);
  for (const drop of connection.drops) {
    assert.deepEqual(
      { netns: drop.netns, iface: drop.iface, proto: drop.proto, src: drop.src, sport: drop.sport, dst: drop.dst, dport: drop.dport, reason: drop.reason },
      { netns: router.netns.name, iface: 'to-client', proto: 'tcp', src: clientIp, sport: blockedPort, dst: lab.server.ip, dport: lab.server.port, reason: 'NETFILTER_DROP' },
    );
    assert.match(drop.cause, /FORWARD chain/);
    assert.match(drop.location, /^\w+\+0x[0-9a-f]+$/);
    // A loss: nothing saw the packet after the router's FORWARD chain.
    assert.equal(drop.fate, 'lost');
    assert.equal(drop.seen_at, `${NODE}/${router.netns.name}/to-client`);
    assert.ok(drop.seen_delta_us !== null && drop.seen_delta_us <= 0);
    assert.match(drop.fate_proof, new RegExp(`^no capture point saw it after the drop \\(last seen at ${NODE}/${router.netns.name}/to-client \\(ingress\\) [\\d.]+ µs earlier\\)$`));
  }
  const withDrop = await api<{ flows: Array<{ client: { port: number } }> }>(`/api/v1/flows?has=drop&port=${blockedPort}`);
  assert.ok(withDrop.flows.length > 0 && withDrop.flows.every((f) => f.client.port === blockedPort), 'has=drop finds the lost SYNs\' flows');
  assert.equal(connection.hops.length, 0, 'no confirmed NAT entry');
  const { packets, drops } = await api<{ packets: PacketJson[]; drops: DropJson[] }>(`/api/v1/connections/timeline?tuple=${blockedTuple}`);
  assert.deepEqual(drops, connection.drops);
  // Each dropped packet is one capture saw on its way in: same packet_id.
  const ingressIds = new Set(packets.filter((p) => p.netns === router.netns.name && p.iface === 'to-client').map((p) => p.packet_id));
  assert.ok(drops.every((d) => ingressIds.has(d.packet_id)), 'dropped packets were captured at the router first');

  // The pcapng: the dropped packets with their reason, on an interface of their own.
  const pcapFile = path.join(dir, 'blocked.pcapng');
  writeFileSync(pcapFile, Buffer.from(await (await getOk(service, `/api/v1/pcap?tuple=${blockedTuple}`)).arrayBuffer()));
  const commented = execFileSync('tshark', ['-r', pcapFile, '-Y', 'frame.comment contains "DROPPED"', '-T', 'fields', '-E', 'separator=|',
    '-e', 'frame.interface_name', '-e', 'frame.interface_description', '-e', 'ip.dst', '-e', 'tcp.dstport', '-e', 'tcp.flags.syn', '-e', 'frame.comment'])
    .toString().trim().split('\n');
  assert.equal(commented.length, drops.length, commented.join('\n'));
  for (const line of commented) {
    const [iface, description, dst, dport, syn, comment] = line.split('|');
    assert.equal(iface, `${NODE}/${router.netns.name}/to-client drops`);
    assert.match(description, /^packets the kernel dropped/);
    assert.deepEqual([dst, dport, syn], [lab.server.ip, String(lab.server.port), '1']);
    assert.match(comment, new RegExp(`^DROPPED \\(NETFILTER_DROP\\) at ${NODE}/${router.netns.name}/to-client in \\w+\\+0x[0-9a-f]+: dropped by a netfilter rule in the FORWARD chain`));
  }
  assert.equal(execFileSync('tshark', ['-r', pcapFile, '-Y', '_ws.malformed || _ws.expert.severity >= error']).toString().trim(), '');

  // 2. A connection known by its drop alone; its packet starts at the IP header (no MAC header yet).
  // Its drop was reported after the blocked connection's: it may not be written out yet.
  const outputTupleText = `udp ${clientIp}:${outputPort} -> ${lab.server.ip}:5353`;
  const outputTuple = encodeURIComponent(outputTupleText);
  const unseen = await settledConnection(service, outputTupleText, 'its drop', (c) => c.drops.length > 0);
  assert.equal(unseen.flows.length, 0);
  assert.equal(unseen.drops.length, 1);
  assert.deepEqual([unseen.drops[0].netns, unseen.drops[0].iface, unseen.drops[0].reason], [client.netns.name, '', 'NETFILTER_DROP']);
  assert.match(unseen.drops[0].cause, /OUTPUT chain/);
  assert.deepEqual([unseen.drops[0].fate, unseen.drops[0].fate_proof, unseen.drops[0].seen_at], ['lost', 'no capture point saw it, before or after the drop', null]);
  const outputFile = path.join(dir, 'output.pcapng');
  writeFileSync(outputFile, Buffer.from(await (await getOk(service, `/api/v1/pcap?tuple=${outputTuple}`)).arrayBuffer()));
  const raw = execFileSync('tshark', ['-r', outputFile, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.encap_type', '-e', 'udp.srcport', '-e', 'udp.dstport'])
    .toString().trim();
  assert.equal(raw, `7|${outputPort}|5353`, 'one raw-IP frame (WTAP_ENCAP_RAW_IP) with the UDP header');

  // Search: filters and pages.
  type Page = { drops: DropJson[]; next_cursor: string | null };
  const all = await api<Page>('/api/v1/drops?limit=1000');
  assert.ok(all.drops.length >= 3);
  assert.deepEqual(all.drops.map((d) => d.ts), [...all.drops.map((d) => d.ts)].sort().reverse(), 'newest first');
  const byReasonAndNetns = await api<Page>(`/api/v1/drops?reason=NETFILTER_DROP&netns=${router.netns.name}`);
  assert.deepEqual(byReasonAndNetns.drops.map((d) => d.packet_id).sort(), connection.drops.map((d) => d.packet_id).sort());
  const udp = await api<Page>(`/api/v1/drops?proto=udp&dport=5353&src=${encodeURIComponent(`${clientIp.split('.').slice(0, 3).join('.')}.0/24`)}`);
  assert.deepEqual(udp.drops.map((d) => d.sport), [outputPort]);
  assert.equal((await api<Page>('/api/v1/drops?reason=TC_INGRESS')).drops.length, 0);
  assert.equal((await api<Page>(`/api/v1/drops?port=${outputPort}&iface=nonexistent`)).drops.length, 0);
  const until = encodeURIComponent(all.drops[all.drops.length - 1].ts);
  assert.equal((await api<Page>(`/api/v1/drops?to=${until}`)).drops.length, all.drops.filter((d) => d.ts <= all.drops[all.drops.length - 1].ts).length);
  const paged: DropJson[] = [];
  let cursor: string | null = null;
  do {
    const page: Page = await api<Page>(`/api/v1/drops?limit=1&order=ts${cursor ? `&cursor=${cursor}` : ''}`);
    paged.push(...page.drops);
    cursor = page.next_cursor;
  } while (cursor !== null && paged.length <= all.drops.length);
  assert.deepEqual(paged, [...all.drops].reverse(), 'pages of one, oldest first, neither repeat nor skip');
  const badCursor = await fetch(`${service.url}/api/v1/drops?cursor=nonsense`);
  assert.equal(badCursor.status, 400);
  assert.equal(((await badCursor.json()) as { error: { code: string } }).error.code, 'BAD_CURSOR');
  assert.equal((await fetch(`${service.url}/api/v1/drops?src=10.0.0.0/33`)).status, 400);

  // What the tracer counted, suppressed included, in the capture status and the metrics.
  const status = await api<{ drops?: DropTracingJson }>('/api/v1/capture/status');
  assert.ok(status.drops, 'capture status has the drop counters');
  assert.equal(status.drops.namespaces, lab.namespaces.length);
  assert.ok(status.drops.reported >= all.drops.length, JSON.stringify(status.drops));
  assert.deepEqual(status.drops.ignored_reasons, ['QUEUE_PURGE']);
  const metrics = await (await fetch(`${service.url}/metrics`)).text();
  assert.match(metrics, /^nettrail_drop_events_total\{outcome="reported"\} [1-9]\d*$/m);
});
