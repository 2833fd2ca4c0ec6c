// The UI's own types around the API's (types.generated.ts, generated from the server's schemas).
import type { FlowOrder, FlowTrait, LoopbackChoice } from './types.generated';

/** Where a packet was seen. */
export interface CapturePointRef {
  node: string;
  netns: string;
  iface: string;
}

/**
 * Query parameters of GET /api/v1/flows, as typed by the user: the server validates them
 * (and answers 400 naming the parameter). Times are ISO-8601 or epoch milliseconds;
 * every listed state is accepted (any of), every listed trait is required (all of). The
 * connection search (GET /api/v1/connections/search) takes the same but `order`.
 */
export interface FlowQuery {
  ip?: string;
  src?: string;
  dst?: string;
  port?: string;
  sport?: string;
  dport?: string;
  proto?: string;
  from?: string;
  to?: string;
  state?: string[];
  has?: FlowTrait[];
  node?: string;
  netns?: string;
  iface?: string;
  loopback?: LoopbackChoice;
  order?: FlowOrder;
  limit?: number;
  cursor?: string;
}
