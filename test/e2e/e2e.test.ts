// End to end: a real connection through the lab's NAT router, captured by
// nettrail and by tcpdump at the same interfaces; the API's NAT hop, packets
// and PCAP must agree with what tcpdump saw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ConnectionJson, PacketJson } from '../../api/schemas/connections.js';
import { TCP_FLAGS } from '../../model/protocol.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { getOk, labWithService, NODE, pathPoints, requestRecorded, serviceTuple, tupleText } from '../support/service-fixture.js';
import { startTcpdump } from '../support/tcpdump.js';

interface Seen {
  seq: number;
  ack: number;
  flags: number;
  len: number;
}

const key = (p: Seen) => `${p.seq}/${p.ack}/${p.flags}/${p.len}`;
const sorted = (packets: Seen[]) => packets.map(key).sort();

/** tshark's view of a capture file: per interface name (or one list), seq/ack/flags/len of each TCP packet. */
function tsharkPackets(file: string): Map<string, Seen[]> {
  const out = execFileSync('tshark', ['-r', file, '-Y', 'tcp', '-T', 'fields', '-E', 'separator=|',
    '-e', 'frame.interface_name', '-e', 'tcp.seq_raw', '-e', 'tcp.ack_raw', '-e', 'tcp.flags', '-e', 'tcp.len'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const byInterface = new Map<string, Seen[]>();
  for (const line of out.toString().trim().split('\n').filter(Boolean)) {
    const [iface, seq, ack, flags, len] = line.split('|');
    const list = byInterface.get(iface) ?? [];
    list.push({ seq: Number(seq), ack: Number(ack), flags: parseInt(flags, 16), len: Number(len) });
    byInterface.set(iface, list);
  }
  return byInterface;
}

const flagBits = (names: string[]) => names.reduce((bits, name) => bits | (1 << TCP_FLAGS.indexOf(name as (typeof TCP_FLAGS)[number])), 0);

test('a connection through DNAT + MASQUERADE: NAT hop, packets and PCAP match tcpdump', async (t) => {
  const { lab, service, dir } = await labWithService(t);
  const { client, router } = lab.nodes;
  const points = pathPoints(lab);
  const dumps = await Promise.all(points.map((p, i) => startTcpdump(t, p.netns, p.iface, path.join(dir, `tcpdump-${i}.pcap`))));

  const localPort = randomClientPort();
  await requestRecorded(lab, service, localPort);
  for (const dump of dumps) await dump.stop();

  const clientTuple = tupleText(serviceTuple(lab, localPort));
  const api = (route: string, tuple: string, extraQuery = '') => getOk(service, `${route}?tuple=${encodeURIComponent(tuple)}${extraQuery}`);
  const { connection } = (await (await api('/api/v1/connections', clientTuple)).json()) as { connection: ConnectionJson };

  // One hop on the router: DNAT to the server and MASQUERADE to the router's server-side address.
  assert.equal(connection.hops.length, 1, JSON.stringify(connection.hops));
  const [hop] = connection.hops;
  assert.equal(hop.kind, 'FULLNAT');
  assert.equal(hop.via, 'iptables');
  assert.equal(hop.netns, router.netns.name);
  assert.deepEqual(hop.before, serviceTuple(lab, localPort));
  assert.equal(hop.after.src, lab.masqueradeIp);
  assert.equal(hop.after.dst, lab.server.ip);
  assert.equal(hop.after.dport, lab.server.port);
  assert.deepEqual(connection.tuples, [hop.before, hop.after]);

  // The same connection whichever tuple is entered: server side, either direction, any notation.
  const after = hop.after;
  for (const tuple of [
    `${after.src}:${after.sport} -> ${after.dst}:${after.dport}`,
    `${after.dst}:${after.dport},${after.src}:${after.sport}`,
    `tcp ${lab.service.ip}:${lab.service.port} ${client.ifaces[0].ip}:${localPort}`,
  ]) {
    const other = (await (await api('/api/v1/connections', tuple)).json()) as { connection: ConnectionJson };
    assert.deepEqual(other.connection.hops, connection.hops, tuple);
    assert.deepEqual(other.connection.tuples, connection.tuples, tuple);
  }

  // Packets at every capture point equal tcpdump's at the same interface.
  const { packets } = (await (await api('/api/v1/connections/timeline', clientTuple)).json()) as { packets: PacketJson[] };
  assert.ok(connection.points.length >= 4, JSON.stringify(connection.points));
  const pcapFile = path.join(dir, 'connection.pcapng');
  writeFileSync(pcapFile, Buffer.from(await (await api('/api/v1/pcap', clientTuple)).arrayBuffer()));
  const fromPcap = tsharkPackets(pcapFile);
  const counts: string[] = [];
  for (const [i, point] of points.entries()) {
    const [tcpdumpPackets = []] = tsharkPackets(path.join(dir, `tcpdump-${i}.pcap`)).values();
    const name = `${point.node}/${point.netns}/${point.iface}`;
    const ours = packets
      .filter((p) => p.netns === point.netns && p.iface === point.iface)
      .map((p) => ({ seq: p.seq, ack: p.ack, flags: flagBits(p.flags), len: p.len }));
    assert.ok(tcpdumpPackets.length >= 10, `tcpdump saw ${tcpdumpPackets.length} packets at ${name}`);
    assert.deepEqual(sorted(ours), sorted(tcpdumpPackets), `API packets at ${name}`);
    assert.deepEqual(sorted(fromPcap.get(name) ?? []), sorted(tcpdumpPackets), `PCAP packets at ${name}`);
    counts.push(`${name}: tcpdump ${tcpdumpPackets.length}, nettrail ${ours.length}`);
  }
  t.diagnostic(counts.join('; '));

  // The PCAP names its interfaces, carries the NAT hop as a comment where the translated packet first shows, and capinfos agrees.
  // (The NAT hop's comment comes first; nettrail's analysis adds its own, test/e2e/wireshark.test.ts.)
  const comments = execFileSync('tshark', ['-r', pcapFile, '-Y', 'frame.comment && !(frame.comment contains "nettrail: " && !frame.comment contains " via ")',
    '-T', 'fields', '-E', 'separator=|', '-E', 'occurrence=f', '-e', 'frame.interface_name', '-e', 'frame.comment'])
    .toString().trim().split('\n');
  assert.equal(comments.length, 1, comments.join('\n'));
  const [commentIface, comment] = comments[0].split('|');
  assert.equal(commentIface, `${NODE}/${router.netns.name}/${router.ifaces[1].name}`);
  assert.match(comment, new RegExp(`^FULLNAT via iptables at ${NODE}/${router.netns.name} zone 0: ${client.ifaces[0].ip}:${localPort} -> `));
  const capinfos = execFileSync('capinfos', ['-M', pcapFile]).toString();
  assert.match(capinfos, /Number of interfaces in file: 4/);
  assert.match(capinfos, new RegExp(`Number of packets:\\s+${packets.length}\\b`));
  assert.equal(execFileSync('tshark', ['-r', pcapFile, '-Y', '_ws.malformed || _ws.expert.severity >= error']).toString().trim(), '');

  // Only the chosen capture points, only the chosen time.
  const clientPoint = `${NODE}/${client.netns.name}/${client.ifaces[0].name}`;
  const onePointFile = path.join(dir, 'client-point.pcapng');
  writeFileSync(onePointFile, Buffer.from(await (await api('/api/v1/pcap', clientTuple, `&points=${encodeURIComponent(clientPoint)}`)).arrayBuffer()));
  assert.deepEqual([...tsharkPackets(onePointFile).keys()], [clientPoint]);
  assert.equal(tsharkPackets(onePointFile).get(clientPoint)!.length, 10);
  const synAckTs = packets.find((p) => p.flags.join() === 'SYN,ACK')!.ts;
  const fromSynAckFile = path.join(dir, 'from-syn-ack.pcapng');
  writeFileSync(fromSynAckFile, Buffer.from(await (await api('/api/v1/pcap', clientTuple, `&from=${encodeURIComponent(synAckTs)}`)).arrayBuffer()));
  const fromSynAck = [...tsharkPackets(fromSynAckFile).values()].flat();
  assert.equal(fromSynAck.length, packets.filter((p) => p.ts >= synAckTs).length);
  assert.ok(fromSynAck.every((p) => p.flags !== 0x02), 'no SYN before the SYN-ACK');

  // Classic pcap (nanosecond magic) for tools without pcapng: tcpdump reads every packet.
  const classicFile = path.join(dir, 'connection.pcap');
  writeFileSync(classicFile, Buffer.from(await (await api('/api/v1/pcap', clientTuple, '&format=pcap')).arrayBuffer()));
  const classic = execFileSync('tcpdump', ['-nn', '-r', classicFile], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim().split('\n');
  assert.equal(classic.length, packets.length);

  // The same packet at several points has one packet_id.
  const synIds = new Set(packets.filter((p) => p.flags.length === 1 && p.flags[0] === 'SYN').map((p) => p.packet_id));
  assert.equal(synIds.size, 1, 'the SYN has one packet_id at all four points');

  // An unknown tuple is a 404 with a hint; a malformed one a 400 naming the problem.
  const unknown = await fetch(`${service.url}/api/v1/connections?tuple=${encodeURIComponent('10.9.9.9:1 -> 10.9.9.8:2')}`);
  assert.equal(unknown.status, 404);
  const malformed = await fetch(`${service.url}/api/v1/connections?tuple=${encodeURIComponent('10.0.0.1:99999 -> 10.0.0.2:80')}`);
  assert.equal(malformed.status, 400);
  assert.match(((await malformed.json()) as { error: { message: string } }).error.message, /port "99999"/);
});
