// The records of the addon's ctnetlink reader: nat-tracker/sources/conntrack-layout.ts must
// match native/conntrack.h as the C compiler lays it out, and the addon must hand over
// records of that size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CT_FAMILY, CT_KIND, CT_STATUS, ctRecordLayout } from '../../nat-tracker/sources/conntrack-layout.js';
import { decodeConntrackRecords } from '../../nat-tracker/sources/conntrack.js';
import { decodeConntrackMessages } from '../../native/conntrack.js';
import { assertSameLayout, headerDefines } from '../support/c-header.js';
import { ctnetlinkEntry } from '../support/ctnetlink.js';

test('struct nt_ct_record matches ctRecordLayout', () => {
  assertSameLayout('native/conntrack.h', 'nt_ct_record', ctRecordLayout);
});

test('the constants of conntrack.h match conntrack-layout.ts', () => {
  const define = headerDefines('native/conntrack.h');
  assert.deepEqual(CT_KIND, {
    new: define('NT_CT_NEW'),
    update: define('NT_CT_UPDATE'),
    destroy: define('NT_CT_DESTROY'),
    dumped: define('NT_CT_DUMPED'),
    dumpStart: define('NT_CT_DUMP_START'),
    dumpDone: define('NT_CT_DUMP_DONE'),
    eventsLost: define('NT_CT_EVENTS_LOST'),
  });
  assert.deepEqual(CT_FAMILY, { ipv4: define('NT_CT_IPV4'), ipv6: define('NT_CT_IPV6') });
  assert.deepEqual(CT_STATUS, { srcNat: define('NT_CT_STATUS_SRC_NAT'), dstNat: define('NT_CT_STATUS_DST_NAT') });
});

test('the compiled addon hands over records of that layout', () => {
  const message = ctnetlinkEntry({
    event: 'destroy',
    family: 'ipv6',
    proto: 17,
    orig: { src: 'fd00::1', sport: 5353, dst: 'fd00::2', dport: 53 },
    reply: { src: 'fd00::3', sport: 53, dst: 'fd00::1', dport: 5353 },
    id: 4_000_000_001,
    status: CT_STATUS.dstNat,
    zone: 65535,
    startNs: 1_795_291_690_811_407_494n,
    stopNs: 1_795_291_690_911_452_110n,
  });
  const records = decodeConntrackMessages(message);
  assert.equal(records.length, ctRecordLayout.size);
  assert.deepEqual(decodeConntrackRecords(records, 1), [
    {
      kind: 'entry',
      entry: {
        event: 'destroy',
        proto: 17,
        orig: { src: 'fd00::1', sport: 5353, dst: 'fd00::2', dport: 53 },
        reply: { src: 'fd00::3', sport: 53, dst: 'fd00::1', dport: 5353 },
        zone: 65535,
        id: 4_000_000_001,
        status: CT_STATUS.dstNat,
        startNs: 1_795_291_690_811_407_494n,
        stopNs: 1_795_291_690_911_452_110n,
      },
    },
  ]);
});
