// Labs for tests: a unique prefix each, destroyed after the test whatever happens
// (and on exit or a fatal signal, by lab.ts itself); client ports for a test's own connections.
import { randomBytes, randomInt } from 'node:crypto';
import type { TestContext } from 'node:test';
import { createLab, type Lab, type LabOptions } from '../../lab/lab.js';

/** `nt` + 8 hex digits: unique per test, short enough for namespace-derived names. */
export function uniqueLabPrefix(): string {
  return `nt${randomBytes(4).toString('hex')}`;
}

export async function useLab(t: TestContext, opts: Omit<LabOptions, 'prefix' | 'persist'> = {}): Promise<Lab> {
  const lab = await createLab({ ...opts, prefix: uniqueLabPrefix() });
  t.after(() => lab.destroy());
  return lab;
}

/** A client port for a connection of the test's own through the lab. */
export const randomClientPort = () => randomInt(40000, 60000);
