// A busy host's processes make and drop network namespaces all the time: those gone before NAT
// tracking could read them are one line per burst in serve's log, not one per namespace; a named
// namespace that vanishes is still reported on its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { NatSources } from '../../nat-tracker/tracker.js';
import type { NetnsRef } from '../../model/records.js';
import { sleep, until } from '../../bench/support/wait.js';

/** `n` processes, each in a network namespace of its own, that exit (their namespaces with them) once all are seen. */
async function vanishedProcessNamespaces(n: number): Promise<NetnsRef[]> {
  const children = Array.from({ length: n }, () => spawn('unshare', ['--net', 'sleep', '30'], { stdio: 'ignore' }));
  const exited = children.map((child) => once(child, 'exit'));
  try {
    await Promise.all(children.map((child) => once(child, 'spawn')));
    const refs: NetnsRef[] = [];
    for (const child of children) {
      const path = `/proc/${child.pid}/ns/net`;
      await until('the process is in its own namespace', () => statSync(path).ino !== statSync('/proc/self/ns/net').ino, { timeoutMs: 5000, everyMs: 5 });
      refs.push({ name: `pid:${child.pid}`, path, ino: statSync(path).ino });
    }
    return refs;
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await Promise.all(exited);
  }
}

test('namespaces of other processes gone before they were read: one line per burst; a named one: its own line', async (t) => {
  const logged: string[] = [];
  const nat = new NatSources({ node: 'test', onTranslations: () => {}, log: (m) => logged.push(m), ovsRundirs: [], churnWindowMs: 400 });
  t.after(() => nat.stop());
  const burst = await vanishedProcessNamespaces(5);
  const named: NetnsRef = { name: 'ntcl-no-such-netns', path: '/run/netns/ntcl-no-such-netns', ino: 1 };
  await nat.follow([burst[0]!, burst[1]!]);
  await nat.follow([...burst, named]);
  const churnLines = () => logged.filter((m) => /namespaces? of other processes came and went/.test(m));
  await until('the burst is logged', () => churnLines().length > 0, { timeoutMs: 5000, everyMs: 20 });
  assert.deepEqual(churnLines(), ['5 namespaces of other processes came and went in the last 0.4 s, gone before NAT tracking could read them']);
  assert.deepEqual(logged.filter((m) => m.includes('NETNS_GONE')), [`conntrack in ${named.name}: CONNTRACK_NETNS_GONE: namespace ${named.path} is gone`]);
  assert.ok(!logged.some((m) => burst.some((ref) => m.includes(ref.name))), logged.join('\n'));

  // A later burst is a line of its own (its namespace may have a freed inode of the first's: those are let go first).
  await nat.follow([]);
  const later = await vanishedProcessNamespaces(1);
  await nat.follow(later);
  await until('the second burst is logged', () => churnLines().length > 1, { timeoutMs: 5000, everyMs: 20 });
  assert.equal(churnLines()[1], '1 namespace of other processes came and went in the last 0.4 s, gone before NAT tracking could read it');
  await sleep(600);
  assert.equal(churnLines().length, 2);
});
