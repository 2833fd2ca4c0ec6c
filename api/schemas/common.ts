// What the API's schemas share: times, ports, the protocol, a tuple, counts
// per direction, the error body, and the search parameters' building blocks.
// The TypeBox schemas in api/schemas/ (one file per resource; the interface is
// docs/interface.md) are the one source of request validation, response
// serialization, /openapi.json, the server's types and the UI's (api/ui-types/ui-types.ts).
import { Type, type Static } from 'typebox';
import type { QueryFormat } from '../formats.js';

export const Time = Type.String({ description: 'ISO-8601 UTC with nanoseconds, e.g. 2026-11-21T19:23:03.123456789Z' });
export const Port = Type.Integer({ minimum: 0, maximum: 65535 });
export const Proto = Type.Enum(['tcp', 'udp']);

export const FourTupleSchema = Type.Object({ src: Type.String(), sport: Port, dst: Type.String(), dport: Port });

export const Directional = Type.Object({ c2s: Type.Integer(), s2c: Type.Integer() });

const ErrorDetail = Type.Object({
  code: Type.String(),
  message: Type.String(),
  parameter: Type.Optional(Type.String({ description: 'the query or path parameter at fault' })),
});

export const ErrorSchema = Type.Object({
  error: ErrorDetail,
  errors: Type.Optional(
    Type.Array(ErrorDetail, { description: 'a 400: every parameter at fault, each once (error is the first of them)' }),
  ),
});

/** A string query parameter of one of the formats of api/formats.ts. */
export const Formatted = (format: QueryFormat, options: { maxLength?: number; description?: string } = {}) => Type.String({ ...options, format });

/** The error statuses every data route may answer with. */
export const ErrorResponses = { 400: ErrorSchema, 404: ErrorSchema, 429: ErrorSchema, 500: ErrorSchema, 503: ErrorSchema };

export const AddressOrCidr = (description: string) =>
  Type.Optional(Formatted('address-or-cidr', { maxLength: 64, description: `${description}: an IPv4 or IPv6 address or CIDR range (10.0.0.0/8, fd00::/16)` }));
export const QueryPort = (description: string) => Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description }));
export const QueryTime = (description: string) =>
  Type.Optional(Formatted('query-time', { maxLength: 64, description: `${description}: ISO-8601 (2026-11-21T19:23:03.123456789Z) or epoch milliseconds` }));
export const PointName = (description: string) => Type.Optional(Type.String({ minLength: 1, maxLength: 256, description }));
/** How many results a search answers with when `limit` is not given. */
export const DEFAULT_LIMIT = 100;
export const Limit = (options: { description?: string } = {}) =>
  Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: DEFAULT_LIMIT, ...options }));
export const Cursor = Type.Optional(Type.String({ maxLength: 2048, description: 'next_cursor of the previous page (same filters and order)' }));
export const NextCursor = Type.Union([Type.String(), Type.Null()], { description: 'pass as cursor= for the next page; null on the last page' });
/** A parameter that may be repeated: `has=retrans&has=rst`. */
export const Repeatable = <const Values extends string[]>(values: readonly [...Values], description: string) =>
  Type.Optional(Type.Array(Type.Enum(values), { maxItems: values.length, description }));

export type FourTupleJson = Static<typeof FourTupleSchema>;
