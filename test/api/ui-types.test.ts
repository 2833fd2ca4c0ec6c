// The UI's types of the API are the schemas': ui/src/api/types.generated.ts is
// what api/ui-types/ui-types.ts generates from them now, and each type in it is the
// server's type of the same schema (checked by the compiler).
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Static } from 'typebox';
import type { Directional, ErrorSchema, FourTupleJson, Proto, Time } from '../../api/schemas/common.js';
import type { ConnectionJson, ConnectionResponse, PacketJson, PointSchema, TcpOptionsSchema, TimelineResponse } from '../../api/schemas/connections.js';
import type { DropJson } from '../../api/schemas/drops.js';
import type { Endpoint, FlowJson, FlowsQueryJson, FlowsResponseJson } from '../../api/schemas/flows.js';
import type { NatHopJson } from '../../api/schemas/nat.js';
import { UI_TYPES_FILE, uiTypesSource } from '../../api/ui-types/ui-types.js';
import type * as Ui from '../../ui/src/api/types.generated.js';

test('ui/src/api/types.generated.ts is what the schemas generate (npm run build:ui writes it)', () => {
  assert.equal(readFileSync(UI_TYPES_FILE, 'utf8'), uiTypesSource());
});

/** true when A and B are the same type: each is assignable to the other. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

/** Compiles only when T is true. */
type Expect<T extends true> = T;

/** Each generated type is the server's (Static) type of its schema: a mismatch does not compile. */
export type GeneratedTypesAreTheServers = [
  Expect<Same<Ui.IsoTime, Static<typeof Time>>>,
  Expect<Same<Ui.Proto, Static<typeof Proto>>>,
  Expect<Same<Ui.FourTuple, FourTupleJson>>,
  Expect<Same<Ui.Directional, Static<typeof Directional>>>,
  Expect<Same<Ui.Endpoint, Static<typeof Endpoint>>>,
  Expect<Same<Ui.NatHop, NatHopJson>>,
  Expect<Same<Ui.CapturePointStats, Static<typeof PointSchema>>>,
  Expect<Same<Ui.Flow, FlowJson>>,
  Expect<Same<Ui.FlowTrait[], NonNullable<FlowsQueryJson['has']>>>,
  Expect<Same<Ui.FlowOrder, NonNullable<FlowsQueryJson['order']>>>,
  Expect<Same<(typeof Ui.FLOW_TRAITS)[number], Ui.FlowTrait>>,
  Expect<Same<(typeof Ui.FLOW_ORDERS)[number], Ui.FlowOrder>>,
  Expect<Same<Ui.FlowsResponse, FlowsResponseJson>>,
  Expect<Same<Ui.Drop, DropJson>>,
  Expect<Same<Ui.TcpOptions, Static<typeof TcpOptionsSchema>>>,
  Expect<Same<Ui.Packet, PacketJson>>,
  Expect<Same<Ui.Connection, ConnectionJson>>,
  Expect<Same<Ui.ConnectionResponse, Static<typeof ConnectionResponse>>>,
  Expect<Same<Ui.TimelineResponse, Static<typeof TimelineResponse>>>,
  Expect<Same<Ui.ApiErrorBody, Static<typeof ErrorSchema>>>,
];
