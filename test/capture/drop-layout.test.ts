// struct nt_drop_event and the constants of bpf/drop_trace.h: capture/drops/layout.ts must
// match them as the C compiler lays them out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as drop from '../../capture/drops/layout.js';
import { assertSameLayout, headerDefines } from '../support/c-header.js';

test('struct nt_drop_event matches dropEventLayout', () => {
  assertSameLayout('bpf/drop_trace.h', 'nt_drop_event', drop.dropEventLayout);
});

test('the constants of drop_trace.h match capture/drops/layout.ts', () => {
  const define = headerDefines('bpf/drop_trace.h');
  assert.equal(drop.DROP_HEADER_BYTES, define('NT_DROP_HEADER_BYTES'));
  assert.equal(drop.DROP_STACK_DEPTH, define('NT_DROP_STACK_DEPTH'));
  assert.equal(drop.DROP_MAC_MAX, define('NT_DROP_MAC_MAX'));
  assert.equal(drop.DROP_IFNAME_BYTES, define('NT_DROP_IFNAME_BYTES'));
  assert.deepEqual(drop.DROP_LINK, { ethernet: define('NT_DROP_LINK_ETHERNET'), raw: define('NT_DROP_LINK_RAW') });
  assert.deepEqual(drop.DROP_COUNTER, {
    seen: define('NT_DROP_COUNT_SEEN'),
    reported: define('NT_DROP_COUNT_REPORTED'),
    ignored: define('NT_DROP_COUNT_IGNORED'),
    unparsed: define('NT_DROP_COUNT_UNPARSED'),
    filtered: define('NT_DROP_COUNT_FILTERED'),
    rateLimited: define('NT_DROP_COUNT_RATE_LIMITED'),
    ringFull: define('NT_DROP_COUNT_RING_FULL'),
  });
  assert.equal(drop.DROP_COUNTERS, define('NT_DROP_COUNTERS'));
});
