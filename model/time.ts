// Times in the API: ISO-8601 UTC with nanoseconds out; ISO-8601 or epoch milliseconds in.
import type { EpochNs } from './records.js';

export class TimeError extends Error {
  readonly code = 'BAD_TIME';
  constructor(
    /** The parameter the time was given in. */
    readonly parameter: string,
    message: string,
  ) {
    super(message);
    this.name = 'TimeError';
  }
}

/** A span of time, either end open when not given. */
export interface TimeRange {
  /** Inclusive, epoch ns. */
  from?: EpochNs;
  /** Inclusive, epoch ns. */
  to?: EpochNs;
}

/** `2026-11-21T19:23:03.123456789Z` */
export function isoNs(ns: EpochNs): string {
  const seconds = ns / 1_000_000_000n;
  const fraction = ns - seconds * 1_000_000_000n;
  const whole = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return `${whole}.${fraction.toString().padStart(9, '0')}Z`;
}

const ISO = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** The latest time nanoseconds since the epoch hold in 64 bits (as the store keeps them): 2262-04-11T23:47:16.854775807Z. */
const MAX_NS = (1n << 63n) - 1n;

/** Parse `what` from ISO-8601 (up to nanoseconds, with a zone) or epoch milliseconds, from 1970 to 2262. */
export function parseTime(text: string, what: string): EpochNs {
  let ns: EpochNs;
  if (/^\d{1,16}$/.test(text)) {
    ns = BigInt(text) * 1_000_000n;
  } else {
    const match = ISO.exec(text);
    const ms = match ? Date.parse(`${match[1]}${match[3]}`) : NaN;
    if (!match || Number.isNaN(ms)) {
      throw new TimeError(what, `${what} ${JSON.stringify(text.slice(0, 64))} is not an ISO-8601 time (2026-11-21T19:23:03.123456789Z) or epoch milliseconds`);
    }
    ns = BigInt(ms) * 1_000_000n + BigInt((match[2] ?? '').padEnd(9, '0'));
  }
  if (ns < 0n || ns > MAX_NS) throw new TimeError(what, `${what} ${JSON.stringify(text.slice(0, 64))} is outside 1970-01-01 .. 2262-04-11`);
  return ns;
}
