// The whole service (capture, NAT tracking, drop tracing, store, API) capturing a lab's
// namespaces, for the tests that go through all of it: set up, and torn down after the
// test in the order that works; the lab's capture points and tuples; a request through
// the lab, recorded; and what the API answers.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { FourTupleJson } from '../../api/schemas/common.js';
import type { ConnectionJson } from '../../api/schemas/connections.js';
import { startService, type Service } from '../../service/service.js';
import { useLab } from './lab-fixture.js';
import type { Lab, LabScenario } from '../../lab/lab.js';
import { sleep, waitFor } from '../../bench/support/wait.js';

/** The node the service names its capture points after. */
export const NODE = 'lab-node';

export interface LabServiceOptions {
  scenario?: LabScenario;
  /** The namespaces to capture in (default: all of the lab's). */
  only?: (lab: Lab) => string[];
  /** ovs-vswitchd run directories to track (default: the lab's, if it has one). */
  ovsRundirs?: string[];
}

export interface LabService {
  lab: Lab;
  service: Service;
  /** A directory of the test's own (the store is in it), removed after the test. */
  dir: string;
  /** What the service logged. */
  logs: string[];
}

/**
 * A lab and the service capturing in its namespaces. After the test the service goes
 * first (conntrack never sees its namespaces vanish), then the lab, then the directory.
 */
export async function labWithService(t: TestContext, { scenario, only, ovsRundirs }: LabServiceOptions = {}): Promise<LabService> {
  let closeService = async () => {};
  t.after(() => closeService());
  const lab = await useLab(t, { scenario });
  const dir = mkdtempSync(path.join(tmpdir(), `nettrail-${lab.scenario}-service-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logs: string[] = [];
  const service = await startService({
    store: { path: path.join(dir, 'store') },
    netns: only ? only(lab) : lab.namespaces.map((n) => n.name),
    ifaces: null,
    listen: { host: '127.0.0.1', port: 0 },
    node: NODE,
    flowFlushMs: 200,
    log: (message) => {
      logs.push(message);
      t.diagnostic(message);
    },
    ovsRundirs: ovsRundirs ?? (lab.ovsRundir ? [lab.ovsRundir] : []),
  });
  closeService = () => service.close();
  return { lab, service, dir, logs };
}

/** The capture points a connection through the lab's router passes, in path order: the client's interface, the router's two, the server's. */
export function pathPoints(lab: Lab): Array<{ node: string; netns: string; iface: string }> {
  const { client, router, server } = lab.nodes;
  return [
    { node: NODE, netns: client.netns.name, iface: client.ifaces[0].name },
    { node: NODE, netns: router.netns.name, iface: router.ifaces[0].name },
    { node: NODE, netns: router.netns.name, iface: router.ifaces[1].name },
    { node: NODE, netns: server.netns.name, iface: server.ifaces[0].name },
  ];
}

export const tupleText = (t: FourTupleJson) => `${t.src}:${t.sport} -> ${t.dst}:${t.dport}`;
export const reversed = (t: FourTupleJson): FourTupleJson => ({ src: t.dst, sport: t.dport, dst: t.src, dport: t.sport });

/** The tuple of a connection from the client's `localPort` to the lab's service address. */
export const serviceTuple = (lab: Lab, localPort: number): FourTupleJson => ({
  src: lab.nodes.client.ifaces[0].ip,
  sport: localPort,
  dst: lab.service.ip,
  dport: lab.service.port,
});

/**
 * An HTTP request through the lab from the client's `localPort`, answered 200; then,
 * once the last ACKs and conntrack's events are in, everything the service captured is
 * written out.
 */
export async function requestRecorded(lab: Lab, service: Service, localPort: number): Promise<void> {
  assert.equal((await lab.request({ localPort })).status, 200, 'the request through the lab');
  await sleep(1500);
  await service.flush();
}

/** GET `route` of the service: it must answer 200. */
export async function getOk(service: Service, route: string): Promise<Response> {
  const res = await fetch(new URL(route, service.url));
  assert.equal(res.status, 200, `${route}: ${res.status} ${await res.clone().text()}`);
  return res;
}

export const getJson = async <T>(service: Service, route: string): Promise<T> => (await (await getOk(service, route)).json()) as T;

/** The service's connection of `tuple` (the one alive at `at`, ns, if given), or null if it knows none. */
export async function connectionOf(service: Service, tuple: string, at?: bigint): Promise<ConnectionJson | null> {
  const url = new URL('/api/v1/connections', service.url);
  url.searchParams.set('tuple', tuple);
  if (at !== undefined) url.searchParams.set('at', String(at / 1_000_000n));
  const res = await fetch(url);
  if (res.status === 404) return null;
  assert.equal(res.status, 200, `${tuple}: ${await res.clone().text()}`);
  return ((await res.json()) as { connection: ConnectionJson }).connection;
}

/** The connection of `tuple` once `ready` holds for it (what arrives a little after the packets: drops, NAT translations); the service writes out what it holds before each look. */
export async function settledConnection(
  service: Service,
  tuple: string,
  what: string,
  ready: (connection: ConnectionJson) => boolean,
  at?: bigint,
): Promise<ConnectionJson> {
  let last: ConnectionJson | null = null;
  return waitFor(
    () => `${tuple}: ${what}; the last answer: ${JSON.stringify(last)}`,
    async () => {
      await service.flush();
      last = await connectionOf(service, tuple, at);
      return last && ready(last) ? last : undefined;
    },
    { timeoutMs: 15_000, everyMs: 200 },
  );
}
