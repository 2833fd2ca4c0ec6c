// IP addresses and CIDR ranges as the API takes them (parsed with ip-num),
// and their canonical text: IPv4 dotted, IPv6 per RFC 5952.
import { IPv4, IPv4CidrRange, IPv6, IPv6CidrRange, Validator } from 'ip-num';
import type { IpRange } from '../flowlog/keyset-search.js';

export interface Address {
  version: 4 | 6;
  /** The address as a 32-bit (IPv4) or 128-bit (IPv6) number. */
  value: bigint;
}

const IPV4_MAPPED = 0xffffn << 32n;

/** Parse an IPv4 or IPv6 address (no zone index, no brackets); null when it is neither. */
export function parseAddress(text: string): Address | null {
  if (Validator.isValidIPv4String(text)[0]) return { version: 4, value: IPv4.fromString(text).value };
  if (!text.includes('%') && Validator.isValidIPv6String(text)[0]) return { version: 6, value: IPv6.fromString(text).value };
  return null;
}

function ipv4Text(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

/** RFC 5952 text of a 128-bit address: lower case, the longest run of two or more zero groups as `::`, IPv4-mapped in dotted form. */
function ipv6Text(value: bigint): string {
  if (value >> 32n === 0xffffn) return `::ffff:${ipv4Text(value & 0xffffffffn)}`;
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { at: -1, length: 1 };
  for (let at = 0; at < 8; ) {
    let length = 0;
    while (at + length < 8 && groups[at + length] === 0) length++;
    if (length > best.length) best = { at, length };
    at += Math.max(length, 1);
  }
  const hex = groups.map((group) => group.toString(16));
  if (best.at < 0) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.length).join(':')}`;
}

const addressText = (address: Address): string => (address.version === 4 ? ipv4Text(address.value) : ipv6Text(address.value));

/** Canonical text of an address, or null when `text` is not one. */
export function canonicalAddress(text: string): string | null {
  const address = parseAddress(text);
  return address === null ? null : addressText(address);
}

/** The address in IPv6 space: IPv4 becomes IPv4-mapped. */
const inIpv6Space = (address: Address): bigint => (address.version === 4 ? IPV4_MAPPED | address.value : address.value);

/** An address (`10.0.0.1`, `fd00::1`) or a CIDR range (`10.0.0.0/8`, `fd00::/16`) as a range in IPv6 space (IPv4 as IPv4-mapped); null when it is neither. */
export function parseAddressRange(text: string): IpRange | null {
  const slash = text.indexOf('/');
  if (slash < 0) {
    const address = parseAddress(text);
    return address === null ? null : { first: inIpv6Space(address), last: inIpv6Space(address) };
  }
  if (!/^\d{1,3}$/.test(text.slice(slash + 1))) return null;
  const host = parseAddress(text.slice(0, slash));
  if (host === null) return null;
  if (host.version === 4) {
    if (!Validator.isValidIPv4CidrNotation(text)[0]) return null;
    const range = IPv4CidrRange.fromCidr(text);
    return { first: IPV4_MAPPED | range.getFirst().value, last: IPV4_MAPPED | range.getLast().value };
  }
  if (!Validator.isValidIPv6CidrNotation(text)[0]) return null;
  const range = IPv6CidrRange.fromCidr(text);
  return { first: range.getFirst().value, last: range.getLast().value };
}

/** Whether a listen host is a loopback address (127.0.0.0/8, ::1, IPv4-mapped 127/8) or `localhost`. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const address = parseAddress(host);
  if (address === null) return false;
  const value = inIpv6Space(address);
  return value === 1n || value >> 24n === (IPV4_MAPPED | (0x7fn << 24n)) >> 24n;
}
