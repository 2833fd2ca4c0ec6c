// IP addresses: text to bytes (IPv4 4, IPv6 16) and bytes to canonical text
// (IPv4 dotted, IPv6 per RFC 5952); the 16-byte IPv6 form with IPv4 as
// IPv4-mapped (::ffff:a.b.c.d) that the store keeps; CIDR ranges (with ip-num)
// in that IPv6 space; loopback hosts.
import { isIPv6 } from 'node:net';
import { IPv4CidrRange, IPv6CidrRange, Validator } from 'ip-num';

/** A range of addresses in IPv6 space (IPv4 as IPv4-mapped, as the store keeps them), bounds included. */
export interface IpRange {
  first: bigint;
  last: bigint;
}

// ---- text to bytes

/**
 * The 32-bit value of dotted IPv4 `text`, or -1 unless it is four decimal
 * octets without leading zeros (what node's isIPv4 accepts). Read by
 * character: the store's write path parses every new address of a record.
 */
function ipv4Value(text: string): number {
  let octets = 0;
  let done = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || octets === 3) return -1;
      done = (done << 8) | value;
      octets++;
      value = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && value === 0) return -1;
      value = value * 10 + c - 0x30;
      if (++digits > 3 || value > 255) return -1;
    } else {
      return -1;
    }
  }
  if (octets !== 3 || digits === 0) return -1;
  return ((done << 8) | value) >>> 0;
}

function ipv4Into(value: number, out: Uint8Array, at: number): void {
  out[at] = value >>> 24;
  out[at + 1] = (value >>> 16) & 0xff;
  out[at + 2] = (value >>> 8) & 0xff;
  out[at + 3] = value & 0xff;
}

/** Writes IPv6 groups (an IPv4 tail dotted) into `out` from `at`; returns where they end. */
function groupsInto(groups: string[], out: Uint8Array, at: number): number {
  for (const group of groups) {
    if (group.includes('.')) {
      ipv4Into(ipv4Value(group), out, at);
      at += 4;
    } else {
      const value = parseInt(group, 16);
      out[at] = value >> 8;
      out[at + 1] = value & 0xff;
      at += 2;
    }
  }
  return at;
}

const groupBytes = (groups: string[]): number => groups.reduce((n, group) => n + (group.includes('.') ? 4 : 2), 0);

/** Writes the 16 bytes of IPv6 `text` into a zeroed `out`; false (nothing written) unless it is one, without a zone index. */
function ipv6Into(text: string, out: Uint8Array): boolean {
  if (!isIPv6(text) || text.includes('%')) return false;
  const gap = text.indexOf('::');
  if (gap < 0) {
    groupsInto(text.split(':'), out, 0);
    return true;
  }
  const head = text.slice(0, gap);
  const tail = text.slice(gap + 2);
  groupsInto(head === '' ? [] : head.split(':'), out, 0);
  const tailGroups = tail === '' ? [] : tail.split(':');
  groupsInto(tailGroups, out, 16 - groupBytes(tailGroups));
  return true;
}

/** The bytes of an IPv4 (4) or IPv6 (16) address; null when `text` is neither (a zone index or brackets are not part of an address). */
export function parseAddress(text: string): Uint8Array | null {
  const ipv4 = ipv4Value(text);
  if (ipv4 >= 0) {
    const out = new Uint8Array(4);
    ipv4Into(ipv4, out, 0);
    return out;
  }
  const out = new Uint8Array(16);
  return ipv6Into(text, out) ? out : null;
}

/** parseAddress in IPv6 form: IPv4 as IPv4-mapped. */
function parseMapped(text: string): Uint8Array | null {
  const out = new Uint8Array(16);
  const ipv4 = ipv4Value(text);
  if (ipv4 < 0) return ipv6Into(text, out) ? out : null;
  out[10] = 0xff;
  out[11] = 0xff;
  ipv4Into(ipv4, out, 12);
  return out;
}

const MAX_CACHED = 1 << 16;
const mappedCache = new Map<string, Uint8Array>();

/**
 * The 16 bytes of an address in IPv6 form, IPv4 as IPv4-mapped (the store's
 * IPv6 columns); null when `text` is not an address. Results are cached and
 * shared: do not modify them.
 */
export function toMappedBytes(text: string): Uint8Array | null {
  let bytes = mappedCache.get(text);
  if (bytes === undefined) {
    const parsed = parseMapped(text);
    if (parsed === null) return null;
    if (mappedCache.size >= MAX_CACHED) mappedCache.clear();
    mappedCache.set(text, parsed);
    bytes = parsed;
  }
  return bytes;
}

// ---- bytes to text

/** Dotted text of the IPv4 address at `bytes[at, at + 4)`. */
export function formatIPv4(bytes: Uint8Array, at = 0): string {
  return `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`;
}

/** Whether the IPv6 address at `bytes[at, at + 16)` is IPv4-mapped (::ffff:0:0/96). */
function isMapped(bytes: Uint8Array, at: number): boolean {
  for (let i = at; i < at + 10; i++) if (bytes[i] !== 0) return false;
  return bytes[at + 10] === 0xff && bytes[at + 11] === 0xff;
}

const group = (bytes: Uint8Array, at: number, i: number): number => (bytes[at + 2 * i] << 8) | bytes[at + 2 * i + 1];

/**
 * RFC 5952 text of the IPv6 address at `bytes[at, at + 16)`: lower case hex
 * without leading zeros, the first longest run of two or more zero groups as
 * `::`, IPv4-mapped as `::ffff:a.b.c.d` (section 5).
 */
export function formatIPv6(bytes: Uint8Array, at = 0): string {
  if (isMapped(bytes, at)) return `::ffff:${formatIPv4(bytes, at + 12)}`;
  let runAt = -1;
  let runLength = 1;
  for (let i = 0; i < 8; ) {
    let length = 0;
    while (i + length < 8 && group(bytes, at, i + length) === 0) length++;
    if (length > runLength) {
      runAt = i;
      runLength = length;
    }
    i += Math.max(length, 1);
  }
  let text = '';
  for (let i = 0; i < 8; i++) {
    if (i === runAt) {
      text += '::';
      i += runLength - 1;
    } else {
      text += `${i === 0 || i === runAt + runLength ? '' : ':'}${group(bytes, at, i).toString(16)}`;
    }
  }
  return text;
}

/** The text of 16 bytes in IPv6 form (toMappedBytes): IPv4-mapped as dotted IPv4, else RFC 5952. */
export function fromMappedBytes(bytes: Uint8Array): string {
  return isMapped(bytes, 0) ? formatIPv4(bytes, 12) : formatIPv6(bytes);
}

/** IPv6 text of an address in IPv6 form (as the store's columns give it) as records spell it: `::ffff:a.b.c.d` as `a.b.c.d`. */
export function fromMappedText(text: string): string {
  return text.startsWith('::ffff:') && text.includes('.') ? text.slice(7) : text;
}

/** Canonical text of an address (IPv4 dotted, IPv6 RFC 5952), or null when `text` is not one. */
export function canonicalAddress(text: string): string | null {
  const bytes = parseAddress(text);
  if (bytes === null) return null;
  return bytes.length === 4 ? formatIPv4(bytes) : formatIPv6(bytes);
}

// ---- ranges

const IPV4_MAPPED = 0xffffn << 32n;

const bigintOf = (bytes: Uint8Array): bigint => bytes.reduce((value, byte) => (value << 8n) | BigInt(byte), 0n);

/** An address (`10.0.0.1`, `fd00::1`) or a CIDR range (`10.0.0.0/8`, `fd00::/16`) as a range in IPv6 space (IPv4 as IPv4-mapped); null when it is neither. */
export function parseAddressRange(text: string): IpRange | null {
  const slash = text.indexOf('/');
  if (slash < 0) {
    const bytes = parseMapped(text);
    return bytes === null ? null : { first: bigintOf(bytes), last: bigintOf(bytes) };
  }
  if (!/^\d{1,3}$/.test(text.slice(slash + 1))) return null;
  const host = parseAddress(text.slice(0, slash));
  if (host === null) return null;
  if (host.length === 4) {
    if (!Validator.isValidIPv4CidrNotation(text)[0]) return null;
    const range = IPv4CidrRange.fromCidr(text);
    return { first: IPV4_MAPPED | range.getFirst().value, last: IPV4_MAPPED | range.getLast().value };
  }
  if (!Validator.isValidIPv6CidrNotation(text)[0]) return null;
  const range = IPv6CidrRange.fromCidr(text);
  return { first: range.getFirst().value, last: range.getLast().value };
}

/** Loopback addresses: 127.0.0.0/8 (IPv4-mapped) and ::1. */
export const LOOPBACK_RANGES: readonly IpRange[] = [parseAddressRange('127.0.0.0/8')!, parseAddressRange('::1')!];

/** The loopback interface's name. */
export const LOOPBACK_IFACE = 'lo';

/** Whether a listen host is a loopback address (127.0.0.0/8, ::1, IPv4-mapped 127/8) or `localhost`. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const bytes = parseMapped(host);
  if (bytes === null) return false;
  if (isMapped(bytes, 0)) return bytes[12] === 127;
  return bytes.every((byte, i) => byte === (i === 15 ? 1 : 0));
}
