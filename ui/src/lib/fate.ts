import type { Drop } from '../api/types.generated';

/**
 * A drop that lost the packet: `lost`, or `unknown` (stored before fates were decided, counted
 * as lost). `copy` (the packet went on elsewhere) and `consumed` (processed, then freed) are not.
 */
export const isLoss = (drop: Drop): boolean => drop.fate === 'lost' || drop.fate === 'unknown';

/** How a drop is named where it is listed: DROP for a loss, else what it was. */
export const fateLabel = (drop: Drop): string => (isLoss(drop) ? 'DROP' : drop.fate === 'copy' ? 'COPY FREED' : 'FREED AFTER USE');
