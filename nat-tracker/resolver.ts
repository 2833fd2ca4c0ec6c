// The NAT path of a connection: from any tuple, any hop, either direction,
// the ordered chain of translations from the client side to the server side.
import type { EpochNs, FourTuple, NatKind, NatTranslation, NatVia } from '../flowlog/records.js';
import { afterTuple, classifyNat, reverseTuple, sameTuple } from './classify.js';

export interface NatHop {
  kind: NatKind;
  via: NatVia;
  node: string;
  netns: string;
  zone: number;
  before: FourTuple;
  after: FourTuple;
  translation: NatTranslation;
}

export interface NatPath {
  /** Every tuple the connection had, client side first (one per hop boundary). */
  tuples: FourTuple[];
  hops: NatHop[];
}

/** Translations whose orig or reply tuple is `tuple` in either direction. */
export type NatLookup = (tuple: FourTuple) => Promise<NatTranslation[]>;

/** A chain longer than this is a loop the visited set did not catch, or a misconfiguration. */
const MAX_HOPS = 32;

const entryKey = (t: NatTranslation) =>
  `${t.via}|${t.node}|${t.netns}|${t.zone}|${t.entryId}|${t.orig.src}|${t.orig.sport}|${t.orig.dst}|${t.orig.dport}|${t.firstSeen}`;

const hopOf = (translation: NatTranslation): NatHop | null => {
  const kind = classifyNat(translation.orig, translation.reply);
  if (!kind) return null;
  const { via, node, netns, zone, orig, reply } = translation;
  return { kind, via, node, netns, zone, before: orig, after: afterTuple(reply), translation };
};

/** How far a translation's lifetime is from `at` (0 when it covers it). */
const distance = (t: NatTranslation, at: EpochNs): bigint => (at < t.firstSeen ? t.firstSeen - at : at > t.lastSeen ? at - t.lastSeen : 0n);

/** The candidate closest in time to `at`, so a reused port maps to the right connection. */
function closest(candidates: NatHop[], at: EpochNs): NatHop | undefined {
  let best: NatHop | undefined;
  for (const hop of candidates) {
    if (!best || distance(hop.translation, at) < distance(best.translation, at)) best = hop;
  }
  return best;
}

/**
 * Resolve the chain through `tuple`. `at` picks among translations of reused
 * tuples (default: the newest). With no translation found, the path is the
 * tuple alone, as given.
 */
export async function resolveNatPath(lookup: NatLookup, tuple: FourTuple, at?: EpochNs): Promise<NatPath> {
  const visited = new Set<string>();
  const hopsFor = async (t: FourTuple, matches: (hop: NatHop) => boolean): Promise<NatHop[]> =>
    (await lookup(t))
      .filter((translation) => !visited.has(entryKey(translation)))
      .map(hopOf)
      .filter((hop): hop is NatHop => hop !== null && matches(hop));

  // The hop the entered tuple belongs to, as its before or after side, in either direction.
  const touching = await hopsFor(tuple, (hop) =>
    [hop.before, hop.after].some((side) => sameTuple(side, tuple) || sameTuple(side, reverseTuple(tuple))),
  );
  const anchorTime = at ?? touching.reduce<EpochNs>((newest, hop) => (hop.translation.lastSeen > newest ? hop.translation.lastSeen : newest), 0n);
  const first = closest(touching, anchorTime);
  if (!first) return { tuples: [tuple], hops: [] };
  visited.add(entryKey(first.translation));

  const hops = [first];
  // Upstream: the hop whose after side is this hop's before side.
  while (hops.length < MAX_HOPS) {
    const head = hops[0];
    const previous = closest(await hopsFor(head.before, (hop) => sameTuple(hop.after, head.before)), anchorTime);
    if (!previous) break;
    visited.add(entryKey(previous.translation));
    hops.unshift(previous);
  }
  // Downstream: the hop whose before side is this hop's after side.
  while (hops.length < MAX_HOPS) {
    const tail = hops[hops.length - 1];
    const next = closest(await hopsFor(tail.after, (hop) => sameTuple(hop.before, tail.after)), anchorTime);
    if (!next) break;
    visited.add(entryKey(next.translation));
    hops.push(next);
  }
  return { tuples: [hops[0].before, ...hops.map((hop) => hop.after)], hops };
}
