// Open vSwitch as a NAT source: `dpctl/dump-conntrack` output as OVS 3.1
// prints it, and the source on a real bridge (userspace datapath, the lab's
// ovs scenario) that DNATs with ct(commit,nat(dst=...)).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import type { NatTranslation } from '../../model/records.js';
import { OvsSource, parseOvsConntrack } from '../../nat-tracker/sources/ovs.js';
import { NatSourceError } from '../../nat-tracker/sources/polled.js';
import { randomClientPort, useLab } from '../support/lab-fixture.js';
import { OVS_ZONE } from '../../lab/lab.js';
import { sleep, waitFor } from '../../bench/support/wait.js';

// Captured from ovs-appctl dpctl/dump-conntrack (plain, -m, -m -s) on OVS 3.1.0 with the userspace datapath.
const CAPTURED = 'tcp,orig=(src=10.240.1.2,dst=10.240.1.100,sport=45678,dport=8080),reply=(src=10.240.1.3,dst=10.240.1.2,sport=80,dport=45678),zone=7,protoinfo=(state=TIME_WAIT)\n';
const CAPTURED_VERBOSE =
  'tcp,orig=(src=10.240.1.2,dst=10.240.1.100,sport=45678,dport=8080),reply=(src=10.240.1.3,dst=10.240.1.2,sport=80,dport=45678),id=0,zone=7,status=0,protoinfo=(state_orig=FIN_WAIT_2,state_reply=FIN_WAIT_2,wscale_orig=10,wscale_reply=10,flags_orig=WINDOW_SCALE,flags_reply=WINDOW_SCALE)\n';
const CAPTURED_STATS =
  'tcp,orig=(src=10.240.1.2,dst=10.240.1.100,sport=45678,dport=8080),reply=(src=10.240.1.3,dst=10.240.1.2,sport=80,dport=45678),id=0,zone=7,status=0,timeout=29,protoinfo=(state_orig=FIN_WAIT_2,state_reply=FIN_WAIT_2,wscale_orig=10,wscale_reply=10,flags_orig=WINDOW_SCALE,flags_reply=WINDOW_SCALE)\n';
// As ct_dpif_format_entry prints other protocols, IPv6 (inet_ntop text), zone 0 (no zone=), a mark and a helper.
const OTHERS =
  'udp,orig=(src=fd00::2,dst=fd00::64,sport=5353,dport=53),reply=(src=fd00::3,dst=fd00::2,sport=53,dport=5353),mark=5\n' +
  'icmp,orig=(src=10.240.1.2,dst=10.240.1.3,id=7,type=8,code=0),reply=(src=10.240.1.3,dst=10.240.1.2,id=7,type=0,code=0),zone=3\n' +
  'tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=21),reply=(src=10.0.0.2,dst=10.0.0.1,sport=21,dport=40000),protoinfo=(state=ESTABLISHED),helper=ftp\n';

describe('dpctl/dump-conntrack output', () => {
  const dnat = {
    proto: 'tcp',
    orig: { src: '10.240.1.2', sport: 45678, dst: '10.240.1.100', dport: 8080 },
    reply: { src: '10.240.1.3', sport: 80, dst: '10.240.1.2', dport: 45678 },
    zone: 7,
  };

  test('plain, verbose and with statistics: the same entry', () => {
    for (const text of [CAPTURED, CAPTURED_VERBOSE, CAPTURED_STATS]) assert.deepEqual(parseOvsConntrack(text), [dnat]);
  });

  test('IPv6, port-less protocols, zone 0, marks and helpers', () => {
    assert.deepEqual(parseOvsConntrack(OTHERS), [
      { proto: 'udp', orig: { src: 'fd00::2', sport: 5353, dst: 'fd00::64', dport: 53 }, reply: { src: 'fd00::3', sport: 53, dst: 'fd00::2', dport: 5353 }, zone: 0 },
      { proto: 'icmp', orig: { src: '10.240.1.2', sport: 0, dst: '10.240.1.3', dport: 0 }, reply: { src: '10.240.1.3', sport: 0, dst: '10.240.1.2', dport: 0 }, zone: 3 },
      { proto: 'tcp', orig: { src: '10.0.0.1', sport: 40000, dst: '10.0.0.2', dport: 21 }, reply: { src: '10.0.0.2', sport: 21, dst: '10.0.0.1', dport: 40000 }, zone: 0 },
    ]);
  });

  test('malformed lines are OVS_PARSE errors', () => {
    const isParse = (e: unknown) => e instanceof NatSourceError && e.code === 'OVS_PARSE';
    assert.throws(() => parseOvsConntrack('tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=1,dport=2)\n'), isParse);
    assert.throws(() => parseOvsConntrack(CAPTURED.replace('sport=45678', 'sport=456789')), isParse);
    assert.throws(() => parseOvsConntrack(CAPTURED.replace('src=10.240.1.2', 'src=10.240.1')), isParse);
  });
});

describe('OvsSource', () => {
  test('records the DNAT of a bridge with ct(nat) in its zone, labelled with the namespace ovs-vswitchd runs in', async (t) => {
    const lab = await useLab(t, { scenario: 'ovs' });
    const switchNs = lab.nodes.router.netns;
    const records: NatTranslation[] = [];
    const errors: NatSourceError[] = [];
    const source = new OvsSource({
      node: 'ovs-node',
      rundir: lab.ovsRundir!,
      netnsOf: (pid) => (statSync(`/proc/${pid}/ns/net`).ino === switchNs.ino ? switchNs.name : `pid:${pid}`),
      pollMs: 100,
      onTranslations: (r) => records.push(...r),
      onError: (e) => errors.push(e),
    });
    t.after(() => source.stop());
    await source.start();

    const localPort = randomClientPort();
    assert.equal((await lab.request({ localPort })).status, 200);
    const client = lab.nodes.client.ifaces[0]!.ip;
    const rec = await waitFor('the OVS translation', () => records.find((r) => r.orig.sport === localPort));
    assert.deepEqual(
      { via: rec.via, node: rec.node, netns: rec.netns, zone: rec.zone, proto: rec.proto, orig: rec.orig, reply: rec.reply },
      {
        via: 'ovs', node: 'ovs-node', netns: switchNs.name, zone: OVS_ZONE, proto: 'tcp',
        orig: { src: client, sport: localPort, dst: lab.service.ip, dport: lab.service.port },
        reply: { src: lab.server.ip, sport: lab.server.port, dst: client, dport: localPort },
      },
    );
    assert.equal(errors.length, 0, errors.map((e) => e.message).join('; '));

    // The daemon goes with the lab: reported once, saying what is not tracked.
    await lab.destroy();
    const gone = await waitFor('OVS_NOT_RUNNING', () => errors.find((e) => e.code === 'OVS_NOT_RUNNING'));
    assert.match(gone.message, /OVS conntrack NAT is not tracked/);
  });

  test('no ovs-vswitchd: OVS_NOT_RUNNING, once', async (t) => {
    const rundir = mkdtempSync(path.join(tmpdir(), 'nettrail-no-ovs-'));
    t.after(() => rmSync(rundir, { recursive: true, force: true }));
    const errors: NatSourceError[] = [];
    const source = new OvsSource({ node: 'n', rundir, netnsOf: () => 'root', pollMs: 10, onTranslations: () => assert.fail('no records'), onError: (e) => errors.push(e) });
    await source.start();
    await sleep(100); // several more polls
    await source.stop();
    assert.deepEqual(errors.map((e) => e.code), ['OVS_NOT_RUNNING']);
    assert.match(errors[0]!.message, new RegExp(`no ovs-vswitchd \\(no ${rundir}/ovs-vswitchd.pid\\)`));
  });
});
