// A network namespace of a test's own: a unique name, deleted after the test whatever
// happens (and on exit), with any process left in it killed first.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import type { TestContext } from 'node:test';
import type { NetnsRef } from '../../model/records.js';

const live = new Set<string>();
process.on('exit', () => {
  for (const name of live) deleteNetns(name);
});

function deleteNetns(name: string): void {
  const pids = spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).stdout ?? '';
  for (const pid of pids.split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone already
    }
  }
  spawnSync('ip', ['netns', 'del', name]);
  live.delete(name);
}

/** `nt<hex>-<tag>`, created now, gone after the test. */
export function useNetns(t: TestContext, tag: string): NetnsRef {
  const name = `nt${randomBytes(4).toString('hex')}-${tag}`;
  execFileSync('ip', ['netns', 'add', name]);
  live.add(name);
  t.after(() => deleteNetns(name));
  return { name, path: `/run/netns/${name}`, ino: statSync(`/run/netns/${name}`).ino };
}

/** Runs a command inside the namespace to completion; its stdout. */
export function inNetns(netns: NetnsRef, cmd: string, ...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', netns.name, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
