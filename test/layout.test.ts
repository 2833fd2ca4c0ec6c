// The kernel↔user structs: capture/layout.ts must match bpf/*.h as the C compiler lays them out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { HEADER_BYTES, packetEventLayout, pointKeyLayout, type StructLayout } from '../capture/layout.js';
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
  assert.equal(packetEventLayout.fields.header.size, HEADER_BYTES);
});

test('struct nt_point_key matches pointKeyLayout', () => {
  assertSameLayout('packet_event.h', 'nt_point_key', pointKeyLayout);
});
