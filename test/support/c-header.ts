// The C side of the layout tests: structs of a header shared with C (bpf/*.h, native/*.h) as the C compiler lays them out, and its #defines.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { StructLayout } from '../../model/c-struct.js';
import { packageRoot } from '../../model/package-root.js';

/** `header` is named from the package root: bpf/capture.h, native/conntrack.h. */
const headerPath = (header: string) => path.join(packageRoot, header);

/** sizeof and offsetof/sizeof of every field, printed by a C program compiled against the header. */
function cLayout(header: string, struct: string, fields: string[]): StructLayout<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-layout-'));
  try {
    const source = [
      '#include <stdio.h>',
      '#include <stddef.h>',
      '#include <linux/types.h>',
      `#include "${headerPath(header)}"`,
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

/** Asserts that `layout` has the size of struct `struct` in `header` and each field's offset and size. */
export function assertSameLayout(header: string, struct: string, layout: StructLayout<string>): void {
  const c = cLayout(header, struct, Object.keys(layout.fields));
  assert.equal(layout.size, c.size, `sizeof(struct ${struct})`);
  assert.deepEqual(layout.fields, c.fields);
}

/** The numeric value of a `#define NAME value` in `header`; asserts there is one. */
export function headerDefines(header: string): (name: string) => number {
  const text = readFileSync(headerPath(header), 'utf8');
  return (name) => {
    const match = new RegExp(`^#define ${name} (\\S+)`, 'm').exec(text);
    assert.ok(match, `#define ${name}`);
    return Number(match[1]);
  };
}
