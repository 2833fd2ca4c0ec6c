// Attach lifecycle of `nettrail serve`: programs hang on bpf_links, so kill -9
// leaves nothing attached, the next start attaches exactly once, SIGTERM detaches
// cleanly; capture follows interfaces that appear and vanish.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PacketCapture } from '../../capture/packets/capture.js';
import { createPair } from '../support/netns-pair.js';
import { startServe } from '../../bench/support/serve-process.js';
import { until } from '../../bench/support/wait.js';

interface Prog {
  id: number;
  name: string;
  map_ids?: number[];
}

const bpftool = <T>(...args: string[]): T => JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8' })) as T;

/** XDP programs attached in `netns`, by interface name (`bpftool net show` inside it). */
function xdpIn(netns: string): Map<string, number> {
  const [shown] = JSON.parse(execFileSync('ip', ['netns', 'exec', netns, 'bpftool', '-j', 'net', 'show'], { encoding: 'utf8' })) as Array<{
    xdp: Array<{ devname: string; id: number }>;
  }>;
  return new Map(shown.xdp.map((x) => [x.devname, x.id]));
}

/** The programs of the BPF object `prog` belongs to (those sharing its maps), and the links that hold them. */
function objectOf(prog: number): { progs: Prog[]; links: Array<{ id: number; prog_id: number }> } {
  const all = bpftool<Prog[]>('prog', 'show');
  const maps = new Set(all.find((p) => p.id === prog)?.map_ids ?? []);
  const progs = all.filter((p) => (p.map_ids ?? []).some((m) => maps.has(m)));
  const ids = new Set(progs.map((p) => p.id));
  return { progs, links: bpftool<Array<{ id: number; prog_id: number }>>('link', 'show').filter((l) => ids.has(l.prog_id)) };
}

/** `nettrail serve` capturing in `netns`, with XDP where it can, killed after the test. */
async function serve(t: TestContext, netns: string, store: string): Promise<ChildProcess> {
  const started = await startServe(['--netns', netns, '--store', store, '--token', 'test', '--xdp', 'auto'], { timeoutMs: 30_000 });
  t.after(() => started.kill());
  return started.child;
}

/** Every interface of the namespace has XDP from one object, whose links are exactly 3 per interface. */
function assertAttachedOnce(netns: string, ifaces: string[]): number {
  const xdp = xdpIn(netns);
  assert.deepEqual([...xdp.keys()].sort(), [...ifaces].sort(), 'XDP on every interface');
  const ids = new Set(xdp.values());
  assert.equal(ids.size, 1, 'one program, from one process');
  const [prog] = ids;
  const { progs, links } = objectOf(prog);
  assert.deepEqual(progs.map((p) => p.name).sort(), ['tc_egress', 'tc_ingress', 'xdp_ingress']);
  assert.equal(links.length, 3 * ifaces.length, 'XDP, TC ingress and TC egress links per interface');
  return prog;
}

function assertDetached(netns: string, prog: number): void {
  assert.equal(xdpIn(netns).size, 0, 'no XDP program left in the namespace');
  assert.equal(bpftool<Prog[]>('prog', 'show').filter((p) => p.id === prog).length, 0, 'the program is gone');
  assert.equal(objectOf(prog).links.length, 0, 'no link left');
}

test('kill -9 leaves no program attached; the next start attaches once; SIGTERM detaches', async (t) => {
  const pair = await createPair(t);
  const store = mkdtempSync(path.join(tmpdir(), 'nettrail-lifecycle-'));
  t.after(() => rmSync(store, { recursive: true, force: true }));
  const ifaces = ['lo', 'eth0'];

  const first = await serve(t, pair.client.name, path.join(store, 'a'));
  const firstProg = assertAttachedOnce(pair.client.name, ifaces);
  first.kill('SIGKILL');
  await once(first, 'exit');
  // The kernel drops the links with the last reference to them, as the process's files close.
  await until('detached after kill -9', () => xdpIn(pair.client.name).size === 0);
  assertDetached(pair.client.name, firstProg);

  const second = await serve(t, pair.client.name, path.join(store, 'b'));
  const secondProg = assertAttachedOnce(pair.client.name, ifaces);
  assert.notEqual(secondProg, firstProg);
  second.kill('SIGTERM');
  const [code] = (await once(second, 'exit')) as [number];
  assert.equal(code, 0, 'SIGTERM: a clean exit');
  assertDetached(pair.client.name, secondProg);
});

test('capture follows interfaces that appear and vanish', async (t) => {
  const pair = await createPair(t);
  const capture = await PacketCapture.start({
    node: 'test',
    netns: [pair.client.name],
    ifaces: null,
    onPackets: () => {},
    onWarning: (message) => t.diagnostic(message),
  });
  t.after(() => capture.stop());
  const names = () => capture.status().points.map((p) => p.iface).sort().join();
  assert.equal(names(), 'eth0,lo');
  execFileSync('ip', ['-n', pair.client.name, 'link', 'add', 'extra0', 'type', 'veth', 'peer', 'name', 'extra1']);
  await until('the new pair is attached', () => names() === 'eth0,extra0,extra1,lo');
  assert.ok(capture.status().points.every((p) => p.hooks.join() === 'tc-ingress,tc-egress'));
  execFileSync('ip', ['-n', pair.client.name, 'link', 'del', 'extra0']);
  await until('the deleted pair is detached', () => names() === 'eth0,lo');
});
