// `nettrail serve --user USER`: root is needed to load and attach the BPF programs,
// to enter other network namespaces and to read conntrack inside them; once
// attached, serve can go on as USER. What keeps working without root: the
// bpf_links already open stay attached, the ring buffers already mapped keep
// delivering events, maps are read through the descriptors held (capture
// status, /metrics), the embedded store (its directory handed to USER) and the
// HTTP API. What stops: following namespaces and interfaces (opening a socket
// in another namespace and attaching need CAP_SYS_ADMIN and CAP_BPF /
// CAP_NET_ADMIN), and NAT tracking (ctnetlink dumps need CAP_NET_ADMIN, IPVS
// reads enter namespaces, OVS's control socket is root's) — stopped cleanly,
// its sockets closed, and said so in the log.
import { execFileSync } from 'node:child_process';
import { lchownSync, lstatSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Service } from './service.js';

export interface UserIds {
  name: string;
  uid: number;
  gid: number;
}

/** USER (a name or a numeric uid) from the passwd database; null when there is no such user. */
export function lookupUser(user: string): UserIds | null {
  if (!/^[\w.-]{1,64}$/.test(user)) return null;
  let line: string;
  try {
    line = execFileSync('getent', ['passwd', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0];
  } catch {
    return null;
  }
  const [name, , uid, gid] = line.split(':');
  if (!name || !/^\d+$/.test(uid ?? '') || !/^\d+$/.test(gid ?? '')) return null;
  return { name, uid: Number(uid), gid: Number(gid) };
}

/** The first directory above `target` that the user may not enter (no search permission), or null. */
export function unreachableAncestor(target: string, ids: UserIds): string | null {
  if (ids.uid === 0) return null;
  for (let dir = path.dirname(path.resolve(target)); ; dir = path.dirname(dir)) {
    const st = statSync(dir);
    const bit = st.uid === ids.uid ? 0o100 : st.gid === ids.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return dir;
    if (path.dirname(dir) === dir) return null;
  }
}

/** Hands `dir` and everything in it to the user (without following symbolic links). */
function chownTree(dir: string, ids: UserIds): void {
  const st = lstatSync(dir);
  if (st.uid !== ids.uid || st.gid !== ids.gid) lchownSync(dir, ids.uid, ids.gid);
  if (!st.isDirectory()) return;
  for (const entry of readdirSync(dir)) chownTree(path.join(dir, entry), ids);
}

/**
 * Gives up root for `ids`: capture stops following namespaces (keeping its attachments), NAT
 * tracking stops, the embedded store's directory (if any) is handed over, then the process's
 * groups, gid and uid change (all threads; capabilities go with uid 0). Irreversible.
 */
export async function dropPrivileges(service: Service, ids: UserIds, storeDir: string | null, log: (message: string) => void): Promise<void> {
  await service.capture.freeze();
  await service.nat.stop();
  if (storeDir !== null) chownTree(storeDir, ids);
  // Present on POSIX systems, which is all nettrail runs on.
  process.setgroups!([ids.gid]);
  process.setgid!(ids.gid);
  process.setuid!(ids.uid);
  const points = service.capture.status().points.length;
  log(
    `running as ${ids.name} (uid ${ids.uid}, gid ${ids.gid}) from now on: capture goes on at the ${points} interfaces attached; ` +
      'namespaces and interfaces that appear later are not captured, and NAT tracking (conntrack, IPVS, OVS) has stopped: ' +
      'both need root (restart serve to pick up new namespaces); NAT hops are still inferred from TCP sequence numbers',
  );
}
