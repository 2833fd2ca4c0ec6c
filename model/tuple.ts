// The tuple syntax (docs/interface.md): `[tcp|udp] SRC:SPORT (->|→|,|space) DST:DPORT`, IPv6 in brackets;
// `→` is the arrow Wireshark's conversation and stream views print.
import type { FourTuple, Proto } from './records.js';
import { canonicalAddress } from './address.js';

export class TupleError extends Error {
  readonly code = 'BAD_TUPLE';
  constructor(message: string) {
    super(message);
    this.name = 'TupleError';
  }
}

export interface ConnectionTuple extends FourTuple {
  proto: Proto;
}

function parsePort(text: string, what: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new TupleError(`${what} port ${JSON.stringify(text)} is not a number from 0 to 65535`);
  return Number(text);
}

function parseEndpoint(text: string, what: string): { ip: string; port: number } {
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(text);
  if (!bracketed && text.split(':').length > 2) {
    throw new TupleError(`${what} ${JSON.stringify(text)}: write IPv6 addresses in brackets, e.g. [fd00::1]:80`);
  }
  const [, host, port] = bracketed ?? /^([^:]+):(.*)$/.exec(text) ?? [];
  if (host === undefined || port === undefined) throw new TupleError(`${what} ${JSON.stringify(text)} is not ADDRESS:PORT`);
  const ip = canonicalAddress(host);
  if (ip === null) throw new TupleError(`${what} address ${JSON.stringify(host)} is not an IPv4 or IPv6 address`);
  if (bracketed && !ip.includes(':')) throw new TupleError(`${what} address ${host}: brackets are only for IPv6`);
  return { ip, port: parsePort(port, what) };
}

const parseProto = (text: string): Proto => {
  const proto = text.toLowerCase();
  if (proto !== 'tcp' && proto !== 'udp') throw new TupleError(`protocol ${JSON.stringify(text)} is not tcp or udp`);
  return proto;
};

/** Parse a tuple in any notation of docs/interface.md. */
export function parseTuple(input: string): ConnectionTuple {
  if (input.length > 200) throw new TupleError('tuple is longer than 200 characters');
  let text = input.trim();
  let proto: Proto = 'tcp';
  const protoMatch = /^([a-zA-Z]+)\s+/.exec(text);
  if (protoMatch) {
    proto = parseProto(protoMatch[1]);
    text = text.slice(protoMatch[0].length);
  }
  const parts = text.split(/\s*(?:->|→)\s*|\s*,\s*|\s+/).filter((part) => part !== '');
  if (parts.length !== 2) throw new TupleError(`expected "SRC:SPORT -> DST:DPORT", got ${JSON.stringify(input)}`);
  const src = parseEndpoint(parts[0], 'source');
  const dst = parseEndpoint(parts[1], 'destination');
  if (src.ip.includes(':') !== dst.ip.includes(':')) throw new TupleError('source and destination mix IPv4 and IPv6');
  return { proto, src: src.ip, sport: src.port, dst: dst.ip, dport: dst.port };
}

export interface TupleQuery {
  tuple?: string;
  src?: string;
  sport?: string | number;
  dst?: string;
  dport?: string | number;
  proto?: string;
}

/** A tuple from `tuple=` or from `src`, `sport`, `dst`, `dport`, `proto`. */
export function tupleFromQuery(query: TupleQuery): ConnectionTuple {
  if (query.tuple !== undefined) {
    if (query.src !== undefined || query.dst !== undefined) throw new TupleError('give either tuple or src/sport/dst/dport, not both');
    return parseTuple(query.tuple);
  }
  const missing = (['src', 'sport', 'dst', 'dport'] as const).filter((name) => query[name] === undefined);
  if (missing.length > 0) throw new TupleError(`tuple is required (or src, sport, dst, dport): missing ${missing.join(', ')}`);
  const address = (text: string, what: string) => {
    const ip = canonicalAddress(text.replace(/^\[(.*)\]$/, '$1'));
    if (ip === null) throw new TupleError(`${what} ${JSON.stringify(text)} is not an IPv4 or IPv6 address`);
    return ip;
  };
  const src = address(String(query.src), 'src');
  const dst = address(String(query.dst), 'dst');
  if (src.includes(':') !== dst.includes(':')) throw new TupleError('src and dst mix IPv4 and IPv6');
  return {
    proto: query.proto === undefined ? 'tcp' : parseProto(query.proto),
    src,
    sport: parsePort(String(query.sport), 'sport'),
    dst,
    dport: parsePort(String(query.dport), 'dport'),
  };
}

export const formatEndpoint = (ip: string, port: number) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

export const formatTuple = (t: ConnectionTuple | (FourTuple & { proto?: Proto })) =>
  `${t.proto ?? 'tcp'} ${formatEndpoint(t.src, t.sport)} -> ${formatEndpoint(t.dst, t.dport)}`;
