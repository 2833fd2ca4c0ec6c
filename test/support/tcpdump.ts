// tcpdump, the ground truth the capture tests compare with: in a test namespace at one
// of its interfaces, writing a pcap file, killed after the test (also when it fails).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { printed } from '../../bench/support/wait.js';

export interface PcapPacket {
  bytes: Buffer;
  wireLen: number;
}

export interface Tcpdump {
  /** Ends it (it writes out what it holds on SIGINT) and reads its file. */
  stop(): Promise<PcapPacket[]>;
}

/** tcpdump of TCP and UDP at `iface` in `netns` (`in`: ingress only), whole packets, into `file`; resolves once it listens. */
export async function startTcpdump(t: TestContext, netns: string, iface: string, file: string, direction: 'inout' | 'in' = 'inout'): Promise<Tcpdump> {
  const proc = spawn('ip', ['netns', 'exec', netns, 'tcpdump', '-i', iface, '-nn', '--immediate-mode', '-U', '-s', '0', '-Q', direction, '-w', file, 'tcp or udp'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => proc.kill('SIGKILL'));
  await printed(proc, 'stderr', 'listening on', `tcpdump at ${netns}/${iface}`);
  return {
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGINT');
        await once(proc, 'exit');
      }
      return readPcap(readFileSync(file));
    },
  };
}

/** Packets of a classic pcap file (either timestamp resolution, little-endian), as captured. */
function readPcap(file: Buffer): PcapPacket[] {
  const magic = file.readUInt32LE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error(`not a little-endian pcap file (magic ${magic.toString(16)})`);
  const packets: PcapPacket[] = [];
  for (let at = 24; at + 16 <= file.length; ) {
    const captured = file.readUInt32LE(at + 8);
    packets.push({ bytes: file.subarray(at + 16, at + 16 + captured), wireLen: file.readUInt32LE(at + 12) });
    at += 16 + captured;
  }
  return packets;
}
