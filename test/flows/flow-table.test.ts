import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlowTable } from '../../flows/flow-table.js';
import { LINKTYPE_ETHERNET } from '../../model/protocol.js';
import type { FlowRecord, PacketRecord } from '../../model/records.js';
import { packetColumnsOfRecords } from '../../flowlog/packets/record-columns.js';

const F = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 };
const C = { src: '10.0.0.1', sport: 40000, dst: '10.0.0.2', dport: 80 };
const S = { src: '10.0.0.2', sport: 80, dst: '10.0.0.1', dport: 40000 };

let clock = 1_000_000_000n;
function packet(dir: typeof C, flags: number, seq: number, ack: number, len = 0, win = 500): PacketRecord {
  clock += 1_000_000n;
  return {
    ...dir, ts: clock, node: 'n', netns: 'ns', iface: 'eth0', netnsIno: 1, ifindex: 2, hook: 'tc',
    direction: dir === C ? 'egress' : 'ingress', proto: 'tcp', ipId: 0, seq, ack, flags, win, len,
    wireLen: 66 + len, options: {}, packetId: 0n, linkType: LINKTYPE_ETHERNET, headers: new Uint8Array(66),
  };
}

test('a normal connection: SF, Zeek history, handshake RTT, SYN sequence numbers', () => {
  const table = new FlowTable();
  table.add(packetColumnsOfRecords([
    packet(C, F.SYN, 100, 0),
    packet(S, F.SYN | F.ACK, 900, 101),
    packet(C, F.ACK, 101, 901),
    packet(C, F.PSH | F.ACK, 101, 901, 50),
    packet(S, F.ACK, 901, 151),
    packet(S, F.PSH | F.ACK, 901, 151, 200),
    packet(C, F.FIN | F.ACK, 151, 1101),
    packet(S, F.FIN | F.ACK, 1101, 152),
    packet(C, F.ACK, 152, 1102),
  ]));
  const [flow] = table.drain();
  assert.equal(flow.connState, 'SF');
  assert.equal(flow.history, 'ShADadFf');
  assert.equal(flow.close, 'fin');
  assert.equal(flow.synSeq, 100);
  assert.equal(flow.synAckSeq, 900);
  assert.equal(flow.rttNs, 2_000_000n);
  assert.deepEqual(flow.packets, { c2s: 5, s2c: 4 });
  assert.deepEqual(flow.client, { ip: '10.0.0.1', port: 40000 });
  assert.deepEqual(flow.retrans, { c2s: 0, s2c: 0 });
});

test('REJ, retransmission, zero window', () => {
  const rejected = new FlowTable();
  rejected.add(packetColumnsOfRecords([packet(C, F.SYN, 1, 0), packet(S, F.RST | F.ACK, 0, 2, 0, 0)]));
  const [rej] = rejected.drain();
  assert.equal(rej.connState, 'REJ');
  assert.equal(rej.close, 'rst');
  assert.deepEqual(rej.zeroWindow, { c2s: 0, s2c: 0 }, 'a RST with window 0 is no zero window');

  const table = new FlowTable();
  table.add(packetColumnsOfRecords([
    packet(C, F.SYN, 100, 0),
    packet(S, F.SYN | F.ACK, 900, 101),
    packet(C, F.ACK, 101, 901),
    packet(C, F.ACK, 101, 901, 100),
    packet(C, F.ACK, 101, 901, 100),
    packet(S, F.ACK, 901, 201, 0, 0),
  ]));
  const [flow] = table.drain();
  assert.deepEqual(flow.retrans, { c2s: 1, s2c: 0 });
  assert.deepEqual(flow.zeroWindow, { c2s: 0, s2c: 1 });
  assert.equal(flow.history, 'ShADTaw');
  assert.equal(flow.connState, 'S1');
});

test('collect: changed flows each time, idle ones close as timeout and leave', () => {
  const table = new FlowTable({ tcpIdleNs: 10_000_000n, udpIdleNs: 10_000_000n, closedLingerNs: 1_000_000n });
  table.add(packetColumnsOfRecords([packet(C, F.SYN, 1, 0)]));
  const now = clock;
  assert.equal(table.collect(now).length, 1);
  assert.equal(table.collect(now).length, 0, 'nothing changed');
  const [timedOut] = table.collect(now + 20_000_000n);
  assert.equal(timedOut.close, 'timeout');
  assert.equal(timedOut.connState, 'S0');
  assert.equal(table.size, 0);
});

test('a flow picked up at the SYN-ACK is oriented client → server', () => {
  const table = new FlowTable();
  table.add(packetColumnsOfRecords([packet(S, F.SYN | F.ACK, 900, 101), packet(C, F.ACK, 101, 901)]));
  const [flow] = table.drain();
  assert.deepEqual(flow.server, { ip: '10.0.0.2', port: 80 });
  assert.equal(flow.connState, 'OTH');
});

test('out of order: a gap filled within the reordering window; a gap filled later is a retransmission', () => {
  const table = new FlowTable();
  const handshake = [packet(C, F.SYN, 100, 0), packet(S, F.SYN | F.ACK, 900, 101), packet(C, F.ACK, 101, 901)];
  const reordered = packet(C, F.ACK, 101, 901, 100);
  const overtaking = packet(C, F.ACK, 201, 901, 100);
  [reordered.ts, overtaking.ts] = [overtaking.ts, reordered.ts];
  table.add(packetColumnsOfRecords([...handshake, overtaking, reordered]));
  const [flow] = table.drain();
  assert.deepEqual(flow.outOfOrder, { c2s: 1, s2c: 0 });
  assert.deepEqual(flow.retrans, { c2s: 0, s2c: 0 });
  assert.equal(flow.history, 'ShAD');

  // The original was lost before this point: its retransmission fills the gap an RTO later.
  const lossy = new FlowTable();
  const handshake2 = [packet(C, F.SYN, 100, 0), packet(S, F.SYN | F.ACK, 900, 101), packet(C, F.ACK, 101, 901)];
  const after = packet(C, F.ACK, 201, 901, 100);
  clock += 200_000_000n;
  const retransmitted = packet(C, F.ACK, 101, 901, 100);
  lossy.add(packetColumnsOfRecords([...handshake2, after, retransmitted]));
  const [lossyFlow] = lossy.drain();
  assert.deepEqual(lossyFlow.outOfOrder, { c2s: 0, s2c: 0 });
  assert.deepEqual(lossyFlow.retrans, { c2s: 1, s2c: 0 });

  // A keep-alive (one old byte) is neither; a later fragment only counts.
  const quiet = new FlowTable();
  const keepAlive = packet(C, F.ACK, 200, 901, 1);
  const fragment = { ...packet(C, 0, 0, 0, 1200), fragment: 'later' as const };
  quiet.add(packetColumnsOfRecords([...handshake, packet(C, F.ACK, 101, 901, 100), keepAlive, fragment]));
  const [quietFlow] = quiet.drain();
  assert.deepEqual([quietFlow.retrans, quietFlow.outOfOrder], [{ c2s: 0, s2c: 0 }, { c2s: 0, s2c: 0 }]);
  assert.equal(quietFlow.packets.c2s, 5);
  assert.equal(quietFlow.connState, 'S1');
});

/** `p` seen at another capture point (ifindex 3) with its addresses translated, as behind a NAT. */
function atNatPoint(p: PacketRecord): PacketRecord {
  const fromClient = p.sport === C.sport;
  const natted = fromClient ? { src: '192.168.0.1', sport: 61000, dst: '10.9.0.2', dport: 8080 } : { src: '10.9.0.2', sport: 8080, dst: '192.168.0.1', dport: 61000 };
  return { ...p, ...natted, ts: p.ts + 50_000n, iface: 'eth1', ifindex: 3 };
}

let packetIds = 1n;
/** A handshake, a request and a close (FIN both ways, or the client's RST), each packet with its own packet id. */
function connection(isn: number, close: 'fin' | 'rst'): PacketRecord[] {
  const packets = [
    packet(C, F.SYN, isn, 0),
    packet(S, F.SYN | F.ACK, 7000, isn + 1),
    packet(C, F.ACK, isn + 1, 7001),
    packet(C, F.PSH | F.ACK, isn + 1, 7001, 10),
    ...(close === 'fin'
      ? [packet(C, F.FIN | F.ACK, isn + 11, 7001), packet(S, F.FIN | F.ACK, 7001, isn + 12), packet(C, F.ACK, isn + 12, 7002)]
      : [packet(C, F.RST, isn + 11, 0)]),
  ];
  return packets.map((p) => ({ ...p, packetId: packetIds++ }));
}

test('a tuple reused after a RST and after a FIN: a flow per incarnation, joined across a NAT point by packet ids', () => {
  const table = new FlowTable();
  const first = connection(1000, 'rst');
  const second = connection(500_000, 'fin');
  const third = connection(9_000_000, 'fin');
  for (const c of [first, second, third]) {
    table.add(packetColumnsOfRecords(c));
    table.add(packetColumnsOfRecords(c.map(atNatPoint)));
  }
  const flows = table.drain();
  assert.equal(flows.length, 6, 'three connections at two points');
  const byConnection = new Map<string, FlowRecord[]>();
  for (const f of flows) byConnection.set(f.connectionId, [...(byConnection.get(f.connectionId) ?? []), f]);
  assert.equal(byConnection.size, 3);
  for (const [id, group] of byConnection) {
    assert.deepEqual(group.map((f) => f.iface).sort(), ['eth0', 'eth1']);
    assert.equal(new Set(group.map((f) => f.synSeq)).size, 1, 'one ISN per connection');
    assert.equal(id, group.find((f) => f.iface === 'eth0')!.id, "the id of the connection's earliest flow");
  }
  assert.deepEqual(flows.filter((f) => f.iface === 'eth0').map((f) => [f.synSeq, f.close, f.packets.c2s + f.packets.s2c]).sort((a, b) => Number(a[0]) - Number(b[0])),
    [[1000, 'rst', 5], [500_000, 'fin', 7], [9_000_000, 'fin', 7]]);
});

test('a SYN retried with the same ISN stays one flow; a new ISN while the old attempt is unanswered starts another', () => {
  const table = new FlowTable();
  table.add(packetColumnsOfRecords([packet(C, F.SYN, 42, 0), packet(C, F.SYN, 42, 0), packet(C, F.SYN, 77, 0)].map((p) => ({ ...p, packetId: packetIds++ }))));
  const flows = table.drain();
  assert.deepEqual(flows.map((f) => [f.synSeq, f.packets.c2s, f.close]), [[42, 2, 'timeout'], [77, 1, 'open']]);
  assert.notEqual(flows[0].connectionId, flows[1].connectionId);
});

test('UDP: a packet after the idle timeout starts a new flow', () => {
  const table = new FlowTable({ tcpIdleNs: 300_000_000_000n, udpIdleNs: 10_000_000_000n, closedLingerNs: 2_000_000_000n });
  const udp = (ts: bigint, id: bigint): PacketRecord => ({ ...packet(C, 0, 0, 0, 20), proto: 'udp', ts, packetId: id });
  table.add(packetColumnsOfRecords([udp(1_000_000_000n, 1n), udp(5_000_000_000n, 2n), udp(16_000_000_000n, 3n)]));
  const flows = table.drain();
  assert.deepEqual(flows.map((f) => f.packets.c2s), [2, 1]);
  assert.equal(flows[0].close, 'timeout');
});
