// The kernel↔user structs and constants: capture/layout.ts must match bpf/packet_event.h as the C compiler lays it out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as layout from '../capture/layout.js';
import { filterLayout, lpmV4Layout, lpmV6Layout, packetEventLayout, pointKeyLayout, pointStatsLayout, type StructLayout } from '../capture/layout.js';
import { packageRoot } from '../capture/native.js';

/** sizeof and offsetof/sizeof of every field, printed by a C program compiled against the header. */
function cLayout(header: string, struct: string, fields: string[]): { size: number; fields: Record<string, { offset: number; size: number }> } {
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-layout-'));
  try {
    const source = [
      '#include <stdio.h>',
      '#include <stddef.h>',
      '#include <linux/types.h>',
      `#include "${path.join(packageRoot, 'bpf', header)}"`,
      'int main(void) {',
      `  printf("{\\"size\\":%zu,\\"fields\\":{", sizeof(struct ${struct}));`,
      ...fields.map(
        (field, i) =>
          `  printf("%s\\"${field}\\":{\\"offset\\":%zu,\\"size\\":%zu}", ${i ? '","' : '""'}, offsetof(struct ${struct}, ${field}), sizeof(((struct ${struct} *)0)->${field}));`,
      ),
      '  printf("}}");',
      '  return 0;',
      '}',
    ].join('\n');
    writeFileSync(path.join(dir, 'layout.c'), source);
    execFileSync('cc', ['-o', path.join(dir, 'layout'), path.join(dir, 'layout.c')]);
    return JSON.parse(execFileSync(path.join(dir, 'layout')).toString());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function assertSameLayout(header: string, struct: string, layout: StructLayout<string>) {
  const c = cLayout(header, struct, Object.keys(layout.fields));
  assert.equal(layout.size, c.size, `sizeof(struct ${struct})`);
  assert.deepEqual(layout.fields, c.fields);
}

test('struct nt_packet_event matches packetEventLayout', () => {
  assertSameLayout('packet_event.h', 'nt_packet_event', packetEventLayout);
});

test('the counter, filter and key structs match their layouts', () => {
  assertSameLayout('packet_event.h', 'nt_point_key', pointKeyLayout);
  assertSameLayout('packet_event.h', 'nt_point_stats', pointStatsLayout);
  assertSameLayout('packet_event.h', 'nt_filter', filterLayout);
  assertSameLayout('packet_event.h', 'nt_lpm_v4', lpmV4Layout);
  assertSameLayout('packet_event.h', 'nt_lpm_v6', lpmV6Layout);
});

test('the constants of packet_event.h match layout.ts', () => {
  const header = readFileSync(path.join(packageRoot, 'bpf', 'packet_event.h'), 'utf8');
  const define = (name: string) => {
    const match = new RegExp(`^#define ${name} (\\S+)`, 'm').exec(header);
    assert.ok(match, `#define ${name}`);
    return Number(match[1]);
  };
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
