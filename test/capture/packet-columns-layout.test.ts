// The native decoder's batches: native/packet-columns-layout.ts must match native/packet_columns.h.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { COLUMNS_VERSION, columnsHeaderLayout, PACKET_COLUMNS } from '../../native/packet-columns-layout.js';
import { FRAGMENT, OPTION_BIT, SACK_MAX } from '../../model/packet-columns.js';
import { assertSameLayout, cProgramOutput, headerDefines } from '../support/c-header.js';

const HEADER = 'native/packet_columns.h';

test('struct nt_columns_header matches columnsHeaderLayout', () => {
  assertSameLayout(HEADER, 'nt_columns_header', columnsHeaderLayout);
  assertSameLayout(HEADER, 'nt_sack_block', { size: 8, fields: { left: { offset: 0, size: 4 }, right: { offset: 4, size: 4 } } });
});

test('the columns, in order and of their widths, are those of NT_PACKET_COLUMNS', () => {
  const printed = cProgramOutput(HEADER, ['#define PRINT_COLUMN(name, bytes) printf("%s %d\\n", #name, bytes);', '  NT_PACKET_COLUMNS(PRINT_COLUMN)']);
  const columns = printed.trim().split('\n').map((line) => line.split(' '));
  assert.deepEqual(columns, PACKET_COLUMNS.map(([name, bytes]) => [name, String(bytes)]));
});

test('the constants of packet_columns.h match', () => {
  const define = headerDefines(HEADER);
  assert.equal(COLUMNS_VERSION, define('NT_COLUMNS_VERSION'));
  assert.equal(SACK_MAX, define('NT_SACK_MAX'));
  assert.deepEqual(OPTION_BIT, {
    mss: define('NT_OPT_MSS'), wscale: define('NT_OPT_WSCALE'), sack_perm: define('NT_OPT_SACK_PERM'),
    ts_val: define('NT_OPT_TS_VAL'), ts_ecr: define('NT_OPT_TS_ECR'), sack: define('NT_OPT_SACK'),
  });
  assert.deepEqual(FRAGMENT, { first: define('NT_FRAGMENT_FIRST'), later: define('NT_FRAGMENT_LATER') });
});
