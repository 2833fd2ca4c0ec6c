// A connection's capture file: its packets from every capture point, a comment
// on the first packet seen after each NAT hop, and (pcapng) its drops merged
// in by time, each with a comment saying why. The packet columns and drop
// records are handed to the writer as its own input (pcap/pcapng.ts).
import { DIRECTION } from '../model/protocol.js';
import type { PacketRows, RowsPoint } from '../flowlog/packets/rows.js';
import type { DropRecord, FourTuple } from '../model/records.js';
import type { TimeRange } from '../model/time.js';
import { formatTuple } from '../model/tuple.js';
import { sameTuple } from '../nat-tracker/classify.js';
import type { NatHop } from '../nat-tracker/resolver.js';
import {
  EPB_INBOUND,
  EPB_OUTBOUND,
  writeCaptureFile,
  type CaptureFileFormat,
  type CaptureInterface,
  type CaptureItem,
  type CapturePacket,
  type CaptureRows,
} from '../pcap/pcapng.js';
import { connectionPacketRows, pointName, type Connection, type FlowLogReader } from './connection.js';

// The direction column holds the store's values, 1 ingress and 2 egress: pcapng's inbound and outbound, so it is handed on as it is.
if (DIRECTION.ingress !== EPB_INBOUND || DIRECTION.egress !== EPB_OUTBOUND) {
  throw new Error("the store's direction values are not pcapng's epb_flags directions");
}

export interface CaptureFileRequest {
  /** Where either end is given, only the packets and drops from/to it. */
  range: TimeRange;
  /** Only the packets and drops at these capture points (pointName); null for all. */
  points: ReadonlySet<string> | null;
  format: CaptureFileFormat;
}

/** The capture file of `connection`, in chunks as writeCaptureFile yields them. */
export function connectionCaptureFile(
  reader: FlowLogReader,
  connection: Connection,
  { range, points, format }: CaptureFileRequest,
): AsyncGenerator<Buffer, void, undefined> {
  const packets = withNatHopComments(connectionPacketRows(reader, connection, range, points), connection.hops);
  // Classic pcap has no comments to say why a packet is there: drops go in pcapng files only.
  const items = withDrops(packets, format === 'pcap' ? [] : connection.drops, range, points);
  return writeCaptureFile(items, { format, sectionComment: `nettrail: ${formatTuple({ proto: connection.proto, ...connection.tuples[0] })}` });
}

/** The rows of `batch` as the writer's, with `comments` by row of its columns (opt_comment). */
export function packetRows(batch: PacketRows, comments?: ReadonlyMap<number, string>): CaptureRows {
  const c = batch.columns;
  const columns = {
    interface: c.point, interfaces: c.points.map(pointInterface), ts: c.ts, direction: c.direction, originalLength: c.wireLen,
    packetId: c.packetId, bytes: c.headerBytes, starts: c.headerStarts, ends: c.headerEnds,
  };
  return { kind: 'rows', columns, rows: batch.rows, comments };
}

/** A capture point and hook as a pcapng interface: tc and xdp on one device are separate interfaces. */
const pointInterface = (p: RowsPoint): CaptureInterface => ({
  name: pointName(p),
  description: `${p.hook} hook, netns ${p.netns} on node ${p.node}`,
  linkType: p.linkType,
});

/** A dropped packet: on an interface of its own per point, no direction, a comment saying what, where and why. */
const dropPacket = (d: DropRecord): CapturePacket => ({
  kind: 'packet',
  interface: { name: pointName(d), description: `packets the kernel dropped (skb:kfree_skb), netns ${d.netns} on node ${d.node}`, linkType: d.linkType },
  ts: d.ts,
  packetId: d.packetId,
  bytes: d.headers,
  originalLength: d.wireLen,
  comment: `DROPPED (${d.reason}) at ${d.node}/${d.netns}${d.iface ? `/${d.iface}` : ''} in ${d.location}: ${d.cause}`,
});

/** The comment on the first packet seen after a hop's translation. */
function natHopComment(hop: NatHop): string {
  const t = (x: FourTuple) => `${x.src}:${x.sport} -> ${x.dst}:${x.dport}`;
  return `${hop.kind} via ${hop.via} at ${hop.node}/${hop.netns} zone ${hop.zone}: ${t(hop.before)} => ${t(hop.after)}`;
}

/** Batches of packets as the writer's rows, with a comment on the first packet after each NAT hop. */
async function* withNatHopComments(batches: AsyncIterable<PacketRows>, hops: readonly NatHop[]): AsyncIterable<CaptureRows> {
  const pending = hops.map((hop) => ({ hop, comment: natHopComment(hop) }));
  for await (const batch of batches) {
    const comments = new Map<number, string>();
    const c = batch.columns;
    for (let k = 0; k < batch.rows.length && pending.length > 0; k++) {
      const row = batch.rows[k];
      const point = c.points[c.point[row]];
      const at = pending.findIndex(({ hop }) => hop.node === point.node && hop.netns === point.netns && sameTuple(hop.after, {
        src: c.addresses[c.src[row]].text, sport: c.sport[row], dst: c.addresses[c.dst[row]].text, dport: c.dport[row],
      }));
      if (at >= 0) comments.set(row, pending.splice(at, 1)[0].comment);
    }
    yield packetRows(batch, comments);
  }
}

/**
 * Batches of items: the packets of `batches` (in time order) with the drops
 * in `range` and at `points` (pointName; null for all) merged in by time.
 */
async function* withDrops(
  batches: AsyncIterable<CaptureRows>,
  drops: readonly DropRecord[],
  range: TimeRange,
  points: ReadonlySet<string> | null,
): AsyncIterable<CaptureItem[]> {
  const pending = drops.filter(
    (d) =>
      (range.from === undefined || d.ts >= range.from) &&
      (range.to === undefined || d.ts <= range.to) &&
      (points === null || points.has(pointName(d))),
  );
  let next = 0;
  for await (const packets of batches) {
    if (next === pending.length) {
      yield [packets];
      continue;
    }
    // The packets before each pending drop's time, then the drop.
    const merged: CaptureItem[] = [];
    const { columns, rows } = packets;
    let from = 0;
    for (let k = 0; k < rows.length && next < pending.length; k++) {
      const ts = columns.ts[rows[k]];
      if (pending[next].ts > ts) continue;
      if (k > from) merged.push({ ...packets, rows: rows.subarray(from, k) });
      for (; next < pending.length && pending[next].ts <= ts; next++) merged.push(dropPacket(pending[next]));
      from = k;
    }
    if (from < rows.length) merged.push(from === 0 ? packets : { ...packets, rows: rows.subarray(from) });
    yield merged;
  }
  if (next < pending.length) yield pending.slice(next).map(dropPacket);
}
