// The UI's types of the API (ui/src/api/types.generated.ts), generated from
// the schemas by api/ui-types/write.ts before every UI build (npm run build:ui,
// scripts/setup.sh); test/api/ui-types.test.ts fails when the file is stale.
import path from 'node:path';
import { packageRoot } from '../../model/package-root.js';
import { Directional, ErrorSchema, FourTupleSchema, Proto, Time } from '../schemas/common.js';
import { ConnectionRowSchema, ConnectionSearchResponse } from '../schemas/connection-search.js';
import { ConnectionResponse, ConnectionSchema, PacketSchema, PointSchema, TcpOptionsSchema, TimelineResponse } from '../schemas/connections.js';
import { DiagnosisResponse, EvidencePacketSchema, FindingSchema } from '../schemas/diagnosis.js';
import { DropSchema } from '../schemas/drops.js';
import { Endpoint, FlowSchema, FlowsQuery, FlowsResponse } from '../schemas/flows.js';
import { NatHopSchema } from '../schemas/nat.js';
import { CaptureStatusSchema } from '../schemas/status.js';
import { typescriptDeclarations } from './declarations.js';

export const UI_TYPES_FILE = path.join(packageRoot, 'ui', 'src', 'api', 'types.generated.ts');

const HEADER = `// The HTTP API's JSON shapes, generated from its TypeBox schemas (api/schemas/)
// by api/ui-types/write.ts at every UI build: do not edit (see api/ui-types/ui-types.ts).`;

const FlowTrait = FlowsQuery.properties.has.items;
const FlowOrder = FlowsQuery.properties.order;
const LoopbackChoice = FlowsQuery.properties.loopback;

/** The schemas under the names the UI knows them by. */
const UI_TYPES = {
  IsoTime: Time,
  Proto,
  FourTuple: FourTupleSchema,
  Directional,
  Endpoint,
  NatHop: NatHopSchema,
  CapturePointStats: PointSchema,
  Flow: FlowSchema,
  FlowTrait,
  FlowOrder,
  FlowsResponse,
  LoopbackChoice,
  ConnectionRow: ConnectionRowSchema,
  ConnectionSearchResponse,
  Drop: DropSchema,
  TcpOptions: TcpOptionsSchema,
  Packet: PacketSchema,
  Connection: ConnectionSchema,
  ConnectionResponse,
  TimelineResponse,
  EvidencePacket: EvidencePacketSchema,
  Finding: FindingSchema,
  DiagnosisResponse,
  CaptureStatus: CaptureStatusSchema,
  ApiErrorBody: ErrorSchema,
};

/** The choices the flow search form offers. */
const UI_VALUES = { FLOW_TRAITS: FlowTrait, FLOW_ORDERS: FlowOrder };

export const uiTypesSource = (): string => typescriptDeclarations(HEADER, { types: UI_TYPES, values: UI_VALUES });
