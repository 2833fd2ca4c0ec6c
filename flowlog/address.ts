// Addresses as the IPv6 columns hold them: 16 bytes, IPv4 as IPv4-mapped
// (::ffff:a.b.c.d); and back to the text records use.

import { isIPv4, isIPv6 } from 'node:net';
import { formatIPv4, formatIPv6 } from '../capture/packets/decode.js';
import { FlowLogError } from './errors.js';

/** An address as the IPv6 columns take it in text: IPv4 becomes IPv4-mapped `::ffff:a.b.c.d`. */
export function storedAddress(ip: string, field: string): string {
  if (isIPv4(ip)) return `::ffff:${ip}`;
  if (isIPv6(ip) && !ip.includes('%')) return ip;
  throw new FlowLogError('INVALID_VALUE', `${field}: invalid value ${JSON.stringify(String(ip))}`);
}

/** An IPv6 column's text back as the records spell it: IPv4-mapped becomes dotted IPv4. */
export function recordAddress(stored: string): string {
  return stored.startsWith('::ffff:') && stored.includes('.') ? stored.slice(7) : stored;
}

function ipv4Into(text: string, out: Uint8Array, at: number): void {
  const parts = text.split('.');
  for (let i = 0; i < 4; i++) out[at + i] = Number(parts[i]);
}

function groupsInto(groups: string[], out: Uint8Array, at: number): void {
  for (const group of groups) {
    if (group.includes('.')) {
      ipv4Into(group, out, at);
      at += 4;
    } else {
      const value = parseInt(group, 16);
      out[at] = value >> 8;
      out[at + 1] = value & 0xff;
      at += 2;
    }
  }
}

/** The 16 bytes of a valid stored-form address (see storedAddress). */
function parseStored(text: string): Uint8Array {
  const out = new Uint8Array(16);
  const gap = text.indexOf('::');
  if (gap < 0) {
    groupsInto(text.split(':'), out, 0);
    return out;
  }
  const head = text.slice(0, gap);
  const tail = text.slice(gap + 2);
  groupsInto(head === '' ? [] : head.split(':'), out, 0);
  const tailGroups = tail === '' ? [] : tail.split(':');
  const tailBytes = tailGroups.reduce((n, g) => n + (g.includes('.') ? 4 : 2), 0);
  groupsInto(tailGroups, out, 16 - tailBytes);
  return out;
}

/**
 * The column bytes of dotted IPv4 `text` (IPv4-mapped), or null unless it is
 * four decimal octets without leading zeros (what isIPv4 accepts): parsed by
 * character, as flows bring a new address each.
 */
function ipv4Column(text: string): Uint8Array | null {
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  let octet = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || octet === 3) return null;
      out[12 + octet++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && value === 0) return null;
      value = value * 10 + c - 0x30;
      if (++digits > 3 || value > 255) return null;
    } else {
      return null;
    }
  }
  if (octet !== 3 || digits === 0) return null;
  out[15] = value;
  return out;
}

const MAX_CACHED = 1 << 16;
const cache = new Map<string, Uint8Array>();

/** The 16 column bytes of a record's address (IPv4 or IPv6 text); throws INVALID_VALUE naming `field`. Do not modify the result. */
export function addressBytes(ip: string, field: string): Uint8Array {
  let bytes = cache.get(ip);
  if (bytes === undefined) {
    bytes = (typeof ip === 'string' ? ipv4Column(ip) : null) ?? parseStored(storedAddress(ip, field));
    if (cache.size >= MAX_CACHED) cache.clear();
    cache.set(ip, bytes);
  }
  return bytes;
}

/** A stored address: its record text and its 16 column bytes (do not modify them). */
export interface StoredAddress {
  text: string;
  bytes: Uint8Array;
}

/** The record text of an IPv6 column's 16 bytes: IPv4-mapped as dotted IPv4. */
export function columnAddress(bytes: Uint8Array): string {
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? formatIPv4(bytes, 12) : formatIPv6(bytes);
}
