// Namespaces and interfaces come and go while `nettrail serve` follows them:
// for ~20 s a seeded random loop creates and deletes network namespaces (each
// joined to a persistent one by a veth pair) and veth pairs inside the
// persistent one, with UDP traffic across them, every 20-170 ms, so attaching
// races with deleting. serve must not crash or log an
// error, must answer its API, and once the churn stops it must hold exactly the
// links it held before (none left on vanished interfaces), and must not keep a
// deleted namespace alive (its veth end in the persistent namespace vanishes).
//
// Also: following every namespace (`--netns all`) must not follow a deleted
// namespace through anything of nettrail's that still holds it (its NAT
// tracking's ctnetlink socket, formerly a conntrack -E process inside it), or it
// would stay followed — and so alive — for as long as nettrail runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NetnsWatcher } from '../../capture/netns.js';
import { NatSources } from '../../nat-tracker/tracker.js';
import { prng } from '../../bench/support/prng.js';
import { linksHeldBy, mapEntries, metricValue, startServe } from '../../bench/support/serve-process.js';
import { sleep, until } from '../../bench/support/wait.js';

const SECONDS = Number(process.env.NETTRAIL_CHURN_SECONDS ?? 20);
const SEED = Number(process.env.NETTRAIL_FUZZ_SEED ?? 0xc4a2);
const SLOTS = 5;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const tryIp = (...args: string[]) => {
  try {
    ip(...args);
    return true;
  } catch {
    return false;
  }
};
const ifaces = (netns: string) =>
  (JSON.parse(execFileSync('ip', ['-n', netns, '-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>).map((l) => l.ifname).sort();

test(`${SECONDS} s of namespace and interface churn under serve: no crash, no error, links and namespaces back to baseline`, async (t) => {
  const id = randomBytes(3).toString('hex');
  const base = `ntch${id}-p`;
  const slot = (i: number) => `ntch${id}-${i}`;
  const cleanup = () => {
    for (const name of [base, ...Array.from({ length: SLOTS }, (_, i) => slot(i))]) tryIp('netns', 'del', name);
  };
  t.after(cleanup);
  process.once('exit', cleanup);
  ip('netns', 'add', base);
  ip('-n', base, 'link', 'set', 'lo', 'up');
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-faults-churn-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  const serve = await startServe(['--store', path.join(dir, 'store'), '--netns', base, ...Array.from({ length: SLOTS }, (_, i) => ['--netns', slot(i)]).flat()]);
  t.after(() => serve.kill());
  const pid = serve.child.pid!;
  const baselineLinks = linksHeldBy(pid);
  const baselineIfaces = ifaces(base);
  assert.equal(baselineLinks.filter((l) => l.type === 'tcx').length, 2, 'lo of the persistent namespace: ingress and egress');

  const random = prng(SEED);
  const live = new Set<number>();
  const extras = new Set<string>();
  const subnets = new Map<number, string>();
  const ops = new Map<string, number>();
  const count = (op: string) => ops.set(op, (ops.get(op) ?? 0) + 1);
  let serial = 0;
  const end = Date.now() + SECONDS * 1000;
  while (Date.now() < end) {
    const i = Math.floor(random() * SLOTS);
    switch (Math.floor(random() * 5)) {
      case 0:
      case 1:
        if (live.has(i)) {
          ip('netns', 'del', slot(i));
          live.delete(i);
          count('namespace deleted');
        } else {
          // A deleted namespace lives on until serve's NAT tracking closes its conntrack socket: its veth end
          // (and address) may still be here, hence a new name and subnet each time.
          const veth = `v${serial++}`;
          subnets.set(i, `10.${180 + (serial % 60)}.${parseInt(id.slice(0, 2), 16)}`);
          ip('netns', 'add', slot(i));
          ip('-n', base, 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', slot(i));
          ip('-n', slot(i), 'addr', 'add', `${subnets.get(i)}.2/24`, 'dev', 'eth0');
          ip('-n', slot(i), 'link', 'set', 'eth0', 'up');
          ip('-n', slot(i), 'link', 'set', 'lo', 'up');
          ip('-n', base, 'addr', 'add', `${subnets.get(i)}.1/24`, 'dev', veth);
          ip('-n', base, 'link', 'set', veth, 'up');
          live.add(i);
          count('namespace created');
        }
        break;
      case 2: {
        const name = `x${serial++}`;
        ip('-n', base, 'link', 'add', `${name}a`, 'type', 'veth', 'peer', 'name', `${name}b`);
        ip('-n', base, 'link', 'set', `${name}a`, 'up');
        ip('-n', base, 'link', 'set', `${name}b`, 'up');
        extras.add(name);
        count('veth pair created');
        break;
      }
      case 3: {
        const [name] = [...extras].slice(Math.floor(random() * extras.size));
        if (name === undefined) break;
        ip('-n', base, 'link', 'del', `${name}a`);
        extras.delete(name);
        count('veth pair deleted');
        break;
      }
      default:
        if (!live.has(i)) break;
        // A few UDP datagrams across the veth (no one listens: ICMP port unreachable comes back).
        execFileSync('ip', ['netns', 'exec', base, 'bash', '-c', `for n in 1 2 3; do echo churn > /dev/udp/${subnets.get(i)}.2/9; done`], { stdio: 'ignore' });
        count('traffic');
    }
    await new Promise((resolve) => setTimeout(resolve, 20 + random() * 150));
    assert.equal(serve.child.exitCode, null, `serve is still running\n${serve.stderr()}`);
  }
  t.diagnostic(`churn: ${[...ops].map(([op, n]) => `${op} ×${n}`).join(', ')}`);
  const captureStatus = async () => (await (await fetch(`${serve.url}/api/v1/capture/status`)).json()) as { points: unknown[]; events: number; not_ip: number };
  const status = await captureStatus();
  assert.ok(Array.isArray(status.points), 'the API answers after the churn');
  assert.ok(status.events > 0, 'the churn\'s traffic was captured');
  const events = metricValue(await (await fetch(`${serve.url}/metrics`)).text(), 'nettrail_capture_points');
  t.diagnostic(`points attached at the end of the churn: ${events}`);

  // Everything goes; serve notices.
  for (const i of live) ip('netns', 'del', slot(i));
  for (const name of extras) ip('-n', base, 'link', 'del', `${name}a`);
  await until('serve holds its baseline links again', () => linksHeldBy(pid).filter((l) => l.type === 'tcx').length === 2).catch((err: Error) => {
    t.diagnostic(`persistent namespace: ${ifaces(base).join(', ')}; serve holds ${JSON.stringify(linksHeldBy(pid))}\n${serve.stderr().slice(-3000)}`);
    throw err;
  });
  assert.deepEqual(linksHeldBy(pid).map((l) => l.link).sort(), baselineLinks.map((l) => l.link).sort(), 'the very same links as before the churn');
  await until('no deleted namespace kept alive (its veth end is gone)', () => ifaces(base).join() === baselineIfaces.join());
  assert.equal(serve.child.exitCode, null, 'serve is still running');
  assert.equal((await fetch(`${serve.url}/healthz`)).status, 200);
  // The kernel's per-point counters of vanished points are let go too (folded into the totals),
  // or a churning host would fill the table (16384 entries) and new points would go uncounted per point.
  const tcxProg = baselineLinks.find((l) => l.type === 'tcx')!.prog;
  await until('per-point counters of vanished points let go', () => mapEntries(tcxProg, 'point_stats') <= 2).catch((err: Error) => {
    t.diagnostic(`point_stats holds ${mapEntries(tcxProg, 'point_stats')} entries`);
    throw err;
  });
  const after = await captureStatus();
  assert.ok(after.events >= status.events && after.not_ip >= status.not_ip, 'the totals keep what vanished points counted');

  // Warnings, no errors.
  const lines = serve.stderr().split('\n').filter(Boolean);
  const warnings = lines.filter((l) => !/capturing on/.test(l));
  const kinds = new Map<string, number>();
  for (const w of warnings) kinds.set(w.replace(/ntch\w+-\w+/g, 'NS').replace(/\d+/g, 'N').slice(0, 120), (kinds.get(w.replace(/ntch\w+-\w+/g, 'NS').replace(/\d+/g, 'N').slice(0, 120)) ?? 0) + 1);
  t.diagnostic(`serve's messages: ${[...kinds].map(([k, n]) => `${n} × ${k}`).join(' | ')}`);
  assert.deepEqual(lines.filter((l) => /\berror\b|exception|uncaught|\n\s+at /i.test(l) && !/namespace .* not found/.test(l)), [], 'no error logged');
});

test('--netns all does not follow a deleted namespace that nettrail\'s own conntrack socket still holds', async (t) => {
  const name = `ntchk${randomBytes(3).toString('hex')}`;
  ip('netns', 'add', name);
  t.after(() => tryIp('netns', 'del', name));
  process.once('exit', () => tryIp('netns', 'del', name));
  const ino = statSync(`/run/netns/${name}`).ino;
  const log: string[] = [];
  const nat = new NatSources({ node: 'churn', onTranslations: () => {}, log: (m) => log.push(m), ovsRundirs: [] });
  t.after(() => nat.stop());
  await nat.follow([{ name, path: `/run/netns/${name}`, ino }]);
  // The conntrack source's ctnetlink socket now holds the namespace.
  const followed = new Set<number>();
  const scanMs = 100;
  const watcher = await NetnsWatcher.start(
    'all',
    {
      netnsAppeared: (netns) => followed.add(netns.ino),
      netnsVanished: (netns) => followed.delete(netns.ino),
      ifaceAppeared: () => {},
      ifaceChanged: () => {},
      ifaceVanished: () => {},
      onWarning: (message) => t.diagnostic(message),
    },
    { processScanMs: scanMs },
  );
  t.after(() => watcher.close());
  assert.ok(followed.has(ino), 'followed while it exists');
  ip('netns', 'del', name);
  await until('let go of once deleted', () => !followed.has(ino));
  await sleep(5 * scanMs);
  assert.ok(!followed.has(ino), 'not followed again while nettrail\'s own socket holds it');
  // Following what capture follows (here: only that namespace matters) stops its source, and the namespace is released.
  await nat.follow([]);
  const inUse = () => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).some((p) => {
    try {
      return statSync(`/proc/${p}/ns/net`).ino === ino;
    } catch {
      return false;
    }
  });
  await until('no process left in the deleted namespace', () => !inUse());
});
