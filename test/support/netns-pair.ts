// Two test namespaces joined by a veth pair, with IPv4 and IPv6 addresses, the
// traffic helper's servers running in the second; deleted after the test (also
// when it fails, and on exit). Capture at both ends of the pair.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { PacketCapture, type CaptureConfig } from '../../capture/packets/capture.js';
import type { NetnsRef, PacketRecord } from '../../model/records.js';
import { packetRecordsOf } from '../../model/packet-columns.js';

export const TRAFFIC_JS = fileURLToPath(new URL('./traffic.js', import.meta.url));
export const IFACE = 'eth0';
/** The traffic helper's servers. */
export const ECHO_PORT = 7001;
export const UDP_PORT = 7002;
export const SINK_PORT = 7003;

export interface NetnsPair {
  client: NetnsRef;
  server: NetnsRef;
  /** Server addresses. */
  v4: string;
  v6: string;
  clientV4: string;
  clientV6: string;
  /** Runs the traffic helper in the client namespace; resolves with the TCP local port it printed. */
  traffic(...args: string[]): Promise<number>;
  /** Runs a command in a namespace. */
  exec(netns: NetnsRef, cmd: string, ...args: string[]): string;
}

const live = new Set<string>();
process.on('exit', () => {
  for (const name of live) deleteNetns(name);
});

function deleteNetns(name: string): void {
  try {
    for (const pid of execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone already
      }
    }
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    // not there
  }
  live.delete(name);
}

const ref = (name: string): NetnsRef => ({ name, path: `/run/netns/${name}`, ino: statSync(`/run/netns/${name}`).ino });

export async function createPair(t: TestContext): Promise<NetnsPair> {
  const id = randomBytes(3).toString('hex');
  const n = 1 + (parseInt(id, 16) % 250);
  const [client, server] = [`ntc${id}-a`, `ntc${id}-b`];
  const run = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  for (const name of [client, server]) {
    run('netns', 'add', name);
    live.add(name);
  }
  t.after(() => [client, server].forEach(deleteNetns));
  run('-n', client, 'link', 'add', IFACE, 'type', 'veth', 'peer', 'name', IFACE, 'netns', server);
  const v4 = (host: number) => `10.77.${n}.${host}`;
  const v6 = (host: number) => `fd77:0:${n.toString(16)}::${host}`;
  for (const [name, host] of [[client, 1], [server, 2]] as const) {
    run('-n', name, 'link', 'set', 'lo', 'up');
    run('-n', name, 'addr', 'add', `${v4(host)}/24`, 'dev', IFACE);
    run('-n', name, 'addr', 'add', `${v6(host)}/64`, 'dev', IFACE, 'nodad');
    run('-n', name, 'link', 'set', IFACE, 'up');
  }
  const exec = (netns: NetnsRef, cmd: string, ...args: string[]) =>
    execFileSync('ip', ['netns', 'exec', netns.name, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

  const servers = spawn('ip', ['netns', 'exec', server, process.execPath, TRAFFIC_JS, 'serve'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => servers.kill('SIGKILL'));
  const [ready] = (await once(servers.stdout!, 'data')) as [Buffer];
  if (!ready.toString().includes('ready')) throw new Error(`traffic servers: ${ready}`);

  const pair: NetnsPair = {
    client: ref(client),
    server: ref(server),
    v4: v4(2),
    v6: v6(2),
    clientV4: v4(1),
    clientV6: v6(1),
    exec,
    async traffic(...args: string[]) {
      const proc = spawn('ip', ['netns', 'exec', client, process.execPath, TRAFFIC_JS, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      proc.stdout!.on('data', (c: Buffer) => (out += c));
      proc.stderr!.on('data', (c: Buffer) => (err += c));
      if (args[0] !== 'hold') proc.stdin!.end();
      else t.after(() => proc.stdin!.end());
      if (args[0] === 'hold') {
        await once(proc.stdout!, 'data');
        return Number(out.trim().split('\n')[0]);
      }
      const [code] = (await once(proc, 'exit')) as [number];
      if (code !== 0) throw new Error(`traffic ${args.join(' ')}: ${err}`);
      return Number(out.trim().split('\n')[0]);
    },
  };
  return pair;
}

/** Capture at both ends of the pair (its IFACE in either namespace), stopped after the test; `packets` fills while it runs. */
export async function captureBothEnds(t: TestContext, pair: NetnsPair, options: Partial<CaptureConfig> = {}): Promise<{ capture: PacketCapture; packets: PacketRecord[] }> {
  const packets: PacketRecord[] = [];
  const capture = await PacketCapture.start({
    node: 'test',
    netns: [pair.client.name, pair.server.name],
    ifaces: [IFACE],
    onPackets: (batch) => packets.push(...packetRecordsOf(batch)),
    onWarning: (message) => t.diagnostic(message),
    ...options,
  });
  t.after(() => capture.stop());
  return { capture, packets };
}

/** End of the L4 header of an untagged Ethernet frame with IPv4 or IPv6 (no extension headers) and TCP or UDP. */
export function headerEnd(frame: Buffer): number {
  const type = frame.readUInt16BE(12);
  const l4 = type === 0x0800 ? 14 + (frame[14] & 0x0f) * 4 : 14 + 40;
  const proto = type === 0x0800 ? frame[14 + 9] : frame[14 + 6];
  return l4 + (proto === 6 ? (frame[l4 + 12] >> 4) * 4 : 8);
}
