import type { IsoTime } from '../api/types.generated';

const ISO_UTC = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/;

/** Nanoseconds since the epoch; keeps the sub-millisecond digits that Date drops. */
export function epochNs(time: IsoTime): bigint {
  const match = ISO_UTC.exec(time);
  if (!match) return BigInt(Date.parse(time) || 0) * 1_000_000n;
  const [, seconds, fraction = ''] = match;
  return BigInt(Date.parse(`${seconds}Z`)) * 1_000_000n + BigInt(fraction.padEnd(9, '0'));
}

/** `2026-11-21 19:23:03.123456789 UTC`, with the fraction cut to `fractionDigits`. */
export function formatTime(time: IsoTime, fractionDigits = 9): string {
  const match = ISO_UTC.exec(time);
  if (!match) return time;
  const [, seconds, fraction = ''] = match;
  const shown = fraction.padEnd(9, '0').slice(0, fractionDigits);
  return `${seconds.replace('T', ' ')}${shown ? `.${shown}` : ''} UTC`;
}

/** A short span for people: `850 ns`, `12.4 µs`, `3.210 ms`, `1.234567 s`, `2 min 3.4 s`. */
export function formatDuration(ns: number): string {
  const magnitude = Math.abs(ns);
  if (magnitude < 1e3) return `${ns} ns`;
  if (magnitude < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
  if (magnitude < 1e9) return `${(ns / 1e6).toFixed(3)} ms`;
  if (magnitude < 60e9) return `${(ns / 1e9).toFixed(6)} s`;
  const minutes = Math.trunc(ns / 60e9);
  return `${minutes} min ${((ns - minutes * 60e9) / 1e9).toFixed(1)} s`;
}

/** `19:23:03.123456`: the time of day (UTC) to the microsecond, for rows where the date is the header's. */
export function formatClock(time: IsoTime): string {
  const match = ISO_UTC.exec(time);
  if (!match) return time;
  const [, seconds, fraction = ''] = match;
  return `${seconds.slice(11)}.${fraction.padEnd(9, '0').slice(0, 6)}`;
}
