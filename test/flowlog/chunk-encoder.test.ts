// The addon's chunk encoder refuses what is not a batch of packet columns, whole: nothing is taken.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { packetColumnsOfRecords } from '../../flowlog/packets/record-columns.js';
import { PacketChunkEncoder } from '../../native/chunk-encoder.js';
import type { PacketRecord } from '../../model/records.js';

const record = (i: number): PacketRecord => ({
  ts: 1_763_752_983_000_000_000n + BigInt(i), node: 'n', netns: 'a', netnsIno: 1, iface: 'eth0', ifindex: 2, hook: 'tc', direction: 'egress',
  proto: 'tcp', src: '10.0.0.1', sport: 1000, dst: '10.0.0.2', dport: 80, ipId: i, seq: i, ack: 0, flags: 0x10, win: 500, len: 0,
  wireLen: 54, options: {}, packetId: BigInt(i), linkType: 1, headers: new Uint8Array(54),
});

test('a batch cut short, another version or a count beyond it is refused, and nothing is taken', () => {
  const encoder = new PacketChunkEncoder();
  const columns = packetColumnsOfRecords([record(1), record(2)]);
  const cut = { ...columns, batch: columns.batch.subarray(0, columns.batch.length - 8) };
  assert.throws(() => encoder.add(cut, 2, 0), { name: 'RangeError', message: /cut short/ });
  const version = { ...columns, batch: columns.batch.slice() };
  version.batch[0] ^= 0xff;
  assert.throws(() => encoder.add(version, 2, 0), { name: 'RangeError', message: /version/ });
  assert.throws(() => encoder.add(columns, 3, 0), { code: 'INVALID_ARGUMENT', message: /count 3/ });
  assert.equal(encoder.stagedBytes, 0);
  assert.equal(encoder.add(columns, 2, 0), 1, 'the whole batch, one chunk');
  assert.ok(encoder.stagedBytes > 0);
});
