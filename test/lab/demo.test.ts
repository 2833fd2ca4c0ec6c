// `npm run demo` (scripts/demo.sh) twice in a row, as a user runs it: it brings up every lab
// scenario (reusing those up and working, building a broken one again), serves with the OVS
// scenario's run directory (so the OVS hop is an OVS one, zone 9), `lab status` gives tuples to
// paste, and Ctrl-C or SIGTERM stops serve and removes the lab: no namespace or process is left.
// serve captures only the lab's namespaces (--netns), never the root namespace.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { destroyLabSync, labNetnsName, LAB_SCENARIOS, labStatus, type LabRole } from '../../lab/lab.js';
import { packageRoot } from '../../model/package-root.js';
import { CLI } from '../../bench/support/serve-process.js';
import { until } from '../../bench/support/wait.js';
import type { ConnectionJson } from '../../api/schemas/connections.js';
import { uniqueLabPrefix } from '../support/lab-fixture.js';

const run = promisify(execFile);
const ROLES: LabRole[] = ['client', 'edge', 'router', 'server'];

/** Every namespace name the demo's lab may have. */
const labNames = (prefix: string) => [...new Set(LAB_SCENARIOS.flatMap((s) => ROLES.map((r) => labNetnsName(prefix, r, s))))];
const namespacesLeft = (prefix: string) => readdirSync('/run/netns').filter((name) => name.startsWith(`${prefix}-`));
/** Processes whose command line names the prefix or the store (serve, the lab's servers and traffic, OVS). */
function processesLeft(...marks: string[]): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (Number(pid) !== process.pid && marks.some((mark) => cmd.includes(mark))) found.push(`${pid} ${cmd}`);
    } catch {
      // gone
    }
  }
  return found;
}

interface Demo {
  output: () => string;
  url: string;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  pid: number;
}

async function startDemo(t: TestContext, prefix: string, store: string): Promise<Demo> {
  const netns = labNames(prefix).flatMap((name) => ['--netns', name]);
  const child = spawn(path.join(packageRoot, 'scripts', 'demo.sh'), ['--listen', '127.0.0.1:0', '--store', store, ...netns], {
    env: { ...process.env, NETTRAIL_DEMO_PREFIX: prefix, NETTRAIL_DEMO_SETUP: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, as a terminal's foreground job: Ctrl-C is SIGINT to the group.
    detached: true,
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(-child.pid!, 'SIGKILL');
      await exited;
    }
  });
  await until('the demo serves', () => /capturing on .*; serving http/.test(output) || child.exitCode !== null, { timeoutMs: 180_000, everyMs: 200 });
  const url = /; serving (http:\/\/\S+)/.exec(output)?.[1];
  assert.ok(url, output);
  return { output: () => output, url, exited, pid: child.pid! };
}

/** The tuples `lab status` prints for a scenario: client side and server side. */
async function statusTuples(prefix: string, scenario: string): Promise<[string, string] | null> {
  const { stdout } = await run(process.execPath, [CLI, 'lab', 'status', '--prefix', prefix]);
  const row = stdout.split('\n').find((line) => line.startsWith(`${scenario} `));
  const tuples = row?.match(/\S+ -> \S+/g);
  return tuples && tuples.length === 2 ? [tuples[0]!, tuples[1]!] : null;
}

async function connection(url: string, tuple: string): Promise<ConnectionJson | null> {
  const response = await fetch(`${url}/api/v1/connections?tuple=${encodeURIComponent(tuple)}`);
  return response.ok ? ((await response.json()) as { connection: ConnectionJson }).connection : null;
}

test('the demo twice in a row: every NAT kind right, lab reused or rebuilt, all removed after Ctrl-C and after SIGTERM', { timeout: 600_000 }, async (t) => {
  const prefix = uniqueLabPrefix();
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-demo-'));
  t.after(() => {
    destroyLabSync(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  // 1. From nothing; stopped by Ctrl-C.
  const first = await startDemo(t, prefix, path.join(dir, 'store'));
  for (const scenario of LAB_SCENARIOS) assert.equal((await labStatus(prefix, scenario)).up, true, scenario);
  assert.match(first.output(), /lab up, ovs /);
  // The OVS scenario's translation is seen as OVS's (its run directory given to serve), in zone 9, from either side's tuple.
  let hop: ConnectionJson['hops'][number] | undefined;
  await until('an OVS connection with its OVS hop', async () => {
    const tuples = await statusTuples(prefix, 'ovs');
    if (!tuples) return false;
    const found = await connection(first.url, tuples[1]);
    hop = found?.hops.find((h) => h.via === 'ovs');
    return hop !== undefined && (await connection(first.url, tuples[0]))?.id === found!.id;
  }, { timeoutMs: 60_000, everyMs: 1000 });
  assert.equal(hop!.zone, 9);
  assert.equal(hop!.kind, 'DNAT');
  // lab status: a short table, each scenario up with a tuple from each side that the API finds; --json as before.
  const table = (await run(process.execPath, [CLI, 'lab', 'status', '--prefix', prefix])).stdout.trimEnd().split('\n');
  assert.ok(table.length <= LAB_SCENARIOS.length + 2, table.join('\n'));
  assert.match(table[0]!, /^SCENARIO +STATE +CLIENT SIDE +SERVER SIDE$/);
  for (const scenario of LAB_SCENARIOS) {
    assert.match(table.find((line) => line.startsWith(`${scenario} `)) ?? '', /^\S+ +up +\S+ -> \S+ +\S+ -> \S+$/, scenario);
    // The newest connection may still be on its way into the store.
    await until(`${scenario}: both tuples of lab status found as one connection`, async () => {
      const [client, server] = (await statusTuples(prefix, scenario))!;
      const id = (await connection(first.url, client))?.id;
      return id !== undefined && id === (await connection(first.url, server))?.id;
    }, { timeoutMs: 30_000, everyMs: 1000 });
  }
  const json = JSON.parse((await run(process.execPath, [CLI, 'lab', 'status', '--prefix', prefix, '--scenario', 'ovs', '--json'])).stdout) as { scenario: string; up: boolean };
  assert.deepEqual([json.scenario, json.up], ['ovs', true]);
  process.kill(-first.pid, 'SIGINT');
  assert.deepEqual(await first.exited, [0, null], first.output());
  assert.match(first.output(), /demo: lab \S+ removed/);
  assert.deepEqual(namespacesLeft(prefix), []);
  assert.deepEqual(processesLeft(prefix, dir), []);

  // 2. With the lab up already (by `lab up`) but one scenario broken: that one is built again, the rest reused.
  await run(process.execPath, [CLI, 'lab', 'up', '--scenario', 'all', '--prefix', prefix]);
  execFileSync('ip', ['netns', 'del', labNetnsName(prefix, 'server', 'dnat')]);
  const second = await startDemo(t, prefix, path.join(dir, 'store'));
  const already = second.output().match(/^lab up already, (\S+):/gm) ?? [];
  assert.deepEqual(already.map((line) => line.split(' ')[3]!.replace(':', '')).sort(), LAB_SCENARIOS.filter((s) => s !== 'dnat').sort());
  assert.match(second.output(), /^lab dnat is there but not working: building it again$/m);
  assert.match(second.output(), /^lab up, dnat /m);
  for (const scenario of LAB_SCENARIOS) assert.equal((await labStatus(prefix, scenario)).up, true, scenario);
  process.kill(second.pid, 'SIGTERM');
  assert.deepEqual(await second.exited, [0, null], second.output());
  assert.deepEqual(namespacesLeft(prefix), []);
  assert.deepEqual(processesLeft(prefix, dir), []);
});
