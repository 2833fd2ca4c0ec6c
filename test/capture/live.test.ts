// Live capture in test namespaces, compared with tcpdump at the same interfaces:
// TCP and UDP over IPv4 and IPv6, at TC (ingress + egress) and at XDP ingress
// (native and generic), byte for byte.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { PacketRecord } from '../../model/records.js';
import { captureBothEnds, createPair, headerEnd, IFACE, type NetnsPair } from '../support/netns-pair.js';
import { startTcpdump, type PcapPacket } from '../support/tcpdump.js';
import { sleep } from '../../bench/support/wait.js';

const ROUNDS = 5;

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-capture-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** TCP and UDP over IPv4 and IPv6. */
async function traffic(pair: NetnsPair): Promise<void> {
  await pair.traffic('talk', pair.v4, String(ROUNDS));
  await pair.traffic('talk', pair.v6, String(ROUNDS));
  await sleep(300);
}

/** `wire length|bytes` of each packet, sorted; `full`: every byte, else the L2-L4 headers. */
const ours = (packets: PacketRecord[]) => packets.map((p) => `${p.wireLen}|${Buffer.from(p.headers).toString('hex')}`).sort();
const theirs = (packets: PcapPacket[], full: boolean) =>
  packets.map((p) => `${p.wireLen}|${p.bytes.subarray(0, full ? p.bytes.length : headerEnd(p.bytes)).toString('hex')}`).sort();

/** At least one echo of every round of each kind of traffic: ROUNDS × TCP/UDP × IPv4/IPv6. */
const MIN_PACKETS = 4 * ROUNDS;

function assertSameAsTcpdump(label: string, captured: PacketRecord[], dumped: PcapPacket[], full: boolean) {
  const protocols = new Set(captured.map((p) => `${p.proto}/${p.src.includes(':') ? 6 : 4}`));
  assert.deepEqual([...protocols].sort(), ['tcp/4', 'tcp/6', 'udp/4', 'udp/6'], `${label}: all four kinds of traffic`);
  assert.ok(dumped.length >= MIN_PACKETS, `${label}: tcpdump saw ${dumped.length} packets`);
  assert.deepEqual(ours(captured), theirs(dumped, full), `${label}: the same packets as tcpdump`);
}

test('TC ingress and egress: every packet tcpdump sees, byte for byte (snaplen 4096)', async (t) => {
  const pair = await createPair(t);
  const dir = tempDir(t);
  const { capture, packets } = await captureBothEnds(t, pair, { snaplen: 4096 });
  const dumps = [await startTcpdump(t, pair.client.name, IFACE, path.join(dir, 'a.pcap')), await startTcpdump(t, pair.server.name, IFACE, path.join(dir, 'b.pcap'))];
  await traffic(pair);
  const [atClient, atServer] = await Promise.all(dumps.map((d) => d.stop()));
  const status = capture.status();
  await capture.stop();

  for (const [netns, dumped] of [[pair.client, atClient], [pair.server, atServer]] as const) {
    const captured = packets.filter((p) => p.netns === netns.name);
    assert.ok(captured.every((p) => p.hook === 'tc' && p.iface === IFACE));
    assertSameAsTcpdump(netns.name, captured, dumped, true);
    assert.ok(captured.some((p) => p.direction === 'ingress') && captured.some((p) => p.direction === 'egress'));
  }
  // The same packet leaving the client and entering the server has one packet_id.
  const leaving = packets.filter((p) => p.netns === pair.client.name && p.direction === 'egress');
  const entering = new Set(packets.filter((p) => p.netns === pair.server.name && p.direction === 'ingress').map((p) => p.packetId));
  assert.ok(leaving.length > 0 && leaving.every((p) => entering.has(p.packetId)), 'packet_id equal at both ends of the veth');
  assert.equal(new Set(leaving.map((p) => p.packetId)).size, leaving.length, 'and distinct between packets');

  assert.equal(status.lost, 0);
  assert.equal(status.points.length, 2);
  for (const point of status.points) {
    assert.deepEqual(point.hooks, ['tc-ingress', 'tc-egress']);
    assert.equal(point.events, point.packets, `${point.netns}: every kernel event decoded`);
    assert.equal(point.lost, 0);
  }
});

for (const mode of ['native', 'generic'] as const) {
  test(`XDP (${mode}) ingress: the packets tcpdump sees coming in; TC alongside (headers only)`, async (t) => {
    const pair = await createPair(t);
    const dir = tempDir(t);
    const { capture, packets } = await captureBothEnds(t, pair, { xdp: mode });
    const inbound = [await startTcpdump(t, pair.client.name, IFACE, path.join(dir, 'a-in.pcap'), 'in'), await startTcpdump(t, pair.server.name, IFACE, path.join(dir, 'b-in.pcap'), 'in')];
    const both = [await startTcpdump(t, pair.client.name, IFACE, path.join(dir, 'a.pcap')), await startTcpdump(t, pair.server.name, IFACE, path.join(dir, 'b.pcap'))];
    await traffic(pair);
    const [clientIn, serverIn, clientAll, serverAll] = await Promise.all([...inbound, ...both].map((d) => d.stop()));
    const status = capture.status();
    await capture.stop();

    const attachedHooks = status.points.map((p) => p.hooks.join(',')).sort();
    assert.deepEqual(attachedHooks, ['xdp,tc-ingress,tc-egress', 'xdp,tc-ingress,tc-egress']);
    for (const [netns, dumpedIn, dumpedAll] of [[pair.client, clientIn, clientAll], [pair.server, serverIn, serverAll]] as const) {
      const here = packets.filter((p) => p.netns === netns.name);
      const xdp = here.filter((p) => p.hook === 'xdp');
      assert.ok(xdp.every((p) => p.direction === 'ingress'));
      assertSameAsTcpdump(`${netns.name} xdp`, xdp, dumpedIn, false);
      assertSameAsTcpdump(`${netns.name} tc`, here.filter((p) => p.hook === 'tc'), dumpedAll, false);
      // XDP sees each packet before TC ingress does, with the same packet_id.
      const tcIngress = new Map(here.filter((p) => p.hook === 'tc' && p.direction === 'ingress').map((p) => [p.packetId, p.ts]));
      assert.ok(xdp.every((p) => tcIngress.has(p.packetId) && p.ts <= tcIngress.get(p.packetId)!), 'XDP first');
    }
    assert.equal(status.lost, 0);
  });
}

test('the in-kernel filter captures only what it selects and counts the rest', async (t) => {
  const pair = await createPair(t);
  const { capture, packets } = await captureBothEnds(t, pair);
  capture.setFilter({ nets: [`${pair.v6}/128`], ports: [], protos: ['udp'] });
  await traffic(pair);
  const status = capture.status();
  await capture.stop();
  assert.ok(packets.length >= MIN_PACKETS);
  assert.ok(packets.every((p) => p.proto === 'udp' && (p.src === pair.v6 || p.dst === pair.v6)), 'only UDP to or from the server\'s IPv6 address');
  assert.ok(status.filtered >= 3 * 4 * ROUNDS, `filtered ${status.filtered}`);
  assert.deepEqual(status.filter, { nets: [`${pair.v6}/128`], ports: [], protos: ['udp'] });
});
