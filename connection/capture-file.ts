// A connection's capture file: its packets from every capture point, a comment
// on the first packet seen after each NAT hop, nettrail's analysis of each point
// (packet-analysis.ts) as comments, and (pcapng) its drops merged in by time,
// each with a comment saying why. The packet columns and drop
// records are handed to the writer as its own input (pcap/pcapng.ts).
import { DIRECTION } from '../model/protocol.js';
import { PacketRows, type RowsPoint } from '../flowlog/packets/rows.js';
import type { DropRecord, FourTuple } from '../model/records.js';
import type { TimeRange } from '../model/time.js';
import { formatTuple } from '../model/tuple.js';
import { sameTuple } from '../nat-tracker/classify.js';
import type { NatHop } from '../nat-tracker/resolver.js';
import { writeZip } from '../pcap/zip.js';
import {
  CAPTURE_FILE_TYPES,
  EPB_INBOUND,
  EPB_OUTBOUND,
  writeCaptureFile,
  type CaptureColumns,
  type CaptureFileFormat,
  type CaptureInterface,
  type CaptureItem,
  type CapturePacket,
  type CaptureRows,
} from '../pcap/pcapng.js';
import { connectionPacketRows, pointName, type Connection, type FlowLogReader } from './connection.js';
import { diagnoseConnection, evidenceComments } from './diagnosis.js';
import { CaptureAnalysis } from './packet-analysis.js';

// The direction column holds the store's values, 1 ingress and 2 egress: pcapng's inbound and outbound, so it is handed on as it is.
if (DIRECTION.ingress !== EPB_INBOUND || DIRECTION.egress !== EPB_OUTBOUND) {
  throw new Error("the store's direction values are not pcapng's epb_flags directions");
}

export interface CaptureFileRequest {
  /** Where either end is given, only the packets and drops from/to it. */
  range: TimeRange;
  /** Only the packets at these capture points (pointName) and the drops on these interfaces (dropPointName); null for all. */
  points: ReadonlySet<string> | null;
  format: CaptureFileFormat;
}

/** The capture file of `connection`, in chunks as writeCaptureFile yields them. */
export function connectionCaptureFile(
  reader: FlowLogReader,
  connection: Connection,
  { range, points, format }: CaptureFileRequest,
): AsyncGenerator<Buffer, void, undefined> {
  const packets = connectionPacketRows(reader, connection, range, points);
  // Classic pcap has no comments to say why a packet is there: drops go in pcapng files only.
  const drops = format === 'pcap' ? [] : dropsWithin(connection.drops, range, points);
  // pcapng: the packets that are evidence of a finding of the connection's diagnosis say so (docs/diagnosis.md).
  const evidence = format === 'pcapng' ? async () => evidenceComments((await diagnoseConnection(reader, connection)).findings) : null;
  const items = withComments(withDrops(packets, drops), connection.hops, evidence);
  return writeCaptureFile(items, { format, sectionComment: `nettrail: ${formatTuple({ proto: connection.proto, ...connection.tuples[0] })}` });
}

/**
 * The names of the interfaces of the connection's capture files, sorted: its capture points
 * (pointName) and the interfaces of the drops at them (dropPointName).
 */
export function capturePointNames(connection: Connection): string[] {
  return [...new Set([...connection.flows.map(pointName), ...connection.drops.map(dropPointName)])].sort();
}

/**
 * A zip of one capture file per interface name (`points`, or all of capturePointNames), each
 * `NAME.pcapng` (or .pcap) with the name's characters other than letters, digits, '.' and '-' as '_':
 * a file of one capture point is one flow's view, which Wireshark's TCP analysis reads right.
 */
export function connectionCaptureFilesByPoint(reader: FlowLogReader, connection: Connection, request: CaptureFileRequest): AsyncGenerator<Buffer, void, undefined> {
  const names = request.points === null ? capturePointNames(connection) : [...request.points].sort();
  return writeZip(names.map((name) => ({
    name: `${name.replace(/[^\w.-]/g, '_')}.${CAPTURE_FILE_TYPES[request.format].extension}`,
    data: connectionCaptureFile(reader, connection, { ...request, points: new Set([name]) }),
  })));
}

/** The rows of `batch` as the writer's, with `comments` by row of its columns (opt_comment). */
export function packetRows(batch: PacketRows, comments?: ReadonlyMap<number, readonly string[]>): CaptureRows {
  return { kind: 'rows', columns: captureColumns(batch.columns), rows: batch.rows, comments };
}

/** Packet columns as the writer's. */
function captureColumns(c: PacketRows['columns']): CaptureColumns {
  return {
    interface: c.point, interfaces: c.points.map(pointInterface), ts: c.ts, direction: c.direction, originalLength: c.wireLen,
    packetId: c.packetId, bytes: c.headerBytes, starts: c.headerStarts, ends: c.headerEnds,
  };
}

/** A capture point and hook as a pcapng interface: tc and xdp on one device are separate interfaces. */
const pointInterface = (p: RowsPoint): CaptureInterface => ({
  name: pointName(p),
  description: `${p.hook} hook, netns ${p.netns} on node ${p.node}`,
  linkType: p.linkType,
});

/** The first word of a drop's comment. */
export const DROP_COMMENT = 'DROPPED';

/** The if_name of the interface of the drops at a capture point: not the point's own, so that a filter on a point shows its packets only. */
export const dropPointName = (d: DropRecord): string => `${d.node}/${d.netns}${d.iface ? `/${d.iface}` : ''} drops`;

/** A dropped packet: on an interface of its own per point, no direction, a comment saying what, where and why. */
const dropPacket = (d: DropRecord): CapturePacket => ({
  kind: 'packet',
  interface: { name: dropPointName(d), description: `packets the kernel dropped (skb:kfree_skb), netns ${d.netns} on node ${d.node}`, linkType: d.linkType },
  ts: d.ts,
  packetId: d.packetId,
  bytes: d.headers,
  originalLength: d.wireLen,
  comment: `${DROP_COMMENT} (${d.reason}) at ${d.node}/${d.netns}${d.iface ? `/${d.iface}` : ''} in ${d.location}: ${d.cause}`,
});

/** The comment on the first packet seen after a hop's translation. */
function natHopComment(hop: NatHop): string {
  const t = (x: FourTuple) => `${x.src}:${x.sport} -> ${x.dst}:${x.dport}`;
  return `${hop.kind} via ${hop.via} at ${hop.node}/${hop.netns} zone ${hop.zone}: ${t(hop.before)} => ${t(hop.after)}`;
}

/** The drops in `range` and on the interfaces `points` (dropPointName; null for all). */
function dropsWithin(drops: readonly DropRecord[], range: TimeRange, points: ReadonlySet<string> | null): DropRecord[] {
  return drops.filter(
    (d) =>
      (range.from === undefined || d.ts >= range.from) &&
      (range.to === undefined || d.ts <= range.to) &&
      (points === null || points.has(dropPointName(d))),
  );
}

/** The packets of `batches` (in time order) with `drops` (in time order) merged in by time. */
async function* withDrops(batches: AsyncIterable<PacketRows>, drops: readonly DropRecord[]): AsyncIterable<Array<PacketRows | DropRecord>> {
  let next = 0;
  for await (const packets of batches) {
    if (next === drops.length) {
      yield [packets];
      continue;
    }
    // The packets before each pending drop's time, then the drop.
    const merged: Array<PacketRows | DropRecord> = [];
    const { columns, rows } = packets;
    let from = 0;
    for (let k = 0; k < rows.length && next < drops.length; k++) {
      const ts = columns.ts[rows[k]];
      if (drops[next].ts > ts) continue;
      if (k > from) merged.push(packets.slice(from, k));
      for (; next < drops.length && drops[next].ts <= ts; next++) merged.push(drops[next]);
      from = k;
    }
    if (from < rows.length) merged.push(from === 0 ? packets : packets.slice(from, rows.length));
    yield merged;
  }
  if (next < drops.length) yield drops.slice(next);
}

/**
 * The writer's items: packets with their comments (with `evidence`, pcapng: nettrail's analysis,
 * the NAT hop on the first packet seen after each hop, packet-analysis.ts; the findings a packet is
 * evidence of) and drops, numbered as the file's frames in the order written.
 */
async function* withComments(
  batches: AsyncIterable<Array<PacketRows | DropRecord>>,
  hops: readonly NatHop[],
  evidence: (() => Promise<ReadonlyMap<bigint, string>>) | null,
): AsyncIterable<CaptureItem[]> {
  const commented = evidence !== null;
  const findings = evidence === null ? new Map<bigint, string>() : await evidence();
  const pending = hops.map((hop) => ({ hop, comment: natHopComment(hop) }));
  const analysis = new CaptureAnalysis();
  let frame = 0;
  let columnsOf: PacketRows['columns'] | null = null;
  let columns: CaptureColumns | null = null;
  for await (const parts of batches) {
    const items: CaptureItem[] = [];
    for (const part of parts) {
      if (!(part instanceof PacketRows)) {
        frame++;
        items.push(dropPacket(part));
        continue;
      }
      const c = part.columns;
      if (c !== columnsOf) {
        columnsOf = c;
        columns = captureColumns(c);
      }
      if (!commented) {
        frame += part.rows.length;
        items.push({ kind: 'rows', columns: columns!, rows: part.rows });
        continue;
      }
      const comments = new Map<number, string[]>();
      for (let k = 0; k < part.rows.length; k++) {
        const row = part.rows[k];
        let rowComments = analysis.comments(c, row, ++frame);
        if (pending.length > 0) {
          const point = c.points[c.point[row]];
          const at = pending.findIndex(({ hop }) => hop.node === point.node && hop.netns === point.netns && sameTuple(hop.after, {
            src: c.addresses[c.src[row]].text, sport: c.sport[row], dst: c.addresses[c.dst[row]].text, dport: c.dport[row],
          }));
          if (at >= 0) (rowComments ??= []).unshift(pending.splice(at, 1)[0].comment);
        }
        const finding = findings.size > 0 ? findings.get(c.packetId[row]) : undefined;
        if (finding !== undefined) (rowComments ??= []).push(...finding.split('\n'));
        if (rowComments !== null) comments.set(row, rowComments);
      }
      items.push({ kind: 'rows', columns: columns!, rows: part.rows, comments });
    }
    yield items;
  }
}
