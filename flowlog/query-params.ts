// Query parameters of the store's reads: every value goes into a query as a
// parameter, checked against its column's range, and the SQL that reads it.

import type { FourTuple, Proto } from '../model/records.js';
import { PROTO_NUMBER } from '../model/protocol.js';
import { addressBytes, enumValue, U16, uint } from './codec.js';

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
 * direction gives the same key); adds their parameters `conn<i>`: the text
 * connKeySql (schema.ts) hashes, made here. The engine spends milliseconds
 * folding each connKeySql expression of parameters into a constant, and
 * almost nothing hashing a text parameter (figures: docs/capture.md).
 */
export function connKeyList(proto: Proto, tuples: readonly FourTuple[], params: Params): string {
  const number = protoParam(proto);
  return tuples
    .map((t, i) => {
      params[`conn${i}`] = connKeyText(number, connEnd(t.src, t.sport, `tuples[${i}].src`, `tuples[${i}].sport`), connEnd(t.dst, t.dport, `tuples[${i}].dst`, `tuples[${i}].dport`));
      return `cityHash64({conn${i}:String})`;
    })
    .join(', ');
}

/** One end of a connection as connKeySql writes it: hex(toIPv6(address)) (upper case), ':', the port in decimal. */
function connEnd(ip: string, port: number, ipField: string, portField: string): string {
  return `${Buffer.from(addressBytes(ip, ipField)).toString('hex').toUpperCase()}:${portParam(port, portField)}`;
}

/** The text connKeySql hashes: the protocol number, then the two ends, the lesser first (bytewise, as the engine's least()). */
function connKeyText(proto: number, endA: string, endB: string): string {
  return `${proto}|${endA < endB ? endA : endB}|${endA < endB ? endB : endA}`;
}
