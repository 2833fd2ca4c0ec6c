// The kernel↔user structs and constants: capture/packets/layout.ts must match bpf/capture.h as the C compiler lays it out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as layout from '../../capture/packets/layout.js';
import { filterLayout, lpmV4Layout, lpmV6Layout, packetEventLayout, pointKeyLayout, pointStatsLayout } from '../../capture/packets/layout.js';
import { assertSameLayout, headerDefines } from '../support/c-header.js';

test('struct nt_packet_event matches packetEventLayout', () => {
  assertSameLayout('bpf/capture.h', 'nt_packet_event', packetEventLayout);
});

test('the counter, filter and key structs match their layouts', () => {
  assertSameLayout('bpf/capture.h', 'nt_point_key', pointKeyLayout);
  assertSameLayout('bpf/capture.h', 'nt_point_stats', pointStatsLayout);
  assertSameLayout('bpf/capture.h', 'nt_filter', filterLayout);
  assertSameLayout('bpf/capture.h', 'nt_lpm_v4', lpmV4Layout);
  assertSameLayout('bpf/capture.h', 'nt_lpm_v6', lpmV6Layout);
});

test('the constants of capture.h match layout.ts', () => {
  const define = headerDefines('bpf/capture.h');
  assert.equal(layout.PARSE_BYTES, define('NT_PARSE_BYTES'));
  assert.equal(layout.CAPTURE_MAX, define('NT_CAPTURE_MAX'));
  assert.equal(layout.IPV6_EXT_MAX, define('NT_IPV6_EXT_MAX'));
  assert.equal(layout.PAYLOAD_HASH_BYTES, define('NT_PAYLOAD_HASH_BYTES'));
  assert.deepEqual(layout.HOOK, { tc: define('NT_HOOK_TC'), xdp: define('NT_HOOK_XDP') });
  assert.deepEqual(layout.DIRECTION, { ingress: define('NT_DIR_INGRESS'), egress: define('NT_DIR_EGRESS') });
  assert.deepEqual(layout.LINK, { ethernet: define('NT_LINK_ETHERNET') });
  assert.deepEqual(layout.FAMILY, { ipv4: define('NT_FAMILY_IPV4'), ipv6: define('NT_FAMILY_IPV6') });
  assert.deepEqual(layout.FRAG, { first: define('NT_FRAG_FIRST'), later: define('NT_FRAG_LATER') });
  assert.deepEqual(layout.FILTER_PROTO, { tcp: define('NT_PROTO_TCP'), udp: define('NT_PROTO_UDP') });
});
