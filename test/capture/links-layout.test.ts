// The native↔JS records and constants of native/links.h: capture/links-layout.ts must match them as the C compiler lays them out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as links from '../../capture/links-layout.js';
import { assertSameLayout, headerDefines } from '../support/c-header.js';

test('struct nt_link_event and nt_dir_event match their layouts', () => {
  assertSameLayout('native/links.h', 'nt_link_event', links.linkEventLayout);
  assertSameLayout('native/links.h', 'nt_dir_event', links.dirEventLayout);
});

test('the constants of links.h match capture/links-layout.ts', () => {
  const define = headerDefines('native/links.h');
  assert.equal(links.IFNAME_BYTES, define('NT_IFNAME_BYTES'));
  assert.equal(links.DIR_NAME_BYTES, define('NT_DIR_NAME_BYTES'));
  assert.deepEqual(links.LINK_EVENT, {
    new: define('NT_LINK_NEW'),
    del: define('NT_LINK_DEL'),
    dumpDone: define('NT_LINK_DUMP_DONE'),
    resync: define('NT_LINK_RESYNC'),
    overflow: define('NT_LINK_OVERFLOW'),
  });
  assert.deepEqual(links.ARPHRD, { ether: define('NT_ARPHRD_ETHER'), loopback: define('NT_ARPHRD_LOOPBACK'), none: define('NT_ARPHRD_NONE') });
  assert.equal(links.IFF_UP, define('NT_IFF_UP'));
  assert.deepEqual(links.DIR_EVENT, {
    created: define('NT_DIR_CREATED'),
    deleted: define('NT_DIR_DELETED'),
    gone: define('NT_DIR_GONE'),
    overflow: define('NT_DIR_OVERFLOW'),
  });
});
