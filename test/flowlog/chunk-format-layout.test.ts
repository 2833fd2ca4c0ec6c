// The packed form of packet chunks: flowlog/packets/chunk-format.ts (the reader's, and the SQL packing's)
// must match native/packet_chunks.h (the encoder's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PACKED_FIELDS, RESIDUALS } from '../../flowlog/packets/chunk-format.js';
import { cProgramOutput, headerDefines } from '../support/c-header.js';

const HEADER = 'native/packet_chunks.h';

test('the packed fields, in order and of their widths, are those of NT_PACKED_FIELDS', () => {
  const printed = cProgramOutput(HEADER, ['#define PRINT_FIELD(name, bytes) printf("%s %d\\n", #name, bytes);', '  NT_PACKED_FIELDS(PRINT_FIELD)']);
  assert.deepEqual(printed.trim().split('\n').map((line) => line.split(' ')), PACKED_FIELDS.map(({ name, bytes }) => [name, String(bytes)]));
});

test('the residuals values match', () => {
  const define = headerDefines(HEADER);
  assert.deepEqual(RESIDUALS, { whole: define('NT_RESIDUALS_WHOLE'), xor_previous: define('NT_RESIDUALS_XOR_PREVIOUS') });
});
