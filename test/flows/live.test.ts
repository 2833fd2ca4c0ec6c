// Flow metrics on real connections engineered to show them, captured in test
// namespaces: retransmissions (an iptables rule drops data for a while), a zero
// window (a reader that never reads), RST (refused and aborted), and idle timeout.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { FlowTable } from '../../flows/flow-table.js';
import type { FlowRecord, PacketRecord } from '../../model/records.js';
import { captureBothEnds, createPair, ECHO_PORT, SINK_PORT, type NetnsPair } from '../support/netns-pair.js';
import { sleep } from '../../bench/support/wait.js';
import { packetColumnsOfRecords } from '../../flowlog/packets/record-columns.js';

/** Captures at both ends while `scenario` runs; returns the packets. */
async function captured(t: TestContext, pair: NetnsPair, scenario: () => Promise<void>): Promise<PacketRecord[]> {
  const { capture, packets } = await captureBothEnds(t, pair);
  await scenario();
  await sleep(300);
  assert.equal(capture.status().lost, 0);
  await capture.stop();
  return packets;
}

/** The flow of the connection from local port `port` to `serverPort`, as seen at `netns`. */
function flowAt(flows: FlowRecord[], netns: string, port: number, serverPort: number): FlowRecord {
  const found = flows.filter((f) => f.netns === netns && f.client.port === port && f.server.port === serverPort);
  assert.equal(found.length, 1, `one flow at ${netns} from port ${port}: ${JSON.stringify(flows.map((f) => [f.netns, f.client, f.server]))}`);
  return found[0];
}

test('retransmissions: data dropped by iptables for a while is sent again', async (t) => {
  const pair = await createPair(t);
  const rule = ['-p', 'tcp', '--dport', String(ECHO_PORT), '-m', 'length', '--length', '120:', '-j', 'DROP'];
  let port = 0;
  const packets = await captured(t, pair, async () => {
    pair.exec(pair.server, 'iptables', '-I', 'INPUT', ...rule);
    const talking = pair.traffic('talk', pair.v4, '1');
    await sleep(1000);
    pair.exec(pair.server, 'iptables', '-D', 'INPUT', ...rule);
    port = await talking;
  });
  const table = new FlowTable();
  table.add(packetColumnsOfRecords(packets));
  const flows = table.drain();
  for (const netns of [pair.client.name, pair.server.name]) {
    const flow = flowAt(flows, netns, port, ECHO_PORT);
    assert.ok(flow.retrans.c2s >= 1, `${netns}: retransmissions ${JSON.stringify(flow.retrans)}`);
    assert.equal(flow.retrans.s2c, 0);
    assert.deepEqual(flow.outOfOrder, { c2s: 0, s2c: 0 });
    assert.match(flow.history, /^ShAD.*T/);
    assert.equal(flow.connState, 'SF');
    assert.equal(flow.close, 'fin');
    assert.ok(flow.rttNs !== null && flow.rttNs > 0n);
  }
});

test('zero window: the receiver never reads', async (t) => {
  const pair = await createPair(t);
  pair.exec(pair.server, 'sysctl', '-qw', 'net.ipv4.tcp_rmem=4096 4096 4096');
  let port = 0;
  const packets = await captured(t, pair, async () => {
    port = await pair.traffic('flood', pair.v4, '1500');
  });
  const table = new FlowTable();
  table.add(packetColumnsOfRecords(packets));
  const flow = flowAt(table.drain(), pair.client.name, port, SINK_PORT);
  assert.ok(flow.zeroWindow.s2c >= 1, `zero windows ${JSON.stringify(flow.zeroWindow)}`);
  assert.equal(flow.zeroWindow.c2s, 0);
  assert.match(flow.history, /w/, 'Zeek history letter w: the responder advertised a zero window');
  assert.equal(flow.retrans.s2c, 0);
});

test('RST: a refused connection (REJ) and an aborted one (RSTO)', async (t) => {
  const pair = await createPair(t);
  const closedPort = 7999;
  let abortedPort = 0;
  const packets = await captured(t, pair, async () => {
    await pair.traffic('refused', pair.v6, String(closedPort));
    abortedPort = await pair.traffic('reset', pair.v6);
  });
  const table = new FlowTable();
  table.add(packetColumnsOfRecords(packets));
  const flows = table.drain();
  const refused = flows.filter((f) => f.netns === pair.client.name && f.server.port === closedPort);
  assert.equal(refused.length, 1);
  assert.deepEqual([refused[0].connState, refused[0].close, refused[0].history], ['REJ', 'rst', 'Sr']);
  assert.equal(refused[0].client.ip, pair.clientV6);
  const aborted = flowAt(flows, pair.client.name, abortedPort, ECHO_PORT);
  assert.deepEqual([aborted.connState, aborted.close], ['RSTO', 'rst']);
  assert.match(aborted.history, /^ShAD.*R/);
});

test('timeout: an idle connection is closed as timeout once idle past the limit', async (t) => {
  const pair = await createPair(t);
  let port = 0;
  const packets = await captured(t, pair, async () => {
    port = await pair.traffic('hold', pair.v4);
  });
  const idleNs = 60_000_000_000n;
  const table = new FlowTable({ tcpIdleNs: idleNs, udpIdleNs: idleNs, closedLingerNs: 1_000_000_000n });
  table.add(packetColumnsOfRecords(packets));
  const last = packets.reduce((max, p) => (p.ts > max ? p.ts : max), 0n);
  const open = flowAt(table.collect(last), pair.client.name, port, ECHO_PORT);
  assert.deepEqual([open.close, open.connState], ['open', 'S1']);
  assert.equal(table.collect(open.end + idleNs - 1n).length, 0, 'unchanged, not yet idle for long enough');
  const [closed] = table.collect(open.end + idleNs).filter((f) => f.netns === pair.client.name && f.client.port === port);
  assert.deepEqual([closed.close, closed.connState, closed.history], ['timeout', 'S1', 'ShADad']);
  assert.deepEqual(table.collect(last + idleNs).map((f) => [f.netns, f.close]), [[pair.server.name, 'timeout']], 'the server side\'s flow too');
  assert.equal(table.size, 0, 'both left the table');
});
