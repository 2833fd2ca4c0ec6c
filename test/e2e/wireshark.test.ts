// Wireshark's view of nettrail's capture files (tshark, real lab traffic): its TCP analysis runs
// over all the interfaces of a file as one flow, so the same packet at its next capture point
// looks retransmitted. nettrail's comments say what happened at each point; the shipped profile
// turns Wireshark's cross-point analysis off; split=point gives files Wireshark analyses right.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ConnectionJson } from '../../api/schemas/connections.js';
import type { Lab } from '../../lab/lab.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { ECHO_PORT, TRAFFIC_JS } from '../support/netns-pair.js';
import { labWithService, NODE, pathPoints, requestRecorded, serviceTuple, settledConnection, tupleText } from '../support/service-fixture.js';
import { startTcpdump } from '../support/tcpdump.js';

/** Runs tshark; with `configHome` (a directory holding wireshark/profiles/: its XDG_CONFIG_HOME and HOME), in the profile nettrail. */
function tshark(args: string[], configHome?: string): string {
  if (configHome === undefined) return execFileSync('tshark', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  const env = { ...process.env, XDG_CONFIG_HOME: configHome, HOME: configHome };
  return execFileSync('tshark', ['-C', 'nettrail', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

/** Lines of tshark's fields (separator |) of the packets matching `filter`. */
const fields = (file: string, filter: string, names: string[], configHome?: string): string[][] =>
  tshark(['-r', file, '-Y', filter, '-T', 'fields', '-E', 'separator=|', ...names.flatMap((n) => ['-e', n])], configHome)
    .split('\n').filter(Boolean).map((line) => line.split('|'));

/** How many packets of `file` match `filter`. */
const count = (file: string, filter: string, configHome?: string) => fields(file, filter, ['frame.number'], configHome).length;

/** Wireshark's expert summary of `file` (tshark -z expert), for the test's diagnostics. */
const expertSummary = (file: string, configHome?: string) =>
  tshark(['-r', file, '-q', '-z', 'expert'], configHome).split('\n').filter((line) => /^\s*\d+\s+Sequence/.test(line)).map((line) => line.trim().replace(/\s+/g, ' ')).join('; ');

/** Unzips `zip` into a new directory `into` (unzip -t first: the archive is sound); returns `into`. */
function unzip(zip: string, into: string): string {
  execFileSync('unzip', ['-tq', zip]);
  mkdirSync(into, { recursive: true });
  execFileSync('unzip', ['-q', zip, '-d', into]);
  return into;
}

async function download(lab: { dir: string }, url: URL, name: string): Promise<string> {
  const res = await fetch(url);
  assert.equal(res.status, 200, `${url}: ${res.status} ${await res.clone().text()}`);
  const file = path.join(lab.dir, name);
  writeFileSync(file, Buffer.from(await res.arrayBuffer()));
  return file;
}

test('the demo connection: Wireshark flags the same packet at later points; nettrail comments on no retransmission or dup ACK', async (t) => {
  const { lab, service, dir } = await labWithService(t);
  const localPort = randomClientPort();
  await requestRecorded(lab, service, localPort);
  const url = new URL('/api/v1/pcap', service.url);
  url.searchParams.set('tuple', tupleText(serviceTuple(lab, localPort)));
  const file = await download({ dir }, url, 'demo.pcapng');

  // Without the profile: Wireshark's analysis across the four points (the issue).
  const packets = count(file, 'tcp');
  const falseRetransmissions = count(file, 'tcp.analysis.retransmission');
  const falseDupAcks = count(file, 'tcp.analysis.duplicate_ack');
  t.diagnostic(`${packets} packets; tshark without the profile: ${falseRetransmissions} retransmissions, ${falseDupAcks} dup ACKs (${expertSummary(file)})`);
  assert.equal(packets, 40);
  assert.ok(falseRetransmissions > 0, 'Wireshark takes the same packet at its next point for a retransmission');

  // nettrail's own analysis at each point: none of these; a hop comment on every packet at its second and later points.
  assert.deepEqual(fields(file, 'frame.comment contains "nettrail: retransmission" || frame.comment contains "nettrail: dup ack" || frame.comment contains "nettrail: out-of-order"', ['frame.comment']), []);
  const hops = fields(file, 'frame.comment contains "nettrail: hop"', ['frame.interface_name', 'frame.comment']);
  assert.equal(hops.length, 30, hops.join('\n'));
  const points = pathPoints(lab).map((p) => `${p.node}/${p.netns}/${p.iface}`);
  for (const [iface, comment] of hops) {
    assert.ok(points.includes(iface), iface);
    assert.match(comment, new RegExp(`(^|,)nettrail: hop \\+\\d+\\.\\d{3}us from #\\d+ at ${NODE}/[^,]+$`), comment);
  }

  // The shipped profile, from the API, unpacked where tshark looks for profiles: loaded without a
  // warning (its coloring rules too: --color reads them, and warns of one that does not compile),
  // and Wireshark's cross-point analysis is off.
  const profileUrl = new URL('/api/v1/wireshark-profile', service.url);
  const configHome = path.join(dir, 'config');
  unzip(await download({ dir }, profileUrl, 'profile.zip'), path.join(configHome, 'wireshark', 'profiles'));
  assert.deepEqual(readdirSync(path.join(configHome, 'wireshark', 'profiles', 'nettrail')).sort(), ['colorfilters', 'preferences']);
  const run = spawnSync('tshark', ['-C', 'nettrail', '--color', '-r', file], { env: { ...process.env, XDG_CONFIG_HOME: configHome, HOME: configHome } });
  assert.equal(run.status, 0);
  assert.equal(run.stderr.toString().replace(/^Running as user "root".*\n/m, ''), '', 'tshark loads the profile without a warning');
  assert.equal(count(file, 'tcp.analysis.retransmission', configHome), 0);
  assert.equal(count(file, 'tcp.analysis.duplicate_ack', configHome), 0);
  t.diagnostic(`tshark with the profile: ${count(file, 'tcp.analysis.flags', configHome)} TCP analysis flags (${expertSummary(file, configHome)})`);

  // An unknown capture point is a 400 naming the connection's.
  const bad = new URL(url);
  bad.searchParams.set('points', `${points[0]},${NODE}/nowhere/eth9`);
  const res = await fetch(bad);
  assert.equal(res.status, 400);
  const { error } = (await res.json()) as { error: { message: string } };
  assert.match(error.message, /^points: "lab-node\/nowhere\/eth9" not among this connection's capture points: /);
  for (const point of points) assert.ok(error.message.includes(`"${point}"`), error.message);
});

/**
 * The traffic helper's echo server in the lab's server namespace, and request/response rounds
 * through the router from the client; resolves with the client's local port.
 */
async function echoRounds(t: TestContext, lab: Lab, rounds: number): Promise<number> {
  const server = spawn('ip', ['netns', 'exec', lab.nodes.server.netns.name, process.execPath, TRAFFIC_JS, 'serve'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => server.kill('SIGKILL'));
  const [ready] = (await once(server.stdout!, 'data')) as [Buffer];
  assert.match(ready.toString(), /ready/);
  const client = spawn('ip', ['netns', 'exec', lab.nodes.client.netns.name, process.execPath, TRAFFIC_JS, 'talk', lab.server.ip, String(rounds)],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => client.kill('SIGKILL'));
  let out = '';
  let err = '';
  client.stdout!.on('data', (c: Buffer) => (out += c));
  client.stderr!.on('data', (c: Buffer) => (err += c));
  const [code] = (await once(client, 'exit')) as [number];
  assert.equal(code, 0, err);
  return Number(out.trim().split('\n')[0]);
}

test('real retransmissions: nettrail marks exactly those at each point that tshark finds in tcpdump\'s capture there', async (t) => {
  const { lab, service, dir } = await labWithService(t);
  const { client, router } = lab.nodes;
  // Every third client data segment through the router is dropped. Each message waits for its echo, so
  // a lost one is sent again by the client's timers, with nothing after it: a retransmission as both
  // nettrail and Wireshark (which cannot tell SACK recovery from reordering) see it at a single point.
  const rule = ['FORWARD', '-p', 'tcp', '--dport', String(ECHO_PORT), '-m', 'length', '--length', '120:65535', '-m', 'statistic', '--mode', 'nth', '--every', '3', '--packet', '1', '-j', 'DROP'];
  // (The rule goes with the lab's router namespace after the test.)
  execFileSync('ip', ['netns', 'exec', router.netns.name, 'iptables', '-I', ...rule]);
  const points = pathPoints(lab);
  const dumps = await Promise.all(points.map((p, i) => startTcpdump(t, p.netns, p.iface, path.join(dir, `tcpdump-${i}.pcap`))));
  const localPort = await echoRounds(t, lab, 12);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await service.flush();
  for (const dump of dumps) await dump.stop();

  const tuple = `${client.ifaces[0].ip}:${localPort} -> ${lab.server.ip}:${ECHO_PORT}`;
  const connection: ConnectionJson = await settledConnection(service, tuple, 'flows at four points', (c) => c.points.length >= 4);
  const url = new URL('/api/v1/pcap', service.url);
  url.searchParams.set('id', connection.id!);
  const file = await download({ dir }, url, 'retransmissions.pcapng');

  const key = ([seq, len]: string[]) => `${seq}/${len}`;
  const ours = new Map<string, string[]>();
  for (const [iface, ...rest] of fields(file, 'frame.comment contains "nettrail: retransmission"', ['frame.interface_name', 'tcp.seq_raw', 'tcp.len', 'frame.comment'])) {
    assert.match(rest[2], new RegExp(`nettrail: retransmission(?: of #\\d+)? at ${iface.replace(/[.]/g, '\\.')}(,|$)`));
    ours.set(iface, [...(ours.get(iface) ?? []), key(rest)]);
  }
  const summary: string[] = [];
  let total = 0;
  for (const [i, point] of points.entries()) {
    const name = `${point.node}/${point.netns}/${point.iface}`;
    const truth = fields(path.join(dir, `tcpdump-${i}.pcap`), `tcp.port == ${ECHO_PORT} && tcp.analysis.retransmission`, ['tcp.seq_raw', 'tcp.len']).map(key).sort();
    assert.deepEqual((ours.get(name) ?? []).sort(), truth, `retransmissions at ${name}`);
    summary.push(`${name}: ${truth.length}`);
    total += truth.length;
  }
  t.diagnostic(`retransmissions by point: ${summary.join(', ')}; tshark over the whole file: ${count(file, 'tcp.analysis.retransmission')}`);
  // split=point: a file per capture point, in which tshark's own analysis finds the same retransmissions.
  url.searchParams.set('split', 'point');
  const perPoint = unzip(await download({ dir }, url, 'per-point.zip'), path.join(dir, 'per-point'));
  const files = readdirSync(perPoint);
  assert.deepEqual(files.filter((f) => !f.endsWith('_drops.pcapng')).sort(), points.map((p) => `${p.node}_${p.netns}_${p.iface}.pcapng`).sort());
  // The drops at a point in a file of their own: the lost segments, on the interface "POINT drops".
  const routerDrops = fields(path.join(perPoint, `${NODE}_${router.netns.name}_to-client_drops.pcapng`), 'frame.comment contains "DROPPED"', ['frame.interface_name']);
  assert.ok(routerDrops.length >= 3 && routerDrops.every(([i]) => i === `${NODE}/${router.netns.name}/to-client drops`), JSON.stringify(routerDrops));
  for (const point of points) {
    const name = `${point.node}/${point.netns}/${point.iface}`;
    const one = path.join(perPoint, `${point.node}_${point.netns}_${point.iface}.pcapng`);
    assert.deepEqual(fields(one, 'frame', ['frame.interface_name']).map(([i]) => i).filter((i) => i !== name), [], `only ${name} in its file`);
    const theirs = fields(one, 'tcp.analysis.retransmission', ['tcp.seq_raw', 'tcp.len']).map(key).sort();
    assert.deepEqual(theirs, (ours.get(name) ?? []).sort(), `tshark on the file of ${name}`);
  }

  // The client sent again at least the three segments lost in twelve; Wireshark over the whole file takes every copy at a later point for one more.
  assert.ok((ours.get(`${NODE}/${client.netns.name}/${client.ifaces[0].name}`) ?? []).length >= 3, JSON.stringify([...ours]));
  assert.ok(count(file, 'tcp.analysis.retransmission') > total);
  // A retransmission names the frame it repeats at the same point.
  for (const [frame, comment] of fields(file, 'frame.comment contains "nettrail: retransmission of"', ['frame.number', 'frame.comment'])) {
    const original = /retransmission of #(\d+) at ([^,]+)/.exec(comment)!;
    const [[iface, seq]] = fields(file, `frame.number == ${original[1]}`, ['frame.interface_name', 'tcp.seq_raw']);
    const [[ownIface, ownSeq]] = fields(file, `frame.number == ${frame}`, ['frame.interface_name', 'tcp.seq_raw']);
    assert.deepEqual([iface, seq], [ownIface, ownSeq], comment);
    assert.equal(iface, original[2]);
  }
});
