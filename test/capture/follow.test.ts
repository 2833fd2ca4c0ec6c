// Capture follows namespaces and interfaces as the kernel reports them (inotify on /run/netns,
// rtnetlink inside each namespace), not by polling: a namespace created after start is captured as
// soon as its interface is there; interfaces added, renamed and removed are attached, renamed and
// detached; a deleted namespace is let go (not kept alive by nettrail's socket in it); interface
// events lost to a full socket are made up for by listing again; and no process is spawned while
// following, however namespaces and interfaces come and go.
// (How fast, with how many namespaces: bench/namespaces.ts.)
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import { NetnsWatcher } from '../../capture/netns.js';
import { PacketCapture } from '../../capture/packets/capture.js';
import type { NetnsRef, PacketRecord } from '../../model/records.js';
import { linksHeldBy } from '../../bench/support/serve-process.js';
import { sleep, until } from '../../bench/support/wait.js';
import { packetRecordsOf } from '../../model/packet-columns.js';

const ipAsync = promisify(execFile);
/** `ip` without holding this process's event loop (capture reacts meanwhile). */
const ip = async (...args: string[]) => {
  await ipAsync('ip', args);
};

const made = new Set<string>();
const deleteNetns = (name: string) => {
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    // not there
  }
  made.delete(name);
};
process.on('exit', () => [...made].forEach(deleteNetns));

/** Names for test namespaces, deleted after the test (also when it fails, and on exit) if they were made. */
function names(t: TestContext, ...suffixes: string[]): string[] {
  const id = randomBytes(3).toString('hex');
  const all = suffixes.map((suffix) => `ntf${id}-${suffix}`);
  for (const name of all) made.add(name);
  t.after(() => all.forEach(deleteNetns));
  return all;
}

async function startCapture(t: TestContext, netns: string[], packets: PacketRecord[] = []): Promise<PacketCapture> {
  const capture = await PacketCapture.start({
    node: 'test',
    netns,
    ifaces: null,
    onPackets: (batch) => packets.push(...packetRecordsOf(batch)),
    onWarning: (message) => t.diagnostic(message),
  });
  t.after(() => capture.stop());
  return capture;
}

const points = (capture: PacketCapture) => capture.status().points.map((p) => `${p.netns}/${p.iface}`).sort();
const tcxLinks = () => linksHeldBy(process.pid).filter((l) => l.type === 'tcx').length;

test('a namespace created after start is captured as soon as its interface is there', async (t) => {
  const [a, b] = names(t, 'a', 'b');
  await ip('netns', 'add', a);
  const packets: PacketRecord[] = [];
  const capture = await startCapture(t, [a, b], packets);
  assert.deepEqual(points(capture), [`${a}/lo`]);

  await ip('netns', 'add', b);
  const created = performance.now();
  await ip('-n', a, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', b);
  await until(`${b}/eth0 attached`, () => points(capture).includes(`${b}/eth0`), { timeoutMs: 5000, everyMs: 5 });
  t.diagnostic(`${b}/eth0 attached ${(performance.now() - created).toFixed(0)} ms after the veth pair was created (namespace made just before)`);
  for (const [name, host] of [[a, 1], [b, 2]] as const) {
    await ip('-n', name, 'addr', 'add', `10.79.1.${host}/24`, 'dev', 'eth0');
    await ip('-n', name, 'link', 'set', 'eth0', 'up');
  }
  const up = performance.now();
  await ipAsync('ip', ['netns', 'exec', a, 'bash', '-c', 'echo follow > /dev/udp/10.79.1.2/9']);
  await until('the datagram captured at the new namespace', () => packets.some((p) => p.netns === b && p.iface === 'eth0' && p.direction === 'ingress' && p.dport === 9), { timeoutMs: 5000, everyMs: 5 });
  t.diagnostic(`captured in ${b} ${(performance.now() - up).toFixed(0)} ms after its interface came up`);
  assert.deepEqual(points(capture), [`${a}/eth0`, `${a}/lo`, `${b}/eth0`, `${b}/lo`].sort());
});

test('interfaces added, renamed and removed are attached, renamed and detached; a deleted namespace is let go', async (t) => {
  const [a, b] = names(t, 'a', 'b');
  await ip('netns', 'add', a);
  await ip('netns', 'add', b);
  await ip('-n', a, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', b);
  const before = tcxLinks();
  const capture = await startCapture(t, [a, b]);
  assert.deepEqual(points(capture), [`${a}/eth0`, `${a}/lo`, `${b}/eth0`, `${b}/lo`].sort());
  assert.equal(tcxLinks(), before + 8, 'ingress and egress on 4 interfaces');

  await ip('-n', a, 'link', 'add', 'x0', 'type', 'veth', 'peer', 'name', 'x1');
  await until('the new pair attached', () => points(capture).includes(`${a}/x0`) && points(capture).includes(`${a}/x1`));
  assert.equal(tcxLinks(), before + 12);
  const { ifindex } = capture.status().points.find((p) => p.iface === 'x1')!;
  await ip('-n', a, 'link', 'set', 'x1', 'name', 'y1');
  await until('renamed in place', () => points(capture).includes(`${a}/y1`) && !points(capture).includes(`${a}/x1`));
  assert.equal(capture.status().points.find((p) => p.iface === 'y1')!.ifindex, ifindex, 'the same attachment');
  assert.equal(tcxLinks(), before + 12);
  await ip('-n', a, 'link', 'del', 'x0');
  await until('the deleted pair detached', () => !points(capture).some((p) => /\/(x0|y1)$/.test(p)));
  assert.equal(tcxLinks(), before + 8);

  // Deleting b frees it only if nothing holds it (nettrail's rtnetlink socket in it would): its veth end in a goes with it.
  await ip('netns', 'del', b);
  await until(`${b} let go of, and freed (its veth end in ${a} is gone)`, () => points(capture).join() === `${a}/lo`);
  assert.equal(tcxLinks(), before + 2);
});

test('interface events lost (the rtnetlink socket overflowed): listed again, the view is the kernel\'s', async (t) => {
  const [a] = names(t, 'a');
  await ip('netns', 'add', a);
  const ifaces = new Map<number, string>();
  const warnings: string[] = [];
  const watcher = await NetnsWatcher.start([a], {
    ifaceAppeared: (_, iface) => ifaces.set(iface.ifindex, iface.name),
    ifaceChanged: (_, iface) => ifaces.set(iface.ifindex, iface.name),
    ifaceVanished: (_, iface) => ifaces.delete(iface.ifindex),
    onWarning: (message) => warnings.push(message),
  });
  t.after(() => watcher.close());
  // This process's event loop is held while ip runs: the first batch is not acknowledged, the socket fills.
  const batch = (lines: string[]) => execFileSync('ip', ['-n', a, '-batch', '-'], { input: lines.join('\n') });
  batch(Array.from({ length: 200 }, (_, i) => `link add d${i} type veth peer name e${i}`));
  batch(Array.from({ length: 100 }, (_, i) => `link del d${2 * i}`));
  const kernel = () => (JSON.parse(execFileSync('ip', ['-n', a, '-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifindex: number; ifname: string }>).map((l) => `${l.ifindex}:${l.ifname}`).sort().join();
  const ours = () => [...ifaces].map(([ifindex, name]) => `${ifindex}:${name}`).sort().join();
  await until('the same interfaces as `ip link` lists', () => ours() === kernel());
  assert.equal(ifaces.size, 201);
  assert.ok(warnings.some((w) => /were lost .*overflowed.*listing them again/.test(w)), `the loss is said: ${warnings.join('; ')}`);
});

/** The fields of /proc/PID/stat after "PID (COMM) ", from STATE on; null when the process is gone. */
function statFields(pid: number | 'self'): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}
/** This process's waited-for children's minor faults (cminflt): it grows with every child reaped. */
const reapedChildrenFaults = () => Number(statFields('self')![8]);
const liveChildren = () => readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(statFields(Number(p))?.[1]) === process.pid);
const kill = (pid: number) => {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
};

/** Runs a shell script in a process that is not this one's child (its shell's child, orphaned as the shell exits); returns its pid. */
async function detached(script: string): Promise<number> {
  const shell = spawn('bash', ['-c', `(${script}) >/dev/null 2>&1 & echo $!`], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  shell.stdout!.on('data', (chunk: Buffer) => (out += chunk));
  await once(shell, 'exit');
  return Number(out.trim());
}

test('no process is spawned while following, idle or with namespaces and interfaces coming and going', async (t) => {
  const [a, c] = names(t, 'a', 'c');
  await ip('netns', 'add', a);
  // A process in a, not this one's child: `pid:` names make capture read processes' namespaces on its timer.
  const sleeper = await detached(`exec ip netns exec ${a} sleep 60`);
  t.after(() => kill(sleeper));
  process.once('exit', () => kill(sleeper));
  await until('the sleeper in its namespace', () => {
    try {
      return readFileSync(`/proc/${sleeper}/comm`, 'utf8').trim() === 'sleep';
    } catch {
      return false;
    }
  });
  const capture = await startCapture(t, [a, c, `pid:${sleeper}`]);

  // From here on, what changes the namespaces runs outside this process's children.
  await detached(
    `sleep 0.5; ip netns add ${c}; ip -n ${a} link add z0 type veth peer name z1 netns ${c}; ` +
      `sleep 1; ip -n ${a} link del z0; sleep 0.5; ip netns del ${c}`,
  );
  const window = reapedChildrenFaults();
  await until(`${c}/z1 attached`, () => points(capture).includes(`${c}/z1`));
  await until('detached again', () => points(capture).join() === `${a}/lo`);
  await sleep(4500); // idle: two process scans at least
  assert.deepEqual(liveChildren(), [], 'no child process running');
  assert.equal(reapedChildrenFaults(), window, 'no child process was reaped: none was spawned');

  // The check sees a child when there is one.
  execFileSync('true');
  assert.ok(reapedChildrenFaults() > window, 'a reaped child shows');
});

test('the root namespace is named root, also where pid 1\'s namespace cannot be looked at (only followed: nothing attaches)', async () => {
  const own = statSync('/proc/self/ns/net').ino;
  for (const scope of ['all', ['root']] as const) {
    const appeared: NetnsRef[] = [];
    const watcher = await NetnsWatcher.start(scope === 'all' ? 'all' : [...scope], {
      netnsAppeared: (netns) => appeared.push(netns),
      ifaceAppeared() {},
      ifaceChanged() {},
      ifaceVanished() {},
      onWarning() {},
    });
    await watcher.close();
    // This test runs in the root namespace (as root, like every capture test).
    const root = appeared.filter((netns) => netns.ino === own);
    assert.deepEqual(root.map((netns) => netns.name), ['root'], JSON.stringify(scope));
    assert.equal(statSync(root[0]!.path).ino, own);
  }
});
