// Drop-reason names come from the running kernel's BTF (checked against bpftool's
// reading of it), module BTF is read on top of vmlinux's, and kernel addresses are
// symbolized from /proc/kallsyms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DropReasons } from '../../capture/drops/reasons.js';
import { formatSymbol, KernelSymbols, parseKallsyms } from '../../capture/drops/symbols.js';

interface BpftoolEnum {
  kind: string;
  name: string;
  values: Array<{ name: string; val: number }>;
}

const bpftoolEnums = (() => {
  const dump = JSON.parse(execFileSync('bpftool', ['btf', 'dump', 'file', '/sys/kernel/btf/vmlinux', '-j'], { maxBuffer: 1 << 30 }).toString()) as {
    types: BpftoolEnum[];
  };
  return new Map(dump.types.filter((t) => t.kind === 'ENUM' || t.kind === 'ENUM64').map((t) => [t.name, t]));
})();

test('reason names are those of enum skb_drop_reason in the running kernel', () => {
  const reasons = DropReasons.load();
  const core = bpftoolEnums.get('skb_drop_reason');
  assert.ok(core, 'bpftool finds enum skb_drop_reason');
  const expected = core.values
    .filter((v) => v.name !== 'SKB_DROP_REASON_MAX' && v.name !== 'SKB_DROP_REASON_SUBSYS_MASK')
    .map((v): [number, string] => [v.val, v.name.replace(/^SKB_DROP_REASON_/, '').replace(/^SKB_/, '')]);
  assert.deepEqual(reasons.entries().filter(([value]) => (value & reasons.subsystemMask) === 0), expected);
  const value = (name: string) => core.values.find((v) => v.name === name)!.val;
  assert.equal(reasons.name(value('SKB_DROP_REASON_NETFILTER_DROP')), 'NETFILTER_DROP');
  assert.equal(reasons.name(value('SKB_DROP_REASON_NO_SOCKET')), 'NO_SOCKET');
  // A value the kernel does not name is shown by number.
  const unnamed = value('SKB_DROP_REASON_MAX') + 1000;
  assert.equal(reasons.name(unnamed), String(unnamed));
  assert.equal(reasons.known(unnamed), false);
});

test('the subsystem bits and names come from the kernel too', () => {
  const reasons = DropReasons.load();
  const mask = bpftoolEnums.get('skb_drop_reason')!.values.find((v) => v.name === 'SKB_DROP_REASON_SUBSYS_MASK')!.val;
  assert.equal(reasons.subsystemMask, mask >>> 0);
  const subsystems = bpftoolEnums.get('skb_drop_reason_subsys')!.values.filter((v) => v.name !== 'SKB_DROP_REASON_SUBSYS_NUM');
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  for (const { name, val } of subsystems) {
    assert.equal(reasons.subsystem(((val << shift) | 5) >>> 0), name.replace('SKB_DROP_REASON_SUBSYS_', ''));
  }
  const unknown = ((subsystems.length + 7) << shift) >>> 0;
  assert.equal(reasons.subsystem(unknown), null);
});

/**
 * A module's BTF as the kernel exposes it under /sys/kernel/btf: split BTF on
 * top of vmlinux's (its string offsets continue after vmlinux's strings). This
 * kernel has no modules, so one is built here with an enum shaped like
 * openvswitch's (`__OVS_DROP_REASON` the subsystem's base, then its reasons).
 */
function splitBtfWithEnum(vmlinux: Buffer, name: string, values: Array<[string, number]>): Buffer {
  const baseStrings = vmlinux.readUInt32LE(20);
  const names = [name, ...values.map(([n]) => n)];
  const strings = Buffer.concat(names.map((n) => Buffer.from(`${n}\0`)));
  const offsetOf = (i: number) => baseStrings + names.slice(0, i).reduce((sum, n) => sum + n.length + 1, 0);
  const type = Buffer.alloc(12 + 8 * values.length);
  type.writeUInt32LE(offsetOf(0), 0);
  type.writeUInt32LE((6 << 24) | values.length, 4); // ENUM, unsigned
  type.writeUInt32LE(4, 8);
  values.forEach(([, value], i) => {
    type.writeUInt32LE(offsetOf(i + 1), 12 + 8 * i);
    type.writeUInt32LE(value, 16 + 8 * i);
  });
  const header = Buffer.alloc(24);
  header.writeUInt16LE(0xeb9f, 0);
  header.writeUInt8(1, 2);
  header.writeUInt32LE(24, 4);
  header.writeUInt32LE(0, 8);
  header.writeUInt32LE(type.length, 12);
  header.writeUInt32LE(type.length, 16);
  header.writeUInt32LE(strings.length, 20);
  return Buffer.concat([header, type, strings]);
}

test("a loaded module's per-subsystem reasons are named from its split BTF", (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-btf-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  symlinkSync('/sys/kernel/btf/vmlinux', path.join(dir, 'vmlinux'));
  const shift = 16;
  const ovs = bpftoolEnums.get('skb_drop_reason_subsys')!.values.find((v) => v.name === 'SKB_DROP_REASON_SUBSYS_OPENVSWITCH')!.val << shift;
  const vmlinux = readFileSync('/sys/kernel/btf/vmlinux');
  writeFileSync(
    path.join(dir, 'openvswitch'),
    splitBtfWithEnum(vmlinux, 'ovs_drop_reason', [['__OVS_DROP_REASON', ovs], ['OVS_DROP_LAST_ACTION', ovs + 1], ['OVS_DROP_ACTION_ERROR', ovs + 2]]),
  );
  const reasons = DropReasons.load(dir);
  assert.equal(reasons.name(ovs + 1), 'OVS_DROP_LAST_ACTION');
  assert.equal(reasons.name(ovs + 2), 'OVS_DROP_ACTION_ERROR');
  assert.equal(reasons.name(ovs), String(ovs), 'the subsystem base is no reason');
  assert.equal(reasons.subsystem(ovs + 1), 'OPENVSWITCH');
  assert.equal(reasons.name(12), DropReasons.load().name(12), 'vmlinux reasons are still read');
});

test('kernel addresses are symbolized from /proc/kallsyms', async () => {
  const symbols = await KernelSymbols.load();
  assert.ok(symbols.available, 'kallsyms shows addresses (run as root)');
  const line = readFileSync('/proc/kallsyms', 'utf8').split('\n').find((l) => / [tT] nf_hook_slow$/.test(l));
  assert.ok(line, 'nf_hook_slow is in kallsyms');
  const address = BigInt(`0x${line.split(' ')[0]}`);
  const symbol = symbols.resolve(address + 0x43n);
  assert.deepEqual(symbol, { name: 'nf_hook_slow', offset: 0x43, module: null });
  assert.equal(formatSymbol(address + 0x43n, symbol), 'nf_hook_slow+0x43');
  assert.equal(formatSymbol(0x1234n, symbols.resolve(0x1234n)), '0x1234');
  assert.equal(await symbols.reload(), false, 'read again at most every 10 s');

  const table = parseKallsyms('ffffffffc0002000 t nft_do_chain\t[nf_tables]\nffffffffc0001000 T other_fn\t[nf_tables]\nffffffffc0000000 d some_data\n');
  assert.deepEqual(table.names, ['other_fn', 'nft_do_chain'], 'text symbols only, by address');
  assert.deepEqual(table.modules, ['nf_tables', 'nf_tables']);
});
