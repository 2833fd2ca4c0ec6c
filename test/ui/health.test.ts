// The capture-health page in Chromium: what /api/v1/capture/status holds, readable and
// refreshing — per point packets and losses, the drop tracer's fates, NAT sources (conntrack
// per namespace, IPVS, OVS), the store's tables — equal to the API's at the same moment.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import type { CaptureStatusJson } from '../../api/schemas/status.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { getJson, labWithService, pathPoints, requestRecorded } from '../support/service-fixture.js';
import { ARTIFACTS, openBrowser, panel, pointKey, squash, textOf } from '../support/ui-browser.js';

const number = (text: string | null) => Number((text ?? '').replace(/,/g, ''));

test('the capture-health page: the status API\'s figures, refreshed', { timeout: 120_000 }, async (t) => {
  const { lab, service } = await labWithService(t);
  await requestRecorded(lab, service, randomClientPort());
  const { page, pageErrors } = await openBrowser(t);
  await page.goto(`${new URL(service.url).origin}/`);
  await page.locator('.app-header__nav a', { hasText: 'Capture health' }).click();
  await page.waitForURL((url) => url.pathname === '/health');
  const points = page.locator('table.health-points tbody tr');
  await points.first().waitFor();

  // A refresh (the read time changes), then the API at once: no traffic runs, the figures are the same.
  const readAt = await textOf(page.locator('[data-read-at]'), 'the read time');
  await page.waitForFunction((before) => document.querySelector('[data-read-at]')?.textContent !== before, readAt, { timeout: 5000 });
  const status = await getJson<CaptureStatusJson>(service, '/api/v1/capture/status');

  const shown = await points.evaluateAll((rows) =>
    rows.map((row) => ({
      point: row.getAttribute('data-point'),
      packets: row.querySelector('[data-field="packets"]')?.textContent ?? '',
      lost: row.querySelector('[data-field="lost"]')?.textContent ?? '',
    })),
  );
  assert.deepEqual(
    shown.map((s) => s.point).sort(),
    status.points.map(pointKey).sort(),
    'a row per attached point',
  );
  for (const key of pathPoints(lab).map(pointKey)) assert.ok(shown.some((s) => s.point === key), `the lab's ${key} is listed`);
  for (const p of status.points) {
    const row = shown.find((s) => s.point === pointKey(p))!;
    assert.equal(number(row.packets), p.packets, `packets at ${pointKey(p)}`);
    assert.equal(number(row.lost), p.lost, `lost at ${pointKey(p)}`);
  }
  const counter = async (section: string, name: string) => number(await panel(page, section).locator(`dd[data-counter="${name}"]`).textContent());
  assert.equal(await counter('Capture', 'packets'), status.packets);
  assert.equal(await counter('Capture', 'lost'), status.lost);
  assert.equal(await counter('Capture', 'capture points'), status.points.length);
  assert.ok(status.drops, 'drop tracing runs');
  assert.equal(await counter('Drop tracer', 'reported'), status.drops.reported);
  assert.equal(await counter('Drop tracer', 'losses'), status.drops.fates!.lost);
  assert.ok(status.nat, 'NAT tracking runs');
  assert.equal(await counter('NAT sources', 'conntrack namespaces'), status.nat.conntrack.namespaces);
  assert.equal(await counter('NAT sources', 'conntrack overflows'), status.nat.conntrack.overflows);
  const perNamespace = await panel(page, 'NAT sources').locator('table tbody tr td:first-child').allTextContents();
  assert.deepEqual(perNamespace.map(squash).sort(), status.nat.conntrack.per_namespace.map((n) => n.netns).sort(), 'conntrack per namespace');
  assert.ok(status.nat.conntrack.per_namespace.some((n) => n.netns === lab.nodes.router.netns.name && n.events > 0), "the router's conntrack events");
  // Without --ovs-rundir the default run directory is polled; where no ovs-vswitchd runs there, the page says why.
  const ovs = await panel(page, 'NAT sources').locator('.health-ovs li').allTextContents();
  assert.deepEqual(ovs.map(squash), status.nat.ovs.map((o) => `${o.rundir}: ${o.error ?? 'reading its conntrack'}`));
  assert.ok(status.store, 'the store writer');
  for (const [name, table] of Object.entries(status.store.tables)) {
    const cells = await panel(page, 'Store').locator(`tr[data-table="${name}"] td`).allTextContents();
    assert.equal(number(cells[2]), table.written, `${name}: rows written`);
  }
  await page.screenshot({ path: path.join(ARTIFACTS, 'ui-health.png'), fullPage: true });
  assert.deepEqual(pageErrors, []);
});
