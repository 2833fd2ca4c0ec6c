import type { Endpoint, FourTuple, Proto } from '../api/types.generated';

export type TupleField = keyof FourTuple;

/** `ip:port`, with IPv6 addresses in brackets. */
export function formatEndpoint(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** `src:sport -> dst:dport` — the tuple notation of docs/interface.md, so it can be pasted back anywhere. */
export function formatTuple(tuple: FourTuple): string {
  return `${formatEndpoint(tuple.src, tuple.sport)} -> ${formatEndpoint(tuple.dst, tuple.dport)}`;
}

export function flowTupleText(proto: Proto, client: Endpoint, server: Endpoint): string {
  return `${proto} ${formatEndpoint(client.ip, client.port)} -> ${formatEndpoint(server.ip, server.port)}`;
}

/** The connection page of `tuple`; `at` picks, among connections that reused the tuple, the one closest to that time. */
export function connectionHref(tuple: string, at: string | null = null): string {
  const atPart = at ? `&at=${encodeURIComponent(at)}` : '';
  return `/connection?tuple=${encodeURIComponent(tuple)}${atPart}`;
}

/** The page of one connection, by its id: the link that keeps showing it whatever later reuses its tuple. */
export function connectionIdHref(id: string): string {
  return `/connection?id=${encodeURIComponent(id)}`;
}

export function changedFields(before: FourTuple, after: FourTuple): Set<TupleField> {
  const fields: TupleField[] = ['src', 'sport', 'dst', 'dport'];
  return new Set(fields.filter((field) => before[field] !== after[field]));
}

export function sameTuple(a: FourTuple, b: FourTuple): boolean {
  return a.src === b.src && a.sport === b.sport && a.dst === b.dst && a.dport === b.dport;
}

export function reversedTuple(tuple: FourTuple): FourTuple {
  return { src: tuple.dst, sport: tuple.dport, dst: tuple.src, dport: tuple.sport };
}
