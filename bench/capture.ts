// Capture benchmark (not a test): bulk TCP with iperf3 between two namespaces over
// a veth pair, with no capture, with nettrail capturing (TC; TC + XDP) and with
// `tcpdump -w`, side by side in one run; then UDP at increasing packet rates for
// events/s through the ring buffer and lost events, and a deliberately tiny ring
// to show that every event is delivered or counted lost.
//   node dist/bench/capture.js [--seconds N]      (as root; under 2 minutes with the default 5)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import path from 'node:path';
import { PacketCapture, type CaptureConfig, type XdpMode } from '../capture/packets/capture.js';
import { iperfServer } from './support/serve-process.js';
import { printed } from './support/wait.js';
import { secondsOption, tempDir, vethPair } from './support/harness.js';

const SECONDS = secondsOption(5);
const IPERF_PORT = 5201;
const dir = tempDir('bench');
const { a: A, b: B, bIp: SERVER } = vethPair('ntbench', '10.78.0');

interface IperfResult {
  bitsPerSecond: number;
  packets?: number;
}

async function iperf(args: string[]): Promise<IperfResult> {
  const proc = spawn('ip', ['netns', 'exec', A, 'iperf3', '-c', SERVER, '-p', String(IPERF_PORT), '-J', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.on('data', (chunk: Buffer) => (out += chunk));
  await once(proc, 'exit');
  const result = JSON.parse(out) as { end: { sum_received: { bits_per_second: number }; sum?: { packets: number } }; error?: string };
  if (result.error) throw new Error(`iperf3: ${result.error}`);
  return { bitsPerSecond: result.end.sum_received.bits_per_second, packets: result.end.sum?.packets };
}

const elapsed = (since: number) => `${((performance.now() - since) / 1000).toFixed(1)} s`;

async function withCapture<T>(config: Partial<CaptureConfig>, run: (capture: PacketCapture) => Promise<T>): Promise<{ result: T; decoded: number; status: ReturnType<PacketCapture['status']> }> {
  let decoded = 0;
  const started = performance.now();
  const capture = await PacketCapture.start({
    node: 'bench',
    netns: [A, B],
    ifaces: ['eth0'],
    onPackets: (packets) => (decoded += packets.count),
    onWarning: (message) => console.error(`warning: ${message}`),
    ...config,
  });
  const attached = performance.now();
  const result = await run(capture);
  const ran = performance.now();
  await capture.stop();
  console.error(`    start ${((attached - started) / 1000).toFixed(1)} s, run ${((ran - attached) / 1000).toFixed(1)} s, stop ${elapsed(ran)}`);
  return { result, decoded, status: capture.status() };
}

async function withTcpdump<T>(run: () => Promise<T>): Promise<{ result: T; bytes: number }> {
  const dumps = [A, B].map((ns) => {
    const file = path.join(dir, `${ns}.pcap`);
    const proc = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', 'eth0', '-nn', '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    return { proc, file, ns };
  });
  await Promise.all(dumps.map(({ proc, ns }) => printed(proc, 'stderr', 'listening on', `tcpdump in ${ns}`)));
  const result = await run();
  for (const { proc } of dumps) {
    proc.kill('SIGINT');
    await once(proc, 'exit');
  }
  return { result, bytes: dumps.reduce((sum, { file }) => sum + statSync(file).size, 0) };
}

const gbps = (bits: number) => (bits / 1e9).toFixed(2);
const rows: string[][] = [];

async function tcpRuns(): Promise<void> {
  const tcp = () => iperf(['-t', String(SECONDS)]);
  const runs: Array<{ name: string; run: () => Promise<{ bps: number; note: string }> }> = [
    { name: 'no capture', run: async () => ({ bps: (await tcp()).bitsPerSecond, note: '' }) },
    ...(['off', 'native', 'generic'] as XdpMode[]).map((xdp) => ({
      name: xdp === 'off' ? 'nettrail (TC in+out, headers)' : `nettrail (TC + XDP ${xdp})`,
      run: async () => {
        const { result, decoded, status } = await withCapture({ xdp }, tcp);
        return { bps: result.bitsPerSecond, note: `${status.events} events (${Math.round(status.events / SECONDS)}/s), ${decoded} decoded, ${status.lost} lost` };
      },
    })),
    {
      name: 'tcpdump -w (both ends)',
      run: async () => {
        const { result, bytes } = await withTcpdump(tcp);
        return { bps: result.bitsPerSecond, note: `${(bytes / 1e6).toFixed(0)} MB written` };
      },
    },
  ];
  // Two rounds in alternating order, so drift of the machine shows and averages out.
  const results = new Map<string, number[]>();
  for (const order of [runs, [...runs].reverse()]) {
    for (const { name, run } of order) {
      const { bps, note } = await run();
      results.set(name, [...(results.get(name) ?? []), bps]);
      console.error(`  ${name}: ${gbps(bps)} Gbit/s ${note}`);
      rows.push(['tcp', name, gbps(bps), note]);
    }
  }
  const mean = (name: string) => results.get(name)!.reduce((a, b) => a + b, 0) / results.get(name)!.length;
  const baseline = mean('no capture');
  console.log('\n| TCP bulk, iperf3 over veth | Gbit/s (mean of 2) | % of no capture |');
  console.log('| --- | --- | --- |');
  for (const { name } of runs) console.log(`| ${name} | ${gbps(mean(name))} | ${((100 * mean(name)) / baseline).toFixed(1)} % |`);
}

async function udpRuns(): Promise<void> {
  // iperf3 opens a UDP test with one datagram of its own: the client's egress sees sent + 1.
  console.log('\n| UDP 64-byte datagrams, target rate | sent pkt/s | events/s (ring) | lost | decoded = events | sent + 1 = events + lost at client egress |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  const seconds = Math.max(2, Math.round(SECONDS / 2));
  const cases: Array<{ label: string; rate: string; ringBytesPerCpu?: number }> = [
    { label: '30k pkt/s', rate: '15M' },
    { label: '100k pkt/s', rate: '50M' },
    { label: 'unlimited', rate: '0' },
    { label: 'unlimited, 4 KiB ring per CPU', rate: '0', ringBytesPerCpu: 4096 },
  ];
  for (const { label, rate, ringBytesPerCpu } of cases) {
    // Only the UDP test traffic is captured: iperf3's control connection is filtered out in the kernel.
    const { result, decoded, status } = await withCapture({ ringBytesPerCpu, filter: { nets: [], ports: [], protos: ['udp'] } }, () =>
      iperf(['-u', '-b', rate, '-l', '64', '-t', String(seconds)]),
    );
    const egress = status.points.find((p) => p.netns === A)!.by_hook.find((h) => h.hook === 'tc-egress')!;
    const sent = result.packets ?? 0;
    console.log(`| ${label} | ${Math.round(sent / seconds)} | ${Math.round(status.events / seconds)} | ${status.lost} | ${decoded === status.events ? 'yes' : `NO (${decoded} vs ${status.events})`} | ${sent + 1 === egress.events + egress.lost ? 'yes' : `NO (${sent} + 1 vs ${egress.events} + ${egress.lost})`} |`);
  }
}

await iperfServer(B, IPERF_PORT);
console.error(`nettrail capture benchmark: ${SECONDS} s per TCP run, namespaces ${A} ${B}`);
await tcpRuns();
await udpRuns();
// The iperf3 server would keep the process alive; the exit steps end it with its namespace.
process.exit(0);
