// The house's rules, read from the sources' imports (docs/architecture.md):
// each top-level folder imports only the folders below it, no two files
// import each other through any loop, and nothing the product ships imports
// tests or benchmarks (nor benchmarks tests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The sources' root: this file runs as dist/test/architecture/imports.test.js. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** What each folder of the product may import, besides itself. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  model: [],
  pcap: [],
  native: ['model'],
  capture: ['model', 'native'],
  flows: ['model'],
  flowlog: ['model', 'native'],
  'nat-tracker': ['model', 'native'],
  lab: ['model', 'native'],
  connection: ['model', 'flowlog', 'nat-tracker', 'pcap'],
  api: ['model', 'capture', 'flowlog', 'connection', 'pcap'],
  service: ['model', 'native', 'capture', 'flows', 'flowlog', 'nat-tracker', 'lab', 'connection', 'pcap', 'api'],
};
const PRODUCT = Object.keys(MAY_IMPORT);

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'build' || entry.name === 'node_modules' ? [] : sourceFiles(relative);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [relative] : [];
  });
}

/** The project files `file` imports (static, dynamic, re-exports, type-only alike), as paths from the root. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const specifiers = [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)'(\.{1,2}\/[^']+)'/gm)].map((m) => m[1]);
  return specifiers.map((s) => path.posix.normalize(path.posix.join(path.posix.dirname(file), s)).replace(/\.js$/, '.ts'));
}

const topFolder = (file: string) => file.split('/')[0];

const graph = new Map<string, string[]>();
for (const dir of [...PRODUCT, 'test', 'bench']) for (const file of sourceFiles(dir)) graph.set(file, importsOf(file));

test('every import of the product, tests and benchmarks names a file that exists', () => {
  const missing = [...graph].flatMap(([file, targets]) => targets.filter((t) => !existsSync(path.join(ROOT, t))).map((t) => `${file} -> ${t}`));
  assert.deepEqual(missing, []);
});

test('each product folder imports only the folders below it', () => {
  const upward = [...graph]
    .filter(([file]) => PRODUCT.includes(topFolder(file)))
    .flatMap(([file, targets]) =>
      targets
        .filter((t) => topFolder(t) !== topFolder(file) && !MAY_IMPORT[topFolder(file)].includes(topFolder(t)))
        .map((t) => `${file} -> ${t}`),
    );
  assert.deepEqual(upward, []);
});

test('benchmarks import no test', () => {
  const intoTests = [...graph]
    .filter(([file]) => topFolder(file) === 'bench')
    .flatMap(([file, targets]) => targets.filter((t) => topFolder(t) === 'test').map((t) => `${file} -> ${t}`));
  assert.deepEqual(intoTests, []);
});

test('no files import each other in a loop', () => {
  // Tarjan's strongly connected components over the product's files.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const loops: string[][] = [];
  let next = 0;
  const visit = (file: string) => {
    index.set(file, next);
    low.set(file, next++);
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file) ?? []) {
      if (!graph.has(target)) continue;
      if (!index.has(target)) {
        visit(target);
        low.set(file, Math.min(low.get(file)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(file, Math.min(low.get(file)!, index.get(target)!));
      }
    }
    if (low.get(file) !== index.get(file)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== file);
    if (component.length > 1 || (graph.get(file) ?? []).includes(file)) loops.push(component.sort());
  };
  for (const file of graph.keys()) if (!index.has(file)) visit(file);
  assert.deepEqual(loops, []);
});
