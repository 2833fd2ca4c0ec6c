// The header residuals of a packet chunk, unpacked as flowlog/packets/chunk-format.ts
// describes them: written apart from the reader's code, to check both it and
// what the store holds.

import { FIELD_OFFSET, FIXED_BYTES } from '../../flowlog/packets/chunk-format.js';

/** The residuals of the `n` packets of a chunk's `packed` bytes, stored as `residuals` says (the column's value). */
export function chunkResiduals(packed: Buffer, n: number, residuals: string): Buffer[] {
  let at = FIXED_BYTES * n;
  for (let i = 0; i < n; i++) at += 8 * packed[FIELD_OFFSET.sack_blocks * n + i];
  const out: Buffer[] = [];
  let previous: Buffer = Buffer.alloc(0);
  for (let i = 0; i < n; i++) {
    const length = packed.readUInt16LE(FIELD_OFFSET.header_len * n + 2 * i);
    let residual: Buffer;
    if (residuals === 'whole') {
      residual = packed.subarray(at, (at += length));
    } else if (residuals === 'xor_previous') {
      residual = Buffer.alloc(length);
      for (let g = 0; g < length; g += 8) {
        const mask = packed[at++];
        for (let j = g; j < Math.min(g + 8, length); j++) {
          residual[j] = (mask & (1 << (j - g)) ? packed[at++] : 0) ^ (j < previous.length ? previous[j] : 0);
        }
      }
    } else {
      throw new Error(`unknown residuals ${residuals}`);
    }
    out.push(residual);
    previous = residual;
  }
  if (at !== packed.length) throw new Error(`the residuals end at ${at} of ${packed.length} packed bytes`);
  return out;
}
