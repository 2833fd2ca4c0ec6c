// `nettrail serve --user nobody`: attached as root, then running as nobody with no
// capabilities. The API answers, capture keeps counting and the store keeps being
// written (through the links, ring buffer and maps opened before, and the store
// directory handed to nobody); a namespace that appears later is not attached,
// and the log says what stopped. Also: an unknown user, and a store nobody cannot
// reach, are refused before anything starts (exit 2).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createPair } from '../support/netns-pair.js';
import { CLI, linksHeldBy, metricValue, startServe } from '../../bench/support/serve-process.js';
import { until } from '../../bench/support/wait.js';

const nobody = execFileSync('getent', ['passwd', 'nobody'], { encoding: 'utf8' }).split(':');
const [NOBODY_UID, NOBODY_GID] = [Number(nobody[2]), Number(nobody[3])];

test('serve --user nobody: runs unprivileged after attaching; the API answers, capture counts, the store is written; later namespaces are not attached', async (t) => {
  const pair = await createPair(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-faults-user-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755); // nobody must be able to reach the store
  const later = `${pair.client.name}-later`;
  t.after(() => spawnSync('ip', ['netns', 'del', later]));
  process.once('exit', () => spawnSync('ip', ['netns', 'del', later]));
  const serve = await startServe(['--user', 'nobody', '--netns', pair.client.name, '--netns', pair.server.name, '--netns', later, '--store', path.join(dir, 'store')]);
  t.after(() => serve.kill());
  const pid = serve.child.pid!;

  // Unprivileged: uid and gid nobody (real, effective, saved, filesystem), no capabilities, no other groups.
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  assert.match(status, new RegExp(`^Uid:\\s+${NOBODY_UID}\\s+${NOBODY_UID}\\s+${NOBODY_UID}\\s+${NOBODY_UID}$`, 'm'));
  assert.match(status, new RegExp(`^Gid:\\s+${NOBODY_GID}\\s+${NOBODY_GID}\\s+${NOBODY_GID}\\s+${NOBODY_GID}$`, 'm'));
  assert.match(status, /^CapEff:\s+0+$/m);
  assert.match(status, /^CapPrm:\s+0+$/m);
  assert.match(status, new RegExp(`^Groups:\\s+${NOBODY_GID}\\s*$`, 'm'));
  assert.equal(statSync(path.join(dir, 'store')).uid, NOBODY_UID, 'the store directory is nobody\'s');
  assert.match(serve.stderr(), /running as nobody .*namespaces and interfaces that appear later are not captured, and NAT tracking .* has stopped/);
  // NAT tracking stopped while its root helpers could still be signalled: none is left behind.
  const children = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
    } catch {
      return false;
    }
  });
  assert.deepEqual(children.map((p) => readFileSync(`/proc/${p}/comm`, 'utf8').trim()), [], 'no helper process (conntrack) left running');
  const links = linksHeldBy(pid);
  assert.equal(links.filter((l) => l.type === 'tcx').length, 8, 'lo and eth0 in both namespaces, ingress and egress, still attached');

  // The API answers; capture counts new traffic; rows are written by the unprivileged process.
  assert.equal((await fetch(`${serve.url}/healthz`)).status, 200);
  const metrics = async () => (await fetch(`${serve.url}/metrics`)).text();
  const before = await metrics();
  const eventsBefore = metricValue(before, 'nettrail_capture_events_total', { netns: pair.client.name, iface: 'eth0' }) ?? 0;
  const port = await pair.traffic('talk', pair.v4, '20');
  t.diagnostic(`traffic from port ${port}`);
  await until('capture counts the new traffic and the store is written', async () => {
    const text = await metrics();
    return (metricValue(text, 'nettrail_capture_events_total', { netns: pair.client.name, iface: 'eth0' }) ?? 0) >= eventsBefore + 80 &&
      (metricValue(text, 'nettrail_store_rows_written_total', { table: 'packets' }) ?? 0) >= 160;
  });
  const text = await metrics();
  assert.equal(metricValue(text, 'nettrail_store_failing', { table: 'packets' }), 0, 'inserts do not fail');
  await until('the connection is in the flow log', async () => {
    const flows = (await (await fetch(`${serve.url}/api/v1/flows?port=${port}`)).json()) as { flows: unknown[] };
    return flows.flows.length > 0;
  });

  // A namespace that appears now is not attached (that needs root); serve goes on.
  execFileSync('ip', ['netns', 'add', later]);
  execFileSync('ip', ['-n', later, 'link', 'set', 'lo', 'up']);
  await new Promise((resolve) => setTimeout(resolve, 4500));
  assert.deepEqual(linksHeldBy(pid).map((l) => l.link).sort(), links.map((l) => l.link).sort(), 'the same links: nothing attached, nothing let go');
  assert.equal(serve.child.exitCode, null);
  assert.doesNotMatch(serve.stderr(), /EPERM|permission denied|operation not permitted/i, 'no failed attempt to do what needs root');

  // A clean exit still: detach, write out what was captured.
  serve.child.kill('SIGTERM');
  const code = await new Promise((resolve) => serve.child.once('exit', resolve));
  assert.equal(code, 0, serve.stderr());
});

test('serve --user: an unknown user, and a store the user cannot reach, are refused before anything starts', () => {
  const unknown = spawnSync(process.execPath, [CLI, 'serve', '--user', 'no-such-user-nt', '--netns', 'none'], { encoding: 'utf8' });
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /--user no-such-user-nt: no such user/);
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-faults-user-')); // 0700, root's
  try {
    const blocked = spawnSync(process.execPath, [CLI, 'serve', '--user', 'nobody', '--netns', 'none', '--store', path.join(dir, 'store')], { encoding: 'utf8' });
    assert.equal(blocked.status, 2);
    assert.match(blocked.stderr, new RegExp(`cannot reach the store directory .*\\(${dir} is not searchable for it\\)`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
