// The records of native/links.h, declared field by field as in the header (laid out by
// packets/layout.ts's cStruct), and their constants; test/capture/links-layout.test.ts checks
// them against the compiled header. A batch is an array of one of these structs.
import { cStruct, fieldReader, type StructLayout } from '../model/c-struct.js';

/** The #defines of native/links.h. */
export const IFNAME_BYTES = 16;
export const DIR_NAME_BYTES = 256;
export const LINK_EVENT = { new: 1, del: 2, dumpDone: 3, resync: 4, overflow: 5 } as const;
export const ARPHRD = { ether: 1, loopback: 772, none: 0xfffe } as const;
export const IFF_UP = 0x1;
export const DIR_EVENT = { created: 1, deleted: 2, gone: 3, overflow: 4 } as const;

/** struct nt_link_event */
export const linkEventLayout = cStruct({ kind: 'u32', ifindex: 'u32', flags: 'u32', link_type: 'u16', pad: 'u16', name: ['u8', IFNAME_BYTES] });

/** struct nt_dir_event (watch is signed in C: -1 with DIR_EVENT.overflow) */
export const dirEventLayout = cStruct({ watch: 'u32', kind: 'u32', name: ['u8', DIR_NAME_BYTES] });

export interface LinkEvent {
  kind: number;
  ifindex: number;
  flags: number;
  linkType: number;
  name: string;
}

export interface DirEvent {
  watch: number;
  kind: number;
  name: string;
}

/** A NUL-terminated name of the record at `at`. */
function nameAt(batch: Buffer, at: number, size: number): string {
  const end = batch.indexOf(0, at);
  return batch.toString('utf8', at, end < 0 || end > at + size ? at + size : end);
}

/** The `count` records of `layout` in `batch`, each decoded. */
function records<F extends string, T>(batch: Buffer, count: number, layout: StructLayout<F>, decode: (at: number) => T): T[] {
  if (batch.length !== count * layout.size) throw new Error(`a batch of ${batch.length} bytes is not ${count} records of ${layout.size}`);
  const decoded: T[] = [];
  for (let at = 0; at < batch.length; at += layout.size) decoded.push(decode(at));
  return decoded;
}

export function decodeLinkEvents(batch: Buffer, count: number): LinkEvent[] {
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const F = linkEventLayout.fields;
  return records(batch, count, linkEventLayout, (at) => {
    const read = fieldReader(linkEventLayout, view, at);
    return { kind: read.u32('kind'), ifindex: read.u32('ifindex'), flags: read.u32('flags'), linkType: read.u16('link_type'), name: nameAt(batch, at + F.name.offset, F.name.size) };
  });
}

export function decodeDirEvents(batch: Buffer, count: number): DirEvent[] {
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const F = dirEventLayout.fields;
  return records(batch, count, dirEventLayout, (at) => {
    const read = fieldReader(dirEventLayout, view, at);
    return { watch: read.u32('watch') | 0, kind: read.u32('kind'), name: nameAt(batch, at + F.name.offset, F.name.size) };
  });
}
