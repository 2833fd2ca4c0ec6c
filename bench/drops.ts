// Drop-tracing benchmark (not a test), between two namespaces over a veth pair:
// 1. drop events/s sustained: UDP floods to a closed port (every datagram a NO_SOCKET
//    drop), traced without a rate limit and with the default one;
// 2. overhead on a workload without drops: iperf3 TCP bulk with and without the program.
//   node dist/bench/drops.js [--seconds N]      (as root; under a minute with the default 4)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { cpus } from 'node:os';
import { DropTracer, type DropCounters } from '../capture/drops/tracer.js';
import type { NetnsRef } from '../model/records.js';
import { iperfServer } from './support/serve-process.js';
import { secondsOption, sh, vethPair } from './support/harness.js';

const SECONDS = secondsOption(4);
const CLOSED_PORT = 9;
const IPERF_PORT = 5201;
const { a: A, b: B, bIp: SERVER } = vethPair('ntdropbench', '10.79.0');

/** Sends UDP datagrams to argv[1]:argv[2] as fast as it can for argv[3] seconds; prints how many. */
const FLOOD_JS = `
const s = require('node:dgram').createSocket('udp4');
const [host, port, seconds] = process.argv.slice(1);
const until = Date.now() + seconds * 1000;
const payload = Buffer.alloc(18);
let sent = 0;
const burst = () => {
  if (Date.now() >= until) { console.log(sent); s.close(); return; }
  let pending = 256;
  for (let i = 0; i < 256; i++) s.send(payload, +port, host, () => { sent++; if (--pending === 0) setImmediate(burst); });
};
s.bind(0, burst);`;

async function flood(senders: number): Promise<number> {
  const procs = Array.from({ length: senders }, () => {
    const proc = spawn('ip', ['netns', 'exec', A, process.execPath, '-e', FLOOD_JS, SERVER, String(CLOSED_PORT), String(SECONDS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout!.on('data', (chunk: Buffer) => (out += chunk));
    return once(proc, 'exit').then(() => Number(out.trim()));
  });
  return (await Promise.all(procs)).reduce((a, b) => a + b, 0);
}

async function iperfGbps(): Promise<number> {
  const proc = spawn('ip', ['netns', 'exec', A, 'iperf3', '-c', SERVER, '-p', String(IPERF_PORT), '-J', '-t', String(SECONDS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.on('data', (chunk: Buffer) => (out += chunk));
  await once(proc, 'exit');
  const result = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } }; error?: string };
  if (result.error) throw new Error(`iperf3: ${result.error}`);
  return result.end.sum_received.bits_per_second / 1e9;
}

async function traced<T>(namespaces: NetnsRef[], rateLimit: number | undefined, run: () => Promise<T>): Promise<{ result: T; delivered: number; counters: DropCounters }> {
  let delivered = 0;
  const tracer = await DropTracer.start({
    node: 'bench',
    rateLimit,
    ringBytes: 8 << 20,
    onDrops: (drops) => (delivered += drops.length),
    onWarning: (message) => console.error(`warning: ${message}`),
  });
  tracer.setNamespaces(namespaces);
  const result = await run();
  await tracer.stop();
  return { result, delivered, counters: tracer.counters() };
}

const perSecond = (n: number) => Math.round(n / SECONDS).toLocaleString('en');

async function main(): Promise<void> {
  // No ICMP port unreachable answers: the flood measures drops, not ICMP.
  sh('ip', 'netns', 'exec', B, 'sysctl', '-qw', 'net.ipv4.icmp_ratelimit=1000000');
  await iperfServer(B, IPERF_PORT);
  const namespaces: NetnsRef[] = [A, B].map((name) => ({ name, path: `/run/netns/${name}`, ino: statSync(`/run/netns/${name}`).ino }));
  const senders = Math.max(1, cpus().length);
  console.log(`${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${SECONDS} s per run, ${senders} UDP senders\n`);

  console.log('| UDP flood to a closed port | datagrams/s sent | drops/s seen in the kernel | reported/s (decoded in user space) | rate-limited/s | ring full/s |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const [name, rateLimit] of [['no rate limit', 0], ['default limit (1000/s per CPU)', undefined]] as const) {
    const { result: sent, delivered, counters } = await traced(namespaces, rateLimit, () => flood(senders));
    console.log(`| ${name} | ${perSecond(sent)} | ${perSecond(counters.seen)} | ${perSecond(delivered)} | ${perSecond(counters.rateLimited)} | ${perSecond(counters.ringFull)} |`);
  }

  // Alternating runs, as veth throughput on a shared machine drifts from run to run.
  const without: number[] = [];
  const withProgram: number[] = [];
  let seen = 0;
  for (let round = 0; round < 3; round++) {
    without.push(await iperfGbps());
    const { result, counters } = await traced(namespaces, undefined, iperfGbps);
    withProgram.push(result);
    seen += counters.seen;
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const runs = (values: number[]) => values.map((v) => v.toFixed(2)).join(', ');
  console.log('\n| TCP bulk (iperf3), no drops | Gbit/s, median of 3 | the 3 runs | kfree_skb calls the program saw |');
  console.log('| --- | ---: | --- | ---: |');
  console.log(`| without the drop program | ${median(without).toFixed(2)} | ${runs(without)} | – |`);
  console.log(`| with the drop program | ${median(withProgram).toFixed(2)} | ${runs(withProgram)} | ${seen} in ${3 * SECONDS} s |`);
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err);
    process.exit(1);
  },
);
