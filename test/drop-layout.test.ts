// struct nt_drop_event and the constants of bpf/drop_event.h: capture/drop-layout.ts must
// match them as the C compiler lays them out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as drop from '../capture/drop-layout.js';
import { packageRoot } from '../capture/native.js';

const HEADER = path.join(packageRoot, 'bpf', 'drop_event.h');

test('struct nt_drop_event matches dropEventLayout', () => {
  const fields = Object.keys(drop.dropEventLayout.fields);
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-drop-layout-'));
  try {
    // Prints [sizeof, [offsetof, sizeof] per field] as JSON.
    const source = [
      '#include <stdio.h>',
      '#include <stddef.h>',
      '#include <linux/types.h>',
      `#include "${HEADER}"`,
      '#define FIELD(f) printf(",[%zu,%zu]", offsetof(struct nt_drop_event, f), sizeof(((struct nt_drop_event *)0)->f));',
      'int main(void) {',
      '  printf("[%zu", sizeof(struct nt_drop_event));',
      ...fields.map((f) => `  FIELD(${f})`),
      '  printf("]");',
      '  return 0;',
      '}',
    ].join('\n');
    writeFileSync(path.join(dir, 'layout.c'), source);
    execFileSync('cc', ['-o', path.join(dir, 'layout'), path.join(dir, 'layout.c')]);
    const [size, ...offsets] = JSON.parse(execFileSync(path.join(dir, 'layout')).toString()) as [number, ...Array<[number, number]>];
    assert.equal(drop.dropEventLayout.size, size, 'sizeof(struct nt_drop_event)');
    assert.deepEqual(
      drop.dropEventLayout.fields,
      Object.fromEntries(fields.map((f, i) => [f, { offset: offsets[i][0], size: offsets[i][1] }])),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the constants of drop_event.h match drop-layout.ts', () => {
  const header = readFileSync(HEADER, 'utf8');
  const define = (name: string) => {
    const match = new RegExp(`^#define ${name} (\\S+)`, 'm').exec(header);
    assert.ok(match, `#define ${name}`);
    return Number(match[1]);
  };
  assert.equal(drop.DROP_HEADER_BYTES, define('NT_DROP_HEADER_BYTES'));
  assert.equal(drop.DROP_STACK_DEPTH, define('NT_DROP_STACK_DEPTH'));
  assert.equal(drop.DROP_MAC_MAX, define('NT_DROP_MAC_MAX'));
  assert.equal(drop.DROP_IFNAME_BYTES, define('NT_DROP_IFNAME_BYTES'));
  assert.deepEqual(drop.DROP_LINK, { ethernet: define('NT_DROP_LINK_ETHERNET'), raw: define('NT_DROP_LINK_RAW') });
  assert.deepEqual(drop.DROP_FAMILY, { ipv4: define('NT_DROP_FAMILY_IPV4'), ipv6: define('NT_DROP_FAMILY_IPV6') });
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
