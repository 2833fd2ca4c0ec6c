// What the benchmarks and soaks share: running a command; undoing what they set up when
// the process exits, however it exits (the end, an error, SIGINT or SIGTERM, a hard
// stop); their --seconds option; and two namespaces joined by a veth pair.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

/** Runs a command and returns what it printed; throws (with its stderr) when it fails. */
export function sh(...args: string[]): string {
  return execFileSync(args[0], args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs a clean-up command: it failing because what it removes is not there is fine. */
export function quietly(...args: string[]): void {
  try {
    sh(...args);
  } catch {
    // not there
  }
}

const exitSteps: Array<() => void> = [];
process.on('exit', () => {
  for (const step of exitSteps.reverse()) {
    try {
      step();
    } catch (err) {
      console.error(`clean-up: ${(err as Error).message}`);
    }
  }
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(1));

/** Runs `step` when the process exits, however it exits; the last one registered first. */
export function atExit(step: () => void): void {
  exitSteps.push(step);
}

/** A new temp directory named after `name`, removed at exit. */
export function tempDir(name: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `nettrail-${name}-`));
  atExit(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Kills every process in namespace `name` and deletes it; nothing if there is no such namespace. */
export function deleteNetns(name: string): void {
  let pids: string[];
  try {
    pids = sh('ip', 'netns', 'pids', name).split('\n').filter(Boolean);
  } catch {
    return; // not there
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone already
    }
  }
  quietly('ip', 'netns', 'del', name);
}

/** A new network namespace `name`, deleted at exit with every process in it. */
export function netns(name: string): string {
  sh('ip', 'netns', 'add', name);
  atExit(() => deleteNetns(name));
  return name;
}

export interface VethPair {
  /** The namespaces. */
  a: string;
  b: string;
  /** Their addresses on eth0. */
  aIp: string;
  bIp: string;
}

/**
 * Namespaces `PREFIX<pid>-a` and `-b` joined by a veth pair, `eth0` in both, with
 * `SUBNET.1/24` and `SUBNET.2/24`, lo up; deleted at exit with whatever runs in them.
 */
export function vethPair(prefix: string, subnet: string): VethPair {
  const id = process.pid.toString(16);
  const [a, b] = [netns(`${prefix}${id}-a`), netns(`${prefix}${id}-b`)];
  const [aIp, bIp] = [`${subnet}.1`, `${subnet}.2`];
  sh('ip', '-n', a, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', b);
  for (const [ns, ip] of [[a, aIp], [b, bIp]]) {
    sh('ip', '-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0');
    sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
  }
  return { a, b, aIp, bIp };
}

/** The --seconds option, `fallback` when not given; it must lie within `range` (when given), and be above 0. */
export function secondsOption(fallback: number, range?: { min: number; max: number; why?: string }): number {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: String(fallback) } } });
  const seconds = Number(values.seconds);
  if (!(seconds > 0)) throw new Error(`--seconds ${values.seconds}: not a number of seconds`);
  if (range && !(seconds >= range.min && seconds <= range.max)) throw new Error(`--seconds: ${range.min} to ${range.max}${range.why ? ` (${range.why})` : ''}`);
  return seconds;
}

/** Exits (code 3) after `ms`, whatever is going on: for a soak that must stop by itself. The exit steps clean up. */
export function hardStop(ms: number): void {
  setTimeout(() => {
    console.error(`out of time (${ms / 1000} s), stopping`);
    process.exit(3);
  }, ms).unref();
}
