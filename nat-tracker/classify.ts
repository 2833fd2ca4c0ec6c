// What a translation entry (orig + reply tuple) does to a connection.
import type { FourTuple, NatKind } from '../model/records.js';

/** The same flow seen from the other direction. */
export function reverseTuple(t: FourTuple): FourTuple {
  return { src: t.dst, sport: t.dport, dst: t.src, dport: t.sport };
}

/** The original-direction packet as it leaves the translation: the reply tuple reversed. */
export function afterTuple(reply: FourTuple): FourTuple {
  return reverseTuple(reply);
}

export function sameTuple(a: FourTuple, b: FourTuple): boolean {
  return a.src === b.src && a.sport === b.sport && a.dst === b.dst && a.dport === b.dport;
}

/**
 * DNAT when the responder is not where the initiator sent to, SNAT when the
 * responder answers someone other than the initiator, FULLNAT when both.
 */
export function classifyNat(orig: FourTuple, reply: FourTuple): NatKind | null {
  const dnat = reply.src !== orig.dst || reply.sport !== orig.dport;
  const snat = reply.dst !== orig.src || reply.dport !== orig.sport;
  if (dnat && snat) return 'FULLNAT';
  if (dnat) return 'DNAT';
  if (snat) return 'SNAT';
  return null;
}

/** What a hop that turns the original-direction tuple `before` into `after` is. */
export function hopKind(before: FourTuple, after: FourTuple): NatKind | null {
  return classifyNat(before, reverseTuple(after));
}
