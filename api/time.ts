// Times in the API: ISO-8601 UTC with nanoseconds out; ISO-8601 or epoch milliseconds in.
import type { EpochNs } from '../flowlog/records.js';

export class TimeError extends Error {
  readonly code = 'BAD_TIME';
  constructor(message: string) {
    super(message);
    this.name = 'TimeError';
  }
}

/** `2026-11-21T19:23:03.123456789Z` */
export function isoNs(ns: EpochNs): string {
  const seconds = ns / 1_000_000_000n;
  const fraction = ns - seconds * 1_000_000_000n;
  const whole = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return `${whole}.${fraction.toString().padStart(9, '0')}Z`;
}

const ISO = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** Parse `what` from ISO-8601 (up to nanoseconds, with a zone) or epoch milliseconds. */
export function parseTime(text: string, what: string): EpochNs {
  if (/^\d{1,16}$/.test(text)) return BigInt(text) * 1_000_000n;
  const match = ISO.exec(text);
  const ms = match ? Date.parse(`${match[1]}${match[3]}`) : NaN;
  if (!match || Number.isNaN(ms)) {
    throw new TimeError(`${what} ${JSON.stringify(text.slice(0, 64))} is not an ISO-8601 time (2026-11-21T19:23:03.123456789Z) or epoch milliseconds`);
  }
  return BigInt(ms) * 1_000_000n + BigInt((match[2] ?? '').padEnd(9, '0'));
}
