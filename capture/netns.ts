// Network namespaces and their interfaces, as the attach policy and the NAT
// tracker see them: root, /run/netns/*, and those of running processes.
import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { NetnsRef } from '../model/records.js';

const run = promisify(execFile);

export const ROOT_NETNS_PATH = '/proc/1/ns/net';
const NAMED_NETNS_DIR = '/run/netns';

async function inodeOf(path: string): Promise<number | null> {
  try {
    return (await stat(path)).ino;
  } catch {
    return null;
  }
}

/** Every network namespace on this node, each once: root first, then named, then process-only ones. */
export async function listNamespaces(): Promise<NetnsRef[]> {
  const found = new Map<number, NetnsRef>();
  const add = (name: string, path: string, ino: number | null) => {
    if (ino !== null && !found.has(ino)) found.set(ino, { name, path, ino });
  };
  add('root', ROOT_NETNS_PATH, await inodeOf(ROOT_NETNS_PATH));
  const named = await readdir(NAMED_NETNS_DIR).catch(() => [] as string[]);
  for (const name of named.sort()) add(name, `${NAMED_NETNS_DIR}/${name}`, await inodeOf(`${NAMED_NETNS_DIR}/${name}`));
  const pids = (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry));
  for (const pid of pids) {
    const path = `/proc/${pid}/ns/net`;
    const ino = await inodeOf(path);
    if (ino === null || found.has(ino)) continue;
    // This process's own helpers (nsenter ip, ...) live in the namespaces they serve: counted,
    // they would keep a deleted namespace listed, followed, and so alive, for as long as nettrail runs.
    if ((await parentOf(pid)) === process.pid) continue;
    add(`pid:${pid}`, path, ino);
  }
  return [...found.values()];
}

/** The parent pid of a process (from /proc/PID/stat), or null when it is gone. */
async function parentOf(pid: string): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** Resolve a `--netns` argument: `root`, a name under /run/netns, or `pid:PID`. */
export async function resolveNamespace(name: string): Promise<NetnsRef | null> {
  if (name.startsWith('pid:') ? !/^pid:\d+$/.test(name) : !/^[\w.-]+$/.test(name) || name === '.' || name === '..') return null;
  const path = name === 'root' ? ROOT_NETNS_PATH : name.startsWith('pid:') ? `/proc/${name.slice(4)}/ns/net` : `${NAMED_NETNS_DIR}/${name}`;
  const ino = await inodeOf(path);
  return ino === null ? null : { name, path, ino };
}

export interface NetIface {
  name: string;
  ifindex: number;
  /** `ether`, `loopback`, `none` (L3 devices), ... as `ip link` reports it. */
  linkType: string;
  up: boolean;
}

/** Interfaces of a namespace, read with `ip -j link` run inside it. */
export async function listInterfaces(netns: NetnsRef): Promise<NetIface[]> {
  const { stdout } = await run('nsenter', [`--net=${netns.path}`, 'ip', '-j', 'link', 'show'], { maxBuffer: 16 << 20 });
  const links = JSON.parse(stdout) as Array<{ ifname: string; ifindex: number; link_type: string; flags?: string[] }>;
  return links.map((link) => ({
    name: link.ifname,
    ifindex: link.ifindex,
    linkType: link.link_type,
    up: link.flags?.includes('UP') ?? false,
  }));
}
