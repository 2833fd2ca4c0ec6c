// The C side of the layout tests: structs of a shared header (bpf/*.h, native/*.h) as the C compiler
// lays them out, and its #defines. Headers are named by their path in the package.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { StructLayout } from '../../model/c-struct.js';
import { packageRoot } from '../../model/package-root.js';

const headerPath = (header: string) => path.join(packageRoot, header);

/** What a C program including `header` prints: `main` is the body of its main(). */
export function cProgramOutput(header: string, main: string[]): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-layout-'));
  try {
    const source = ['#include <stdio.h>', '#include <stddef.h>', '#include <linux/types.h>', `#include "${headerPath(header)}"`, 'int main(void) {', ...main, '  return 0;', '}'];
    writeFileSync(path.join(dir, 'layout.c'), source.join('\n'));
    execFileSync('cc', ['-o', path.join(dir, 'layout'), path.join(dir, 'layout.c')]);
    return execFileSync(path.join(dir, 'layout')).toString();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** sizeof and offsetof/sizeof of every field. */
function cLayout(header: string, struct: string, fields: string[]): StructLayout<string> {
  return JSON.parse(cProgramOutput(header, [
    `  printf("{\\"size\\":%zu,\\"fields\\":{", sizeof(struct ${struct}));`,
    ...fields.map(
      (field, i) =>
        `  printf("%s\\"${field}\\":{\\"offset\\":%zu,\\"size\\":%zu}", ${i ? '","' : '""'}, offsetof(struct ${struct}, ${field}), sizeof(((struct ${struct} *)0)->${field}));`,
    ),
    '  printf("}}");',
  ]));
}

/**
 * Asserts that `layout` has the size of struct `struct` in `header` and each field's offset and size,
 * and that its fields cover the struct end to end (no byte of the C struct is left out of the mirror).
 */
export function assertSameLayout(header: string, struct: string, layout: StructLayout<string>): void {
  const c = cLayout(header, struct, Object.keys(layout.fields));
  assert.equal(layout.size, c.size, `sizeof(struct ${struct})`);
  assert.deepEqual(layout.fields, c.fields);
  const fields = Object.entries(c.fields).sort(([, a], [, b]) => a.offset - b.offset);
  let end = 0;
  for (const [name, field] of fields) {
    assert.equal(field.offset, end, `struct ${struct}: ${name} follows the field before it with no gap`);
    end = field.offset + field.size;
  }
  assert.equal(end, c.size, `struct ${struct}: its fields end where it ends`);
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
