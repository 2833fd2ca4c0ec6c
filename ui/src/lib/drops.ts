import type { Drop, FourTuple } from '../api/types.generated';
import { capturePointKey } from './timeline';
import { sameTuple } from './tuple';

/** Drops of the same kind at the same place: one fate, reason, location, capture point and cause. */
export interface DropGroup {
  key: string;
  /** In time order; the first stands for the group (its stack is shown). */
  drops: Drop[];
  /** The distinct tuples the dropped packets had. */
  tuples: FourTuple[];
}

export function groupDrops(drops: Drop[]): DropGroup[] {
  const groups = new Map<string, DropGroup>();
  for (const drop of drops) {
    const key = [drop.fate, drop.reason, drop.location, capturePointKey(drop), drop.cause].join('|');
    const group = groups.get(key) ?? { key, drops: [], tuples: [] };
    group.drops.push(drop);
    if (!group.tuples.some((tuple) => sameTuple(tuple, drop))) {
      group.tuples.push({ src: drop.src, sport: drop.sport, dst: drop.dst, dport: drop.dport });
    }
    groups.set(key, group);
  }
  return [...groups.values()];
}
