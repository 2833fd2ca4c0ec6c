import type { CapturePointStats, Connection, FourTuple, NatHop } from '../api/types.generated';
import { epochNs } from './time';
import { reversedTuple, sameTuple } from './tuple';
import { capturePointKey } from './timeline';

/** A stretch of the path between NAT hops: the tuple the connection had there and the capture points that saw it. */
export interface PathSegment {
  kind: 'segment';
  tuple: FourTuple;
  /** In the order they first saw the connection. */
  points: CapturePointStats[];
}

export interface PathHop {
  kind: 'hop';
  hop: NatHop;
}

export type PathStep = PathSegment | PathHop;

/**
 * The connection's path from client to server: each of its tuples with the capture points
 * that saw it, and between them the NAT hops that rewrote one into the next. A capture point
 * whose tuple the connection does not list gets a segment of its own after the listed ones.
 */
export function pathSteps(connection: Connection): PathStep[] {
  const segments: PathSegment[] = connection.tuples.map((tuple) => ({ kind: 'segment', tuple, points: [] }));
  const firstSeen = new Map<string, bigint>();
  const statsByKey = new Map(connection.points.map((point) => [capturePointKey(point), point]));
  for (const flow of connection.flows) {
    const key = capturePointKey(flow);
    const point = statsByKey.get(key);
    if (!point) continue;
    const start = epochNs(flow.start);
    const seen = firstSeen.get(key);
    if (seen === undefined || start < seen) firstSeen.set(key, start);
    const tuple = { src: flow.client.ip, sport: flow.client.port, dst: flow.server.ip, dport: flow.server.port };
    let segment = segments.find((candidate) => sameTuple(candidate.tuple, tuple) || sameTuple(candidate.tuple, reversedTuple(tuple)));
    if (!segment) {
      segment = { kind: 'segment', tuple, points: [] };
      segments.push(segment);
    }
    if (!segment.points.includes(point)) segment.points.push(point);
  }
  for (const segment of segments) {
    segment.points.sort((a, b) => {
      const difference = (firstSeen.get(capturePointKey(a)) ?? 0n) - (firstSeen.get(capturePointKey(b)) ?? 0n);
      return difference < 0n ? -1 : difference > 0n ? 1 : 0;
    });
  }

  // Each hop follows the segment of its `before` tuple; hops that match none follow the last listed tuple.
  const hopsAfter = segments.map((): NatHop[] => []);
  for (const hop of connection.hops) {
    const index = segments.findIndex((segment) => sameTuple(segment.tuple, hop.before));
    hopsAfter[index === -1 ? connection.tuples.length - 1 : index]?.push(hop);
  }
  return segments.flatMap((segment, index): PathStep[] => [segment, ...hopsAfter[index].map((hop): PathHop => ({ kind: 'hop', hop }))]);
}
