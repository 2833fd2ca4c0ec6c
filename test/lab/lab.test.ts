import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { uniqueLabPrefix } from '../support/lab-fixture.js';
import { createLab, destroyLab, destroyLabSync, labStatus, LabError } from '../../lab/lab.js';

const LAB_JS = fileURLToPath(new URL('../../lab/lab.js', import.meta.url));

function netnsNames(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

function labNamespaces(prefix: string): string[] {
  return netnsNames().filter((n) => n.startsWith(`${prefix}-`));
}

function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Runs a child node process that builds a lab and reports its server pid; resolves with that pid and the child. */
function labInChild(prefix: string, persist: boolean) {
  const script = `
    import { createLab, labStatus } from ${JSON.stringify(LAB_JS)};
    await createLab({ prefix: ${JSON.stringify(prefix)}, persist: ${persist} });
    const st = await labStatus(${JSON.stringify(prefix)});
    console.log(JSON.stringify(st.namespaces[2].processes.map((p) => p.pid)));
    ${persist ? '' : 'setInterval(() => {}, 1000);'}`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const serverPids = new Promise<number[]>((resolve, reject) => {
    child.stdout.setEncoding('utf8').once('data', (line: string) => resolve(JSON.parse(line) as number[]));
    child.once('exit', (code) => reject(new Error(`lab child exited with ${code} before reporting`)));
  });
  return { child, serverPids };
}

test('a lab comes up, serves a request through the NAT router, and destroy leaves nothing', async (t) => {
  const prefix = uniqueLabPrefix();
  const lab = await createLab({ prefix });
  t.after(() => lab.destroy());

  assert.deepEqual(labNamespaces(prefix).sort(), [`${prefix}-client`, `${prefix}-router`, `${prefix}-server`]);
  for (const ns of lab.namespaces) {
    assert.equal(ns.path, `/run/netns/${ns.name}`);
    assert.equal(ns.ino, statSync(ns.path).ino);
    assert.notEqual(ns.ino, statSync('/proc/self/ns/net').ino);
  }
  assert.equal(lab.service.ip, lab.nodes.router.ifaces.find((i) => i.name === 'to-client')!.ip);
  assert.equal(lab.service.port, 8080);
  assert.equal(lab.server.ip, lab.nodes.server.ifaces[0]!.ip);
  assert.equal(lab.server.port, 80);

  const localPort = 20000 + Math.floor(Math.random() * 20000);
  const res = await lab.request({ localPort });
  assert.deepEqual(res, { status: 200, localPort, bytes: 'hello from the nettrail lab\n'.length });
  assert.equal((await lab.request({ path: '/bytes/200000' })).bytes, 200000);

  // The router really translates: its conntrack table has the DNAT + masquerade entry.
  const entry = execFileSync('ip', ['netns', 'exec', `${prefix}-router`, 'conntrack', '-L', '-p', 'tcp', '--orig-port-src', String(localPort)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  assert.match(entry, new RegExp(`src=${lab.server.ip} dst=${lab.masqueradeIp} sport=80`));

  const status = await lab.status();
  assert.equal(status.up, true);
  const serverPids = status.namespaces[2]!.processes.map((p) => p.pid);
  assert.equal(serverPids.length, 1);
  assert.deepEqual(status.namespaces[1]!.interfaces.map((i) => i.name).sort(), ['lo', 'to-client', 'to-server']);

  await lab.destroy();
  await lab.destroy(); // idempotent
  assert.deepEqual(labNamespaces(prefix), []);
  assert.equal(alive(serverPids[0]!), false);
  assert.equal((await labStatus(prefix)).up, false);
  await assert.rejects(lab.request(), (e: unknown) => e instanceof LabError && e.code === 'LAB_DESTROYED');
});

test('two labs coexist on different subnets and a taken prefix is refused', async (t) => {
  const a = await createLab({ prefix: uniqueLabPrefix(), subnet: 201 });
  t.after(() => a.destroy());
  const b = await createLab({ prefix: uniqueLabPrefix(), subnet: 202 });
  t.after(() => b.destroy());
  assert.notEqual(a.service.ip, b.service.ip);
  assert.equal((await a.request()).status, 200);
  assert.equal((await b.request()).status, 200);
  await assert.rejects(createLab({ prefix: a.prefix }), (e: unknown) => e instanceof LabError && e.code === 'LAB_EXISTS');
  assert.equal((await a.request()).status, 200, 'the refused second createLab left the first lab alone');
});

test('destroyLab removes a persistent lab made by another process', async (t) => {
  const prefix = uniqueLabPrefix();
  t.after(() => destroyLabSync(prefix));
  const { child, serverPids } = labInChild(prefix, true);
  const pids = await serverPids;
  await new Promise((resolve) => child.once('close', resolve));

  assert.equal(labNamespaces(prefix).length, 3, 'the lab outlives the process that made it');
  assert.equal((await labStatus(prefix)).up, true);
  assert.equal(alive(pids[0]!), true);

  await destroyLab(prefix);
  assert.deepEqual(labNamespaces(prefix), []);
  assert.equal(alive(pids[0]!), false);
  await destroyLab(prefix); // nothing left: a no-op
});

test('a non-persistent lab is destroyed when its process is killed by SIGTERM', async (t) => {
  const prefix = uniqueLabPrefix();
  t.after(() => destroyLabSync(prefix));
  const { child, serverPids } = labInChild(prefix, false);
  const pids = await serverPids;
  assert.equal(labNamespaces(prefix).length, 3);
  const exit = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  child.kill('SIGTERM');
  assert.equal(await exit, 'SIGTERM', 'the process still dies of the signal');
  assert.deepEqual(labNamespaces(prefix), []);
  assert.equal(alive(pids[0]!), false);
});

test('startTraffic makes periodic connections until stopped', async (t) => {
  const lab = await createLab({ prefix: uniqueLabPrefix() });
  t.after(() => lab.destroy());
  const serviceConnections = (): number =>
    execFileSync('ip', ['netns', 'exec', `${lab.prefix}-router`, 'conntrack', '-L', '-p', 'tcp', '--orig-port-dst', '8080'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .split('\n')
      .filter(Boolean).length;

  await lab.startTraffic(100);
  await new Promise((r) => setTimeout(r, 1500));
  const counted = serviceConnections();
  assert.ok(counted >= 5, `expected >= 5 connections after 1.5 s at 100 ms, saw ${counted}`);
  await lab.stopTraffic();
  const clientProcesses = (await lab.status()).namespaces[0]!.processes;
  assert.deepEqual(clientProcesses, []);
});
