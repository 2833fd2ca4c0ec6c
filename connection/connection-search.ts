// A connection of the connection search as the API shows it: its row from
// the store (flowlog/connection-search.ts) with the client- and server-side
// tuples, the distinct tuples along its path and the NAT hops between them.
import type { ConnectionRow } from '../flowlog/connection-search.js';
import type { FourTuple, NatKind } from '../model/records.js';
import { hopKind, sameTuple } from '../nat-tracker/classify.js';

/** A NAT hop inferred from the tuples at two capture points: one tuple became the next. */
export interface InferredHop {
  kind: NatKind;
  before: FourTuple;
  after: FourTuple;
}

export interface ConnectionSummary extends ConnectionRow {
  /** The tuple at its first capture point (where its first packet was seen first). */
  clientTuple: FourTuple;
  /** The tuple at its last capture point (nearest the server). */
  serverTuple: FourTuple;
  /** Its tuples in path order, each once. */
  tuples: FourTuple[];
  /** One between each two consecutive `tuples`. */
  hops: InferredHop[];
}

export function summarizeConnection(row: ConnectionRow): ConnectionSummary {
  const tuples: FourTuple[] = [];
  for (const { tuple } of row.points) if (!tuples.some((seen) => sameTuple(seen, tuple))) tuples.push(tuple);
  // Consecutive tuples differ, so each pair is a hop of some kind.
  const hops = tuples.slice(1).map((after, i): InferredHop => ({ kind: hopKind(tuples[i], after)!, before: tuples[i], after }));
  return { ...row, clientTuple: row.points[0].tuple, serverTuple: row.points[row.points.length - 1].tuple, tuples, hops };
}
