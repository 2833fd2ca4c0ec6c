// Query parameters of the store's reads: every value goes into a query as a
// parameter, checked against its column's range, and the SQL that reads it.

import type { FourTuple, Proto } from '../model/records.js';
import { PROTO_NUMBER } from '../model/protocol.js';
import { enumValue, storedAddress, U16, uint } from './codec.js';
import { connKeySql } from './schema.js';

/** Query parameters by name. */
export type Params = Record<string, unknown>;

/** SQL reading the query parameter `name` as ClickHouse type `type`. */
export const typedParam =
  (type: string) =>
  (name: string): string =>
    `{${name}:${type}}`;

/** SQL reading the query parameter `name` (epoch ns) as a DateTime64(9). */
export const timeParam = (name: string): string => `fromUnixTimestamp64Nano({${name}:Int64}, 'UTC')`;

/** SQL for a DateTime64 value as epoch ns in decimal text (exact, where a number would not be). */
export const nsText = (sql: string): string => `toString(toUnixTimestamp64Nano(${sql}))`;

/** A port as a UInt16 parameter; INVALID_VALUE (about `field`) when it is not one. */
export const portParam = (value: number, field: string): number => uint(value, U16, field);

/** A protocol as the UInt8 parameter compared with `toUInt8(proto)`; INVALID_VALUE when it is not one the store knows. */
export const protoParam = (proto: Proto): number => enumValue(proto, PROTO_NUMBER, 'proto');

/** An address (IPv6 space, IPv4 as IPv4-mapped) as ClickHouse's IPv6 type parses it: eight hex groups. */
export function ipv6Param(value: bigint): string {
  return Array.from({ length: 8 }, (_, i) => ((value >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(':');
}

/**
 * A comma-separated list of connection-key expressions, one per tuple (either
 * direction gives the same key); adds their parameters: `proto`, and
 * `src<i>`, `sport<i>`, `dst<i>`, `dport<i>` for tuple i.
 */
export function connKeyList(proto: Proto, tuples: readonly FourTuple[], params: Params): string {
  params.proto = protoParam(proto);
  return tuples
    .map((t, i) => {
      params[`src${i}`] = storedAddress(t.src, `tuples[${i}].src`);
      params[`sport${i}`] = portParam(t.sport, `tuples[${i}].sport`);
      params[`dst${i}`] = storedAddress(t.dst, `tuples[${i}].dst`);
      params[`dport${i}`] = portParam(t.dport, `tuples[${i}].dport`);
      return connKeySql('{proto:UInt8}', `{src${i}:String}`, `{sport${i}:UInt16}`, `{dst${i}:String}`, `{dport${i}:UInt16}`);
    })
    .join(', ');
}
