// What the browser tests of the web UI share: Debian chromium through playwright-core,
// kept to 127.0.0.1, with the page's errors collected; screenshots go to test-artifacts/.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import type { FourTupleJson } from '../../api/schemas/common.js';
import type { PacketJson } from '../../api/schemas/connections.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));

export interface UiBrowser {
  context: BrowserContext;
  page: Page;
  /** Uncaught errors in the page. */
  pageErrors: string[];
  /** console.error messages (the browser logs every 4xx response there). */
  consoleErrors: string[];
  /** Requests to anywhere but 127.0.0.1 (aborted). */
  offsite: string[];
}

/** A headless chromium page at 1440×1000, closed after the test. */
export async function openBrowser(t: TestContext): Promise<UiBrowser> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1440, height: 1000 } });
  const offsite: string[] = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === '127.0.0.1') return route.continue();
    offsite.push(url.href);
    return route.abort();
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const pageErrors: string[] = [];
  const consoleErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text());
  });
  return { context, page, pageErrors, consoleErrors, offsite };
}

export const sameTuple = (a: FourTupleJson, b: FourTupleJson) => a.src === b.src && a.sport === b.sport && a.dst === b.dst && a.dport === b.dport;
export const pointKey = (p: { node: string; netns: string; iface: string }) => `${p.node}/${p.netns}/${p.iface}`;
/** Where a packet was seen, as the UI's hop delays name it. */
export const sighting = (p: PacketJson) => `${pointKey(p)} ${p.direction}`;
/** Collapses the whitespace a template puts between inline elements. */
export const squash = (text: string | null) => (text ?? '').replace(/\s+/g, ' ').trim();

/** Nanoseconds since the epoch of an API time (ISO-8601 UTC with up to 9 fraction digits). */
export function epochNs(time: string): bigint {
  const [seconds, fraction = ''] = time.replace(/Z$/, '').split('.');
  return BigInt(Date.parse(`${seconds}Z`)) * 1_000_000n + BigInt(fraction.padEnd(9, '0'));
}

/** An API time as the UI prints it: `2026-11-21 19:23:03.123456789 UTC`. */
export function uiTime(time: string): string {
  const [seconds, fraction = ''] = time.replace(/Z$/, '').split('.');
  return `${seconds.replace('T', ' ')}.${fraction.padEnd(9, '0')} UTC`;
}

/** A duration as the UI prints it (`850 ns`, `+12.4 µs`, `3.210 ms`, `1.234567 s`) is `ns`, to its last digit. */
export function assertDuration(text: string, ns: number, what: string): void {
  const match = /^\+?(\d+(?:\.\d+)?) (ns|µs|ms|s)$/.exec(text);
  assert.ok(match, `${what}: "${text}" is not a duration`);
  const unit = { ns: 1, µs: 1e3, ms: 1e6, s: 1e9 }[match[2] as 'ns' | 'µs' | 'ms' | 's'];
  const decimals = match[1].split('.')[1]?.length ?? 0;
  const step = unit / 10 ** decimals;
  assert.ok(Math.abs(Number(match[1]) * unit - ns) <= step / 2 + 1e-6 * unit, `${what}: "${text}" vs ${ns} ns`);
}

export function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}

export async function textOf(locator: Locator, what: string): Promise<string> {
  try {
    await locator.first().waitFor({ state: 'visible' });
  } catch (err) {
    throw new Error(`${what} did not appear: ${(err as Error).message.split('\n')[0]}`);
  }
  return squash(await locator.first().textContent());
}

/** The panel of a page whose heading is `title`. */
export const panel = (page: Page, title: string) =>
  page.locator('section.panel').filter({ has: page.locator(`.panel__title:text-is("${title}")`) });
