// What the app serves from: the store's reads and searches, the status of
// what this process captures, and the HTTP settings. The service (or a test)
// builds them; app.ts and every route take them.
import type { CaptureStatus } from '../capture/packets/capture.js';
import type { DropCursor, DropFilter, DropOrder, DropPage } from '../flowlog/drops-table.js';
import type { DropTracerStatus } from '../capture/drops/tracer.js';
import type { DropFateCounts } from '../flowlog/drop-fate.js';
import type { NatTrackingJson } from './schemas/status.js';
import type { FlowCursor, FlowFilter, FlowOrder, FlowPage } from '../flowlog/flow-search.js';
import type { ConnectionOrder, ConnectionPage } from '../flowlog/connection-search.js';
import type { FlowLogReader } from '../connection/connection.js';
import type { FlowRecord, NatTranslation } from '../model/records.js';
import type { NatFilter } from '../flowlog/queries.js';
import type { WriterStats } from '../flowlog/writer.js';

export interface AppOptions {
  reader: FlowLogReader;
  searchFlows(filter: FlowFilter, page: { order: FlowOrder; limit: number; after?: FlowCursor }): Promise<FlowPage>;
  flowById(id: string): Promise<FlowRecord | null>;
  searchConnections(filter: FlowFilter, page: { order: ConnectionOrder; limit: number; after?: FlowCursor }): Promise<ConnectionPage>;
  searchDrops(filter: DropFilter, page: { order: DropOrder; limit: number; after?: DropCursor }): Promise<DropPage>;
  natTranslations(filter: NatFilter): Promise<NatTranslation[]>;
  storeHealthy(): Promise<boolean>;
  /** null when this process does not capture. */
  captureStatus(): CaptureStatus | null;
  /** null when this process does not trace drops. */
  dropStatus(): DropTracerStatus | null;
  /** Drops this process decided the fate of, per fate; null when it decides none. */
  dropFates(): DropFateCounts | null;
  /** null when this process does not track NAT. */
  natStatus(): NatTrackingJson | null;
  /** null when this process does not write the flow log. */
  writerStats(): WriterStats | null;
  /** The built UI (ui/dist); null or missing serves the API alone. */
  uiDir: string | null;
  /** When set, /api/ and /metrics require `Authorization: Bearer <token>`. */
  token: string | null;
  /** Requests per client address and minute; null turns rate limiting off. Default DEFAULT_RATE_LIMIT. */
  rateLimitPerMinute?: number | null;
}
